"""Speed and memory on a camera-sized photo, through the command line as a user runs it
(interpreter start, model loading, image decoding and encoding included): one 24-megapixel
(6000x4000, or --size WxH) photo.

The photo is scikit-image's astronaut (NASA, public domain) enlarged to 6000x4000 with Lanczos. For
the speed rows its pixel content does not matter, only its size; for the compression rows it does:
an enlarged 512x512 image is much smoother than a camera photo, so every codec's bpp is lower (and
its PSNR higher) than on real photos of this size (benchmarks/compress.py measures those).

Each row is one command, run --repeats times: its wall time (median), seconds per megapixel of
output, and the peak resident memory of that one command (the largest ru_maxrss of its runs, from
os.wait4 on its process, run through a small launcher so that this script's own memory is not
counted: see LAUNCHER; per command, not the maximum over all children of this script). Jobs
(--jobs, default all):

- denoise: `aetool denoise big.jpg --sigma 15` (the photo with Gaussian noise, sigma 15);
- inpaint: `aetool inpaint big.jpg --mask holes.png` with five small holes (dust-spot boxes and a
  scratch: 0.02% of the image), beside the same command with an empty mask (the no-op: reading,
  writing and start-up only) and OpenCV Telea on the same holes (benchmarks/inpaint_baselines.py);
- upscale: `aetool upscale --scale 2` of the photo at 3000x2000 (6 MP in, 24 MP out), beside
  Pillow bicubic (benchmarks/sr_baselines.py);
- compress: every encoder reads the same lossless PNG of the photo and every decoder writes PNG
  (aetool's PNG writer, as `aetool decompress` writes it): `aetool compress big.png -o big.aei --quality 4`
  and `aetool decompress big.aei -o out.png`, beside JPEG, WebP, JPEG XL and AVIF at quality 75
  (`python benchmarks/compress.py codec encode METHOD --quality 75 IN OUT` and `codec decode METHOD
  OUT DEC`, the baselines of benchmarks/compress.py with its settings). Each codec's rows also give
  the bpp of its file (8 x bytes / pixels) and the RGB PSNR of its decoded PNG against the input
  PNG. Then the seam check: the center 1024x1024 crop (origin on the 64-pixel grid) is compressed
  alone at the same quality (small enough to run untiled) and its PSNR compared with that of the same
  region in the 24 MP decode, and the PSNR of 8-pixel bands along the codec's 1024-pixel tile
  boundaries with that of bands halfway between them.

Results go to benchmarks/results/large-photo.json (--out-json) and the large-photo section of
docs/benchmarks.md (--out-md). A run of some jobs replaces the rows of those jobs and keeps the
others from the JSON (with the date and machine they were measured on, stated in the section); when
the JSON has no rows for a job yet, they are read from the current section of --out-md (older runs,
without peak memory). Rows measured at another --size are not kept.

    python benchmarks/large_photo.py                    # every job; rewrites the section and the JSON
    python benchmarks/large_photo.py --jobs compress    # the compression rows only (the others kept)
    python benchmarks/large_photo.py --size 1200x800 --jobs compress \\
        --out-md /tmp/lp.md --out-json /tmp/lp.json      # a quick check
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, cpu_precision, machine, machine_line, md_table, resolve_command, write_section  # noqa: E402

WIDTH, HEIGHT = 6000, 4000
JOBS = ["denoise", "inpaint", "upscale", "compress"]
CODECS = ["jpeg", "webp", "jxl", "avif"]  # the baselines of the compress job, in the table's order
TILE = 1024  # aetool.tasks.compress.TILE_PIXELS: the codec's tiles, on a grid from the top left corner
CROP = 1024  # side of the seam check's crop (untiled: at most the tile plus its two margins)
SECTION = "large-photo"


def _png_writer(run: dict) -> str:
    """How the compress rows' decoders wrote PNG: recorded since the writer changed (older rows: a level)."""
    if "png_writer" in run:
        return run["png_writer"]
    return f"Pillow, compress level {run.get('png_level', 6)}"


# ================================================================= running one command
# Peak memory of one command: ru_maxrss of its process, from wait4. Linux carries a process's peak
# RSS across exec, so a child forked (or vforked) from this script would count this script's own
# memory (torch, the photo) as its peak; LAUNCHER, a bare interpreter (python -S, about 6 MiB),
# forks the command, waits for it and writes its ru_maxrss (KiB on Linux, bytes on macOS) and
# exit code to a file, so that only the command's own memory is counted (at least the launcher's).
LAUNCHER = r"""
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    except OSError as exc:
        os.write(2, ("cannot run %s: %s\n" % (sys.argv[2], exc.strerror or exc)).encode())
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write("%d %d" % (usage.ru_maxrss, os.waitstatus_to_exitcode(status)))
"""


def run_measured(cmd: list[str], repeats: int = 1, before=None) -> dict:
    """Run `cmd` `repeats` times (calling `before()` ahead of each): {"seconds": median wall time,
    "peak_mib": the largest peak resident memory of the command's process over the runs (see
    LAUNCHER), "stdout"}; on a command that cannot start or exits non-zero, {"error": ...} instead
    (never raised)."""
    times, peaks, stdout = [], [], ""
    for _ in range(max(1, repeats)):
        if before:
            before()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                tempfile.NamedTemporaryFile("r", suffix=".rusage") as usage:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, usage.name] + cmd,
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            elapsed = time.perf_counter() - t0
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
            fields = usage.read().split()
        if len(fields) != 2:
            return {"error": f"launcher exit {proc.returncode}: {stderr.strip()[-200:]}"}
        maxrss, code = int(fields[0]), int(fields[1])
        if code != 0:
            lines = [ln for ln in (stderr or stdout).strip().splitlines() if ln.strip()]
            what = f"signal {-code}" if code < 0 else f"exit {code}"
            return {"error": f"{what}: {lines[-1].strip() if lines else ''}"[:200]}
        times.append(elapsed)
        peaks.append(maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024))
    return {"seconds": float(np.median(times)), "peak_mib": float(max(peaks)), "stdout": stdout}


# ================================================================= inputs
def photo(width: int, height: int) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.LANCZOS))


def make_inputs(work: Path, jobs: list[str], width: int, height: int) -> dict:
    """The input files of `jobs`, each in a folder of its own (the baseline scripts take folders)."""
    from aetool.noise import add_gaussian_noise

    big = photo(width, height)
    files: dict = {}

    def save(name: str, img: np.ndarray, filename: str = "big.jpg", **kw) -> Path:
        d = work / name
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / filename, **kw)
        return d / filename

    if "denoise" in jobs:
        files["noisy"] = save("noisy", add_gaussian_noise(big, 15, np.random.default_rng(0)), quality=95)
    if "inpaint" in jobs:
        files["photo"] = save("photo", big, quality=95)
        holes = np.zeros((height, width), np.uint8)
        sy, sx = height / HEIGHT, width / WIDTH  # the 24 MP layout, moved to other sizes
        for y, x in ((500, 700), (1800, 4200), (3100, 1500), (900, 5200)):
            y, x = int(y * sy), int(x * sx)
            holes[y:y + 24, x:x + 24] = 255  # dust spots
        y, x = int(2500 * sy), int(2000 * sx)
        holes[y:y + 6, x:x + 600] = 255  # a scratch
        masks = work / "masks"
        masks.mkdir(exist_ok=True)
        Image.fromarray(holes).save(masks / "big.png")
        Image.fromarray(np.zeros_like(holes)).save(work / "empty.png")
        files.update(holes=masks / "big.png", masks=masks, empty=work / "empty.png",
                     hole_fraction=float((holes > 0).mean()))
    if "upscale" in jobs:
        half = np.asarray(Image.fromarray(big).resize((width // 2, height // 2), Image.LANCZOS))
        files["half"] = save("half", half, quality=95)
    if "compress" in jobs:
        files["png"] = save("png", big, "big.png")
        side = min(CROP, width // 64 * 64, height // 64 * 64)
        y0, x0 = (height - side) // 2 // 64 * 64, (width - side) // 2 // 64 * 64
        files["crop_box"] = (y0, x0, side)
        files["crop"] = save("crop", big[y0:y0 + side, x0:x0 + side], "crop.png")
    return files


# ================================================================= scoring
def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def sse(ref: np.ndarray, out: np.ndarray, rows: int = 256) -> float:
    """Sum of squared differences, a band of rows at a time (float64 without a 24 MP float copy)."""
    total = 0.0
    for y in range(0, ref.shape[0], rows):
        d = ref[y:y + rows].astype(np.float64) - out[y:y + rows].astype(np.float64)
        total += float(np.sum(d * d))
    return total


def psnr_of(sum_sq: float, count: int) -> float:
    return float("inf") if sum_sq == 0 else float(10 * np.log10(255.0 ** 2 * count / sum_sq))


def psnr_big(ref: np.ndarray, out: np.ndarray) -> float:
    if ref.shape != out.shape:
        raise ValueError(f"decoded size {out.shape} differs from the input's {ref.shape}")
    return psnr_of(sse(ref, out), ref.size)


def band_mask(length: int, centres) -> np.ndarray:
    """1-D mask of the 8-pixel bands [c - 4, c + 4) around each centre inside (0, length)."""
    m = np.zeros(length, bool)
    for c in centres:
        if 0 < c < length:
            m[max(0, c - 4):c + 4] = True
    return m


def band_psnr(ref: np.ndarray, out: np.ndarray, offset: int) -> float | None:
    """PSNR over the pixels within 4 of a vertical or horizontal line at offset + k * TILE (k >= 0)."""
    h, w = ref.shape[:2]
    rows, cols = band_mask(h, range(offset, h, TILE)), band_mask(w, range(offset, w, TILE))
    if not rows.any() and not cols.any():
        return None
    total, count = 0.0, 0
    if cols.any():  # vertical bands, every row
        total += sse(ref[:, cols], out[:, cols])
        count += ref[:, cols].size
    if rows.any():  # horizontal bands, outside the vertical ones
        total += sse(ref[rows][:, ~cols], out[rows][:, ~cols])
        count += ref[rows][:, ~cols].size
    return psnr_of(total, count)


# ================================================================= the jobs
def speed_rows(job: str, files: dict, aetool: list[str], out: Path, mp: float, mp_half: float,
               repeats: int) -> list[dict]:
    """The rows of the denoise, inpaint and upscale jobs: (job, method, megapixels of output, command)."""
    py, here = [sys.executable], Path(__file__).resolve().parent
    if job == "denoise":
        rows = [("denoise, σ 15 told", "aetool denoise",
                 aetool + ["denoise", str(files["noisy"]), "-o", str(out / "d.png"), "--sigma", "15", "--overwrite"])]
    elif job == "inpaint":
        rows = [("inpaint, 5 small holes", "aetool inpaint",
                 aetool + ["inpaint", str(files["photo"]), "--mask", str(files["holes"]), "-o", str(out / "i.png"),
                           "--overwrite"]),
                ("inpaint, empty mask (no-op)", "aetool inpaint",
                 aetool + ["inpaint", str(files["photo"]), "--mask", str(files["empty"]), "-o", str(out / "e.png"),
                           "--overwrite"]),
                ("inpaint, 5 small holes", "OpenCV Telea",
                 py + [str(here / "inpaint_baselines.py"), "telea", str(files["photo"].parent), str(files["masks"]),
                       str(out / "telea")])]
    else:
        label = f"upscale x2, {mp_half:.0f} MP in, {mp:.0f} MP out"
        rows = [(label, "aetool upscale",
                 aetool + ["upscale", str(files["half"]), "-o", str(out / "u.png"), "--scale", "2", "--overwrite"]),
                (label, "Pillow bicubic",
                 py + [str(here / "sr_baselines.py"), "bicubic", "--scale", "2", str(files["half"].parent),
                       str(out / "bicubic")])]
    return [{"job_group": job, "job": j, "method": m, "megapixels": mp, "command": shlex.join(cmd),
             **result_cell(cmd, m, repeats)} for j, m, cmd in rows]


def result_cell(cmd: list[str], method: str, repeats: int = 1, before=None) -> dict:
    run = run_measured(cmd, repeats, before)
    cell = {k: run[k] for k in ("seconds", "peak_mib", "error") if k in run}
    print(f"  {method}: " + (f"{run['seconds']:.1f} s, peak {run['peak_mib']:.0f} MiB" if "error" not in run
                             else run["error"]), file=sys.stderr)
    return cell


def compress_rows(files: dict, aetool: list[str], out: Path, mp: float, args) -> tuple[list[dict], dict]:
    """Encode and decode rows of aetool and each baseline, scored; then the seam check."""
    from compress import LABELS

    ref = read_rgb(files["png"])
    h, w = ref.shape[:2]
    helper = [sys.executable, str(Path(__file__).resolve().parent / "compress.py"), "codec"]
    rows, seam = [], {"error": "the aetool rows failed"}
    for method in ["aetool"] + CODECS:
        q = args.quality if method == "aetool" else getattr(args, f"{method}_quality")
        d = out / method
        shutil.rmtree(d, ignore_errors=True)
        (d / "coded").mkdir(parents=True)
        if method == "aetool":
            coded, decoded = d / "coded" / "big.aei", d / "big.png"
            enc = aetool + ["compress", str(files["png"]), "-o", str(coded), "--quality", f"{q:g}", "--overwrite"]
            dec = aetool + ["decompress", str(coded), "-o", str(decoded), "--overwrite"]
        else:
            ext = {"jpeg": ".jpg", "webp": ".webp", "jxl": ".jxl", "avif": ".avif"}[method]
            coded, decoded = d / "coded" / f"big{ext}", d / "decoded" / "big.png"
            enc = helper + ["encode", method, "--quality", f"{q:g}", str(files["png"].parent), str(d / "coded")]
            dec = helper + ["decode", method, str(d / "coded"), str(d / "decoded")]
        label = LABELS[method]
        pair = [{"job_group": "compress", "job": f"encode, PNG in, quality {q:g}", "method": f"{label} encode",
                 "codec": method, "quality": q, "megapixels": mp, "command": shlex.join(enc),
                 **result_cell(enc, f"{label} encode", args.repeats)}]
        pair.append({"job_group": "compress", "job": "decode, PNG out", "method": f"{label} decode", "codec": method,
                     "quality": q, "megapixels": mp, "command": shlex.join(dec),
                     **(result_cell(dec, f"{label} decode", args.repeats) if "error" not in pair[0]
                        else {"error": "not run: the encode failed"})})
        if "error" not in pair[1]:
            try:
                score = {"bytes": coded.stat().st_size, "bpp": coded.stat().st_size * 8 / (h * w),
                         "psnr": psnr_big(ref, read_rgb(decoded))}
            except Exception as exc:  # a missing or wrong-sized output: reported in the row
                score = {"score_error": f"{type(exc).__name__}: {exc}"[:200]}
            for row in pair:
                row.update(score)
            if method == "aetool" and "psnr" in score:
                seam = seam_check(files, ref, read_rgb(decoded), aetool, out, q, score)
        rows += pair
    return rows, seam


def seam_check(files: dict, ref: np.ndarray, full: np.ndarray, aetool: list[str], out: Path, q: float,
               score: dict) -> dict:
    y0, x0, side = files["crop_box"]
    d = out / "crop"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    coded, decoded = d / "crop.aei", d / "crop.png"
    for cmd in (aetool + ["compress", str(files["crop"]), "-o", str(coded), "--quality", f"{q:g}", "--overwrite"],
                aetool + ["decompress", str(coded), "-o", str(decoded), "--overwrite"]):
        run = run_measured(cmd)
        if "error" in run:
            return {"error": f"{shlex.join(cmd[1:3])}: {run['error']}"}
    crop_ref = ref[y0:y0 + side, x0:x0 + side]
    result = {"full_psnr": score["psnr"], "full_bpp": score["bpp"], "crop": [x0, y0, side],
              "crop_in_full_psnr": psnr_big(crop_ref, full[y0:y0 + side, x0:x0 + side]),
              "crop_alone_psnr": psnr_big(crop_ref, read_rgb(decoded)),
              "crop_alone_bpp": coded.stat().st_size * 8 / side ** 2,
              "tile": TILE, "boundary_band_psnr": band_psnr(ref, full, TILE),
              "midway_band_psnr": band_psnr(ref, full, TILE // 2)}
    result.update(exact_tiling_check(ref, q))
    print("  seam check: " + json.dumps(result), file=sys.stderr)
    return result


def exact_tiling_check(ref: np.ndarray, q: float, side: int = 2048) -> dict:
    """The exact check behind the PSNR comparisons (whose bands differ in content as well): the
    center side x side region coded by the shipped codec in process with its 1024-pixel tiles and
    untiled, both decoded both ways: are the files identical, and by how much do the pixels differ?"""
    from aetool.tasks.compress import Codec

    h, w, _ = ref.shape
    y0, x0 = (h - side) // 2 // 64 * 64, (w - side) // 2 // 64 * 64
    pixels = ref[y0:y0 + side, x0:x0 + side].astype(np.float32) / 255
    codec = Codec()
    tiled = codec.encode(pixels, q)
    tiled_out = codec.decode(tiled)[0].pixels
    codec.tile = 4 * side  # one tile: the untiled transforms
    whole = codec.encode(pixels, q)
    whole_out = codec.decode(whole)[0].pixels
    diff = np.abs(np.round(tiled_out * 255) - np.round(whole_out * 255))
    return {"exact_side": side, "exact_same_bytes": tiled == whole, "exact_max_diff_8bit": int(diff.max()),
            "exact_share_differing": float((diff > 0).mean())}


# ================================================================= results kept between runs
def shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def legacy_rows(md: Path, size: tuple[int, int]) -> tuple[dict, list[dict], float | None]:
    """Rows of the current section of `md` written before the JSON existed (job, method, seconds,
    s/MP), the run they were measured by and the inpainting holes' fraction, when the section is of
    the same photo size."""
    try:
        text = md.read_text()
    except OSError:
        return {}, [], None
    m = re.search(rf"<!-- {SECTION}:begin -->(.*?)<!-- {SECTION}:end -->", text, re.S)
    if not m or f"One {size[0]}x{size[1]} " not in m.group(1):
        return {}, [], None
    body = m.group(1)
    holes = re.search(r"\(([\d.]+)% of the image\)", body)
    measured = re.search(r"^Measured (.+?) on (.+?)(?:; aetool CPU precision: (\w+))?\.\s*$", body, re.M)
    command = re.search(r"^Command: `(.+)`", body, re.M)
    run = {"date": measured.group(1) if measured else "?", "machine_text": measured.group(2) if measured else "?",
           "aetool_cpu_precision": measured.group(3) if measured else None,
           "command": command.group(1) if command else "?", "from": f"the section of {shown(md)}"}
    repeats = re.search(r"median of (\d+)\)", body)
    if repeats:
        run["repeats"] = int(repeats.group(1))
    rows = []
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not line.startswith("|"):
            continue
        group = next((j for j in JOBS if cells[0].startswith(j)), None)
        try:
            seconds = float(cells[2])
        except ValueError:
            continue
        if group and group != "compress":
            rows.append({"job_group": group, "job": cells[0], "method": cells[1], "seconds": seconds,
                         "megapixels": size[0] * size[1] / 1e6})
    return run, rows, (float(holes.group(1)) / 100 if holes else None)


def merge(args, size, info, new_rows: list[dict], seam: dict | None) -> dict:
    """This run's rows and, for the jobs not run now, the kept ones (JSON, else the markdown)."""
    old: dict = {}
    if args.out_json.exists():
        try:
            old = json.loads(args.out_json.read_text())
        except ValueError:
            print(f"warning: {args.out_json} is not JSON; its rows are not kept", file=sys.stderr)
    if old and old.get("size") != list(size):
        print(f"warning: {args.out_json} was measured at {old.get('size')}, not {list(size)}; its rows are not kept",
              file=sys.stderr)
        old = {}
    runs = {j: r for j, r in old.get("runs", {}).items() if j not in args.jobs}
    kept = [r for r in old.get("rows", []) if r["job_group"] not in args.jobs]
    missing = [j for j in JOBS if j not in args.jobs and j not in runs]
    hole_fraction = old.get("hole_fraction")
    if missing:
        legacy_run, legacy, legacy_holes = legacy_rows(args.out_md, size)
        for j in missing:
            rows = [r for r in legacy if r["job_group"] == j]
            if rows:
                kept += rows
                runs[j] = legacy_run
                if j == "inpaint":
                    hole_fraction = legacy_holes
    for j in args.jobs:
        runs[j] = info
    rows = sorted(kept + new_rows, key=lambda r: JOBS.index(r["job_group"]))  # stable: keeps each job's order
    result = {"size": list(size), "runs": runs, "rows": rows,
              "hole_fraction": hole_fraction, "seam_check": old.get("seam_check")}
    if seam is not None:
        result["seam_check"] = seam
    return result


# ================================================================= the report
def fmt(value, spec: str, missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def run_line(run: dict) -> str:
    where = run.get("machine_text") or machine_line(run["machine"])
    precision, repeats = run.get("aetool_cpu_precision"), run.get("repeats")
    return (f"measured {run['date']} on {where}" + (f"; aetool CPU precision: {precision}" if precision else "")
            + (f"; median of {repeats} run{'s' if repeats != 1 else ''} per command" if repeats else "")
            + f"; command: `{run['command']}`" + (f" (kept from {run['from']})" if run.get("from") else ""))


def report(result: dict) -> str:
    w, h = result["size"]
    mp = w * h / 1e6
    runs = result["runs"]
    jobs = [j for j in JOBS if any(r["job_group"] == j for r in result["rows"])]
    groups: dict = {}
    for j in jobs:
        groups.setdefault(json.dumps(runs.get(j), sort_keys=True), []).append(j)
    if len(groups) == 1:
        line = run_line(runs[jobs[0]])
        when = [line[0].upper() + line[1:] + "."]
    else:
        when = ["Rows of " + ", ".join(js) + ": " + run_line(runs[js[0]]) + ".  " for js in groups.values()]
    table = []
    for r in result["rows"]:
        ok = "error" not in r
        table.append([r["job"], r["method"], fmt(r.get("seconds"), ".1f") if ok else f"error: {r['error']}",
                      fmt(r.get("seconds") and r["seconds"] / r["megapixels"], ".2f") if ok else "–",
                      fmt(r.get("peak_mib"), ".0f", "not measured") if ok else "–",
                      fmt(r.get("bpp"), ".3f"), fmt(r.get("psnr"), ".2f")])
    lines = ["## Large photos (speed and memory)", "", *when, "",
             f"One {w}x{h} photo ({mp:.0f} MP; scikit-image's astronaut enlarged with Lanczos), each command run as a "
             "user would (start-up, model loading, image decoding and encoding included): wall seconds (median of the "
             "runs), seconds per megapixel of output, and the peak resident memory of that command's process "
             "(ru_maxrss from `os.wait4`, the largest over the runs; started from a bare launcher, so the script's "
             "own memory is not counted)."]
    reads = {"denoise": "denoise reads a JPEG (quality 95) of the photo with Gaussian noise (σ 15)",
             "inpaint": "inpaint a JPEG (quality 95) of the photo",
             "upscale": "upscale x2 a JPEG (quality 95) of it at half the size"}
    if any(j in reads for j in jobs):
        said = "; ".join(reads[j] for j in jobs if j in reads)
        lines[-1] += f" {said[0].upper()}{said[1:]}; they write PNG."
    if result.get("hole_fraction") is not None:
        lines[-1] += (" The inpainting mask has 4 dust spots of 24x24 pixels and a 600x6 scratch "
                      f"({100 * result['hole_fraction']:.3f}% of the image).")
    if "compress" in jobs:
        qs = {r["codec"]: f"{r['quality']:g}" for r in result["rows"] if r.get("codec")}
        qs = {m: qs.get(m, "?") for m in ["aetool"] + CODECS}
        v = runs["compress"].get("versions", {})
        lines += ["", "Compression: every encoder reads the same lossless PNG of the photo and every decoder writes "
                  f"PNG ({_png_writer(runs['compress'])}); bpp = 8 × bytes of the file / pixels, PSNR (RGB, dB) of the "
                  "decoded PNG against the input, the same on a codec's encode and decode rows. aetool: `aetool "
                  f"compress big.png -o big.aei --quality {qs['aetool']}` (model "
                  f"`{runs['compress'].get('compress_model', '?')}`) and `aetool "
                  "decompress big.aei -o out.png`. Baselines: `python benchmarks/compress.py codec encode|decode "
                  f"METHOD` with benchmarks/compress.py's settings (Pillow {v.get('pillow')}): JPEG quality "
                  f"{qs['jpeg']} (libjpeg {v.get('libjpeg')}, 4:2:0, optimize), WebP quality "
                  f"{qs['webp']} (libwebp {v.get('libwebp')}, method 6), JPEG XL quality "
                  f"{qs['jxl']} (pillow-jxl-plugin {v.get('pillow-jxl-plugin')}, effort 7), AVIF quality "
                  f"{qs['avif']} (libavif {v.get('libavif')}, speed 6). The enlarged photo is smoother than "
                  "a camera photo: every codec's bpp is lower and its PSNR higher than on real photos (see "
                  "Compression below for those)."]
    lines += ["", md_table(["job", "method", "seconds", "s/MP of output", "peak memory (MiB)", "bpp", "PSNR (dB)"],
                           table)]
    seam = result.get("seam_check")
    if "compress" in jobs and seam:
        if "error" in seam:
            lines += ["", f"Seam check: not done ({seam['error']})."]
        else:
            x0, y0, side = seam["crop"]
            diff = seam["crop_in_full_psnr"] - seam["crop_alone_psnr"]
            bands = ""
            if seam.get("boundary_band_psnr") is not None:
                bands = (f"; over 8-pixel bands along the {seam['tile']}-pixel tile boundaries of the {w}x{h} decode "
                         f"{seam['boundary_band_psnr']:.2f} dB, along the lines halfway between them "
                         f"{seam['midway_band_psnr']:.2f} dB")
            exact = seam.get("exact_same_bytes")
            if exact is not None:  # the exact check decides; the band PSNRs also differ by content
                seamless = bool(exact) and seam["exact_max_diff_8bit"] <= 1
                bands += (f". Exact check: the center {seam['exact_side']}x{seam['exact_side']} region coded in "
                          f"process with 1024-pixel tiles and untiled gives "
                          f"{'identical' if exact else 'different'} files, whose decodes (tiled and untiled) "
                          f"differ by at most {seam['exact_max_diff_8bit']} in 8 bits "
                          f"({100 * seam['exact_share_differing']:.3f} % of samples differ)")
            else:
                seamless = diff > -0.2 and (seam.get("boundary_band_psnr") is None
                                            or seam["boundary_band_psnr"] > seam["midway_band_psnr"] - 0.2)
            lines += ["", f"Seam check (aetool, quality {qs['aetool']}): the {w}x{h} decode, coded in "
                      f"{seam['tile']}-pixel tiles, has {seam['full_psnr']:.2f} dB; its {side}x{side} center region "
                      f"(x {x0}, y {y0}) {seam['crop_in_full_psnr']:.2f} dB, that crop compressed alone (untiled) "
                      f"{seam['crop_alone_psnr']:.2f} dB at {seam['crop_alone_bpp']:.3f} bpp ({diff:+.2f} dB){bands}: "
                      + ("no seam (the exact check: tiling changes no coded symbol, and the pixels by at most one "
                         "8-bit step from float rounding; the bands differ in content)." if seamless and exact is not None
                         else "no seam penalty (neither the tiled region nor the tile-boundary bands are 0.2 dB or more "
                         "below their untiled and between-tiles counterparts)." if seamless
                         else "**a seam** (the exact check or the PSNR comparisons show one).")]
    return "\n".join(lines)


# ================================================================= main
def main(argv=None) -> int:
    csv = lambda text: [x.strip() for x in text.split(",") if x.strip()]  # noqa: E731

    def size(text: str) -> tuple[int, int]:
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
        if not m or int(m.group(1)) < 64 or int(m.group(2)) < 64:
            raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT of at least 64x64, got {text!r}")
        return int(m.group(1)), int(m.group(2))

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=csv, default=list(JOBS),
                    help=f"subset of {','.join(JOBS)} (default all); the other jobs' rows are kept from --out-json")
    ap.add_argument("--size", type=size, default=(WIDTH, HEIGHT), help=f"photo size WxH (default {WIDTH}x{HEIGHT})")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each command (median time, largest peak)")
    ap.add_argument("--quality", type=float, default=4.0, help="aetool compress --quality (default 4)")
    for m in CODECS:
        ap.add_argument(f"--{m}-quality", type=float, default=75.0, help=f"{m} quality (default 75)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir, removed after)")
    ap.add_argument("--out-md", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--out-json", type=Path, default=ROOT / "benchmarks" / "results" / "large-photo.json")
    ap.add_argument("--aetool", default="aetool")
    args = ap.parse_args(argv)
    bad = set(args.jobs) - set(JOBS)
    if bad or not args.jobs:
        ap.error(f"--jobs: choose from {','.join(JOBS)}")
    args.jobs = [j for j in JOBS if j in args.jobs]
    w, h = args.size
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "command": shlex.join(["python"] + sys.argv), "aetool_cpu_precision": cpu_precision(),
            "repeats": args.repeats}
    if "compress" in args.jobs:
        from compress import versions

        from aetool.registry import default_model

        info["versions"] = versions()
        info["compress_model"] = default_model("compress", 3).name
        from aetool.pngstream import DEFLATE_LEVEL

        info["png_writer"] = f"aetool's writer, ISA-L level {DEFLATE_LEVEL}"  # every decoder's PNG
    work = args.work or Path(tempfile.mkdtemp(prefix="large-photo-"))
    t0 = time.perf_counter()
    try:
        files = make_inputs(work, args.jobs, w, h)
        aetool = resolve_command(args.aetool)
        out = work / "out"
        out.mkdir(parents=True, exist_ok=True)
        mp, mp_half = w * h / 1e6, (w // 2) * (h // 2) / 1e6
        rows, seam = [], None
        for job in args.jobs:
            print(f"{job}:", file=sys.stderr)
            if job == "compress":
                new, seam = compress_rows(files, aetool, out, mp, args)
            else:
                new = speed_rows(job, files, aetool, out, mp, mp_half, args.repeats)
            rows += new
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    info["wall_seconds"] = round(time.perf_counter() - t0, 1)
    result = merge(args, (w, h), info, rows, seam)
    if "inpaint" in args.jobs:
        result["hole_fraction"] = files["hole_fraction"]
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    write_section(args.out_md, SECTION, report(result))
    print(f"wrote {args.out_json} and the {SECTION} section of {args.out_md} ({info['wall_seconds']:.0f} s)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
