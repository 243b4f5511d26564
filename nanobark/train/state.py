"""A training run's processes, checkpoints and log.

Processes: under torchrun (RANK, WORLD_SIZE, LOCAL_RANK set) each process joins the group, gloo on the CPU,
nccl on GPUs, one GPU per process; plain `python` is one process and no group.

Checkpoints: out_dir/ckpt.pt holds the model, the optimizer, the gradient scaler, the step (which is also
the data position: a step's batches depend only on the seed and the step, see sequences.Examples), the
settings and the RNG states. It is written atomically (files.write_atomic), so a kill at any moment leaves
the previous checkpoint or the new one, whole; resuming from it continues as if the run had never stopped.
The log, out_dir/log.jsonl, gets a line per step; on resume the lines of the steps after the checkpoint
(the stopped run's, about to be redone) are dropped.
"""

import json
import os

import torch
import torch.distributed as dist

from ..files import MB, read_bounded, write_atomic

CHECKPOINT, LOG = "ckpt.pt", "log.jsonl"


class Ranks:
    """This process among torchrun's: rank, world size, and the device it trains on."""

    def __init__(self, device):
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", 0))
        self.device = torch.device(f"cuda:{local}") if device.type == "cuda" and self.world > 1 else device
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.main = self.rank == 0

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def stop(self):
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def save_checkpoint(out_dir, model, optimizer, scaler, step, settings, model_config):
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "step": step,
        "settings": settings,
        "model_config": model_config,
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return write_atomic(os.path.join(out_dir, CHECKPOINT), lambda tmp: torch.save(state, tmp))


def load_checkpoint(out_dir):
    """The checkpoint of out_dir as a dict, or None when there is none."""
    path = os.path.join(out_dir, CHECKPOINT)
    if not os.path.exists(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def restore_rng(ckpt):
    torch.set_rng_state(ckpt["rng"])
    if ckpt["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])


def log_line(out_dir, row):
    with open(os.path.join(out_dir, LOG), "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def trim_log(out_dir, step):
    """Keep the log's lines up to `step` (the checkpoint a run resumes from)."""
    path = os.path.join(out_dir, LOG)
    if not os.path.exists(path):
        return
    lines = read_bounded(path, 1024 * MB, "the training log").decode("utf-8").splitlines(keepends=True)
    kept = "".join(line for line in lines if line.strip() and _whole_row_before(line, step))

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(kept)

    write_atomic(path, write)


def _whole_row_before(line, step):
    try:  # a line the kill cut short is dropped
        return json.loads(line)["step"] <= step
    except (ValueError, KeyError, TypeError):
        return False
