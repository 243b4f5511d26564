#!/usr/bin/env bash
# The README's fine-tuning example, end to end, on speech this machine makes: espeak-ng speaks three dozen
# sentences, `nanobark prepare` turns them into tokens, scripts/train.py trains a small semantic model from
# scratch, and `nanobark --model` speaks with what it exported.
#
#     apt-get install -y espeak-ng        (Debian; brew install espeak-ng on a Mac)
#     bash scripts/finetune_example.sh [WORK_DIR] [STEPS]
#
# Offline, every network here is random (weights_convert/random_init.py), the HuBERT and quantizer that make the
# semantic ids included: it shows the pipeline running, not a voice learned. With the Hub in reach, use
# --model suno/bark-small, drop --hubert and --quantizer (the real ones download), and fine-tune without --scratch.
set -euo pipefail
W=${1:-finetune-example}
STEPS=${2:-300}
mkdir -p "$W/clips/wavs" && W=$(cd "$W" && pwd)
cd "$(dirname "$0")/.."  # the checkout: weights_convert/ and scripts/train.py
step() { echo "== $* (at ${SECONDS} s)"; }

step "1. speech"
# 1. speech: each sentence to a WAV file, and the manifest that names them (.tsv: id, text, audio)
printf 'id\ttext\taudio\n' > "$W/clips/clips.tsv"
n=0
while IFS= read -r text; do
  n=$((n + 1))
  id=$(printf 'clip%02d' "$n")
  espeak-ng -v en-us -w "$W/clips/wavs/$id.wav" "$text"
  printf '%s\t%s\twavs/%s.wav\n' "$id" "$text" "$id" >> "$W/clips/clips.tsv"
done <<'SENTENCES'
Hello, my dog is cute.
The quick brown fox jumps over the lazy dog.
She said hello to the world.
The rain in Spain stays mainly in the plain.
A journey of a thousand miles begins with a single step.
The early bird catches the worm.
Every cloud has a silver lining.
The cat sat on the mat and looked at the moon.
I would like a cup of tea, please.
The train leaves the station at nine in the morning.
We walked along the river until the sun went down.
Please close the window before you leave.
The children played in the garden all afternoon.
My favourite colour is blue, like the sea.
He plays the piano every evening after dinner.
The library is open from eight until six.
Turn left at the corner and walk two blocks.
The soup is too hot to eat right now.
Music makes the long drive feel much shorter.
The old house on the hill has seven windows.
Could you tell me the way to the station?
The birds sing loudly at the break of day.
She reads a new book every single week.
The bakery sells fresh bread in the morning.
We will meet again next summer by the lake.
The mountain was covered in deep white snow.
Thank you for coming to the party tonight.
The little boat sailed slowly across the bay.
Learning a new language takes time and patience.
The clock on the wall stopped at midnight.
A gentle wind moved through the tall grass.
The museum has a famous painting of the sea.
He forgot his umbrella and got very wet.
The stars were bright over the quiet village.
Our team won the game in the final minute.
Good night, and sleep well.
SENTENCES

step "2. stand-ins"
# 2. stand-ins for the weights: a converted tiny Bark, and HuBERT and the quantizer, all random
python -m weights_convert.random_init bark "$W/base"
python -m weights_convert.random_init cloning "$W/cloning"

step "3. prepare"
# 3. tokens: text ids, semantic ids (HuBERT + quantizer, as cloning makes them) and the 8 codebooks per clip
nanobark prepare "$W/clips/clips.tsv" --out-dir "$W/prepared" --model "$W/base" \
  --hubert "$W/cloning/hubert-base-ls960" --quantizer "$W/cloning/quantizer/quantifier_hubert_base_ls960_14.pth"

step "4. train"
# 4. train the semantic stage from scratch (a small GPT), then export: train/model is a converted model folder
python scripts/train.py --stage=semantic --data_dir="$W/prepared" --init_from="$W/base" --scratch=True \
  --n_layer=2 --n_head=2 --n_embd=64 --batch_size=4 --lr=1e-3 --max_steps="$STEPS" --eval_interval=100 --out_dir="$W/train"

step "5. speak"
# 5. speak with it
nanobark "Hello, my dog is cute." --model "$W/train/model" --seed 1 --out "$W/hello.wav"
step "done"
