"""Fine-tuning (nanobark/train, scripts/train.py): the training layout is generation's, the loop learns,
DDP, resume and export behave, and bad data is one clear error."""

import filecmp
import importlib.util
import json
import os
import signal

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import nanobark.generation as generation
from helpers import ROOT, python, run, wait_for
from nanobark.cloning import prompt_from_tokens
from nanobark.config import GPTConfig
from nanobark.fine import FineGPT
from nanobark.generation import generate_coarse, generate_fine, generate_semantic, semantic_history
from nanobark.gpt import GPT
from nanobark.layout import CODEBOOK_SIZE, N_COARSE, SEMANTIC_PAD, SEMANTIC_VOCAB_SIZE
from nanobark.tokenizer import text_prompt
from nanobark.train.data import Clip, DataError, read_clips, write_clip
from nanobark.train.loss import coarse_logits, fine_logits, semantic_logits
from nanobark.train.sequences import coarse_example, coarse_windows, collate, fine_example, semantic_example

TINY = dict(n_layer=2, n_head=2, n_embd=32)
VOCABS = {"semantic": (129_600, 10_048), "coarse": (12_096, 12_096), "fine": (1_056, 1_056)}


def tiny_model(stage, seed=0):
    torch.manual_seed(seed)
    inp, out = VOCABS[stage]
    cfg = GPTConfig(**TINY, input_vocab_size=inp, output_vocab_size=out)
    return (FineGPT if stage == "fine" else GPT)(cfg).eval()


def random_clip(rng, n_semantic, id_="a", n_text=20, n_frames=None):
    """Random tokens in the shapes prepare writes: T = 1.5 S frames, as 75/s over ~50/s."""
    n_frames = n_frames or int(np.ceil(n_semantic * 1.5)) + 2
    return Clip(
        id_,
        rng.integers(0, 1000, n_text),
        rng.integers(0, SEMANTIC_VOCAB_SIZE, n_semantic),
        rng.integers(0, CODEBOOK_SIZE, (8, n_frames)),
    )


def voices(rng):
    other = random_clip(rng, 300, "voice")
    return [None, prompt_from_tokens(other.semantic, other.codes)]


# ---------------------------------------------------------------- 1. layout parity


@pytest.mark.parametrize("with_voice", [False, True])
def test_semantic_training_logits_are_generations(monkeypatch, with_voice):
    rng = np.random.default_rng(1)
    model, clip, voice = tiny_model("semantic"), random_clip(rng, 40), voices(rng)[with_voice]
    ex = semantic_example(clip, voice)
    with torch.no_grad():
        trained, targets = semantic_logits(model, collate([ex]))
    seen = []

    def teacher(logits, temp, top_k, top_p, generators, active):  # generation's step n gets target n
        seen.append(logits[0].clone())
        return torch.tensor([ex["targets"][len(seen) - 1]]), torch.zeros_like(logits)

    monkeypatch.setattr(generation, "sample", teacher)
    generation.generate_semantic(model, ex["text"][None], ex["history"][None], min_eos_p=None)
    assert len(seen) == len(targets) == 41 and int(targets[-1]) == SEMANTIC_PAD  # 40 tokens, then EOS
    torch.testing.assert_close(trained, torch.stack(seen), rtol=0, atol=1e-5)
    # the public recipe's layout (text, history and infer as 513 positions) gives other logits
    recipe = torch.cat([torch.as_tensor(ex[k]) for k in ("text", "history")] + [torch.as_tensor(ex["ids"])])
    with torch.no_grad():
        wrong = model(recipe[None])[0, 512:, : SEMANTIC_PAD + 1]
    assert (wrong - trained).abs().max() > 1e-2


@pytest.mark.parametrize("with_voice", [False, True])
def test_coarse_training_logits_are_generations(monkeypatch, with_voice):
    rng = np.random.default_rng(2)
    model, clip, voice = tiny_model("coarse"), random_clip(rng, 230), voices(rng)[with_voice]
    examples = [coarse_example(clip, voice, w) for w in range(coarse_windows(clip))]
    with torch.no_grad():
        trained, codes = coarse_logits(model, collate(examples))
    seen = []

    def teacher(logits, temp, top_k, top_p, generators, active):
        seen.append(logits[0].clone())
        return codes[len(seen) - 1 : len(seen)], None

    monkeypatch.setattr(generation, "sample", teacher)
    (out,) = generation.generate_coarse(model, [clip.semantic], [voice])
    assert len(seen) == len(codes) == 2 * out.shape[1] > 630  # 12 windows: the history fills its 630 ids
    np.testing.assert_array_equal(out, clip.codes[:N_COARSE, : out.shape[1]])
    torch.testing.assert_close(trained, torch.stack(seen), rtol=0, atol=1e-5)


@pytest.mark.parametrize("n_frames, with_voice", [(100, False), (1500, False), (1500, True), (900, True)])
def test_fine_training_logits_are_generations(monkeypatch, n_frames, with_voice):
    rng = np.random.default_rng(3)
    model, voice = tiny_model("fine"), voices(rng)[with_voice]
    clip = random_clip(rng, 10, n_frames=n_frames)
    true, n_hist = generation.fine_input(clip.codes, voice)
    plan = generation.fine_windows(n_frames, n_hist)
    examples = [fine_example(clip, voice, w) for w in range(len(plan))]
    with torch.no_grad():
        trained = fine_logits(model, collate(examples))
    calls, forward = [], model.forward

    def recorded(k, window):
        logits = forward(k, window)
        calls.append((k, window.clone(), logits))
        return logits

    def teacher(probs, generator):  # the window's frames to fill get the true codes of the codebook
        k, window, _ = calls[-1]
        n = (len(calls) - 1) // 6
        start, fill = plan[n]
        return torch.as_tensor(true[fill : start + 1024, k])

    monkeypatch.setattr(model, "forward", recorded)
    monkeypatch.setattr(generation, "draw", teacher)
    (out,) = generation.generate_fine(model, [clip.codes[:N_COARSE]], [voice], temp=1.0)
    np.testing.assert_array_equal(out, clip.codes)
    assert len(calls) == 6 * len(plan)
    for j in range(6):
        theirs, codes = [], []
        for n, (start, fill) in enumerate(plan):
            k, window, logits = calls[6 * n + j]
            assert k == j + 2
            np.testing.assert_array_equal(window[0].numpy(), examples[n]["ids"][j])  # the same input, id for id
            real = true[fill : start + 1024, k] != CODEBOOK_SIZE  # frames past the clip take no loss
            theirs.append(logits[0, fill - start :][torch.as_tensor(real), :CODEBOOK_SIZE])
            codes.append(true[fill : start + 1024, k][real])
        torch.testing.assert_close(trained[j][0], torch.cat(theirs), rtol=0, atol=1e-5)
        np.testing.assert_array_equal(trained[j][1].numpy(), np.concatenate(codes))  # every frame a window fills


# ---------------------------------------------------------------- the script

TRAIN = os.path.join(ROOT, "scripts", "train.py")
_spec = importlib.util.spec_from_file_location("train_script", TRAIN)
train_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_script)
# a tiny model from scratch, the two clips seen every step, a high learning rate: over-fitting quickly
FAST = [
    "--scratch=True", "--n_layer=1", "--n_head=2", "--n_embd=32", "--val_fraction=0.0", "--voice_prob=0.0",
    "--batch_size=2", "--lr=1e-2", "--min_lr=1e-3", "--warmup_steps=5", "--log_interval=1000",
]  # fmt: skip


def write_data(folder, clips):
    os.makedirs(folder, exist_ok=True)
    for c in clips:
        write_clip(folder, c.id, c.text, c.semantic, c.codes)
    with open(os.path.join(folder, "manifest.jsonl"), "w") as f:
        f.writelines(json.dumps({"id": c.id}) + "\n" for c in clips)
    return str(folder)


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory):
    rng = np.random.default_rng(4)
    clips = [random_clip(rng, n, f"clip{i}", n_text=5) for i, n in enumerate([20, 24])]
    return write_data(tmp_path_factory.mktemp("prepared"), clips)


@pytest.fixture(scope="module")
def three_clips(tmp_path_factory):
    rng = np.random.default_rng(5)
    clips = [random_clip(rng, n, f"clip{i}", n_text=5) for i, n in enumerate([30, 25, 40])]
    return write_data(tmp_path_factory.mktemp("prepared3"), clips)


def train(*argv):
    return train_script.main([str(a) for a in argv])


def log(out_dir):
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


# ---------------------------------------------------------------- 2. it learns


@pytest.mark.slow
@pytest.mark.parametrize("stage, steps", [("semantic", 120), ("coarse", 120), ("fine", 80)])
def test_a_tiny_model_learns_two_clips_by_heart(stage, steps, two_clips, converted, tmp_path, one_thread):
    out = tmp_path / "out"
    argv = [f"--stage={stage}", f"--data_dir={two_clips}", f"--init_from={converted}", f"--out_dir={out}"]
    assert train(*argv, *FAST, f"--max_steps={steps}", f"--ckpt_interval={steps}") == 0
    losses = [row["loss"] for row in log(out) if "loss" in row]
    assert len(losses) == steps and losses[0] > 1 and losses[-1] < 0.05, losses[-5:]
    from nanobark.weights.checkpoint import load_stage

    model = load_stage(str(out / "model"), stage)
    torch.manual_seed(0)
    for clip in read_clips(two_clips, 0.0)[0]:  # seeded sampling at a low temperature says them back
        if stage == "semantic":
            made = generate_semantic(model, text_prompt(clip.text)[None], semantic_history(None)[None], temp=0.1)[0]
            np.testing.assert_array_equal(made, clip.semantic)
        elif stage == "coarse":
            made = generate_coarse(model, [clip.semantic], [None], temp=0.1)[0]
            np.testing.assert_array_equal(made, clip.codes[:N_COARSE, : made.shape[1]])
        else:
            np.testing.assert_array_equal(
                generate_fine(model, [clip.codes[:N_COARSE]], [None], temp=0.1)[0], clip.codes
            )


def model_state(out_dir):
    return torch.load(os.path.join(out_dir, "ckpt.pt"), weights_only=True)


# ---------------------------------------------------------------- 3. DDP


@pytest.mark.slow
def test_two_processes_equal_one_process_accumulating_two(three_clips, converted, tmp_path):
    argv = [f"--data_dir={three_clips}", f"--init_from={converted}", "--stage=coarse", *FAST, "--voice_prob=0.5"]
    argv += ["--batch_size=1", "--max_steps=3", "--ckpt_interval=3", "--export=False"]
    one = run(TRAIN, *argv, "--grad_accum=2", f"--out_dir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = run(*torchrun, TRAIN, *argv, "--grad_accum=1", f"--out_dir={tmp_path / 'two'}")
    assert two.returncode == 0, two.stderr
    assert "2 process(es) x 1 x 1 examples" in two.stdout
    a, b = model_state(tmp_path / "one")["model"], model_state(tmp_path / "two")["model"]
    torch.manual_seed(1337)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


# ---------------------------------------------------------------- 4. resume


def logged_steps(out_dir):
    try:
        with open(os.path.join(out_dir, "log.jsonl")) as f:
            return sum(1 for line in f if line.endswith("}\n"))
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_a_run_killed_between_checkpoints_resumes_to_the_same_bits(three_clips, converted, tmp_path):
    argv = [f"--data_dir={three_clips}", f"--init_from={converted}", "--stage=coarse", *FAST, "--voice_prob=0.5"]
    argv += ["--max_steps=12", "--ckpt_interval=4", "--export=False"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run(TRAIN, *argv, f"--out_dir={whole}").returncode == 0
    p = python(TRAIN, *argv, f"--out_dir={cut}")
    wait_for(lambda: logged_steps(cut) >= 6 or p.poll() is not None)  # past the checkpoint of step 4
    p.send_signal(signal.SIGKILL)
    p.communicate()
    assert p.returncode == -signal.SIGKILL and model_state(cut)["step"] in (4, 8)
    again = run(TRAIN, *argv, f"--out_dir={cut}")
    assert again.returncode == 0 and "resuming" in again.stdout, again.stderr
    a, b = model_state(whole), model_state(cut)
    assert a["step"] == b["step"] == 12
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(x[k], y[k]) for k in x)
    drop = {"tok_s"}  # the one column that depends on the clock
    rows = [[{k: v for k, v in r.items() if k not in drop} for r in log(d)] for d in (whole, cut)]
    assert rows[0] == rows[1] and len(rows[0]) == 12


# ---------------------------------------------------------------- 5. export


@pytest.mark.slow
def test_the_exported_folder_speaks_through_the_command(two_clips, converted, tmp_path, one_thread):
    out = tmp_path / "out"
    argv = [f"--data_dir={two_clips}", f"--init_from={converted}", "--stage=coarse", f"--out_dir={out}"]
    assert train(*argv, "--val_fraction=0.0", "--max_steps=2", "--batch_size=1", "--freeze_layers=1") == 0
    model = out / "model"
    before, after = (load_file(os.path.join(d, "coarse.safetensors")) for d in (converted, model))
    for k in before:  # the frozen lowest block is the starting model's; the rest was trained
        assert torch.equal(before[k], after[k]) == k.startswith("h.0."), k
    for folder, _, files in os.walk(converted):
        for f in files:
            rel = os.path.relpath(os.path.join(folder, f), converted)
            same = filecmp.cmp(os.path.join(converted, rel), model / rel, shallow=False)
            assert same == (rel != "coarse.safetensors"), rel  # only the trained stage changed
    wav = tmp_path / "x.wav"
    r = run(os.path.join(ROOT, "scripts", "generate.py"), "Hello", "--model", model, "--out", wav, "--quiet")
    assert r.returncode == 0 and os.path.getsize(wav) > 1000, r.stderr


# ---------------------------------------------------------------- 6. bad inputs


def one_line_error(capsys, *argv):
    assert train(*argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_data_and_settings_are_one_line_each(converted, tmp_path, capsys):
    rng = np.random.default_rng(6)
    base = [f"--init_from={converted}", "--stage=semantic", f"--out_dir={tmp_path / 'out'}"]
    empty = write_data(tmp_path / "empty", [])
    assert "has no clips to train on" in one_line_error(capsys, *base, f"--data_dir={empty}")
    long_text = write_data(tmp_path / "long", [random_clip(rng, 20, "talkative")])
    clip = random_clip(rng, 20, "talkative", n_text=300)  # write_clip refuses it: an older or foreign writer's
    np.savez(
        os.path.join(long_text, "tokens", "talkative.npz"), text=clip.text, semantic=clip.semantic, codes=clip.codes
    )
    err = one_line_error(capsys, *base, f"--data_dir={long_text}")
    assert "talkative.npz" in err and "300 tokens, longer than the 256" in err
    outside = write_data(tmp_path / "outside", [random_clip(rng, 20, "ok")])
    with open(os.path.join(outside, "manifest.jsonl"), "a") as f:
        f.write(json.dumps({"id": "../../etc/passwd"}) + "\n")
    assert "line 2: id '../../etc/passwd' is not a plain file name" in one_line_error(
        capsys, *base, f"--data_dir={outside}"
    )
    assert "no setting named 'max_step'" in one_line_error(capsys, *base, f"--data_dir={outside}", "--max_step=3")
    assert "max_steps takes a int" in one_line_error(capsys, *base, f"--data_dir={outside}", "--max_steps=many")
    assert "the stages are" in one_line_error(capsys, *base, f"--data_dir={outside}", "--stage=codec")
    cut = write_data(tmp_path / "cut", [random_clip(rng, 20, "cut")])
    with open(os.path.join(cut, "tokens", "cut.npz"), "r+b") as f:  # a clip cut short by a kill or a full disk
        f.truncate(100)
    assert "cut.npz is not a prepared clip" in one_line_error(capsys, *base, f"--data_dir={cut}")
    with pytest.raises(DataError, match="text is 300 tokens"):
        write_clip(tmp_path / "bad", "x", clip.text, clip.semantic, clip.codes)
    with pytest.raises(DataError, match="semantic values must lie in 0..9999"):
        write_clip(tmp_path / "bad", "x", [1], [10_000], np.zeros((8, 3), np.int64))


def test_settings_come_from_defaults_then_a_config_file_then_overrides(tmp_path):
    from nanobark.train.configure import ConfigError, configure

    defaults = dict(stage="semantic", lr=1e-4, max_steps=500, decay_lr=True)
    run_file = tmp_path / "run.py"
    run_file.write_text('import math\nstage = "coarse"\nlr = 3e-5\nmax_steps = 2 * 50\n')
    got = configure(defaults, [str(run_file), "--lr=1", "--decay_lr=False", "--stage=fine"])
    assert got == dict(stage="fine", lr=1.0, max_steps=100, decay_lr=False)  # an int where a float goes is fine
    with pytest.raises(ConfigError, match="write settings as --key=value"):
        configure(defaults, ["--lr"])
    with pytest.raises(ConfigError, match="decay_lr takes a bool"):
        configure(defaults, ["--decay_lr=1"])


@pytest.mark.slow
def test_the_training_benchmark_runs(one_thread):
    r = run(os.path.join(ROOT, "scripts", "train_bench.py"), "--tiny", "--steps=1", "--warmup=0", "--threads=1")
    assert r.returncode == 0, r.stderr
    assert [line.split("|")[1].strip() for line in r.stdout.splitlines()[3:]] == ["semantic", "coarse", "fine"]
