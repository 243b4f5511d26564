"""Train one of Bark's three GPTs on prepared clips (`nanobark prepare`), nanoGPT style.

    python scripts/train.py --stage=semantic --data_dir=prepared --init_from=bark-small --out_dir=out-semantic
    python scripts/train.py my_run.py --max_steps=500            # a config file of assignments, then overrides
    torchrun --standalone --nproc_per_node=2 scripts/train.py ...  # DDP: gloo on the CPU, nccl on GPUs

init_from is a converted model folder (`nanobark convert`, or nanobark's cache of a Hub model): the stage
starts from its weights (fine-tuning), or, with --scratch=True, from random weights of n_layer, n_head and
n_embd (a small model); the other stages, the codec, tokenizer and voices are taken from it unchanged.
Run the script once per stage to train more than one (export each into the next run's init_from).

out_dir gets ckpt.pt (every ckpt_interval steps and at the end), log.jsonl (a line per step: loss, lr,
tokens/s; and the evaluation loss on the held-out clips every eval_interval steps) and, at the end, model/:
the exported model folder, which `nanobark --model OUT_DIR/model` and Bark.from_pretrained load. Running the
same command again resumes from ckpt.pt, continuing as if never stopped (on the CPU, to the last bit).
The sequences are generation's own layouts; see nanobark/train/sequences.py and docs/finetuning.md.
Misuse (an unknown setting, bad data, a folder that is not a model) exits 2 with one line.
"""

import contextlib
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

# ---- settings: every one can be set by a config file or --key=value
# what to train, and from what
stage = "semantic"  # semantic | coarse | fine
data_dir = ""  # a folder `nanobark prepare` wrote: manifest.jsonl and tokens/<id>.npz
init_from = ""  # a converted model folder: the starting weights and the stages not trained
scratch = False  # True: start the stage from random weights of the sizes below (a small model)
n_layer, n_head, n_embd = 4, 4, 256
freeze_layers = 0  # the lowest blocks left as they start (fine-tuning only the upper ones)
out_dir = "out-train"
# data
val_fraction = 0.1  # clips held out for the evaluation loss, chosen by a hash of their id
voice_prob = 0.5  # how often an example gets the previous clip as its voice prompt (see sequences.py)
batch_size = 4  # examples per micro-batch (per process)
grad_accum = 1  # micro-batches per step (per process)
# AdamW and the learning rate (fine-tuning likes a small, short one; nanoGPT's finetune_shakespeare: 3e-5)
lr = 1e-4
min_lr = 1e-5
warmup_steps = 20
decay_lr = True  # cosine decay to min_lr at max_steps; False: a constant lr after the warm-up
max_steps = 500
weight_decay = 0.1
beta1, beta2 = 0.9, 0.95
grad_clip = 1.0  # 0: no clipping
# evaluation, checkpoints, log
eval_interval = 100
eval_batches = 8
ckpt_interval = 100
log_interval = 10  # steps between progress lines (the log file gets every step)
export = True  # write out_dir/model at the end
# system
device = ""  # "" = cuda if there is one, else cpu
dtype = ""  # "" = float32 on the CPU; bfloat16 on a GPU that has it, else float16 (autocast)
seed = 1337
SETTINGS = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))]


def main(argv):
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from nanobark.device import check_device
    from nanobark.train.configure import ConfigError, configure
    from nanobark.train.data import DataError, read_clips
    from nanobark.train.export import export as export_folder
    from nanobark.train.loss import StageLoss, count_targets
    from nanobark.train.optim import build, freeze_blocks, lr_at, make_optimizer
    from nanobark.train.sequences import STAGES, Examples
    from nanobark.train.state import Ranks, load_checkpoint, log_line, restore_rng, save_checkpoint, trim_log
    from nanobark.weights.checkpoint import CheckpointError, load_config

    # ---- settings, data, model: any misuse is one line and exit 2, before any work
    try:
        s = configure({k: globals()[k] for k in SETTINGS}, argv)
        if s["stage"] not in STAGES:
            raise ConfigError(f"--stage={s['stage']}: the stages are {', '.join(STAGES)}")
        if not s["init_from"] or not s["data_dir"]:
            raise ConfigError("set --init_from (a converted model folder) and --data_dir (a prepared folder)")
        dev = check_device(s["device"] or None)
        config = load_config(s["init_from"])
        train_clips, val_clips = read_clips(s["data_dir"], s["val_fraction"])
    except (ConfigError, DataError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ranks = Ranks(dev)
    dev = ranks.device
    dtype = s["dtype"] or (
        "float32" if dev.type == "cpu" else "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    )
    autocast = contextlib.nullcontext() if dev.type == "cpu" else torch.autocast(dev.type, getattr(torch, dtype))
    os.makedirs(s["out_dir"], exist_ok=True)
    ckpt = load_checkpoint(s["out_dir"])
    if ckpt is not None and ckpt["settings"]["stage"] != s["stage"]:
        print(f"error: {s['out_dir']} holds a {ckpt['settings']['stage']} run; choose another out_dir", file=sys.stderr)
        return 2

    torch.manual_seed(s["seed"])  # the same starting weights in every process
    sizes = {k: s[k] for k in ("n_layer", "n_head", "n_embd")} if s["scratch"] else None
    if ckpt is not None:  # resume: the model of the checkpoint's sizes, its weights loaded below
        sizes = {k: ckpt["model_config"][k] for k in ("n_layer", "n_head", "n_embd")}
    model, cfg = build(s["stage"], config, s["init_from"], sizes)
    try:
        freeze_blocks(model, s["freeze_layers"]).to(dev)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    optimizer = make_optimizer(model, s["lr"], s["weight_decay"], (s["beta1"], s["beta2"]), dev.type)
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == "float16")
    step = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        step = ckpt["step"]
        restore_rng(ckpt)
        if ranks.main:
            trim_log(s["out_dir"], step)
            print(f"resuming {s['out_dir']} at step {step}")
    else:
        torch.manual_seed(s["seed"] + ranks.rank)
    loss_fn = StageLoss(s["stage"], model)
    ddp = DDP(loss_fn, device_ids=[dev.index] if dev.type == "cuda" else None) if ranks.world > 1 else loss_fn
    train = Examples(s["stage"], train_clips, s["voice_prob"], s["seed"])
    val = Examples(s["stage"], val_clips, s["voice_prob"], s["seed"]) if val_clips else None
    if ranks.main:
        print(
            f"{s['stage']}: {len(train_clips)} clips to train on, {len(val_clips)} held out; {ranks.world} "
            f"process(es) x {s['grad_accum']} x {s['batch_size']} examples a step; {dev} {dtype}"
        )

    def batch_to_device(batch):
        return {k: v.to(dev, non_blocking=True) for k, v in batch.items()}

    @torch.no_grad()
    def evaluate():
        model.eval()
        losses = []
        for i in range(s["eval_batches"]):
            with autocast:
                losses.append(float(loss_fn(batch_to_device(val.batch(0, i, s["batch_size"])))))
        model.train()
        return sum(losses) / len(losses)

    def checkpoint(step):
        if ranks.main:
            save_checkpoint(s["out_dir"], model, optimizer, scaler, step, s, vars(cfg))
        ranks.barrier()

    # ---- the loop: a step's micro-batches depend only on (seed, step, index), so a resumed run redoes them
    t0 = time.time()
    decay_steps = s["max_steps"] if s["decay_lr"] else math.inf
    while step < s["max_steps"]:
        lr = lr_at(step, s["lr"], s["min_lr"] if s["decay_lr"] else s["lr"], s["warmup_steps"], decay_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        total, tokens = 0.0, 0
        for micro in range(s["grad_accum"]):
            batch = batch_to_device(train.batch(step, ranks.rank * s["grad_accum"] + micro, s["batch_size"]))
            last = micro == s["grad_accum"] - 1
            sync = contextlib.nullcontext() if last or ranks.world == 1 else ddp.no_sync()
            with sync:
                with autocast:
                    loss = ddp(batch) / s["grad_accum"]
                scaler.scale(loss).backward()
            total += float(loss.detach())
            tokens += count_targets(batch) * ranks.world
        if s["grad_clip"] > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), s["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        dt, t0 = time.time() - t0, time.time()
        if ranks.main:
            log_line(s["out_dir"], {"step": step, "loss": total, "lr": lr, "tokens": tokens, "tok_s": tokens / dt})
            if step % s["log_interval"] == 0 or step == s["max_steps"]:
                print(f"step {step}/{s['max_steps']}: loss {total:.4f}, lr {lr:.2e}, {tokens / dt:.0f} tokens/s")
        if val is not None and ranks.main and (step % s["eval_interval"] == 0 or step == s["max_steps"]):
            val_loss = evaluate()
            log_line(s["out_dir"], {"step": step, "val_loss": val_loss})
            print(f"step {step}: val loss {val_loss:.4f}")
        if step % s["ckpt_interval"] == 0 or step == s["max_steps"]:
            checkpoint(step)
        t0 = time.time()

    if s["export"] and ranks.main:
        path = export_folder(s["init_from"], os.path.join(s["out_dir"], "model"), s["stage"], model, cfg)
        print(f"exported {path}: speak with it: nanobark --model {path} 'Hello'")
    ranks.stop()
    return 0


if __name__ == "__main__":
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(__doc__ + "\nsettings (defaults):\n" + "\n".join(f"  --{k}={globals()[k]!r}" for k in SETTINGS))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
