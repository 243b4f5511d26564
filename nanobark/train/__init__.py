"""Fine-tuning Bark's three GPTs on prepared token shards, nanoGPT style (scripts/train.py runs it).

    data.py       PREPARED/ (manifest.jsonl, tokens/<id>.npz) -> checked clips, split into train and val
    sequences.py  a clip -> each stage's training examples, built by generation's own context code
    loss.py       a batch of examples -> the stage's loss, over exactly the logits generation samples from
    optim.py      AdamW (decay on matrices only), warm-up + cosine learning rate
    state.py      process group (torchrun), atomic checkpoints and resume, the JSON-lines log
    export.py     a trained stage -> a converted model folder that Bark.from_pretrained loads
    configure.py  a script's settings: defaults, a config file, --key=value overrides

The book (generation, gpt, fine, layout, cloning) and weights/ are used, never the other way round.
"""
