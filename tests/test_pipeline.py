"""batch.run_jobs as a pipeline: decode, model and write overlap, and outputs waiting for a writer
are bounded (a model faster than the encoder must not queue a whole folder in memory)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from aetool import batch
from aetool.batch import Job, run_jobs
from aetool.discovery import InputItem
from aetool.imageio import Picture


def make_jobs(tmp_path: Path, n: int) -> list[Job]:
    out = tmp_path / "out"
    out.mkdir()
    return [Job(InputItem(tmp_path / f"in{i}.png", Path(f"in{i}.png")), out / f"in{i}.bin") for i in range(n)]


def run(jobs, process, workers: int, read_s: float = 0.0, write_s: float = 0.0, monkeypatch=None):
    results = []
    real_write = batch.atomic.write_atomic

    def slow_write(path, data, **kw):
        time.sleep(write_s)
        real_write(path, data, **kw)

    def read(source, max_pixels, output_size=None):
        time.sleep(read_s)
        return Picture(np.zeros((4, 4, 3), np.float32))

    monkeypatch.setattr(batch.atomic, "write_atomic", slow_write)
    t0 = time.perf_counter()
    stopped = run_jobs(jobs, process, suffix_for=lambda job: ".bin", quality=None, max_pixels=10**9,
                       workers=workers, on_result=results.append, read=read)
    return stopped, results, time.perf_counter() - t0


def test_reading_model_and_writing_overlap(tmp_path, monkeypatch):
    def process(pic, item):
        time.sleep(0.15)
        return b"out", {}

    jobs = make_jobs(tmp_path, 6)
    stopped, results, seconds = run(jobs, process, workers=2, read_s=0.1, write_s=0.15, monkeypatch=monkeypatch)
    assert stopped is None and [r.status for r in results] == ["ok"] * 6
    # Serial: 6 x (0.1 + 0.15 + 0.15) = 2.4 s; overlapped: the model's 0.9 s plus one read and one write.
    assert seconds < 1.8, seconds
    assert all((tmp_path / "out" / f"in{i}.bin").read_bytes() == b"out" for i in range(6))


def test_outputs_waiting_for_a_writer_are_bounded(tmp_path, monkeypatch):
    lock = threading.Lock()
    made, written, most = [0], [0], [0]

    def process(pic, item):  # a fast model: each output waits for the slow writer
        with lock:
            made[0] += 1
            most[0] = max(most[0], made[0] - written[0])
        return b"out", {}

    real_write = batch.atomic.write_atomic

    def slow_counted_write(path, data, **kw):
        time.sleep(0.03)
        real_write(path, data, **kw)
        with lock:
            written[0] += 1

    monkeypatch.setattr(batch.atomic, "write_atomic", slow_counted_write)
    jobs = make_jobs(tmp_path, 16)
    results = []
    stopped = run_jobs(jobs, process, suffix_for=lambda job: ".bin", quality=None, max_pixels=10**9, workers=1,
                       on_result=results.append,
                       read=lambda source, max_pixels, output_size=None: Picture(np.zeros((4, 4, 3), np.float32)))
    assert stopped is None and len(results) == 16 and all(r.status == "ok" for r in results)
    # One writer: at most 2 outputs wait for it, plus the one the model has just made.
    assert most[0] <= 3, most[0]
