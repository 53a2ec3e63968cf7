"""Shared parts of the benchmark scripts (see docs/protocol.md, "Rules common to every task"):
image I/O, PSNR/SSIM, timing a command over a folder, the machine description and markdown output."""
from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".ppm", ".pgm"}


# ---------------------------------------------------------------- images and metrics
def list_images(folder: Path) -> list[Path]:
    """The images of a folder, sorted by file name (the index i of the protocol)."""
    return sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: p.name)


def read_image(path: Path, mode: str) -> np.ndarray:
    """uint8 array, (H, W, 3) for mode "RGB" or (H, W) for mode "L"."""
    with Image.open(path) as im:
        return np.asarray(im.convert(mode), dtype=np.uint8)


def write_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def to_uint8(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * scale), 0, 255).astype(np.uint8)


def psnr(ref: np.ndarray, out: np.ndarray) -> float:
    """Data range 255 on float64 of the uint8 values; colour over all channels."""
    mse = np.mean((ref.astype(np.float64) - out.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(ref: np.ndarray, out: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(ref, out, data_range=255, channel_axis=-1 if ref.ndim == 3 else None))


def megapixels(arrays) -> float:
    return sum(a.shape[0] * a.shape[1] for a in arrays) / 1e6


# ---------------------------------------------------------------- running commands
@dataclass
class Run:
    seconds: float | None  # median wall time over the repeats; None when the command failed
    returncode: int
    stdout: str
    error: str = ""


def run_timed(cmd: list[str], repeats: int = 1, before=None) -> Run:
    """Run `cmd` `repeats` times (calling `before()` ahead of each run), median wall time.
    A missing executable or a non-zero exit is reported in `error`, never raised."""
    times, proc = [], None
    for _ in range(max(1, repeats)):
        if before:
            before()
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:
            return Run(None, 127, "", f"cannot run {shlex.join(cmd[:2])}: {exc.strerror or exc}")
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            tail = lines[-1].strip() if lines else ""
            return Run(None, proc.returncode, proc.stdout, f"exit {proc.returncode}: {tail}"[:200])
    return Run(statistics.median(times), 0, proc.stdout)


def resolve_command(command: str) -> list[str]:
    """Split a command string; a bare name not on PATH is looked up beside this Python (a venv's bin)."""
    import shutil

    argv = shlex.split(command)
    if argv and not shutil.which(argv[0]):
        local = Path(sys.executable).parent / argv[0]
        if local.exists():
            argv[0] = str(local)
    return argv


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


# ---------------------------------------------------------------- report
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()}
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"], info["gpu"] = None, None
    return info


def machine_line(m: dict) -> str:
    s = f"{m['cpu']}, {m['cores']} cores, torch {m.get('torch')}, GPU: {m.get('gpu') or 'none'}"
    if "load_average" in m:
        s += f", load average at start {m['load_average'][0]}"
    return s


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(path: Path, name: str, text: str, title: str = "# Benchmarks") -> None:
    """Replace what lies between <!-- name:begin --> and <!-- name:end --> in `path`, keeping the
    rest; append the section if the markers are missing, create the file if it is."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    path = Path(path)
    old = path.read_text() if path.exists() else f"{title}\n"
    i, j = old.find(begin), old.find(end)
    if i >= 0 and j > i:
        new = old[:i] + block + old[j + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def failure(run) -> str:
    """The first per-file error of a `--json` run if there is one, else the command's last line."""
    errs = [o["error"] for o in json_lines(run.stdout) if isinstance(o.get("error"), str)]
    if not errs:
        return run.error
    more = f" (and {len(errs) - 1} more files failed)" if len(errs) > 1 else ""
    return f"exit {run.returncode}: {errs[0]}{more}"[:240]


def each_file(paths, work) -> int:
    """For the baseline scripts: call work(path) for every file, report a failure on stderr and go
    on with the others; the exit code is 1 if any file failed."""
    failed = 0
    for path in paths:
        try:
            work(path)
        except Exception as exc:  # report and go on with the other files
            failed += 1
            print(f"{path.name}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def measure(cmd: list[str], repeats: int, out: Path, megapixels_in: float, score) -> tuple[dict, "Run"]:
    """Run a method's command over a folder into a fresh `out` (timed, median of `repeats`) and
    score its outputs: the result cell (megapixels, seconds, s_per_mp, the scores, or error)."""
    import shutil

    run = run_timed(cmd, repeats, before=lambda: (shutil.rmtree(out, ignore_errors=True), out.mkdir(parents=True)))
    cell = {"megapixels": megapixels_in, "seconds": run.seconds}
    cell.update(score(run.stdout) if run.error == "" else {"error": failure(run)})
    if "error" in cell:
        cell["seconds"] = None
    else:
        cell["s_per_mp"] = run.seconds / megapixels_in
    return cell, run


def cpu_precision() -> str:
    """What `--precision auto` means for aetool on this machine's CPU."""
    from aetool.device import cpu_has_native_bf16

    return "bf16" if cpu_has_native_bf16() else "fp32"


def add_run_options(ap, name: str, methods: list[str]) -> None:
    """The options every benchmark script has: subset, methods, timing repeats, scratch folder,
    where the markdown section and the JSON go, and how to run aetool."""
    csv = lambda text: [x.strip() for x in text.split(",") if x.strip()]  # noqa: E731
    ap.add_argument("--limit", type=int, default=None,
                    help="only the first N images of each set by file name (a subset: the report says so)")
    ap.add_argument("--methods", type=csv, default=list(methods), help=f"subset of {','.join(methods)}")
    ap.add_argument("--repeats", type=int, default=1, help="timing runs per folder; the median is reported")
    ap.add_argument("--work", type=Path, default=None,
                    help="scratch folder for inputs and outputs (default: a temp dir, removed after)")
    ap.add_argument("--out-md", type=Path, default=ROOT / "docs" / "benchmarks.md",
                    help=f"markdown file whose {name} section is replaced (created if missing)")
    ap.add_argument("--out-json", type=Path, default=ROOT / "benchmarks" / "results" / f"{name}.json")
    ap.add_argument("--section", default=name,
                    help=f"name of the marked section of --out-md to replace (e.g. {name}-heldout)")
    ap.add_argument("--aetool", default="aetool", help='command that runs aetool (default "aetool")')


def named_sets(items: list[str]) -> tuple[list[str], dict[str, Path]]:
    """Set names as given to --sets. An item LABEL=FOLDER names photos outside ../shared, measured
    by the same protocol (benchmarks/heldout_photos.py writes such folders). Returns the labels and
    the folders of the named ones."""
    labels, folders = [], {}
    for item in items:
        label, _, folder = item.partition("=")
        if folder:
            folders[label] = Path(folder)
        labels.append(label)
    return labels, folders


def check_methods(ap, args, methods: list[str]) -> None:
    bad = set(args.methods) - set(methods)
    if bad:
        ap.error(f"unknown method(s) {', '.join(sorted(bad))}; choose from {', '.join(methods)}")
