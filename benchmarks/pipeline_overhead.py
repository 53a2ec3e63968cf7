"""Where the folder pipeline's overhead on the CPU comes from: for each task and size, a folder of 3
generated photos through the command line's engine (aetool.bench.run_folder: collect, plan,
preflight, batch.run_jobs) against the model alone on one decoded image (the files, tasks and
model steps of `aetool bench`), in variants run alternately within each trial, so that all see
the same machine load:

- shipped: the pipeline as it is (decode ahead and encode behind, in threads, during the model);
- serial: each image's model waits until the previous outputs are written (no encode overlaps
  the model; decode still does): if this is faster, the encode threads cost the model more than
  their own time (contention with torch's threads);
- png1: PNG written at zlib level 1 instead of imageio's 6 (about 3x less encode CPU, files about
  16 % larger on these images): how much of the overhead is the encoder's CPU.

Per variant: seconds per image, the model's seconds inside the pipeline (above the model alone:
slowed by the decode and encode threads), the process's CPU seconds per image (user + system, all
threads; less sensitive to other processes' load than wall time), and the overhead, seconds per
image / model alone - 1: median over --trials, with min and max to show the noise.

    python benchmarks/pipeline_overhead.py --tasks denoise,upscale --sizes 1,6 --trials 3
    python benchmarks/pipeline_overhead.py --tasks denoise --sizes 0.05 --trials 1   # a quick check
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, md_table  # noqa: E402

from aetool.bench import TASK_CLASSES, image_shape, parse_sizes, parse_tasks, run_folder, synthetic_photo  # noqa: E402
from aetool.engine import EngineOptions  # noqa: E402


VARIANTS = ("shipped", "serial", "png1")


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


@contextlib.contextmanager
def png_level(level: int):
    """PIL's PNG writer at zlib `level` whatever imageio asks for (the png1 variant)."""
    from PIL import PngImagePlugin

    original = PngImagePlugin._save

    def save(im, fp, filename, chunk=PngImagePlugin.putchunk, save_all=False):
        im.encoderinfo["compress_level"] = level
        return original(im, fp, filename, chunk, save_all)

    PngImagePlugin._save = save
    from PIL import Image

    Image.SAVE["PNG"] = save
    try:
        yield
    finally:
        PngImagePlugin._save = original
        Image.SAVE["PNG"] = original


def folder_run(task, variant: str, folder: Path, out: Path) -> dict:
    processor = task.processor
    if variant == "serial":
        files = len(list(folder.iterdir()))
        done = [0]

        def serial(pic, item):  # wait for the previous outputs before the model runs
            while len(list(out.glob("img*"))) < done[0] and done[0] < files:
                time.sleep(0.005)
            done[0] += 1
            return processor(pic, item)

        task._processor = serial
    c0 = _cpu()
    try:
        with png_level(1) if variant == "png1" else contextlib.nullcontext():
            r = run_folder(task, folder, out)
    finally:
        task._processor = processor
    r["cpu"] = _cpu() - c0
    for p in out.iterdir():
        p.unlink()
    return r


def measure(task, size: float, trials: int, variants: list[str], work: Path, log) -> dict:
    h, w = image_shape(task.input_megapixels(size))
    data, suffix = task.make_input(synthetic_photo(h, w))
    folder = work / f"{task.name}-{size:g}"
    folder.mkdir()
    for i in range(3):
        (folder / f"img{i}{suffix}").write_bytes(data)
    pic = task.read(folder / f"img0{suffix}", task.options.max_pixels)
    model, model_cpu = [], []
    runs = {v: {"seconds": [], "inside": [], "cpu": []} for v in variants}
    for trial in range(trials):
        c0, t0 = _cpu(), time.perf_counter()
        task.processor(pic, None)
        model.append(time.perf_counter() - t0)
        model_cpu.append(_cpu() - c0)
        for v in (variants if trial % 2 == 0 else variants[::-1]):
            r = folder_run(task, v, folder, work / f"out-{task.name}-{size:g}-{v}")
            runs[v]["seconds"].append(r["seconds"] / r["files"])
            runs[v]["inside"].append(r["model_s"])
            runs[v]["cpu"].append(r["cpu"] / r["files"])
        log(f"{task.name} {size:g} MP trial {trial + 1}: model {model[-1]:.2f} s ({model_cpu[-1]:.2f} cpu), "
            + ", ".join(f"{v}: {runs[v]['seconds'][-1]:.2f} s/image (model inside {runs[v]['inside'][-1]:.2f}, "
                        f"{runs[v]['cpu'][-1]:.2f} cpu)" for v in variants))
    m = statistics.median(model)
    return {"task": task.name, "megapixels": size, "model_runs": model, "model_cpu_runs": model_cpu,
            "variants": {v: {**runs[v], "overhead_runs": [x / m - 1 for x in runs[v]["seconds"]],
                             "overhead": statistics.median(runs[v]["seconds"]) / m - 1} for v in variants}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="denoise,upscale")
    ap.add_argument("--sizes", default="1,6")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {','.join(VARIANTS)}")
    ap.add_argument("--format", default="png")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out-json", type=Path, default=None)
    args = ap.parse_args()
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
                rows.append(measure(task, size, args.trials, variants, Path(tmp), log))
    m = machine()
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
    if args.out_json:
        args.out_json.write_text(json.dumps({"machine": m, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
