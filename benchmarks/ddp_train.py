"""Training on several processes (torchrun, DistributedDataParallel) against one process, same
global batch, same data, one after the other in this run:

  speed     `aetool train denoise` launched by `python -m torch.distributed.run --nproc-per-node N`
            for each N of --procs (with --threads-total / N torch threads each): training steps per
            second from the run's history (data loading excluded; validation of the last step
            included), and the largest weight difference from the first N's run (the same patches,
            so only the order of the sums differs).
  sampling  what drawing the whole global batch costs each rank against drawing only its share:
            every rank draws the global batch's random choices and keeps its slice
            (aetool/training/distributed.py). Milliseconds per batch for each trainer's default
            batch and patch, beside a batch of the share's size drawn alone.

  python benchmarks/ddp_train.py                       # generated images, N = 1 and 2, 2 threads in all
  python benchmarks/ddp_train.py --data ~/photos --procs 1,2,4 --threads-total 8 --steps 100
  python benchmarks/ddp_train.py --device cuda --procs 1,2 --threads-total 16   # GPUs (NCCL)

Prints a markdown table for each part; --json FILE keeps the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, md_table  # noqa: E402


def generated_images(folder: Path, count: int = 12, size=(256, 320)) -> Path:
    """Smooth colour gradients with edges and mild noise: something to train on without data sets."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for i in range(count):
        rng = np.random.default_rng(i)
        img = np.stack([128 + 90 * np.sin(xx / (9 + 3 * i) + c) * np.cos(yy / (13 + i) - c) for c in range(3)], -1)
        img[(yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 5) ** 2] = rng.integers(0, 255, 3)
        img += rng.normal(0, 4, img.shape)
        Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8)).save(folder / f"g{i:02d}.png")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_run(procs: int, threads: int, args, data: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-port",
           str(free_port()), "-m", "aetool", "train", "denoise", "--data", str(data), "--out", str(out),
           "--steps", str(args.steps), "--val-every", str(args.steps), "--batch-size", str(args.batch_size),
           "--patch", str(args.patch), "--width", args.width, "--precision", args.precision, "--device", args.device,
           "--threads", str(threads), "--val-count", "1", "-q"]
    started = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    wall = time.time() - started
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    history = json.loads(out.with_name(out.stem + ".history.json").read_text())
    return {"procs": procs, "threads_each": threads, "steps": args.steps, "train_seconds": history["seconds"],
            "steps_per_s": args.steps / history["seconds"], "wall_seconds": wall, "final_loss": history["loss"][-1],
            "command": " ".join(cmd)}


def max_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x)


def sampling_costs(data: Path, procs: int, repeats: int) -> list[dict]:
    """ms per batch: the whole global batch, a rank's share as trained (the whole batch, sliced) and
    a batch of the share's size drawn alone (what a rank would pay if it made its rows only)."""
    import torch

    from aetool.training.anomaly import AnomalyTask
    from aetool.training.autoencoder import AutoencoderTask
    from aetool.training.compress import CompressTask
    from aetool.training.denoise import CodecArtefactTask, DenoiseTask
    from aetool.training.distributed import Processes, sample_share
    from aetool.training.inpaint import InpaintTask
    from aetool.training.upscale import UpscaleTask

    torch.set_num_threads(1)
    tasks = [("denoise", DenoiseTask([data]), 16), ("denoise --codec jpeg", CodecArtefactTask([data]), 16),
             ("upscale x4 bicubic", UpscaleTask([data]), 16), ("upscale x4 photo", UpscaleTask([data], degradation="photo"), 16),
             ("inpaint", InpaintTask([data]), 8), ("compress", CompressTask([data]), 8),
             ("anomaly repair", AnomalyTask([data], channels=3), 16),
             ("autoencoder conv 28x28", AutoencoderTask([data], channels=3), 128)]
    rows = []
    for name, task, batch in tasks:
        task.prepare("cpu")

        def per_batch(fn) -> float:
            rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
            fn(rng, gen)  # warm-up
            started = time.perf_counter()
            for _ in range(repeats):
                fn(rng, gen)
            return 1000 * (time.perf_counter() - started) / repeats

        whole = per_batch(lambda rng, gen: task.sample_batch(rng, gen, batch, "cpu"))
        rank = Processes(rank=0, world=procs)
        share = per_batch(lambda rng, gen: sample_share(task, rng, gen, batch, "cpu", rank))
        alone = per_batch(lambda rng, gen: task.sample_batch(rng, gen, batch // procs, "cpu"))
        rows.append({"task": name, "batch": batch, "whole_ms": whole, "share_ms": share, "share_alone_ms": alone})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="training images (default: 12 generated 256x320 images)")
    ap.add_argument("--procs", default="1,2", help="process counts to compare (default 1,2)")
    ap.add_argument("--threads-total", type=int, default=os.cpu_count(), help="torch threads shared by the processes")
    ap.add_argument("--threads-each", type=int, help="torch threads of every process instead (e.g. 1: the same work "
                    "per process, N times the cores)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--width", default="32,64,128,192", help="denoiser widths (default: the trainer's)")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=20, help="batches timed per task (sampling)")
    ap.add_argument("--skip", choices=["speed", "sampling"], help="leave one part out")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    procs = [int(p) for p in args.procs.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="aetool-ddp-"))
    data = args.data or generated_images(tmp / "data")
    report = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    print(machine_line(report["machine"]))
    if args.skip != "speed":
        runs = []
        for n in procs:
            threads = args.threads_each or max(1, args.threads_total // n)
            runs.append(train_run(n, threads, args, data, tmp / f"p{n}" / "m.safetensors"))
            runs[-1]["max_weight_diff_vs_first"] = max_difference(tmp / f"p{procs[0]}" / "m.safetensors",
                                                                 tmp / f"p{n}" / "m.safetensors")
        report["speed"] = runs
        print(f"\ntrain denoise, {args.steps} steps, global batch {args.batch_size}, patch {args.patch}, "
              f"width {args.width}, {args.precision}, {args.device}\n")
        print(md_table(["processes", "threads each", "steps/s", "speed-up", "train s", "wall s", "max |dw| vs first"],
                       [[str(r["procs"]), str(r["threads_each"]), f"{r['steps_per_s']:.3f}",
                         f"{r['steps_per_s'] / runs[0]['steps_per_s']:.2f}x", f"{r['train_seconds']:.1f}",
                         f"{r['wall_seconds']:.1f}", f"{r['max_weight_diff_vs_first']:.1e}"] for r in runs]))
        for r in runs:
            print(f"\n    {r['command']}")
    if args.skip != "sampling":
        n = max(procs)
        rows = sampling_costs(data, n, args.repeats)
        report["sampling"] = {"procs": n, "rows": rows}
        print(f"\nsampling one rank's batch with {n} processes (ms per step, 1 thread)\n")
        print(md_table(["trainer", "global batch", "whole batch", f"rank's 1/{n} as trained (sliced)",
                        f"1/{n} of the batch alone"],
                       [[r["task"], str(r["batch"]), f"{r['whole_ms']:.1f}", f"{r['share_ms']:.1f}",
                         f"{r['share_alone_ms']:.1f}"] for r in rows]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
