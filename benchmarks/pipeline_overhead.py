"""Where the folder pipeline's overhead on the CPU comes from: for each task and size, a folder of 3
generated photos through the command line's engine (aetool.bench.run_folder: collect, plan,
preflight, batch.run_jobs) against the model alone on one decoded image (the files, tasks and
model steps of `aetool bench`), in variants run alternately within each trial, so that all see
the same machine load:

- shipped: the pipeline as it is (decode ahead and encode behind, in threads, during the model);
- serial: each image's model waits until the previous outputs are written (no encode overlaps
  the model; decode still does): if this is faster, the encode threads cost the model more than
  their own time (contention with torch's threads);
- zlib1: aetool's PNG writer deflating with zlib at level 1, as shipped from a889b25 until ISA-L
  replaced it (about 4x the encode CPU of ISA-L, files 0-4 % smaller): how much of the overhead is
  the encoder's CPU. (Until then this variant was "png1", zlib level 1 against a shipped level 6.)

Per variant: seconds per image, the model's seconds inside the pipeline (above the model alone:
slowed by the decode and encode threads), the process's CPU seconds per image (user + system, all
threads; less sensitive to other processes' load than wall time), and the overhead, seconds per
image / model alone - 1: median over --trials, with min and max to show the noise. The model alone
runs just before each folder run and is that run's reference (the machine's load drifts; an
earlier version of this script ran it once per trial).

Where the overhead goes (the `parts` of each variant, per image, median over trials): `head`,
from the start to the first model call (collect, preflight, claims, the first decode: nothing
to overlap with yet); `tail`, from the end of the last model call to the end (the last encode
and write); `gaps`, between model calls (the model thread waiting for a decode, or for a
writer slot, or its own hand-over); `slowdown`, the model calls' total above FILES x the model
alone (contention with the decode and encode threads, and the machine's load); `decode_cpu`
and `write_cpu`, the CPU seconds of those threads (the write's includes the encoding where
the pipeline encodes while writing). head + tail + gaps + slowdown = seconds per image - model
alone, so that the overhead's parts add up. --timeline prints each run's stages.

    python benchmarks/pipeline_overhead.py --tasks denoise,upscale --sizes 1,6 --trials 3
    python benchmarks/pipeline_overhead.py --tasks denoise --sizes 0.05 --trials 1   # a quick check
    python benchmarks/pipeline_overhead.py --tasks inpaint --sizes 1 --trials 3 --variants shipped --timeline
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, md_table  # noqa: E402

from aetool.bench import TASK_CLASSES, image_shape, parse_sizes, parse_tasks, run_folder, synthetic_photo  # noqa: E402
from aetool.engine import EngineOptions  # noqa: E402


FILES = 3  # the folder's images


VARIANTS = ("shipped", "serial", "zlib1")


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


@contextlib.contextmanager
def zlib_png(level: int):
    """PNG outputs deflated by zlib at `level` (the zlib1 variant) instead of ISA-L: aetool's writer
    (aetool.pngstream, which every PNG output goes through) with its default compressor swapped."""
    import zlib

    from aetool import pngstream

    original = pngstream._deflater
    pngstream._deflater = lambda: zlib.compressobj(level)
    try:
        yield
    finally:
        pngstream._deflater = original


class Stages:
    """Each stage of a folder run (decode, model, write) with its thread, start, end and thread CPU
    seconds, recorded by wrapping the task's reader and processor and the pipeline's atomic write
    (where the encoding runs, or just before it in the writer thread)."""

    def __init__(self):
        self.events: list[tuple[str, str, float, float, float]] = []
        self.t0 = time.perf_counter()

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.events.append((stage, threading.current_thread().name, start - self.t0,
                                    time.perf_counter() - self.t0, time.thread_time() - cpu))
        return timed

    def parts(self, seconds: float, model_alone: float, files: int) -> dict:
        """Per image: head, tail, gaps, slowdown (adding up to seconds - files x model_alone),
        decode_cpu, write_cpu."""
        model = sorted((e for e in self.events if e[0] == "model"), key=lambda e: e[2])
        if not model:
            return {}
        gaps = sum(b[2] - a[3] for a, b in zip(model, model[1:]))
        cpu = {k: sum(e[4] for e in self.events if e[0] == k) for k in ("decode", "write")}
        per = {"head": model[0][2], "tail": seconds - model[-1][3], "gaps": gaps,
               "slowdown": sum(e[3] - e[2] for e in model) - files * model_alone,
               "decode_cpu": cpu["decode"], "write_cpu": cpu["write"]}
        return {k: v / files for k, v in per.items()}

    def lines(self) -> list[str]:
        return [f"    {stage:6s} {thread[:16]:16s} {a:7.3f} - {b:7.3f} s ({b - a:.3f} s, {cpu:.3f} cpu)"
                for stage, thread, a, b, cpu in sorted(self.events, key=lambda e: e[2])]


def folder_run(task, variant: str, folder: Path, out: Path) -> dict:
    import aetool.atomic as atomic

    processor, read, write_atomic = task.processor, task.read, atomic.write_atomic
    stages = Stages()
    timed_processor = stages.wrap("model", processor)
    if variant == "serial":
        files = len(list(folder.iterdir()))
        done = [0]

        def serial(pic, item):  # wait for the previous outputs before the model runs
            while len(list(out.glob("img*"))) < done[0] and done[0] < files:
                time.sleep(0.005)
            done[0] += 1
            return timed_processor(pic, item)

        task._processor = serial
    else:
        task._processor = timed_processor
    task.read = stages.wrap("decode", read)
    atomic.write_atomic = stages.wrap("write", write_atomic)
    c0 = _cpu()
    stages.t0 = time.perf_counter()
    try:
        with zlib_png(1) if variant == "zlib1" else contextlib.nullcontext():
            r = run_folder(task, folder, out)
    finally:
        task._processor, atomic.write_atomic = processor, write_atomic
        del task.read  # the class's method again
    r["cpu"] = _cpu() - c0
    r["stages"] = stages
    for p in out.iterdir():
        p.unlink()
    return r


def measure(task, size: float, trials: int, variants: list[str], work: Path, log, timeline: bool = False) -> dict:
    h, w = image_shape(task.input_megapixels(size))
    data, suffix = task.make_input(synthetic_photo(h, w))
    folder = work / f"{task.name}-{size:g}"
    folder.mkdir()
    for i in range(FILES):
        (folder / f"img{i}{suffix}").write_bytes(data)
    pic = task.read(folder / f"img0{suffix}", task.options.max_pixels)
    model, model_cpu = [], []
    runs = {v: {"model": [], "seconds": [], "inside": [], "cpu": [], "parts": []} for v in variants}
    for trial in range(trials):
        for v in (variants if trial % 2 == 0 else variants[::-1]):
            # The model alone just before each folder run: its reference, under the same load.
            c0, t0 = _cpu(), time.perf_counter()
            task.processor(pic, None)
            model.append(time.perf_counter() - t0)
            model_cpu.append(_cpu() - c0)
            r = folder_run(task, v, folder, work / f"out-{task.name}-{size:g}-{v}")
            runs[v]["model"].append(model[-1])
            runs[v]["seconds"].append(r["seconds"] / r["files"])
            runs[v]["inside"].append(r["model_s"])
            runs[v]["cpu"].append(r["cpu"] / r["files"])
            runs[v]["parts"].append(r["stages"].parts(r["seconds"], model[-1], r["files"]))
            if timeline:
                log(f"  {task.name} {size:g} MP trial {trial + 1} {v}: {r['seconds']:.3f} s for {r['files']} files, "
                    f"model alone {model[-1]:.3f} s")
                for line in r["stages"].lines():
                    log(line)
        log(f"{task.name} {size:g} MP trial {trial + 1}: "
            + ", ".join(f"{v}: {runs[v]['seconds'][-1]:.2f} s/image (model alone {runs[v]['model'][-1]:.2f}, inside "
                        f"{runs[v]['inside'][-1]:.2f}, {runs[v]['cpu'][-1]:.2f} cpu)" for v in variants))
    overheads = {v: [x / m - 1 for x, m in zip(runs[v]["seconds"], runs[v]["model"])] for v in variants}
    return {"task": task.name, "megapixels": size, "model_runs": model, "model_cpu_runs": model_cpu,
            "variants": {v: {**runs[v], "overhead_runs": overheads[v], "overhead": statistics.median(overheads[v]),
                             "parts_median": _median_parts(runs[v]["parts"])} for v in variants}}


def _median_parts(parts: list[dict]) -> dict:
    return {k: statistics.median(p[k] for p in parts) for k in parts[0]} if parts and parts[0] else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="denoise,upscale")
    ap.add_argument("--sizes", default="1,6")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    ap.add_argument("--format", default="png")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out-json", type=Path, default=None)
    ap.add_argument("--timeline", action="store_true", help="print every folder run's stages (stderr)")
    args = ap.parse_args()
    m = machine()  # before the runs: its load average is printed as the load at the start
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    options = EngineOptions(device=args.device)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in parse_tasks(args.tasks):
            task = TASK_CLASSES[name](options, args.format)
            h, w = image_shape(0.02)
            task.processor(task.read(task.make_input(synthetic_photo(h, w))[0], options.max_pixels), None)  # load
            for size in parse_sizes(args.sizes):
                rows.append(measure(task, size, args.trials, variants, Path(tmp), log, args.timeline))
    header = ["task", "MP", "model alone: s (cpu s)"] + [f"{v}: s/image (cpu s), overhead [min, max]"
                                                         for v in variants]
    table = []
    for r in rows:
        cells = [r["task"], f"{r['megapixels']:g}",
                 f"{statistics.median(r['model_runs']):.2f} ({statistics.median(r['model_cpu_runs']):.2f})"]
        for v in variants:
            d = r["variants"][v]
            cells.append(f"{statistics.median(d['seconds']):.2f} ({statistics.median(d['cpu']):.2f}), "
                         f"{100 * d['overhead']:+.1f} % [{100 * min(d['overhead_runs']):+.1f}, "
                         f"{100 * max(d['overhead_runs']):+.1f}]")
        table.append(cells)
    print(f"{machine_line(m)}; {args.trials} trials, {args.format} files, folder of 3\n")
    print(md_table(header, table))
    parts = ["head", "tail", "gaps", "slowdown", "decode_cpu", "write_cpu"]
    print("\nWhere the overhead goes, seconds per image (medians over the trials; head + tail + gaps + "
          "slowdown = s/image - model alone):\n")
    print(md_table(["task", "MP", "variant"] + parts,
                   [[r["task"], f"{r['megapixels']:g}", v] + [f"{r['variants'][v]['parts_median'].get(k, 0):.3f}"
                                                             for k in parts]
                    for r in rows for v in variants]))
    if args.out_json:
        args.out_json.write_text(json.dumps({"machine": m, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
