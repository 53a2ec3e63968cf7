"""Time to first output of `aetool` on a small image, per path (issue #15, start-up), and what
start-up spends its time on.

Paths, each timed as a fresh `aetool ...` process from start to exit (median of --runs):
  in process   AETOOL_NO_SERVE=1 aetool ...: imports torch and loads the model every call (today)
  serve        `aetool serve` running (started here on a private socket): the call hands its command
               to the warm server; "first" is the first call after the server started, "warm" the
               median of the calls after it
  onnxruntime  a fresh interpreter that imports only onnxruntime, numpy and PIL and runs the model
               exported by benchmarks/onnx_runtime.py (a measured option, not shipped; --sigma only:
               the blind noise estimate is aetool's); skipped when onnxruntime is not installed
Commands: denoise --sigma 15, denoise (blind), upscale --scale 2, and --help, on a 64x64 PNG.
Outputs are compared with the in-process ones: serve must be byte-identical, ORT within 1/255.

Then (--sizes, default 1 and 24 MP) the CPU throughput of the in-process and served paths on one
photo-sized image (end to end: read, model, write), and `python -X importtime` of the in-process
run: the slowest top-level imports.

    python benchmarks/startup.py                      # all of it (24 MP takes minutes on 2 cores)
    python benchmarks/startup.py --runs 5 --sizes ''  # start-up only"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, machine_line, md_table  # noqa: E402

COMMANDS = {
    "denoise --sigma 15": ["denoise", "s.png", "-o", "{out}", "--sigma", "15"],
    "denoise (blind)": ["denoise", "s.png", "-o", "{out}"],
    "upscale --scale 2": ["upscale", "s.png", "-o", "{out}", "--scale", "2"],
    "--help": ["--help"],
}
ORT_MODELS = {"denoise --sigma 15": "denoise-color", "upscale --scale 2": "upscale-x2"}


def aetool_cmd() -> list[str]:
    """The installed `aetool` script beside this Python (what a user runs), else `python -m aetool`."""
    script = Path(sys.executable).with_name("aetool")
    return [str(script)] if script.exists() else [sys.executable, "-m", "aetool"]


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True)
    seconds = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    return seconds, p


def start_server(env: dict, folder: Path) -> subprocess.Popen:
    sock = Path(env["AETOOL_SOCKET"])
    log = open(folder / "serve.log", "wb")
    proc = subprocess.Popen(aetool_cmd() + ["serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    t = time.perf_counter()
    while not sock.exists():
        if proc.poll() is not None:
            raise SystemExit("aetool serve exited: " + (folder / "serve.log").read_text())
        time.sleep(0.05)
    print(f"server ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return proc


def max_diff_255(a: Path, b: Path) -> int:
    with Image.open(a) as x, Image.open(b) as y:
        return int(np.abs(np.asarray(x, dtype=int) - np.asarray(y, dtype=int)).max())


def import_times(env: dict, cwd: Path, args: list[str], top: int = 12) -> list[tuple[str, float]]:
    """`python -X importtime`: cumulative seconds per top-level package (the slowest `top`)."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "aetool", *args], env=env, cwd=cwd,
                       capture_output=True, text=True)
    totals: dict[str, float] = {}
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and len(m.group(2)) <= 1:  # a top-level import (not nested below another)
            name = m.group(3).split(".")[0]
            totals[name] = totals.get(name, 0.0) + int(m.group(1)) / 1e6
    return sorted(totals.items(), key=lambda kv: -kv[1])[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="calls per command and path (median)")
    ap.add_argument("--sizes", default="1,24", help="megapixels for the throughput rows ('' for none)")
    ap.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime path")
    ap.add_argument("--out-json", type=Path, default=None)
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="aes-"))  # short: a Unix socket path is at most ~100 bytes
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from onnx_runtime import test_image

    Image.fromarray(test_image(64, 64)).save(folder / "s.png")
    base = {k: v for k, v in os.environ.items() if k not in ("AETOOL_NO_SERVE", "AETOOL_SOCKET")}
    local_env = {**base, "AETOOL_NO_SERVE": "1"}
    served_env = {**base, "AETOOL_SOCKET": str(folder / "s.sock")}
    load_before = os.getloadavg()
    results: dict = {"machine": machine(), "load_average_before": load_before, "runs": args.runs, "commands": {}}

    ort = None
    if not args.no_ort:
        try:
            import onnxruntime  # noqa: F401

            from onnx_runtime import ORT_SCRIPT, export, multiple_of

            ort = {name: (export(model, folder / f"{model}.onnx"), multiple_of(model))
                   for name, model in ORT_MODELS.items()}
        except ImportError:
            print("onnxruntime not installed: no ORT column", file=sys.stderr)

    def cmd_for(name: str, out: str) -> list[str]:
        return aetool_cmd() + [a.replace("{out}", out) for a in COMMANDS[name]]

    def out_name(name: str, path: str, i: int) -> str:
        return f"{list(COMMANDS).index(name)}-{path}-{i}.png"

    local = {}
    for name in COMMANDS:
        times = []
        for i in range(args.runs):
            t, p = timed(cmd_for(name, out_name(name, "local", i)), local_env, folder)
            times.append(t)
        local[name] = (times, p)
    server = start_server(served_env, folder)
    served = {}
    try:
        for name in COMMANDS:
            times = []
            for i in range(args.runs + 1):
                t, p = timed(cmd_for(name, out_name(name, "served", i)), served_env, folder)
                times.append(t)
            served[name] = (times, p)
        rows = []
        for name in COMMANDS:
            r = {"in_process": statistics.median(local[name][0]), "in_process_all": local[name][0],
                 "serve_first": served[name][0][0], "serve_warm": statistics.median(served[name][0][1:]),
                 "serve_all": served[name][0]}
            if name == "--help":
                r["identical"] = local[name][1].stdout == served[name][1].stdout
            else:
                local_out = (folder / out_name(name, "local", 0)).read_bytes()
                r["identical"] = all((folder / out_name(name, "local", i)).read_bytes() == local_out
                                     for i in range(args.runs)) and all(
                    (folder / out_name(name, "served", i)).read_bytes() == local_out for i in range(args.runs + 1))
            ort_cell = "-"
            if ort and name in ort:
                path, multiple = ort[name]
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    subprocess.run([sys.executable, "-c", ORT_SCRIPT, str(path), "s.png", "ort.png", "15",
                                    str(os.cpu_count()), str(multiple)], cwd=folder, check=True)
                    times.append(time.perf_counter() - t)
                r["ort"] = statistics.median(times)
                r["ort_max_diff_255"] = max_diff_255(folder / "ort.png", folder / out_name(name, "local", 0))
                ort_cell = f"{r['ort']:.2f} (diff {r['ort_max_diff_255']}/255)"
            results["commands"][name] = r
            rows.append([f"`aetool {name}`", f"{r['in_process']:.2f}", f"{r['serve_first']:.2f}",
                         f"{r['serve_warm']:.2f}", "yes" if r["identical"] else "NO", ort_cell])
        print(md_table(["64x64 PNG", "in process (s)", "serve, first call (s)", "serve, warm (s)",
                        "serve identical", "onnxruntime (s)"], rows))

        sizes = [float(s) for s in args.sizes.split(",") if s]
        if sizes:
            rows = []
            for mp in sizes:
                h = int(round((mp * 1e6 / 1.5) ** 0.5))
                w = int(h * 1.5)
                tile = test_image(min(h, 512), min(w, 768), seed=7)
                big = np.tile(tile, (-(-h // tile.shape[0]), -(-w // tile.shape[1]), 1))[:h, :w]
                name = f"big{mp:g}.png"
                Image.fromarray(big).save(folder / name, compress_level=1)
                row = [f"{h * w / 1e6:.1f} MP"]
                for label, env in (("in_process", local_env), ("serve", served_env)):
                    t, _ = timed(aetool_cmd() + ["denoise", name, "-o", f"{label}-{name}", "--sigma", "15"], env,
                                 folder)
                    results.setdefault("throughput", {}).setdefault(f"{mp:g}", {})[label] = t
                    row.append(f"{t:.1f} ({h * w / 1e6 / t:.3f} MP/s)")
                same = (folder / f"in_process-{name}").read_bytes() == (folder / f"serve-{name}").read_bytes()
                row.append("yes" if same else "NO")
                rows.append(row)
            print()
            print(md_table(["`denoise --sigma 15`, CPU", "in process, s (MP/s)", "serve, s (MP/s)", "identical"],
                           rows))
    finally:
        server.terminate()
        server.wait(60)

    imports = import_times(local_env, folder, COMMANDS["denoise --sigma 15"][:3] + ["imp.png", "--sigma", "15"])
    help_imports = import_times(local_env, folder, ["--help"])
    results["import_times"], results["help_import_times"] = imports, help_imports
    print("\n`python -X importtime -m aetool denoise s.png -o x.png --sigma 15` (in process), slowest top-level "
          "imports (cumulative s): " + ", ".join(f"{k} {v:.2f}" for k, v in imports))
    print("`aetool --help` in process: " + ", ".join(f"{k} {v:.2f}" for k, v in help_imports))
    load_after = os.getloadavg()
    results["load_average_after"] = load_after
    print(f"\n{machine_line(results['machine'])}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          f"(1 min); {args.runs} calls per cell (serve: plus the first)")
    if args.out_json:
        args.out_json.write_text(json.dumps(results, indent=1))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
