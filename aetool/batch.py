"""The file pipeline under every image command: plan outputs, check every input's header before any
work (preflight), claim each output, decode ahead in worker threads, run the model on the main
thread, encode and write atomically in worker threads, and report each file the moment its output
is in place. One bad file never stops the batch; a condition that every remaining file would hit
(disk full, read-only file system, a broken model) stops it at once with one reason."""
from __future__ import annotations

import errno
import os
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from . import atomic
from .discovery import InputItem
from .engine import report_tiles
from .errors import FatalError, ImageError, ModelError, NonFiniteOutputError
from .imageio import Picture, encode_image, probe_image, read_image, write_image
from .limits import OutputSize

# Write errors that every later file would hit too: stop instead of failing them one by one.
FATAL_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}


@dataclass
class FileResult:
    input: str
    output: str | None
    status: str  # ok | failed | skipped | planned
    error: str | None = None
    seconds: float = 0.0
    megapixels: float = 0.0
    info: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        info = d.pop("info")
        d = {k: v for k, v in d.items() if v is not None}
        d.update(info)  # a task's null (sigma_estimated: null) says something: keep it
        return d


@dataclass
class Summary:
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    planned: int = 0
    not_started: int = 0  # left when the batch stopped early (interrupted, disk full, broken model)
    seconds: float = 0.0
    megapixels: float = 0.0
    interrupted: bool = False
    stopped: str | None = None  # why the batch stopped early: "SIGINT", "SIGTERM" or a fatal error
    extra: dict = field(default_factory=dict)  # a command's own totals (anomaly: how many flagged)

    def add(self, r: FileResult) -> None:
        self.total += 1
        setattr(self, r.status, getattr(self, r.status) + 1)
        if r.status == "ok":
            self.megapixels += r.megapixels

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        d["megapixels_per_second"] = round(self.megapixels / self.seconds, 4) if self.seconds else None
        d["seconds"] = round(self.seconds, 3)
        d["megapixels"] = round(self.megapixels, 4)
        return d

    def line(self, name: str) -> str:
        """The one-line summary printed on stderr at the end of every run."""
        rate = f", {self.megapixels / self.seconds:.2f} MP/s" if self.seconds and self.ok else ""
        left = f", {self.not_started} not started" if self.not_started else ""
        return (f"{name}: {self.ok} done, {self.skipped} skipped, {self.failed} failed{left} "
                f"in {self.seconds:.1f} s{rate}")


@dataclass
class Job:
    item: InputItem
    output: Path | None  # None: standard output
    megapixels: float | None = None  # from the header (preflight); None: not known yet (stdin)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def plan_jobs(items: list[InputItem], plan: Callable[[InputItem], Path | None], overwrite: bool
              ) -> tuple[list[Job], list[FileResult]]:
    """Jobs to run, and results decided without running (skipped, refused)."""
    jobs, decided = [], []
    claimed: dict[Path, str] = {}
    for item in items:
        try:
            out = plan(item)
        except ImageError as exc:
            decided.append(FileResult(str(item), None, "failed", str(exc)))
            continue
        if out is not None:
            if item.path is not None and _same_file(item.path, out):
                decided.append(FileResult(str(item), str(out), "failed",
                                          "the output would overwrite the input; choose another -o or --suffix"))
                continue
            key = out.resolve()
            if key in claimed:
                decided.append(FileResult(str(item), str(out), "failed",
                                          f"output name already taken by {claimed[key]}; use --suffix or "
                                          "--format same"))
                continue
            claimed[key] = str(item)
            if out.exists() and not overwrite:
                decided.append(FileResult(str(item), str(out), "skipped", "output exists (use --overwrite)"))
                continue
        jobs.append(Job(item, out))
    return jobs, decided


def preflight(jobs: list[Job], max_pixels: int, output_size: OutputSize | None = None, workers: int = 0,
              verify: bool = False, probe: Callable = probe_image) -> tuple[list[Job], list[FileResult]]:
    """Read every input's header (in threads: it is file I/O) before any model runs: files that a
    real run would fail (empty, not an image, damaged header, above the pixel or memory limit)
    fail now, and the others get their size, which weights the progress bar. Output folders that
    cannot be written fail their files too. `verify` (--dry-run) also walks each file's structure.
    `probe(path, max_pixels, output_size, verify=) -> (width, height)` reads one header (images by
    default; decompress reads its own files)."""
    blocked = unwritable_folders(jobs, create=not verify)
    ready, failed = [], []

    def check(job: Job):
        if job.output is not None and job.output.parent in blocked:
            return FileResult(str(job.item), str(job.output), "failed", blocked[job.output.parent])
        if job.item.path is None:
            return None
        try:
            w, h = probe(job.item.path, max_pixels, output_size, verify=verify)
        except ImageError as exc:
            return FileResult(str(job.item), str(job.output) if job.output else "-", "failed", str(exc))
        job.megapixels = w * h / 1e6
        return None

    with ThreadPoolExecutor(max_workers=workers or min(8, 2 * (os.cpu_count() or 2))) as pool:
        for job, result in zip(jobs, pool.map(check, jobs)):
            (failed.append(result) if result is not None else ready.append(job))
    return ready, failed


def default_workers() -> int:
    """Decode and encode threads when --workers is 0 (auto)."""
    return min(4, os.cpu_count() or 2)


def run_jobs(jobs: list[Job], process: Callable[[Picture, InputItem], tuple[Picture, dict]] | list[Callable], *,
             suffix_for: Callable[[Job], str], quality: int | None, max_pixels: int, workers: int,
             on_result: Callable[[FileResult], None], overwrite: bool = False,
             output_size: OutputSize | None = None,
             on_progress: Callable[[Job, float], None] | None = None,
             read: Callable = read_image) -> str | None:
    """Decode ahead, process in order, encode and write behind. `on_result` is called once per job
    the moment its output is renamed into place (from a writer thread: it must be thread-safe), and
    `on_progress(job, fraction)` as the tiles of a large image are done. `process(picture, item)`
    gets the input item too (inpaint finds each file's mask by it). `read(source, max_pixels,
    output_size)` decodes one input (a path, or the bytes of standard input): an image by default;
    `process` may return bytes instead of a Picture (compress), written as they are, or None for
    nothing written (embed: the result is in its info; plan such jobs with output None).

    Each output is claimed (a lock file beside it) before its input is read, so that runs sharing
    an output folder split the work; a file another run holds, or has finished meanwhile, is skipped.

    `process` may be a list of processors (model replicas on several devices, --devices): each
    runs in a thread of its own, taking the next decoded file; the order of results then varies.

    Returns None when every job ran, or why the batch stopped early (the jobs left are not
    reported; the caller counts them). KeyboardInterrupt (and Terminated) propagate after the
    writes in flight are finished and reported."""
    workers = workers or default_workers()
    prefetch = max(2, workers)
    # Outputs waiting for a writer are held in memory: when encoding is slower than the model (a
    # GPU, PNG at 0.4 CPU-seconds a megapixel), the model waits for a writer instead of queueing
    # every output of the folder (24 MP: 288 MB each).
    max_writes = 2 * workers
    readers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aetool-read")
    writers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aetool-write")
    stdin_data: dict[int, bytes] = {}
    stop: list[str] = []  # the first fatal reason, set by any thread
    claims: dict[int, atomic.Claim] = {}  # id(job) -> its output's claim, until written or given up
    lock = threading.Lock()

    def release(job: Job) -> None:
        with lock:
            c = claims.pop(id(job), None)
        if c is not None:
            c.release()

    def read_input(job: Job):
        if job.item.is_stdin:
            return read(stdin_data.setdefault(0, sys.stdin.buffer.read()), max_pixels, output_size)
        return read(job.item.path, max_pixels, output_size)

    def write(job: Job, out: Picture | bytes | None, info: dict, started: float, mp: float) -> FileResult:
        try:
            if out is None:  # a command with no file per input (embed): its result is in `info`
                pass
            elif job.output is None:
                sys.stdout.buffer.write(out if isinstance(out, bytes) else encode_image(out, suffix_for(job), quality))
                sys.stdout.buffer.flush()
            else:
                # Encoded straight into the temporary file: a large output is never also held as bytes.
                data = out if isinstance(out, bytes) else partial(write_image, out, suffix=suffix_for(job),
                                                                   quality=quality)
                try:
                    atomic.write_atomic(job.output, data)
                except OSError as exc:
                    if exc.errno in FATAL_WRITE_ERRNOS:
                        raise FatalError(f"cannot write {job.output}: {exc.strerror or exc}") from None
                    raise ImageError(f"cannot write {job.output}: {exc.strerror or exc}") from None
        finally:
            release(job)
        where = None if out is None else str(job.output) if job.output else "-"
        return FileResult(str(job.item), where, "ok", seconds=round(time.perf_counter() - started, 3),
                          megapixels=round(mp, 4), info=info)

    def failed(job: Job, exc: BaseException) -> FileResult:
        return FileResult(str(job.item), str(job.output) if job.output else "-", "failed", _reason(exc))

    def write_and_report(job: Job, out: Picture | bytes, info: dict, started: float, mp: float) -> None:
        """In a writer thread: the file is reported the moment its output is in place (or has failed)."""
        try:
            result = write(job, out, info, started, mp)
        except Exception as exc:  # noqa: BLE001 - reported per file
            result = failed(job, exc)
            if _is_fatal(exc) and not stop:
                stop.append(_reason(exc))
        on_result(result)

    pending_reads: deque[tuple[Job, Future, float]] = deque()
    pending_writes: set[Future] = set()
    queue = deque(jobs)

    def take_claim(job: Job) -> bool:
        """Claim the job's output; report it skipped when another run holds it or has done it."""
        if job.output is None:
            return True
        try:
            c = atomic.claim(job.output)
        except atomic.Claimed as exc:
            on_result(FileResult(str(job.item), str(job.output), "skipped", str(exc)))
            return False
        except OSError as exc:
            on_result(FileResult(str(job.item), str(job.output), "failed",
                                 f"cannot write to folder {job.output.parent}: {exc.strerror or exc}"))
            if exc.errno in FATAL_WRITE_ERRNOS and not stop:
                stop.append(f"cannot write to folder {job.output.parent}: {exc.strerror or exc}")
            return False
        if job.output.exists() and not overwrite:  # done by another run since we planned
            c.release()
            on_result(FileResult(str(job.item), str(job.output), "skipped", "output exists (use --overwrite)"))
            return False
        with lock:
            claims[id(job)] = c
        return True

    def fill() -> None:
        while queue and len(pending_reads) < prefetch and not stop:
            job = queue.popleft()
            if take_claim(job):
                pending_reads.append((job, readers.submit(read_input, job), time.perf_counter()))

    write_slots = threading.Lock()  # pending_writes, shared by the replicas' threads

    def queue_write(job: Job, out, info: dict, started: float, mp: float) -> None:
        nonlocal pending_writes
        while True:
            with write_slots:
                pending_writes = {f for f in pending_writes if not f.done()}
                if len(pending_writes) < max_writes:
                    pending_writes.add(writers.submit(write_and_report, job, out, info, started, mp))
                    return
                waiting = set(pending_writes)
            wait(waiting, return_when=FIRST_COMPLETED)

    def step(process: Callable, job: Job, fut: Future, started: float) -> None:
        """One decoded file through the model, its output handed to a writer."""
        try:
            source = fut.result()
            tick = (lambda fraction, job=job: on_progress(job, fraction)) if on_progress else None
            with report_tiles(tick):
                out, info = process(source, job.item)
            pic = source if isinstance(source, Picture) else out
            mp = pic.height * pic.width / 1e6 if isinstance(pic, Picture) else (job.megapixels or 0.0)
            if isinstance(out, Picture):
                _check_finite(out)
            queue_write(job, out, info, started, mp)
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the batch
            release(job)
            on_result(failed(job, exc))
            if _is_fatal(exc) and not stop:
                stop.append(_reason(exc))

    replicas = list(process) if isinstance(process, (list, tuple)) else [process]
    taking = threading.Lock()  # the read-ahead queue, with several replicas

    def next_read():
        with taking:
            if not pending_reads or stop:
                return None
            entry = pending_reads.popleft()
            fill()
            return entry

    def replica_loop(process: Callable) -> None:
        while (entry := next_read()) is not None:
            step(process, *entry)

    try:
        fill()
        if len(replicas) == 1:  # the model on this (the main) thread
            while (entry := next_read()) is not None:
                step(replicas[0], *entry)
        else:
            threads = [threading.Thread(target=replica_loop, args=(p,), name=f"aetool-model-{i}", daemon=True)
                       for i, p in enumerate(replicas)]
            for t in threads:
                t.start()
            try:
                for t in threads:
                    while t.is_alive():
                        t.join(0.2)  # short waits: Ctrl-C and SIGTERM reach this (the main) thread
            except KeyboardInterrupt:
                stop.append("interrupted")  # the replicas finish the file they hold and take no other
                for t in threads:
                    t.join()
                raise
    finally:
        for _, f, _ in pending_reads:
            f.cancel()
        readers.shutdown(wait=False, cancel_futures=True)
        writers.shutdown(wait=True)  # finish the writes in flight (each atomic) and report them
        with lock:  # what is left was never written (interrupted, stopped): give it back to other runs
            left = list(claims.values())
            claims.clear()
        for c in left:
            c.release()
    if stop:
        return stop[0]
    return None


def _check_finite(pic: Picture) -> None:
    for plane in (pic.pixels, pic.alpha):
        # Integer pixels (the engine's assembly of a large output) are finite by type; np.isfinite
        # of them would only allocate a mask as large as the image.
        if plane is not None and plane.dtype.kind == "f" and not np.isfinite(plane).all():
            raise NonFiniteOutputError("the model produced NaN or infinite values; its weights are damaged or "
                                       "its training diverged (re-train or restore it)")


def _is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, (FatalError, ModelError))


def folder_write_error(folder: Path, create: bool = True) -> str | None:
    """Why `folder` cannot take output files (None when it can): created if missing, then probed
    with a temporary file. create=False (--dry-run) creates nothing: a missing folder is judged
    by its nearest existing parent."""
    probe = folder
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        else:
            while not probe.exists() and probe != probe.parent:
                probe = probe.parent
            if not probe.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        with tempfile.TemporaryFile(prefix=".aetool-probe-", dir=probe):
            pass
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def unwritable_folders(jobs: list[Job], create: bool = True) -> dict[Path, str]:
    """Output folders that cannot be created or written to, with the reason: checked once per
    folder before any image is processed, so a read-only target costs seconds, not the whole run.
    Stale temporary and lock files that earlier runs left there (killed with -9, a power cut) are
    removed on the way."""
    blocked: dict[Path, str] = {}
    for folder in {job.output.parent for job in jobs if job.output is not None}:
        why = folder_write_error(folder, create)
        if why is not None:
            blocked[folder] = f"cannot write to folder {folder}: {why}; choose another -o"
        elif create:
            atomic.clean_stale_temps(folder)
    return blocked


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (ImageError, FatalError, ModelError)):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"out of memory ({exc}); try a smaller --tile"
    return f"{type(exc).__name__}: {exc}"
