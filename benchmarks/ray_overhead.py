"""What `--ray local` costs against a local run on one machine: the same folder of generated photos
through the same command (`aetool denoise`, the shipped default model, told the sigma), run
alternately as local and Ray runs so that both see the same machine load:

- local: `aetool denoise IN -o OUT --sigma 25 --json`;
- ray:   the same with `--ray local` (a Ray instance started for the run, one actor per CPU, or
  --actors N of them).

Each run's JSON lines are timestamped as they arrive on stdout. Printed per variant (median over
--trials): wall seconds, seconds to the first record (process start, model check, for Ray the
instance's and the actors' start and the first batch), photos per second over the whole run, and
photos per second once started: the records after the first arrival over the time from the first
to the last (Ray's records come a batch at a time, so the first batch is left out). Then Ray's
overhead against local. The outputs of the variants are compared byte for byte (they must be
identical).

    python benchmarks/ray_overhead.py                      # 24 photos of 256x192, 1 trial
    python benchmarks/ray_overhead.py --images 64 --size 768x512 --trials 3 --actors 0,1
    python benchmarks/ray_overhead.py --command denoise --extra "--sigma 25" --out-json /tmp/ray.json

Needs the ray extra (pip install "aetool[ray]"). Timings depend on the load of the machine: run it on
a quiet one to compare.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, machine_line, md_table, resolve_command  # noqa: E402


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """A synthetic photo: smooth colour, hard-edged shapes, strokes and a little texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 90 * np.sin(xx / (13 + 4 * c + seed % 5)) * np.cos(yy / (19 + c)) for c in range(3)], -1)
    for _ in range(6):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(h // 12, h // 4)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
    img[h - h // 6: h - h // 6 + 4, ::9] = 20
    img += rng.normal(0, 4, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def rate(x: float) -> str:
    """A rate, or n/a when there is none (every record came at once)."""
    return "n/a" if x != x or x <= 0 else f"{x:.2f}"


def timed_run(cmd: list[str]) -> dict:
    """Run `cmd`, timestamping each JSON line of its stdout as it arrives."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr))  # never let stderr's pipe fill
    reader.start()
    arrivals, summary = [], None
    for line in proc.stdout:
        obj = json.loads(line)
        if "summary" in obj:
            summary = obj["summary"]
        else:
            arrivals.append(time.perf_counter() - started)
    proc.wait()
    reader.join()
    wall = time.perf_counter() - started
    if summary is None or not arrivals:
        sys.exit(f"{shlex.join(cmd)}: exit {proc.returncode}: {''.join(stderr)[-500:]}")
    first = arrivals[0]
    later = [t for t in arrivals if t > first + 0.05]  # after the first burst (a batch)
    steady = len(later) / (later[-1] - first) if later and later[-1] > first else float("nan")
    return {"wall": wall, "first": first, "steady": steady, "summary": summary}


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", default="256x192", help="WxH of each photo")
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--actors", default="0", help="comma-separated --ray-actors values to run (0: one per CPU)")
    ap.add_argument("--command", default="denoise")
    ap.add_argument("--extra", default="--sigma 25", help="the command's own options")
    ap.add_argument("--aetool", default="aetool", help="how to run aetool")
    ap.add_argument("--out-json", type=Path)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    m = machine()
    base = resolve_command(a.aetool)
    variants = {"local": []} | {f"ray ({'1 per CPU' if n == '0' else n + ' actors'})": ["--ray", "local",
                                                                                       "--ray-actors", n]
                                for n in a.actors.split(",")}
    work = Path(tempfile.mkdtemp(prefix="aetool-ray-bench-"))
    try:
        d = work / "in"
        d.mkdir()
        for i in range(a.images):
            Image.fromarray(photo(h, w, i)).save(d / f"p{i:03d}.png")
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        outputs: dict[str, dict[str, bytes]] = {}
        for trial in range(a.trials):
            for name, opts in variants.items():  # alternately, so that each sees the same load
                out = work / f"out-{trial}-{len(outputs)}"
                cmd = base + [a.command, str(d), "-o", str(out), "--json", *shlex.split(a.extra), *opts]
                r = timed_run(cmd)
                if r["summary"]["ok"] != a.images:
                    sys.exit(f"{name}: {r['summary']['ok']} of {a.images} done: {r['summary']}")
                runs[name].append(r)
                outputs.setdefault(name, files(out))
                shutil.rmtree(out)
        reference = outputs["local"]
        for name, got in outputs.items():
            if got != reference:
                sys.exit(f"{name}: outputs differ from the local run's")
        rows, result = [], {}
        for name in variants:
            med = {k: statistics.median(r[k] for r in runs[name]) for k in ("wall", "first", "steady")}
            result[name] = med | {"images_per_s": a.images / med["wall"], "runs": runs[name]}
            rows.append([name, f"{med['wall']:.1f}", f"{med['first']:.1f}", f"{a.images / med['wall']:.2f}",
                         rate(med["steady"])])
        print(f"`aetool {a.command} {a.extra}` on {a.images} photos of {w}x{h}, {a.trials} trial(s), medians; "
              f"{machine_line(m)}\n")
        print(md_table(["variant", "wall (s)", "first record (s)", "photos/s", "photos/s once started"], rows))
        local = result["local"]
        print()
        for name in list(variants)[1:]:
            r = result[name]
            print(f"{name}: {r['first'] - local['first']:+.1f} s to the first record; photos/s over the whole run "
                  f"{r['images_per_s'] / local['images_per_s']:.2f}x local's, once started "
                  f"{rate(r['steady'] / local['steady'])}x; outputs byte-identical")
        if a.out_json:
            a.out_json.write_text(json.dumps({"machine": m, "args": vars(a) | {"out_json": str(a.out_json)},
                                              "results": result}, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
