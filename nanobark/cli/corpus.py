"""Corpus synthesis: many texts in, one audio file each out, resumable, spread over torchrun's processes.

    torchrun --nproc_per_node=8 -m nanobark synthesize corpus.jsonl --out-dir out    (the command: synthesize.py)

    out/<id>.wav                   an item's audio, written atomically (a temporary name, then renamed)
    out/.manifest.rank{r}.jsonl    rank r's finished items, a line each, appended and synced as each is done
    out/.errors.rank{r}.jsonl      rank r's failed items
    out/manifest.jsonl             every finished item, merged by rank 0 at the start and at the end of a run
    out/errors.jsonl               the wrong rows and the failed items (line, id, error), rewritten every run

Determinism: an item's audio depends only on the model, its text, voice, settings and seed: the row's seed,
or the job's base seed plus a hash of its id. Each item draws from its own torch.Generator through all three
stages (Bark.generate's per-item generators), so neither its batch nor its rank nor the order changes its
tokens. On the CPU the bytes also depend on the number of threads per process (the codec sums in another
order): compare runs at the same OMP_NUM_THREADS (torchrun gives each of several workers 1).

Resuming: an item is done when a manifest line records the same file, text, voice, seed, settings and model
as this run asks for, and the file is there and whole (it reads back to the recorded duration); the rest are
made (again). The audio is renamed into place only once it reads back whole, and before its manifest line is
written. A file in out_dir that no manifest line records was not made by this job (a recording, another
corpus): the command refuses to write over it unless --overwrite.

The ranks meet (torch.distributed, gloo: they exchange a few small objects, never tensors) when rank 0 has
folded an earlier run's leftovers into manifest.jsonl and says what is done, when the last one has finished
(then rank 0 merges), and to add up the totals. Plain `python` is world size 1: no process group at all.
"""

import datetime
import hashlib
import inspect
import json
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, NamedTuple

import torch
import torch._dynamo  # noqa: F401  before the process group: see Ranks.start
import torch.distributed as dist

from .. import settings
from ..files import cut_short, read_bounded, remove_temp_files, write_atomic
from ..layout import SAMPLE_RATE
from ..longform import count_tokens, generate_long, needs_segments
from ..progress import close_bars, counter
from ..settings import MAX_SEED
from .manifest import MAX_MANIFEST_BYTES, Problem, Row
from .speak import audio_frames

MANIFEST, ERRORS = "manifest.jsonl", "errors.jsonl"
RANK_FILE = re.compile(r"^\.(manifest|errors)\.rank(\d+)\.jsonl$")
# the ranks wait for each other at the end for as long as the slowest one works: a long timeout (a dead rank
# is torchrun's to notice: it stops the others)
WAIT = datetime.timedelta(days=7)
MAX_RECORDS_BYTES = 2 * MAX_MANIFEST_BYTES  # manifest.jsonl: every text of the input, and a little about each
SHOWN_PROBLEMS = 10  # printed at the start; all of them go to errors.jsonl
SILENCE = inspect.signature(generate_long).parameters["silence"].default  # its default, read from its owner


# ---------------------------------------------------------------- the ranks


class Ranks:
    """This process among torchrun's (RANK, WORLD_SIZE, LOCAL_RANK: its GPU on its machine); 0 of 1 without."""

    def __init__(self, env=os.environ):
        self.rank, self.world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
        self.local = int(env.get("LOCAL_RANK", 0))

    def start(self):
        """Join the process group. torch._dynamo is imported first (at the top of this file): building a model
        imports it lazily, and with it torch.distributed.nn, whose functions take `group=group.WORLD` as a
        default; imported after init_process_group, that default holds the group, destroy_process_group cannot
        free it, and its gloo threads outlive `stop`, into the interpreter's exit, where tearing them down
        sometimes aborts the process (SIGABRT, "terminate called without an active exception") after the work
        is done."""
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo", timeout=WAIT)  # MASTER_ADDR/PORT etc. from torchrun
        return self

    def stop(self, finished):
        """Leave the group, and its threads with it. finished: every rank ends here after the same last
        collective, so each waits for the others first (none closes its connections while another still reads
        that collective); after an error or a signal it leaves at once (the others may never come)."""
        if dist.is_available() and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()

    def barrier(self):
        if self.world > 1:
            dist.barrier()

    def from_rank0(self, obj):
        """Rank 0's obj, on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj):
        """[obj of rank 0, obj of rank 1, ...], on every rank."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def local_rank_first(ranks, task):
    """task() on every machine's local rank 0 first (a first run downloads and converts the model into the
    cache once), then on its other ranks, which find it there."""
    value = task() if ranks.local == 0 else None
    ranks.barrier()
    return value if ranks.local == 0 else task()


# ---------------------------------------------------------------- the plan


@dataclass
class Job:
    out_dir: str
    manifest: str  # the input's name, for messages
    model: str  # recorded in the manifest: the --model given, and int8/float16/bfloat16 if used
    save: Callable  # save(path, audio): writes the file atomically
    ext: str = "wav"
    seed: int = 0  # the base seed
    batch_size: int = 8
    defaults: dict = field(default_factory=dict)  # Settings fields from the command, under each row's own
    overwrite: bool = False
    progress: bool = True
    # what the items' files are: a file's length in frames as it reads back (None: not whole) and a result's,
    # at `rate` frames a second: the line's "duration" (audio here; token files for nanobark prepare)
    frames: Callable = audio_frames
    length: Callable = len
    rate: float = SAMPLE_RATE
    folder: str = ""  # the items' files are in this folder of out_dir (the manifests are in out_dir)


class Item(NamedTuple):
    row: Row
    file: str  # "<id>.<ext>", in out_dir
    seed: int
    settings: dict  # every setting, as recorded (with "long": generate_long or one generation)
    n_tokens: int  # the text's length, to sort and batch by

    @property
    def long(self):
        return self.settings["long"]


def item_seed(id_, base):
    """base + a stable 31-bit hash of the id (sha256: Python's hash() changes from process to process)."""
    digest = hashlib.sha256(id_.encode("utf-8", "surrogatepass")).digest()
    return (base + int.from_bytes(digest[:8], "big") % 2**31) % (MAX_SEED + 1)


def item_settings(row, given, long):
    """Every setting of an item, as recorded: the form's defaults, under the job's, under the row's own; a long
    item's silence between segments too (the row's, given the job's --silence by synthesize, or generate_long's)."""
    recorded = {**asdict(replace(settings.defaults(long), **{**given, **row.settings})), "long": long}
    if long:
        recorded["silence"] = SILENCE if row.silence is None else row.silence
    return recorded


def plan(rows, job, tokenizer):
    """Rows -> (items, problems): each item's file, seed, settings and length (a text of no tokens is a problem)."""
    items, problems = [], []
    for row in rows:
        n = count_tokens(row.text, tokenizer)
        if n == 0:
            message = f"{job.manifest} line {row.line}: the text gives no tokens (only control characters?)"
            problems.append(Problem(row.line, row.id, message))
            continue
        long = row.long or needs_segments(n)
        seed = row.seed if row.seed is not None else item_seed(row.id, job.seed)
        items.append(Item(row, f"{row.id}.{job.ext}", seed, item_settings(row, job.defaults, long), n))
    return items, problems


def share(items, rank, world):
    """Rank r's items: every world-th, after sorting longest first (ties by id, so every rank sorts alike).

    Dealing them out like cards gives each rank as many long texts as short ones, so the ranks finish at about
    the same time, and longest first means no rank ends on a long item while the others wait (nor finds out
    only at the end that its largest batch does not fit in memory)."""
    return sorted(items, key=lambda it: (-it.n_tokens, it.row.id))[rank::world]


def batches(items, size):
    """Items (longest first) -> lists to generate together: a long item alone (generate_long batches its own
    segments), the others batch_size at a time with the same voice and settings, which one batched call
    needs; taken in order, each batch holds texts of about the same length, so few samples wait for one."""
    units, open_ = [], {}
    for it in items:
        if it.long:
            units.append([it])
            continue
        key = (it.row.voice_ref, tuple(it.settings.items()))
        batch = open_.setdefault(key, [])
        if not batch:
            units.append(batch)  # queued where its first (longest) item was
        batch.append(it)
        if len(batch) == size:
            del open_[key]
    return units


def record(item, job):
    """What a manifest line must say for the item to count as done."""
    r = item.row
    if r.audio is not None:  # a training clip (nanobark prepare): its tokens depend on the clip and the models
        return {"id": r.id, "file": item.file, "text": r.text, "audio": r.audio, "model": job.model}
    return {
        "id": r.id,
        "file": item.file,
        "text": r.text,
        "voice": r.voice,
        "seed": item.seed,
        "model": job.model,
        "settings": item.settings,
    }


# ---------------------------------------------------------------- the files in out_dir


def read_jsonl(path):
    """The objects of a JSON Lines file; a line cut short by a kill (or edited into garbage) is skipped. Read
    bounded: a device or FIFO put in its place is a NotAFileError, as a manifest would be."""
    try:
        data = read_bounded(path, MAX_RECORDS_BYTES, "the job's file")
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").split("\n")
    out = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _json(obj):
    try:
        return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a \ud800 escape in the manifest: written escaped
        return (json.dumps(obj) + "\n").encode("ascii")


def append_line(path, obj):
    """One JSON line, in one write, synced to disk: a kill leaves whole lines, or one cut last line."""
    fd, line = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666), _json(obj)
    try:
        written = os.write(fd, line)
        if written < len(line):  # a full disk may take part of a write without an error
            raise cut_short(path, f"{written} of {len(line)} bytes written")
        os.fsync(fd)
    finally:
        os.close(fd)


def write_jsonl(path, objs):
    def write(tmp):
        with open(tmp, "wb") as f:
            f.writelines(_json(o) for o in objs)

    write_atomic(path, write)


def rank_files(out_dir, kind):
    """The .{kind}.rank{r}.jsonl files in out_dir, by rank."""
    found = [(m, n) for n in os.listdir(out_dir) for m in [RANK_FILE.match(n)] if m and m[1] == kind]
    return [os.path.join(out_dir, n) for m, n in sorted(found, key=lambda mn: int(mn[0][2]))]


def recorded_lines(out_dir):
    """Every line of manifest.jsonl, then of the rank manifests an unfinished run left, oldest first."""
    for path in [os.path.join(out_dir, MANIFEST), *rank_files(out_dir, "manifest")]:
        yield from read_jsonl(path)


def merge(out_dir, order, folder=""):
    """manifest.jsonl and the rank manifests -> one manifest.jsonl: the latest line per id whose file is there,
    in the input's order (ids it no longer has last); then the rank files go. -> {id: line}.

    Within a run every id is made by one rank, and every run starts with this merge, so "latest" is clear."""
    found = {}
    for entry in recorded_lines(out_dir):
        name = entry.get("file")
        if isinstance(entry.get("id"), str) and isinstance(name, str) and os.path.split(name)[0] == folder:
            found[entry["id"]] = entry
    entries = {i: e for i, e in found.items() if os.path.isfile(os.path.join(out_dir, e["file"]))}
    lines = sorted(entries.values(), key=lambda e: (order.get(e["id"], len(order)), e["id"]))
    write_jsonl(os.path.join(out_dir, MANIFEST), lines)
    for path in rank_files(out_dir, "manifest"):
        os.remove(path)
    return entries


def unrecorded(out_dir, names):
    """Those of `names` that are files in out_dir which no manifest line records: this job did not make them."""
    recorded = {e.get("file") for e in recorded_lines(out_dir)}
    return [n for n in names if n not in recorded and os.path.lexists(os.path.join(out_dir, n))]


def _whole(job, entry):
    """An item's file reads back to the duration its line records (not cut by a full disk, nor emptied since)."""
    duration = entry.get("duration")
    frames = job.frames(os.path.join(job.out_dir, entry["file"]))
    return isinstance(duration, (int, float)) and frames == round(duration * job.rate)


def write_errors(out_dir, problems):
    """errors.jsonl: this run's wrong rows and the rank files' failed items, by line; then the rank files go."""
    lines = [{"line": p.line, "id": p.id, "error": p.message} for p in problems]
    for path in rank_files(out_dir, "errors"):
        lines += read_jsonl(path)
    write_jsonl(os.path.join(out_dir, ERRORS), sorted(lines, key=lambda e: (e.get("line") or 0, str(e.get("id")))))
    for path in rank_files(out_dir, "errors"):
        os.remove(path)


def start(job, items, problems, rows):
    """Rank 0, before any rank writes: fold an earlier run's leftovers into manifest.jsonl, delete the temporary
    files of killed writes, list the wrong rows -> the ids already done (none with overwrite)."""
    remove_temp_files(job.out_dir)
    if job.folder:
        remove_temp_files(os.path.join(job.out_dir, job.folder))
    for path in rank_files(job.out_dir, "errors"):  # an earlier run's failures are tried again
        os.remove(path)
    entries = merge(job.out_dir, {r.id: i for i, r in enumerate(rows)}, job.folder)
    write_errors(job.out_dir, problems)
    if job.overwrite:
        return []
    return [
        it.row.id
        for it in items
        if it.row.id in entries and _matches(entries[it.row.id], record(it, job)) and _whole(job, entries[it.row.id])
    ]


def _matches(entry, wanted):
    return all(entry.get(k) == v for k, v in wanted.items())


# ---------------------------------------------------------------- the work


def _generate(bark, unit, voices):
    """THE CALL: one long item through generate_long, or a batch through Bark.generate, with a torch.Generator
    per item seeded with the item's seed (what it would draw alone) -> a float32 array per item."""
    s, voice = unit[0].settings, voices(unit[0].row.voice_ref)
    kwargs = {k: v for k, v in s.items() if k not in ("long", "silence")}  # Settings' fields
    if unit[0].long:  # segment i gets seed + i, however generate_long batches them
        return [generate_long(bark, unit[0].row.text, voice, seed=unit[0].seed, silence=s["silence"], **kwargs)]
    return bark.generate(
        [it.row.text for it in unit], voice=voice, seed=bark.generators([it.seed for it in unit]), **kwargs
    )


def _attempt(bark, unit, voices):
    """-> [(item, audio or the exception, seconds)]. A failed batch is tried again item by item, so that one
    bad item does not take its batch with it (each item's own generator gives it the same audio alone)."""
    t0 = time.perf_counter()
    try:
        audios = _generate(bark, unit, voices)
    except Exception as e:
        if len(unit) == 1:
            return [(unit[0], e, time.perf_counter() - t0)]
        return [result for it in unit for result in _attempt(bark, [it], voices)]
    seconds = (time.perf_counter() - t0) / len(unit)  # a batch's time, shared
    return [(it, audio, seconds) for it, audio in zip(unit, audios)]


class Synthesis:
    """What `synthesize` makes of its items: audio, a batch of one voice and settings at a time. A maker
    plans the rows into items, groups them into units, and attempts a unit -> [(item, result or error, seconds)].
    """

    def __init__(self, bark):
        self.bark, self.voices = bark, _voices(bark)

    def plan(self, rows, job):
        return plan(rows, job, self.bark.tokenizer)

    def units(self, items, job):
        return batches(items, job.batch_size)

    def attempt(self, unit):
        return _attempt(self.bark, unit, self.voices)


def _voices(bark):
    """voice_ref -> the loaded voice, each read once."""
    loaded = {}

    def get(ref):
        if ref not in loaded:
            loaded[ref] = bark.load_voice(ref)
        return loaded[ref]

    return get


def _progress(job, ranks, total):
    if not job.progress or total == 0 or (ranks.world > 1 and ranks.rank != 0 and sys.stderr.isatty()):
        return lambda n=1: None  # on a terminal, one bar (rank 0's): several would overwrite each other
    return counter("items" if ranks.world == 1 else f"rank {ranks.rank}", "item", total)


def work(maker, items, job, ranks):
    """Make this rank's items -> (done, failed, seconds of audio)."""
    mine = os.path.join(job.out_dir, f".manifest.rank{ranks.rank}.jsonl")
    failures = os.path.join(job.out_dir, f".errors.rank{ranks.rank}.jsonl")
    advance = _progress(job, ranks, len(items))
    done = failed = 0
    audio_seconds = 0.0
    for unit in maker.units(items, job) if items else []:  # no maker when every row was wrong
        for item, audio, seconds in maker.attempt(unit):
            if isinstance(audio, Exception):
                why = str(audio) or type(audio).__name__
                message = f"{job.manifest} line {item.row.line}: id {item.row.id!r} failed: {why}"
                print(message, file=sys.stderr, flush=True)
                append_line(failures, {"line": item.row.line, "id": item.row.id, "error": message})
                failed += 1
                continue
            job.save(os.path.join(job.out_dir, item.file), audio)  # renamed into place, then recorded
            duration = job.length(audio) / job.rate
            append_line(mine, {**record(item, job), "duration": round(duration, 6), "seconds": round(seconds, 3)})
            done, audio_seconds = done + 1, audio_seconds + duration
        advance(len(unit))
    return done, failed, audio_seconds


class Totals(NamedTuple):
    rows: int
    done: int
    failed: int  # wrong rows, and items whose generation failed
    skipped: int  # already done by an earlier run
    audio_seconds: float
    wall_seconds: float

    def exit_code(self):
        """1 only when every item tried failed; nothing left to do, or anything made, is a success (items done
        by an earlier run are neither: a rerun whose items left all fail exits 1)."""
        return 1 if self.failed and not self.done else 0

    def summary(self, out_dir):
        rate = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        errors = f"; the failures are in {os.path.join(out_dir, ERRORS)}" if self.failed else ""
        return (
            f"{self.rows} rows: {self.done} done, {self.failed} failed, {self.skipped} skipped (done before); "
            f"{self.audio_seconds:.2f} s of audio in {self.wall_seconds:.1f} s ({rate:.3f} s of audio per "
            f"second); {os.path.join(out_dir, MANIFEST)}{errors}"
        )


def run(maker, rows, problems, job, ranks):
    """Make the rows on this rank's share; every rank calls it -> the job's Totals (the same on every rank).

    maker (Synthesis, or prepare's) may be None when there are no rows (every row was wrong)."""
    t0 = time.perf_counter()
    items, unusable = maker.plan(rows, job) if rows else ([], [])
    problems = [*problems, *unusable]
    done = None
    if ranks.rank == 0:
        for p in problems[:SHOWN_PROBLEMS]:
            print(p.message, file=sys.stderr)
        if len(problems) > SHOWN_PROBLEMS:
            print(f"... and {len(problems) - SHOWN_PROBLEMS} more wrong rows: see {ERRORS}", file=sys.stderr)
        done = start(job, items, problems, rows)
    done = set(ranks.from_rank0(done))  # every rank has read the same state, before any rank writes
    pending = [it for it in items if it.row.id not in done]
    made, failed, audio_seconds = work(maker, share(pending, ranks.rank, ranks.world), job, ranks)
    ranks.barrier()  # the last rank is done: every rank file is complete
    if ranks.rank == 0:
        merge(job.out_dir, {r.id: i for i, r in enumerate(rows)}, job.folder)
        write_errors(job.out_dir, problems)
    made, failed, audio_seconds = (sum(x) for x in zip(*ranks.gather((made, failed, audio_seconds))))
    wall = ranks.from_rank0(time.perf_counter() - t0)
    return Totals(
        len(rows) + len(problems) - len(unusable), made, failed + len(problems), len(done), audio_seconds, wall
    )


def execute(job, rows, problems, ranks, load):
    """A corpus command's work, on every rank: join the others, load() the maker (only when there are rows),
    run, leave -> the exit code. On a signal what is finished stays, and one rank says so."""
    ranks.start()
    finished = False
    try:
        totals = run(load() if rows else None, rows, problems, job, ranks)
        finished = True
    except KeyboardInterrupt as e:
        close_bars()
        if ranks.rank == 0:  # every rank gets the signal; one says so
            print(
                f"interrupted; the items finished so far are in {job.out_dir}: the same command again makes the rest",
                file=sys.stderr,
            )
        return 128 + getattr(e, "signum", signal.SIGINT)
    finally:
        ranks.stop(finished)
    if ranks.rank == 0:
        print(totals.summary(job.out_dir))
    return totals.exit_code()
