"""ONNX Runtime as a CPU path for the shipped models (issue #15, start-up): is it worth shipping?

1. Exports denoise-color (image + noise level) and upscale-x2 with torch.onnx.export (dynamic height
   and width) into --out-dir.
2. Checks ONNX Runtime's output against torch's on generated images of several sizes: the largest
   difference after rounding to 8 bits, in 1/255 steps (pass: at most 1).
3. Time to first output: a fresh interpreter that imports only onnxruntime, numpy and PIL, reads a
   64x64 PNG, runs the model and writes the PNG (what a minimal `aetool denoise` on ORT would cost),
   median of --runs, next to the same for torch (fresh interpreter, aetool's library).
4. CPU throughput of the model (no file I/O) on --sizes megapixel images, torch against ORT with
   the same threads: the whole image up to 2.2 MP, above that the engine's CPU tiles (1024 px for
   denoise, 512 for x2), without overlap for both (the engine's overlap adds the same work to both).

    python benchmarks/onnx_runtime.py                   # export, check, 64x64 start-up, 1 and 24 MP
    python benchmarks/onnx_runtime.py --sizes 1 --runs 3

Needs `pip install onnxruntime onnx` (not aetool dependencies). Prints a markdown table and the
machine; --out-json writes the numbers."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, machine_line, md_table  # noqa: E402

MODELS = ("denoise-color", "upscale-x2")
SIGMA = 15.0  # 0-255 units, as `--sigma 15`


def test_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 photo-like picture (gradients, edges, strokes, texture) plus Gaussian noise."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import structured_image

    rng = np.random.default_rng(seed)
    img = structured_image(h, w, seed=seed).astype(np.float32)
    return np.clip(np.round(img + rng.normal(0, SIGMA, img.shape)), 0, 255).astype(np.uint8)


def load(name: str):
    from aetool.registry import load_model

    return load_model(name, "cpu")


def model_inputs(name: str, x: np.ndarray) -> dict:
    """(H, W, 3) uint8 -> the network's inputs as numpy arrays (NCHW float32 in [0, 1])."""
    t = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
    if name.startswith("denoise"):
        return {"image": t, "sigma": np.array([SIGMA / 255.0], dtype=np.float32)}
    return {"image": t}


def multiple_of(name: str) -> int:
    """The side multiple the network pads its input to (the U-Net's); 1 for the upscaler. The
    exported graph is traced on such a size, so it holds no padding: the ORT caller pads (edge
    replication, as the model's own F.pad 'replicate') and crops."""
    return int(getattr(load(name), "multiple", 1))


def ort_run(sess, inputs: dict, multiple: int) -> np.ndarray:
    x = inputs["image"]
    h, w = x.shape[2:]
    ph, pw = -h % multiple, -w % multiple
    feeds = dict(inputs, image=np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge") if ph or pw else x)
    y = sess.run(None, feeds)[0]
    s = y.shape[2] // (h + ph)
    return y[:, :, :h * s, :w * s]


def export(name: str, path: Path) -> Path:
    import torch

    model = load(name)

    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *args):
            return self.m(*args)

    inputs = model_inputs(name, test_image(64, 96))
    args = tuple(torch.from_numpy(v) for v in inputs.values())
    dynamic = {"image": {2: "height", 3: "width"}, "output": {2: "out_height", 3: "out_width"}}
    torch.onnx.export(Wrapped(model).eval(), args, str(path), input_names=list(inputs), output_names=["output"],
                      dynamic_axes=dynamic, opset_version=17, dynamo=False)
    return path


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def torch_run(model, inputs: dict) -> np.ndarray:
    import torch

    with torch.inference_mode():
        args = [torch.from_numpy(v) for v in inputs.values()]
        args[0] = args[0].contiguous(memory_format=torch.channels_last)  # as the engine runs it
        return model(*args).float().numpy()


def to_uint8(y: np.ndarray) -> np.ndarray:
    return np.clip(np.round(y * 255), 0, 255).astype(np.uint8)


def check(name: str, path: Path, threads: int) -> dict:
    """Largest |ORT - torch| after rounding to 8 bits, over a few sizes (odd ones included)."""
    model, sess, multiple = load(name), session(path, threads), multiple_of(name)
    worst, raw = 0, 0.0
    for i, (h, w) in enumerate([(64, 64), (97, 131), (256, 384)]):
        inputs = model_inputs(name, test_image(h, w, seed=i))
        a, b = torch_run(model, inputs), ort_run(sess, inputs, multiple)
        assert a.shape == b.shape, (a.shape, b.shape)
        worst = max(worst, int(np.abs(to_uint8(a).astype(int) - to_uint8(b).astype(int)).max()))
        raw = max(raw, float(np.abs(a - b).max()))
    return {"max_diff_255": worst, "max_abs_float": raw, "pass": worst <= 1}


ORT_SCRIPT = """
import sys, time
t0 = time.perf_counter()
import numpy as np, onnxruntime as ort
from PIL import Image
model, src, dst, sigma, threads, m = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
opts = ort.SessionOptions(); opts.intra_op_num_threads = threads; opts.inter_op_num_threads = 1
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
x = np.asarray(Image.open(src).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None] / np.float32(255)
h, w = x.shape[2:]
feeds = {"image": np.pad(x, ((0, 0), (0, 0), (0, -h % m), (0, -w % m)), mode="edge")}
if len(sess.get_inputs()) == 2:
    feeds["sigma"] = np.array([sigma / 255], dtype=np.float32)
y = sess.run(None, feeds)[0]
s = y.shape[2] // feeds["image"].shape[2]
y = y[0, :, :h * s, :w * s].transpose(1, 2, 0)
Image.fromarray(np.clip(np.round(y * 255), 0, 255).astype(np.uint8)).save(dst)
"""

TORCH_SCRIPT = """
import sys
import numpy as np
from PIL import Image
import torch
from aetool.registry import load_model
name, src, dst, sigma, threads = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
model = load_model(name, "cpu")
x = torch.from_numpy(np.asarray(Image.open(src).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None] / 255)
with torch.inference_mode():
    y = model(x, torch.tensor([sigma / 255])) if name.startswith("denoise") else model(x)
y = y[0].permute(1, 2, 0).numpy()
Image.fromarray(np.clip(np.round(y * 255), 0, 255).astype(np.uint8)).save(dst)
"""


def first_output_seconds(script: str, args: list[str], runs: int) -> float:
    """Median wall time of `python -c script args` (a fresh interpreter each run)."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", script, *args], check=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def tiles(x: np.ndarray, tile: int):
    h, w = x.shape[:2]
    if tile == 0:
        yield x
        return
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            yield x[y0:y0 + tile, x0:x0 + tile]


def throughput(name: str, path: Path, mp: float, threads: int, runs: int) -> dict:
    """Seconds for one image of `mp` megapixels, torch and ORT, same tiles and threads (best of runs)."""
    import torch

    torch.set_num_threads(threads)
    model, sess, multiple = load(name), session(path, threads), multiple_of(name)
    model = model.to(memory_format=torch.channels_last)
    h = int(round((mp * 1e6 / 1.5) ** 0.5))  # 3:2, as a photo
    w = int(h * 1.5)
    base = test_image(min(h, 512), min(w, 768), seed=7)  # repeated: generating 24 MP of it takes long
    x = np.tile(base, (-(-h // base.shape[0]), -(-w // base.shape[1]), 1))[:h, :w]
    tile = 0 if x.shape[0] * x.shape[1] <= 2_200_000 else (1024 if name.startswith("denoise") else 512)
    parts = [model_inputs(name, t) for t in tiles(x, tile)]
    out = {}
    for backend, run in (("torch", lambda inp: torch_run(model, inp)), ("ort", lambda inp: ort_run(sess, inp, multiple))):
        run(model_inputs(name, x[:64, :64]))  # warm
        best = float("inf")
        for _ in range(runs):
            t = time.perf_counter()
            for inp in parts:
                run(inp)
            best = min(best, time.perf_counter() - t)
        out[backend] = best
    out["megapixels"] = x.shape[0] * x.shape[1] / 1e6
    out["tile"] = tile
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--sizes", default="1,24", help="megapixels for the throughput rows (comma-separated; '' none)")
    ap.add_argument("--threads", type=int, default=None, help="torch and ORT threads (default: torch's default)")
    ap.add_argument("--runs", type=int, default=5, help="fresh interpreters for the start-up median")
    ap.add_argument("--throughput-runs", type=int, default=2, help="best of N for throughput")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the .onnx files go (default: a temp folder)")
    ap.add_argument("--out-json", type=Path, default=None)
    args = ap.parse_args()
    import torch

    threads = args.threads or torch.get_num_threads()
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="aetool-onnx-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    small = out_dir / "s.png"
    Image.fromarray(test_image(64, 64)).save(small)
    results = {"machine": machine(), "threads": threads, "models": {}}
    rows = []
    for name in args.models.split(","):
        path = export(name, out_dir / f"{name}.onnx")
        r = {"onnx": str(path), "check": check(name, path, threads)}
        run_args = [str(small), str(out_dir / "first.png"), str(SIGMA), str(threads)]
        r["first_output_ort"] = first_output_seconds(ORT_SCRIPT, [str(path), *run_args, str(multiple_of(name))],
                                                     args.runs)
        r["first_output_torch"] = first_output_seconds(TORCH_SCRIPT, [name, *run_args], args.runs)
        r["throughput"] = {s: throughput(name, path, float(s), threads, args.throughput_runs)
                           for s in filter(None, args.sizes.split(","))}
        results["models"][name] = r
        c = r["check"]
        row = [name, f"{c['max_diff_255']} ({'pass' if c['pass'] else 'FAIL'})",
               f"{r['first_output_torch']:.2f}", f"{r['first_output_ort']:.2f}"]
        for s, t in r["throughput"].items():
            row.append(f"{t['torch']:.2f} / {t['ort']:.2f}")
        rows.append(row)
        print(f"{name}: {json.dumps(r)}", file=sys.stderr, flush=True)
    sizes = [s for s in filter(None, args.sizes.split(","))]
    header = ["model", "ORT vs torch, max diff (1/255)", "64x64 first output torch (s)", "64x64 first output ORT (s)"]
    header += [f"{s} MP model s, torch / ORT" for s in sizes]
    print(md_table(header, rows))
    print(f"\n{threads} threads; {machine_line(results['machine'])}; load average {os.getloadavg()[0]:.1f}")
    if args.out_json:
        args.out_json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
