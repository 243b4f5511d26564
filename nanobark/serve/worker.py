"""The one thread that owns the model: whatever is waiting together is generated together, as one batch.

    job = Job(texts, voice, settings, seed, loop)     # one request: its segments (one for a short text)
    worker.submit(job)                                # QueueFull when --max-queue requests are in already
    async for i, audio in job.segments(): ...         # in order, each as soon as its batch is decoded

The worker takes waiting segments, oldest request first, up to max_batch of the same Settings (a batch has
one set of temperatures; each item has its own voice), waiting up to max_wait seconds for company. A request
whose first segment has not run yet gives only that one to a batch: its first audio comes after one
segment's time, not after a batch of its own segments. Each segment samples from its own generator, seeded
seed + i as the command seeds segment i, so a seeded request gives the same audio alone or batched.

A cancelled job (its client left) is dropped at the next batch boundary, and its place in the queue is free.
Other work for the model (cloning a voice) runs between batches: call(fn).
"""

import asyncio
import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future

from ..settings import item_seed

log = logging.getLogger("nanobark.serve")


class QueueFull(Exception):
    def __init__(self, retry_after):
        super().__init__(f"the server has its --max-queue requests in already; retry in {retry_after} s")
        self.retry_after = retry_after


class Job:
    """One request, shared by its handler (on the event loop) and the worker thread."""

    def __init__(self, texts, voice, settings, seed, loop):
        self.texts, self.voice, self.settings, self.seed = texts, voice, settings, seed
        self.taken = 0  # segments handed to a batch (worker thread only)
        self.cancelled = False
        self.loop, self.queue = loop, asyncio.Queue()

    def put(self, item):
        """From the worker thread: (index, audio) or an exception, to the handler."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the event loop has closed: the server stopped at once, nobody is waiting
            pass

    async def segments(self):
        """(index, float32 audio) of each segment, in order; an error in generation is raised here."""
        for _ in self.texts:
            item = await self.queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item


class Worker:
    def __init__(self, load, max_batch=8, max_wait=0.05, max_queue=64):
        self.load, self.max_batch, self.max_wait, self.max_queue = load, max_batch, max_wait, max_queue
        self.bark, self.error = None, None  # the model once loaded; the exception if loading failed
        self.ready = threading.Event()
        self.lock = threading.Condition()
        self.waiting = deque()  # jobs with segments not yet taken, oldest first
        self.active = set()  # jobs not yet done: what --max-queue counts
        self.calls = deque()  # (fn, Future) to run between batches
        self.stopping = False
        self.batch_seconds = 1.0  # the last batch's time: what Retry-After is made of
        self.thread = threading.Thread(target=self._run, name="nanobark-model", daemon=True)

    # -------------------------------------------------------------- the handlers' side (any thread)

    def start(self):
        self.thread.start()

    def stop(self):
        with self.lock:
            self.stopping = True
            self.lock.notify()

    def submit(self, job):
        with self.lock:
            if len(self.active) >= self.max_queue:
                raise QueueFull(self._retry_after())
            self.active.add(job)
            self.waiting.append(job)
            self.lock.notify()

    def cancel(self, job):
        """The client left: the job's segments not yet generated never will be."""
        with self.lock:
            if job in self.active:
                job.cancelled = True
                self.lock.notify()

    def call(self, fn):
        """Run fn(bark) on the model's thread, between batches -> a concurrent.futures.Future."""
        future = Future()
        with self.lock:
            self.calls.append((fn, future))
            self.lock.notify()
        return future

    def _retry_after(self):
        queued = sum(len(j.texts) - j.taken for j in self.waiting)
        return max(1, math.ceil(self.batch_seconds * (1 + queued / self.max_batch)))

    # -------------------------------------------------------------- the model's thread

    def _run(self):
        try:
            self.bark = self.load()
        except BaseException as e:  # reported by /health and by the command, which exits 1
            self.error = e
            log.error("loading the model failed: %s", e)
            return
        finally:
            self.ready.set()
        while True:
            task = self._next()
            if task is None:
                return
            if isinstance(task, tuple):
                fn, future = task
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(self.bark))
                    except BaseException as e:
                        future.set_exception(e)
            elif task:
                self._generate(task)

    def _next(self):
        """Block until there is work -> a call, a batch [(job, segment index)] (maybe empty), or None to stop."""
        with self.lock:
            while not self.calls and not self._eligible():
                if self.stopping:
                    return None
                self.lock.wait()
            if self.calls:
                return self.calls.popleft()
            deadline = time.monotonic() + self.max_wait
            while self._eligible() < self.max_batch and not self.calls and time.monotonic() < deadline:
                self.lock.wait(deadline - time.monotonic())  # company may come
            return self._collect()

    def _eligible(self):
        """How many segments a batch could take now (one from a request that has not started); drops the
        cancelled jobs first."""
        for job in [j for j in self.waiting if j.cancelled]:
            self.waiting.remove(job)
            self._done(job)
        return sum(1 if j.taken == 0 else len(j.texts) - j.taken for j in self.waiting)

    def _collect(self):
        batch = []
        for job in list(self.waiting):
            if batch and job.settings != batch[0][0].settings:
                continue  # another batch's: one set of temperatures per batch
            n = 1 if job.taken == 0 else len(job.texts) - job.taken
            n = min(n, self.max_batch - len(batch))
            batch += [(job, job.taken + k) for k in range(n)]
            job.taken += n
            if job.taken == len(job.texts):
                self.waiting.remove(job)
            if len(batch) == self.max_batch:
                break
        return batch

    def _generate(self, batch):
        bark, t0 = self.bark, time.perf_counter()
        jobs = list(dict.fromkeys(job for job, _ in batch))
        try:  # anything raised in here fails these requests, never the worker thread
            generators = bark.generators([item_seed(job.seed, i) for job, i in batch])
            audio = bark.generate(
                [job.texts[i] for job, i in batch],
                voice=[job.voice for job, _ in batch],
                seed=generators,
                settings=batch[0][0].settings,
            )
        except Exception as e:
            if len(batch) > 1:  # one item's failure (no semantic token drawn) must not fail the others:
                log.warning("a batch of %d segments failed (%s); making them one by one", len(batch), e)
                for item in batch:  # each gives alone what it gives batched: its own generator
                    self._generate([item])
                return
            log.error("a segment failed: %s", e)
            with self.lock:
                for job in jobs:
                    job.put(e)
                    self.waiting = deque(j for j in self.waiting if j is not job)
                    self._done(job)
            return
        self.batch_seconds = time.perf_counter() - t0
        log.info("batch of %d segment(s) from %d request(s) in %.2f s", len(batch), len(jobs), self.batch_seconds)
        with self.lock:
            for (job, i), a in zip(batch, audio):
                if not job.cancelled:
                    job.put((i, a))
                if i == len(job.texts) - 1 or (job.cancelled and job not in self.waiting):
                    self._done(job)

    def _done(self, job):
        if job in self.active:
            self.active.discard(job)
            if job.cancelled:
                left = len(job.texts) - job.taken
                log.info(
                    "a request was cancelled (its client left): %d of its %d segment(s) not made", left, len(job.texts)
                )
