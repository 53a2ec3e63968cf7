"""The file pipeline under every image command: plan outputs, decode ahead in worker threads,
run the model on the main thread, encode and write atomically in worker threads, and report
one result per input. One bad file never stops the batch."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .discovery import InputItem
from .errors import ImageError
from .imageio import Picture, encode_image, read_image, write_atomic


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
        d.update(d.pop("info"))
        return {k: v for k, v in d.items() if v is not None}


@dataclass
class Summary:
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    planned: int = 0
    seconds: float = 0.0
    megapixels: float = 0.0
    interrupted: bool = False

    def add(self, r: FileResult) -> None:
        self.total += 1
        setattr(self, r.status, getattr(self, r.status) + 1)
        if r.status == "ok":
            self.megapixels += r.megapixels

    def to_json(self) -> dict:
        d = asdict(self)
        d["megapixels_per_second"] = round(self.megapixels / self.seconds, 4) if self.seconds else None
        d["seconds"] = round(self.seconds, 3)
        d["megapixels"] = round(self.megapixels, 4)
        return d


@dataclass
class Job:
    item: InputItem
    output: Path | None  # None: standard output


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


def run_jobs(jobs: list[Job], process: Callable[[Picture, InputItem], tuple[Picture, dict]], *, suffix_for: Callable[[Job], str],
             quality: int | None, max_pixels: int, workers: int, on_result: Callable[[FileResult], None],
             on_start: Callable[[Job, Picture], None] | None = None) -> None:
    """Decode ahead, process in order, encode and write behind; call on_result once per job.
    `process(picture, item)` gets the input item too (inpaint finds each file's mask by it)."""
    workers = workers or min(4, (os.cpu_count() or 2))
    prefetch = max(2, workers)
    readers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aetool-read")
    writers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aetool-write")
    stdin_data: dict[int, bytes] = {}

    def read(job: Job) -> Picture:
        if job.item.is_stdin:
            return read_image(stdin_data.setdefault(0, sys.stdin.buffer.read()), max_pixels)
        return read_image(job.item.path, max_pixels)

    def write(job: Job, pic: Picture, info: dict, started: float, mp: float) -> FileResult:
        data = encode_image(pic, suffix_for(job), quality)
        if job.output is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            try:
                write_atomic(job.output, data)
            except OSError as exc:
                raise ImageError(f"cannot write {job.output}: {exc.strerror or exc}") from None
        return FileResult(str(job.item), str(job.output) if job.output else "-", "ok",
                          seconds=round(time.perf_counter() - started, 3), megapixels=round(mp, 4), info=info)

    pending_reads: deque[tuple[Job, Future, float]] = deque()
    pending_writes: deque[tuple[Job, Future]] = deque()
    blocked = unwritable_folders(jobs)
    queue = deque()
    for job in jobs:
        if job.output is not None and job.output.parent in blocked:
            on_result(FileResult(str(job.item), str(job.output), "failed", blocked[job.output.parent]))
        else:
            queue.append(job)

    def fill() -> None:
        while queue and len(pending_reads) < prefetch:
            job = queue.popleft()
            pending_reads.append((job, readers.submit(read, job), time.perf_counter()))

    def drain_writes(block: bool) -> None:
        while pending_writes and (block or pending_writes[0][1].done()):
            job, fut = pending_writes.popleft()
            try:
                on_result(fut.result())
            except Exception as exc:  # noqa: BLE001 - reported per file
                on_result(FileResult(str(job.item), str(job.output) if job.output else "-", "failed", _reason(exc)))

    try:
        fill()
        while pending_reads:
            job, fut, started = pending_reads.popleft()
            fill()
            try:
                pic = fut.result()
                if on_start:
                    on_start(job, pic)
                mp = pic.height * pic.width / 1e6
                out_pic, info = process(pic, job.item)
                pending_writes.append((job, writers.submit(write, job, out_pic, info, started, mp)))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad file never stops the batch
                on_result(FileResult(str(job.item), str(job.output) if job.output else None, "failed", _reason(exc)))
            drain_writes(block=False)
        drain_writes(block=True)
    finally:
        for _, f, _ in pending_reads:
            f.cancel()
        readers.shutdown(wait=False, cancel_futures=True)
        writers.shutdown(wait=True)  # finish writes in flight: each is atomic anyway


def unwritable_folders(jobs: list[Job]) -> dict[Path, str]:
    """Output folders that cannot be created or written to, with the reason: checked once per
    folder before any image is processed, so a read-only target costs seconds, not the whole run."""
    blocked: dict[Path, str] = {}
    for folder in {job.output.parent for job in jobs if job.output is not None}:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(prefix=".aetool-probe-", dir=folder):
                pass
        except OSError as exc:
            blocked[folder] = f"cannot write to folder {folder}: {exc.strerror or exc}; choose another -o"
    return blocked


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImageError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"out of memory ({exc}); try a smaller --tile"
    return f"{type(exc).__name__}: {exc}"
