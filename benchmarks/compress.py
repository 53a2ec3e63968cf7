"""Compression benchmark: `aetool compress` / `aetool decompress` against Pillow's JPEG, WebP and
AVIF encoders and JPEG XL (pillow-jxl-plugin), and aetool's learned decoder for JPEG, WebP and AVIF
files, by the protocol of docs/protocol.md ("Rules common to every task" and "Speed"; the
compression rules are those written out below and in the report).

Methods (--methods; default aetool,jpeg,webp,avif,jxl):
- aetool: the learned .aei codec (--model names it; default the shipped one), --qualities 1-8;
- jpeg, webp, avif, jxl: the baselines, run by this script's `codec` helper, quality 0-100;
- jpeg+filter, webp+filter, avif+filter: the learned decoder. Such a point encodes nothing: it
  decodes the files that its base method (jpeg, webp, avif) wrote at the same quality earlier in
  the same run, with `aetool decompress ENC -o DEC --format png` (the codec's own decode, then
  aetool's learned post-filter for that codec; the installed defaults, or --filter-model, never
  --model). Same bytes, same bpp: the BD-rate of X+filter against X is the learned decoder's gain
  alone. The base must be in --methods, and --X-filter-qualities a subset of --X-qualities.

For every test set (kodak24 and cbsd68, DATA/test/denoise/<set>, the PNG originals read as RGB,
plus any LABEL=FOLDER given to --sets, e.g. the colour photos of benchmarks/heldout_photos.py) and
every point of each method's quality sweep, the method's encoder runs as one command over the
folder (`aetool compress IN -o OUT --quality Q`; `python benchmarks/compress.py codec encode
METHOD --quality Q IN OUT` for the baselines), then its decoder as one command over the coded
files (`aetool decompress`; `... codec decode METHOD`), each timed for the whole folder (median of
--repeats runs, interpreter start and model loading included). Every decoded PNG is scored against
its original:

- bpp = 8 x bytes of the whole compressed file (headers included) / (H x W);
- PSNR over the three RGB channels, data range 255, float64 (common.psnr);
- MS-SSIM: pytorch_msssim.ms_ssim(ref, out, data_range=255) on the RGB values (5 scales, the
  weights of Wang et al. 2003, 11x11 Gaussian window with sigma 1.5; the mean over the channels).

A set's point is the mean bpp, PSNR and MS-SSIM over its images (only when every image has them).
The BD-rate (Bjontegaard delta rate, on PSNR) of aetool against each other method, of every method
against JPEG and against AVIF, and of each +filter against its base, per set, is `bd_rate` below:
log-rate as a function of PSNR, fitted by a cubic polynomial (least squares over all the points of
a curve, VCEG-M33) and, as a check, by a monotone piecewise-cubic (pchip) interpolation; the mean
difference of the two over the PSNR interval both curves cover, as a percentage of rate; negative =
the method under test needs fewer bits for the same PSNR.

--rate-control adds the check of aetool's rate control: `--bpp B`, `--size S` and `--psnr P`
targets, the per-image miss against the target, and whether each is within the tolerance.

It writes a markdown section (between <!-- compress:begin --> and <!-- compress:end --> of
--out-md, or those of --section), a JSON file with every per-image number, and a rate-distortion
plot (PSNR against bpp, one panel per set, one curve per method; a +filter curve dashed, with
hollow markers, in its base's colour).

Full run:
    python benchmarks/heldout_photos.py /tmp/heldout
    python benchmarks/compress.py --sets kodak24,cbsd68,heldout=/tmp/heldout/colour --rate-control
The learned decoder (its own section, JSON and plot):
    python benchmarks/compress.py --sets kodak24,cbsd68,heldout=/tmp/heldout/colour \\
        --methods aetool,jpeg,jpeg+filter,webp,webp+filter,avif,avif+filter --section compress-filter \\
        --out-json benchmarks/results/compress-filter.json --plot docs/compress-filter-rd.png
The baselines alone, quickly:
    python benchmarks/compress.py --methods jpeg,webp --limit 2 --out-md /tmp/c.md \\
        --out-json /tmp/c.json --plot /tmp/c.png
A post-filter that is not installed (a checkpoint), for JPEG only, quickly:
    python benchmarks/compress.py --methods jpeg,jpeg+filter --limit 2 --sets kodak24 \\
        --filter-model /tmp/dj.safetensors --out-md /tmp/cf.md --out-json /tmp/cf.json --plot /tmp/cf.png
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, add_run_options, check_methods, cpu_precision, failure, json_lines, list_images,  # noqa: E402
                    machine, machine_line, md_table, megapixels, named_sets, psnr, read_image,
                    resolve_command, run_timed, write_section)

# Each +filter method comes right after its base: a set's methods run in this order, and a +filter
# point decodes the files its base's point wrote.
METHODS = ["aetool", "jpeg", "jpeg+filter", "webp", "webp+filter", "avif", "avif+filter", "jxl"]
BASELINES = ["jpeg", "webp", "avif", "jxl"]
# The learned decoder: the base codec's own files, decoded by `aetool decompress` (the codec's
# decoder, then aetool's post-filter for that codec).
FILTERED = {"jpeg+filter": "jpeg", "webp+filter": "webp", "avif+filter": "avif"}
# What runs without --methods: the learned codec and the baselines (the +filter methods on request).
DEFAULT_METHODS = ["aetool", "jpeg", "webp", "avif", "jxl"]
SETS = ["kodak24", "cbsd68"]
EXT = {"aetool": ".aei", "jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "jxl": ".jxl"}
LABELS = {"aetool": "aetool", "jpeg": "JPEG", "webp": "WebP", "avif": "AVIF", "jxl": "JPEG XL"}
for _f, _b in FILTERED.items():
    EXT[_f] = EXT[_b]
    LABELS[_f] = f"{LABELS[_b]} + aetool filter"
# The baselines' sweep, one grid for all four, fixed in advance: their whole 0-100 quality scale,
# every 10 from 10 to 90, plus 5 and 95 at the ends.
BASELINE_QUALITIES = [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
AETOOL_QUALITIES = [1, 2, 3, 4, 5, 6, 7, 8]
AETOOL_QUALITY_RANGE = (1.0, 8.0)
# The +filter sweeps, fixed in advance; each must be a subset of its base's sweep.
FILTER_QUALITIES = {"jpeg+filter": [10, 20, 30, 40, 50, 60, 70], "webp+filter": [10, 20, 30, 40, 50, 60, 70],
                    "avif+filter": [20, 30, 40, 50, 60, 70]}
# The targets of the compression issue (#10).
TARGET_BD_VS_JPEG = -30.0  # percent, on every set
TARGET_S_PER_MP = 1.5      # encode and decode, seconds per megapixel
# The learned decoder's targets: BD-rate (PSNR) of X+filter against X, percent, on every set.
TARGET_BD_FILTER = {"jpeg+filter": -20.0, "avif+filter": -8.0}
# Rate control tolerances: bpp/size at or under the target, by at most 5 %; PSNR at or above, by at
# most 0.1 dB.
RATE_TOLERANCE = 0.05
PSNR_TOLERANCE = 0.1
MSSSIM_MIN_SIDE = 161  # 5 scales of an 11x11 window need a side above (11 - 1) * 2^4


# ================================================================= the BD-rate (pure numpy)
def _curve(rates, quality, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(quality, log-rate) sorted by quality, points with a non-finite value or rate <= 0 dropped;
    equal qualities are merged (their log-rates averaged)."""
    r = np.asarray(rates, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError(f"{name}: {r.size} rates but {q.size} quality values")
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[keep], q[keep]
    qs, inverse = np.unique(q, return_inverse=True)
    logr = np.bincount(inverse, weights=np.log(r)) / np.bincount(inverse)
    return qs, logr


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives of the monotone piecewise-cubic Hermite interpolant (Fritsch-Carlson with the
    weighted harmonic mean of Fritsch and Butland, and the three-point end rule: what
    scipy.interpolate.PchipInterpolator does)."""
    h = np.diff(x)
    m = np.diff(y) / h
    if x.size == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(y)
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    flat = (np.sign(m[1:]) != np.sign(m[:-1])) | (m[1:] == 0) | (m[:-1] == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        whmean = (w1 / m[:-1] + w2 / m[1:]) / (w1 + w2)
        d[1:-1] = np.where(flat, 0.0, 1.0 / whmean)

    def edge(h0, h1, m0, m1):
        e = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(e) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(e) > abs(3 * m0):
            return 3 * m0
        return e

    d[0] = edge(h[0], h[1], m[0], m[1])
    d[-1] = edge(h[-1], h[-2], m[-1], m[-2])
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over [lo, hi] (inside [x0, xn]) of the pchip interpolant of (x, y)."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(x.size - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        m = (y[k + 1] - y[k]) / h
        c2 = (3 * m - 2 * d[k] - d[k + 1]) / h
        c3 = (d[k] + d[k + 1] - 2 * m) / h ** 2
        ta, tb = a - x[k], b - x[k]
        total += (y[k] * (tb - ta) + d[k] * (tb ** 2 - ta ** 2) / 2 + c2 * (tb ** 3 - ta ** 3) / 3
                  + c3 * (tb ** 4 - ta ** 4) / 4)
    return float(total)


def overlap(quality_a, quality_b) -> tuple[float, float]:
    """The quality interval both curves cover (finite values only); lo >= hi when they do not overlap."""
    qa = np.asarray(quality_a, dtype=np.float64)
    qb = np.asarray(quality_b, dtype=np.float64)
    qa, qb = qa[np.isfinite(qa)], qb[np.isfinite(qb)]
    if qa.size == 0 or qb.size == 0:
        return math.nan, math.nan
    return float(max(qa.min(), qb.min())), float(min(qa.max(), qb.max()))


def bd_rate(rates_a, psnr_a, rates_b, psnr_b, method: str = "cubic", names: tuple[str, str] = ("A", "B")) -> float:
    """Bjontegaard delta rate of curve A (the codec under test) against curve B (the anchor), in
    percent: 100 * (exp(mean over the common PSNR interval of [ln R_A(P) - ln R_B(P)]) - 1), where
    ln R(P) is the curve's log-rate as a function of its quality P (PSNR, or any quality in dB).

    method "cubic": a least-squares cubic polynomial through all the points of each curve
    (Bjontegaard, VCEG-M33); it needs 4 points per curve. method "pchip": the monotone
    piecewise-cubic Hermite interpolant through the points (2 or more per curve).
    Negative = A needs fewer bits for the same quality. Points with a non-finite value or a rate
    <= 0 are left out. Raises ValueError (with the reason) when the curves' quality ranges do not
    overlap or a curve has too few points; `names` name the two curves in its message."""
    qa, la = _curve(rates_a, psnr_a, names[0])
    qb, lb = _curve(rates_b, psnr_b, names[1])
    need = 4 if method == "cubic" else 2
    if method not in ("cubic", "pchip"):
        raise ValueError(f"unknown method {method!r} (cubic or pchip)")
    for name, q in zip(names, (qa, qb)):
        if q.size < need:
            raise ValueError(f"{name} has {q.size} distinct usable points; the {method} fit needs {need}")
    lo, hi = overlap(qa, qb)
    if not hi > lo:
        raise ValueError(f"the quality ranges do not overlap ({names[0]} {qa.min():.2f}-{qa.max():.2f}, "
                         f"{names[1]} {qb.min():.2f}-{qb.max():.2f})")
    if method == "cubic":
        ints = []
        for q, lr in ((qa, la), (qb, lb)):
            p = np.polyint(np.polyfit(q, lr, 3))
            ints.append(np.polyval(p, hi) - np.polyval(p, lo))
        int_a, int_b = ints
    else:
        int_a, int_b = _pchip_integral(qa, la, lo, hi), _pchip_integral(qb, lb, lo, hi)
    return float((math.exp((int_a - int_b) / (hi - lo)) - 1) * 100)


def msssim_db(value: float | None) -> float | None:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM), as quality axis for a BD-rate."""
    if value is None or not math.isfinite(value) or value >= 1:
        return None
    return -10 * math.log10(1 - value)


# ================================================================= the baseline codecs (helper)
def _num(q: float):
    """A quality as the encoders take it: an int when it is whole."""
    return int(q) if float(q).is_integer() else float(q)


def _encoder(method: str):
    """A function (PIL image, quality, path) -> None that writes the file; raises RuntimeError
    when the codec is not available here."""
    from PIL import features

    if method == "jpeg":
        return lambda im, q, path: im.save(path, "JPEG", quality=int(round(q)), subsampling="4:2:0", optimize=True)
    if method == "webp":
        if not features.check("webp"):
            raise RuntimeError("this Pillow has no WebP support (PIL.features.check('webp') is False)")
        return lambda im, q, path: im.save(path, "WEBP", quality=_num(q), method=6)
    if method == "avif":
        if not features.check("avif"):
            raise RuntimeError("this Pillow has no AVIF encoder (PIL.features.check('avif') is False; "
                               "Pillow >= 11.2 wheels have one)")
        return lambda im, q, path: im.save(path, "AVIF", quality=int(round(q)))
    if method == "jxl":
        try:
            import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
        except ImportError as exc:
            raise RuntimeError(f"pillow-jxl-plugin is not installed ({exc}); pip install -e '.[bench]'") from None
        return lambda im, q, path: im.save(path, "JXL", quality=_num(q))
    raise RuntimeError(f"unknown codec {method}")


def _open_coded(path: Path):
    from PIL import Image

    if path.suffix.lower() == ".jxl":
        import pillow_jxl  # noqa: F401
    return Image.open(path)


def codec_main(argv) -> int:
    """`compress.py codec encode METHOD --quality Q IN OUT` / `codec decode METHOD IN OUT`: one
    baseline codec over a folder, as a command (so that its time includes the start-up and file
    costs that `aetool compress` pays). Encode: each image of IN (sorted by name) read as RGB and
    written to OUT/<stem><ext>; decode: each <ext> file of IN to OUT/<stem>.png. One JSON line per
    file on stdout (input, output, status, bytes or error); exit 1 if any file failed."""
    from PIL import Image

    ap = argparse.ArgumentParser(prog="compress.py codec", description=codec_main.__doc__)
    ap.add_argument("step", choices=["encode", "decode"])
    ap.add_argument("method", choices=BASELINES)
    ap.add_argument("--quality", type=float, default=None)
    ap.add_argument("input", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args(argv)
    if args.step == "encode" and args.quality is None:
        ap.error("encode needs --quality")
    args.output.mkdir(parents=True, exist_ok=True)
    try:
        encode = _encoder(args.method) if args.step == "encode" else None
    except RuntimeError as exc:
        print(f"compress.py codec: {exc}", file=sys.stderr)
        return 2
    ext = EXT[args.method]
    if args.step == "encode":
        files = list_images(args.input)
    else:
        files = sorted((p for p in args.input.iterdir() if p.suffix.lower() == ext), key=lambda p: p.name)
    failed = 0
    for path in files:
        try:
            if encode:
                target = args.output / (path.stem + ext)
                with Image.open(path) as im:
                    encode(im.convert("RGB"), args.quality, target)
            else:
                target = args.output / (path.stem + ".png")
                with _open_coded(path) as im:
                    im.convert("RGB").save(target)
            print(json.dumps({"input": str(path), "output": str(target), "status": "ok",
                              "bytes": target.stat().st_size}), flush=True)
        except Exception as exc:  # report and go on with the other files
            failed += 1
            print(json.dumps({"input": str(path), "status": "error", "error": f"{type(exc).__name__}: {exc}"}),
                  flush=True)
    return 1 if failed else 0


# ================================================================= options
def parse_args(argv=None):
    csv = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    numbers = lambda s: [float(x) for x in csv(s)]  # noqa: E731
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="data folder (default: ../shared/data from the project root); sets are read "
                         "from DATA/test/denoise/<set>")
    ap.add_argument("--sets", type=csv, default=list(SETS),
                    help="colour sets, read as RGB (default kodak24,cbsd68); LABEL=FOLDER adds a folder of "
                         "photos from elsewhere (e.g. heldout=/tmp/heldout/colour)")
    add_run_options(ap, "compress", METHODS)
    ap.set_defaults(methods=list(DEFAULT_METHODS))
    ap.add_argument("--model", default=None,
                    help="the learned .aei codec: passed to `aetool compress --model` and `aetool decompress "
                         "--model` of the aetool method (a name or a .safetensors file); default: aetool's "
                         "shipped default compression model. Never given to the +filter methods")
    ap.add_argument("--filter-model", default=None,
                    help="post-filter passed to the +filter methods' `aetool decompress --model` (a name or a "
                         ".safetensors file); it serves the codecs it was trained for, the others get their "
                         "installed default post-filter. Default: none given (the installed defaults)")
    ap.add_argument("--qualities", type=numbers, default=list(AETOOL_QUALITIES),
                    help="aetool's --quality sweep (1 to 8, fractions allowed; default 1,2,...,8)")
    for m in BASELINES:
        ap.add_argument(f"--{m}-qualities", type=numbers, default=list(BASELINE_QUALITIES),
                        help=f"{LABELS[m]}'s quality sweep (0-100; default {','.join(map(str, BASELINE_QUALITIES))})")
    for f, b in FILTERED.items():
        ap.add_argument(f"--{b}-filter-qualities", type=numbers, default=list(FILTER_QUALITIES[f]),
                        help=f"{f}'s sweep: the {LABELS[b]} points whose files it decodes, a subset of "
                             f"--{b}-qualities (default {','.join(map(str, FILTER_QUALITIES[f]))})")
    ap.add_argument("--rate-control", action="store_true",
                    help="also check aetool's --bpp, --size and --psnr targets (the three lists below)")
    ap.add_argument("--bpp-targets", type=numbers, default=[0.25, 0.5, 1.0], help="default 0.25,0.5,1.0")
    ap.add_argument("--size-targets", type=csv, default=["10KB", "20KB"],
                    help="values given to --size as they are (default 10KB,20KB); read here with "
                         "KB = 1000 bytes, KiB = 1024")
    ap.add_argument("--psnr-targets", type=numbers, default=[26.0, 29.0], help="dB, default 26,29")
    ap.add_argument("--plot", default=str(ROOT / "docs" / "compress-rd.png"),
                    help="the rate-distortion plot (default docs/compress-rd.png; '' or 'none' for none)")
    ap.add_argument("--plot-max-bpp", type=float, default=None,
                    help="right end of the plot's bpp axis (default: 1.25 x aetool's largest bpp, "
                         "at least 1; without aetool the same of the +filter curves; 3 without either)")
    args = ap.parse_args(argv)
    check_methods(ap, args, METHODS)
    args.methods = [m for m in METHODS if m in args.methods]  # each base before its +filter
    args.sets, args.set_dirs = named_sets(args.sets)
    lo, hi = AETOOL_QUALITY_RANGE
    if any(not lo <= q <= hi for q in args.qualities):
        ap.error(f"--qualities must lie in {lo:g}..{hi:g}")
    args.sweeps = {"aetool": sorted(set(args.qualities))}
    for m in BASELINES:
        qs = sorted(set(getattr(args, f"{m}_qualities")))
        if any(not 0 <= q <= 100 for q in qs):
            ap.error(f"--{m}-qualities must lie in 0..100")
        args.sweeps[m] = qs
    for f, b in FILTERED.items():
        qs = sorted(set(getattr(args, f"{b}_filter_qualities")))
        args.sweeps[f] = qs
        if f not in args.methods:
            continue
        if b not in args.methods:
            ap.error(f"{f} decodes the files that {b} encodes in the same run: add {b} to --methods "
                     f"(e.g. --methods {b},{f})")
        extra = [q for q in qs if q not in args.sweeps[b]]
        if extra:
            ap.error(f"--{b}-filter-qualities must be a subset of --{b}-qualities ({f} decodes {b}'s files); "
                     f"{','.join(f'{q:g}' for q in extra)} not in --{b}-qualities "
                     f"{','.join(f'{q:g}' for q in args.sweeps[b])}: add them there or drop them")
    for s in args.size_targets:
        try:
            parse_size(s)
        except ValueError as exc:
            ap.error(f"--size-targets: {exc}")
    if args.plot.strip().lower() in ("", "none"):
        args.plot = None
    return args


def parse_size(text: str) -> int:
    """Bytes of a size such as 150KB (KB = 1000 bytes), 150KiB (1024), 2MB, 20000 or 20000B."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]i?[bB]?|[bB])?\s*", text)
    if not m:
        raise ValueError(f"cannot read {text!r} as a size (e.g. 20KB, 150KiB, 20000)")
    unit = (m.group(2) or "b").lower()
    factor = {"b": 1, "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024,
              "m": 1000 ** 2, "mb": 1000 ** 2, "mi": 1024 ** 2, "mib": 1024 ** 2}[unit]
    return int(round(float(m.group(1)) * factor))


def qkey(q: float) -> str:
    return f"q{q:g}"


# ================================================================= running and scoring
def aetool_command(args, step: str, inp: Path, out: Path, extra: list[str]) -> list[str]:
    cmd = resolve_command(args.aetool) + [step, str(inp), "-o", str(out), "-q", "--json", "--overwrite"] + extra
    return cmd + (["--model", args.model] if args.model else [])


def filter_command(args, enc: Path, dec: Path) -> list[str]:
    """The learned decoder over a folder of JPEG/WebP/AVIF files: `aetool decompress` with its
    default post-filters, or --filter-model (never --model: that one names the .aei codec)."""
    cmd = resolve_command(args.aetool) + ["decompress", str(enc), "-o", str(dec), "--format", "png", "-q", "--json",
                                          "--overwrite"]
    return cmd + (["--model", args.filter_model] if args.filter_model else [])


def commands(args, method: str, q: float, inp: Path, enc: Path, dec: Path) -> tuple[list[str], list[str]]:
    if method in FILTERED:
        return [], filter_command(args, enc, dec)
    if method == "aetool":
        return (aetool_command(args, "compress", inp, enc, ["--quality", f"{q:g}"]),
                aetool_command(args, "decompress", enc, dec, ["--format", "png"]))
    helper = [sys.executable, str(Path(__file__).resolve()), "codec"]
    return (helper + ["encode", method, "--quality", f"{q:g}", str(inp), str(enc)],
            helper + ["decode", method, str(enc), str(dec)])


def fresh(folder: Path):
    def make():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    return make


def timing(run, mp: float) -> dict:
    if run.error:
        return {"seconds": None, "error": failure(run)}
    return {"seconds": run.seconds, "s_per_mp": run.seconds / mp}


def by_input(stdout: str, key=lambda p: Path(p).name) -> dict:
    """The --json lines of a run that name an input, by the input's file name (or `key`)."""
    return {key(o["input"]): o for o in json_lines(stdout) if isinstance(o.get("input"), str)}


def line_error(obj: dict | None) -> str | None:
    if not obj:
        return None
    if isinstance(obj.get("error"), str):
        return obj["error"]
    status = obj.get("status")
    if isinstance(status, str) and status not in ("ok", "done", "written", "success"):
        return f"status {status}"
    return None


def ms_ssim(ref: np.ndarray, out: np.ndarray) -> float | None:
    """pytorch_msssim.ms_ssim on the RGB values (float64, data_range 255); None when the image's
    shorter side is too small for five scales."""
    if min(ref.shape[:2]) < MSSSIM_MIN_SIDE:
        return None
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    x = torch.from_numpy(ref.astype(np.float64)).permute(2, 0, 1)[None]
    y = torch.from_numpy(out.astype(np.float64)).permute(2, 0, 1)[None]
    return float(_ms_ssim(x, y, data_range=255, size_average=True))


def score_image(name: str, ref: np.ndarray, coded: Path | None, decoded: Path | None, enc_line: dict | None,
                dec_error: str | None) -> dict:
    row: dict = {"file": name}
    if enc_line:
        for k_in, k_out in (("bpp", "reported_bpp"), ("quality", "reported_quality"), ("bytes", "reported_bytes")):
            if isinstance(enc_line.get(k_in), (int, float)):
                row[k_out] = enc_line[k_in]
    if coded is None or not coded.is_file():
        row["error"] = "encode: " + (line_error(enc_line) or "no coded file")
        return row
    h, w = ref.shape[:2]
    row["bytes"] = coded.stat().st_size
    row["bpp"] = row["bytes"] * 8 / (h * w)
    if decoded is None or not decoded.is_file():
        row["error"] = "decode: " + (dec_error or "no decoded file")
        return row
    try:
        out = read_image(decoded, "RGB")
    except OSError as exc:
        row["error"] = f"cannot read the decoded file: {exc}"
        return row
    if out.shape != ref.shape:
        row["error"] = f"decoded image is {out.shape[1]}x{out.shape[0]}, the original {w}x{h}"
        return row
    row["psnr"] = psnr(ref, out)
    try:
        row["ms_ssim"] = ms_ssim(ref, out)
    except Exception as exc:  # a metric failing must not lose the other numbers
        row["ms_ssim"] = None
        row["ms_ssim_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return row


def find_file(folder: Path, stem: str, ext: str, reported: dict | None) -> Path | None:
    out = reported.get("output") if reported else None
    for p in (out, folder / (stem + ext)):
        if isinstance(p, (str, Path)) and Path(p).is_file():
            return Path(p)
    return None


def run_point(args, method: str, q: float, name: str, inp: Path, refs, mp: float, work: Path) -> dict:
    """Encode the folder at one quality, decode it, score every image: the point's cell. A +filter
    method encodes nothing: it decodes the files its base's point wrote at the same quality (same
    bytes, same bpp), so that point must have run before in this run."""
    base = FILTERED.get(method)
    enc = work / "enc" / (base or method) / name / qkey(q)
    dec = work / "dec" / method / name / qkey(q)
    enc_cmd, dec_cmd = commands(args, method, q, inp, enc, dec)
    cell: dict = {"quality": q, "megapixels": mp}
    if base:
        cell["encode"] = {"seconds": None, "reused": base,
                          "note": f"not encoded: the {LABELS[base]} point's files at quality {q:g}"}
        enc_lines = {}
    else:
        erun = run_timed(enc_cmd, args.repeats, before=fresh(enc))
        cell["encode"] = timing(erun, mp)
        enc_lines = by_input(erun.stdout)
    if enc.is_dir() and any(p.suffix.lower() == EXT[method] for p in enc.iterdir()):
        drun = run_timed(dec_cmd, args.repeats, before=fresh(dec))
        cell["decode"] = timing(drun, mp)
        dec_lines = by_input(drun.stdout, key=lambda p: Path(p).stem)
        dec_fallback = drun.error or None
        if base:  # the post-filter(s) that aetool reports it used
            cell["filter"] = sorted({str(o["filter"]) for o in dec_lines.values() if o.get("filter")})
    else:
        why = f"no {LABELS[base]} files at quality {q:g} to decode ({enc})" if base else "nothing to decode"
        cell["decode"] = {"seconds": None, "error": why}
        dec_lines, dec_fallback = {}, why
    rows = []
    for fname, ref in refs:
        stem = Path(fname).stem
        enc_line = enc_lines.get(fname)
        coded = find_file(enc, stem, EXT[method], enc_line)
        decoded = find_file(dec, stem, ".png", dec_lines.get(stem))
        rows.append(score_image(fname, ref, coded, decoded, enc_line,
                                line_error(dec_lines.get(stem)) or dec_fallback))
    cell["images"] = rows
    bad = [r for r in rows if "error" in r]
    if bad:
        cell["error"] = (f"{len(bad)} of {len(rows)} images not scored ({bad[0]['file']}: {bad[0]['error']}"
                         + (", ..." if len(bad) > 1 else "") + ")")[:300]
        return cell
    cell["bpp"] = float(np.mean([r["bpp"] for r in rows]))
    cell["psnr"] = float(np.mean([r["psnr"] for r in rows]))
    ms = [r.get("ms_ssim") for r in rows]
    cell["ms_ssim"] = float(np.mean(ms)) if all(v is not None for v in ms) else None
    return cell


def input_folder(folder: Path, paths: list[Path], work: Path, name: str, limited: bool) -> Path:
    """The set's folder itself, or with --limit a folder of symbolic links to its first files."""
    if not limited:
        return folder
    sub = work / "in" / name
    shutil.rmtree(sub, ignore_errors=True)
    sub.mkdir(parents=True)
    for p in paths:
        (sub / p.name).symlink_to(p.resolve())
    return sub


# ================================================================= rate control
def rate_control(args, name: str, inp: Path, refs, mp: float, work: Path) -> list[dict]:
    """One `aetool compress --bpp/--size/--psnr T` per target over the folder; per image the miss
    against the target. --psnr outputs are decoded (`aetool decompress`) to measure their PSNR."""
    checks = ([("bpp", f"{t:g}", t) for t in args.bpp_targets]
              + [("size", s, parse_size(s)) for s in args.size_targets]
              + [("psnr", f"{t:g}", t) for t in args.psnr_targets])
    out = []
    for kind, text, target in checks:
        tag = f"{kind}-{re.sub(r'[^0-9A-Za-z.]', '_', text)}"
        enc, dec = work / "rc-enc" / name / tag, work / "rc-dec" / name / tag
        run = run_timed(aetool_command(args, "compress", inp, enc, [f"--{kind}", text]), args.repeats,
                        before=fresh(enc))
        entry: dict = {"kind": kind, "target": text, "target_value": target, "encode": timing(run, mp)}
        lines = by_input(run.stdout)
        dec_lines, dec_fallback = {}, None
        if kind == "psnr":
            if any(p.suffix.lower() == ".aei" for p in enc.iterdir()):
                drun = run_timed(aetool_command(args, "decompress", enc, dec, ["--format", "png"]), 1, before=fresh(dec))
                dec_lines, dec_fallback = by_input(drun.stdout, key=lambda p: Path(p).stem), drun.error or None
            else:
                dec_fallback = "nothing to decode"
        rows = []
        for fname, ref in refs:
            stem, line = Path(fname).stem, lines.get(fname)
            coded = find_file(enc, stem, ".aei", line)
            if kind == "psnr":
                decoded = find_file(dec, stem, ".png", dec_lines.get(stem))
                row = score_image(fname, ref, coded, decoded, line, line_error(dec_lines.get(stem)) or dec_fallback)
            else:
                row = score_image(fname, ref, coded, None, line, "not decoded")
                if row.get("error", "").startswith("decode:"):
                    del row["error"]  # bytes are all that a rate target needs
            if "error" not in row:
                row.update(rc_miss(kind, target, row, ref))
            rows.append(row)
        entry["images"] = rows
        entry.update(rc_summary(kind, rows))
        out.append(entry)
    return out


def rc_miss(kind: str, target: float, row: dict, ref: np.ndarray) -> dict:
    """The miss of one image and whether it is within the tolerance. Where the target lies beyond
    the model's range for that image, aetool writes its nearest end with a warning, as the issue
    asks: a miss on that side is excused when aetool reports that end's quality (top quality: a
    rate under the target, a PSNR below it; bottom quality: a rate over it, a PSNR above it)."""
    q = row.get("reported_quality")
    top = q is not None and q >= AETOOL_QUALITY_RANGE[1]
    bottom = q is not None and q <= AETOOL_QUALITY_RANGE[0]
    if kind in ("bpp", "size"):
        actual = row["bpp"] if kind == "bpp" else row["bytes"]
        miss = (actual - target) / target
        within = -RATE_TOLERANCE <= miss <= 0
        excused = not within and ((miss < 0 and top) or (miss > 0 and bottom))
    else:
        miss = row["psnr"] - target
        within = 0 <= miss <= PSNR_TOLERANCE
        excused = not within and ((miss < 0 and top) or (miss > 0 and bottom))
    return {"miss": miss, "ok": bool(within or excused), "excused": bool(excused), "at_top_quality": top,
            "at_bottom_quality": bottom}


def rc_summary(kind: str, rows: list[dict]) -> dict:
    done = [r for r in rows if "miss" in r]
    s: dict = {"images_ok": sum(r["ok"] for r in done), "images_scored": len(done)}
    if len(done) < len(rows):
        bad = [r for r in rows if "miss" not in r]
        s["error"] = f"{len(bad)} of {len(rows)} images failed ({bad[0]['file']}: {bad[0].get('error')})"[:300]
    if done:
        misses = [r["miss"] for r in done]
        excused = [r for r in done if r.get("excused")]
        s.update({"mean_miss": float(np.mean(misses)), "min_miss": float(min(misses)),
                  "max_miss": float(max(misses)), "excused": len(excused)})
        within = [r["miss"] for r in done if r["ok"] and not r.get("excused")]
        if within:  # the accuracy where the target was reachable
            s.update({"mean_miss_within_range": float(np.mean(within)),
                      "worst_miss_within_range": float(min(within) if kind != "psnr" else max(within))})
        if kind == "psnr":
            s["mean_psnr"] = float(np.mean([r["psnr"] for r in done]))
        s["mean_bpp"] = float(np.mean([r["bpp"] for r in done]))
    if done and len(done) == len(rows) and s["images_ok"] == len(rows):
        # every image within, or under the target at quality 8; if all are the latter, the target lies
        # beyond the model's range and says nothing about the rate control's accuracy
        s["result"] = "n/a (beyond the model's range for every image)" if s.get("excused") == len(rows) else "PASS"
    else:
        s["result"] = "MISS"
    return s


# ================================================================= summaries
def curve(results, method: str, name: str) -> list[dict]:
    """The set's usable points of a method, sorted by bpp."""
    cells = [c for c in results.get(method, {}).get(name, {}).values() if "psnr" in c]
    return sorted(cells, key=lambda c: c["bpp"])


def bd_entry(results, a: str, b: str, name: str) -> dict:
    ca, cb = curve(results, a, name), curve(results, b, name)
    entry: dict = {"points": [len(ca), len(cb)]}
    if not ca or not cb:
        entry["error"] = f"no usable points for {LABELS[a] if not ca else LABELS[b]}"
        return entry
    ra, pa = [c["bpp"] for c in ca], [c["psnr"] for c in ca]
    rb, pb = [c["bpp"] for c in cb], [c["psnr"] for c in cb]
    entry["psnr_range"] = list(overlap(pa, pb))
    for method in ("cubic", "pchip"):
        try:
            entry[method] = bd_rate(ra, pa, rb, pb, method, (LABELS[a], LABELS[b]))
        except ValueError as exc:
            entry[method] = None
            entry.setdefault("error", str(exc))
    qa = [(c["bpp"], msssim_db(c.get("ms_ssim"))) for c in ca]
    qb = [(c["bpp"], msssim_db(c.get("ms_ssim"))) for c in cb]
    qa, qb = [p for p in qa if p[1] is not None], [p for p in qb if p[1] is not None]
    try:
        entry["ms_ssim_db_cubic"] = (bd_rate(*zip(*qa), *zip(*qb), "cubic", (LABELS[a], LABELS[b]))
                                     if qa and qb else None)
    except ValueError as exc:
        entry["ms_ssim_db_cubic"] = None
        entry["ms_ssim_error"] = str(exc)
    return entry


def bd_pairs(ran: list[str]) -> list[tuple[str, str]]:
    """The (codec under test, anchor) pairs whose BD-rate a run computes: aetool against every
    other method, every method against JPEG and against AVIF, and each +filter against its base."""
    pairs = []
    for a in ran:
        for b in ran:
            if a != b and (a == "aetool" or b in ("jpeg", "avif") or FILTERED.get(a) == b):
                pairs.append((a, b))
    return pairs


def speed(results, method: str, sets: list[str], step: str) -> float | None:
    """Seconds per megapixel over every folder and point that ran (total time / total MP); a point
    where some image failed is left out (its time would be for fewer images)."""
    cells = [c for n in sets for c in results.get(method, {}).get(n, {}).values()
             if c.get(step, {}).get("seconds") is not None and "error" not in c]
    return sum(c[step]["seconds"] for c in cells) / sum(c["megapixels"] for c in cells) if cells else None


def slowest(results, method: str, sets: list[str], step: str) -> tuple[str, float] | None:
    found = [(f"{n} {k}", c[step]["s_per_mp"]) for n in sets for k, c in results.get(method, {}).get(n, {}).items()
             if c.get(step, {}).get("s_per_mp") is not None and "error" not in c]
    return max(found, key=lambda t: t[1]) if found else None


def targets(results, bd, sets, methods, unavailable=None) -> list[dict]:
    """The target rows. `bd` is the run's {set: {a: {b: bd_entry}}}; `methods` the methods that
    ran; `unavailable` why the others asked for did not."""
    unavailable = unavailable or {}
    rows = []

    def add(target, scope, measured, needed, margin, ok, why="aetool not run"):
        rows.append({"target": target, "scope": scope, "measured": measured, "needed": needed, "margin": margin,
                     "result": f"n/a ({why})" if ok is None else ("PASS" if ok else "MISS")})

    ran = "aetool" in methods
    for n in sets:
        e = bd_all(bd, n, "aetool", "jpeg")
        v = e.get("cubic")
        if v is None:
            add("BD-rate vs JPEG ≤ -30 %", n, "–", "≤ -30.0 %", "–", None,
                "aetool not run" if not ran else ("JPEG not run" if "jpeg" not in methods
                                                  else e.get("error", "no BD-rate")))
            continue
        add("BD-rate vs JPEG ≤ -30 %", n, f"{v:+.1f} % (pchip {e['pchip']:+.1f} %)" if e.get("pchip") is not None
            else f"{v:+.1f} %", "≤ -30.0 %", f"{TARGET_BD_VS_JPEG - v:+.1f} points", v <= TARGET_BD_VS_JPEG)
    for step in ("encode", "decode"):
        v = speed(results, "aetool", sets, step)
        name = f"{step} ≤ {TARGET_S_PER_MP} s/MP"
        if v is None:
            add(name, "all sets and points", "–", f"≤ {TARGET_S_PER_MP:.2f} s/MP", "–", None,
                "aetool not run" if not ran else "no timed run")
            continue
        worst = slowest(results, "aetool", sets, step)
        add(name, "all sets and points", f"{v:.3f} s/MP (slowest folder {worst[0]}: {worst[1]:.3f})",
            f"≤ {TARGET_S_PER_MP:.2f} s/MP", f"{TARGET_S_PER_MP - v:+.3f} s/MP", v <= TARGET_S_PER_MP)
    for f, goal in TARGET_BD_FILTER.items():
        b = FILTERED[f]
        name = f"{LABELS[b]}+filter vs {LABELS[b]} BD-rate ≤ {goal:g} %"
        for n in sets:
            e = bd_all(bd, n, f, b)
            v = e.get("cubic")
            if v is None:
                why = (e.get("error", "no BD-rate") if f in methods
                       else f"{f} not run, see the notes" if f in unavailable
                       else f"{f} not in --methods")
                add(name, n, "–", f"≤ {goal:.1f} %", "–", None, why)
                continue
            add(name, n, f"{v:+.1f} % (pchip {e['pchip']:+.1f} %)" if e.get("pchip") is not None else f"{v:+.1f} %",
                f"≤ {goal:.1f} %", f"{goal - v:+.1f} points", v <= goal)
    return rows


# ================================================================= report
def f2(v, fmt="{:.2f}"):
    return "–" if v is None else fmt.format(v)


def pair_label(a: str, b: str, short: bool = False) -> str:
    """'aetool vs JPEG'; short: 'JPEG+filter vs JPEG' for a +filter against its base."""
    if short and FILTERED.get(a) == b:
        return f"{LABELS[b]}+filter vs {LABELS[b]}"
    return f"{LABELS[a]} vs {LABELS[b]}"


def bd_cell(e: dict, key: str) -> str:
    v = e.get(key)
    if v is None:
        return "– (" + (e.get("error") or e.get("ms_ssim_error") or "not run") + ")"
    if key == "cubic" and e.get("pchip") is not None:
        return f"{v:+.1f} % (pchip {e['pchip']:+.1f} %; {e['psnr_range'][0]:.1f}-{e['psnr_range'][1]:.1f} dB)"
    return f"{v:+.1f} %"


def bd_table(bd, sets, pairs, key="cubic", short=False, by_pair=False) -> str:
    """One row per set and a column per pair; by_pair: a row per pair and a column per set."""
    if by_pair:
        return md_table(["pair"] + list(sets), [[pair_label(a, b, short)] + [bd_cell(bd_all(bd, n, a, b), key)
                                                                              for n in sets] for a, b in pairs])
    header = ["set"] + [pair_label(a, b, short) for a, b in pairs]
    return md_table(header, [[n] + [bd_cell(bd_all(bd, n, a, b), key) for a, b in pairs] for n in sets])


def bd_all(bd, n, a, b):
    return bd.get(n, {}).get(a, {}).get(b, {})


def points_table(results, methods, name) -> str:
    header = ["method", "quality", "bpp", "PSNR (dB)", "MS-SSIM", "encode s/MP", "decode s/MP"]
    rows = []
    for m in methods:
        for k, c in results.get(m, {}).get(name, {}).items():
            if "psnr" in c:
                rows.append([LABELS[m], f"{c['quality']:g}", f"{c['bpp']:.3f}", f"{c['psnr']:.2f}",
                             f2(c.get("ms_ssim"), "{:.4f}"), f2(c["encode"].get("s_per_mp"), "{:.3f}"),
                             f2(c["decode"].get("s_per_mp"), "{:.3f}")])
            else:
                rows.append([LABELS[m], f"{c['quality']:g}", "error", "", "", "", ""])
    return md_table(header, rows)


def speed_table(results, methods, sets) -> str:
    header = ["method"] + [f"{n} {s}" for n in sets for s in ("enc", "dec")] + ["all: encode", "all: decode"]
    rows = []
    for m in methods:
        row = [LABELS[m]]
        for n in sets:
            row += [f2(speed(results, m, [n], s), "{:.3f}") for s in ("encode", "decode")]
        row += [f2(speed(results, m, sets, s), "{:.3f}") for s in ("encode", "decode")]
        rows.append(row)
    return md_table(header, rows)


def rc_table(rc, sets) -> str:
    header = ["set", "target", "mean bpp", "mean miss", "range of misses", "reachable: mean / worst miss",
              "within tolerance", "encode s/MP", "result"]
    rows = []
    for n in sets:
        for e in rc.get(n, []):
            kind = e["kind"]
            tgt = {"bpp": f"--bpp {e['target']}", "size": f"--size {e['target']} ({e['target_value']} B)",
                   "psnr": f"--psnr {e['target']}"}[kind]
            if "mean_miss" in e:
                if kind == "psnr":
                    mean, rng = f"{e['mean_miss']:+.3f} dB", f"{e['min_miss']:+.3f} to {e['max_miss']:+.3f} dB"
                else:
                    mean, rng = f"{100 * e['mean_miss']:+.1f} %", f"{100 * e['min_miss']:+.1f} to {100 * e['max_miss']:+.1f} %"
            else:
                mean = rng = "–"
            if "mean_miss_within_range" in e:
                a, b = e["mean_miss_within_range"], e["worst_miss_within_range"]
                reach = f"{a:+.3f} / {b:+.3f} dB" if kind == "psnr" else f"{100 * a:+.1f} / {100 * b:+.1f} %"
            else:
                reach = "–"
            ok = f"{e['images_ok']} of {len(e['images'])}"
            if e.get("excused"):
                ok += f" ({e['excused']} beyond the model's range, at its end quality with a warning)"
            result = e["result"] + (f" ({e['error']})" if e.get("error") else "")
            rows.append([n, tgt, f2(e.get("mean_bpp"), "{:.3f}"), mean, rng, reach, ok,
                         f2(e["encode"].get("s_per_mp"), "{:.3f}"), result])
    return md_table(header, rows)


def notes(results, methods, sets, unavailable) -> list[str]:
    out = [f"- {LABELS[m]}: not run, {why}" for m, why in unavailable.items()]
    for m in methods:
        for n in sets:
            for k, c in results.get(m, {}).get(n, {}).items():
                msgs = [c[s]["error"] for s in ("encode", "decode") if c.get(s, {}).get("error")]
                if c.get("error") and not msgs:
                    msgs.append(c["error"])
                for msg in msgs:
                    out.append(f"- {LABELS[m]}, {n} {k}: {msg}")
            small = sum(r.get("ms_ssim") is None and "psnr" in r for c in results.get(m, {}).get(n, {}).values()
                        for r in c.get("images", []))
            if small:
                out.append(f"- {LABELS[m]}, {n}: {small} image/point(s) without MS-SSIM (shorter side under "
                           f"{MSSSIM_MIN_SIDE} pixels, or the metric failed)")
    return out


def versions() -> dict:
    from importlib import metadata

    from PIL import Image, features

    v = {"pillow": Image.__version__, "libjpeg": features.version("jpg"), "libwebp": features.version("webp"),
         "libavif": features.version("avif")}
    for dist in ("pillow-jxl-plugin", "pytorch-msssim"):
        try:
            v[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            v[dist] = None
    return v


def report(args, info, counts, results, bd, target_rows, rc, unavailable) -> str:
    subset = f" — **subset: only the first {args.limit} by file name (--limit)**" if args.limit else ""
    v = info["versions"]
    ran = [m for m in args.methods if m not in unavailable]
    lines = [
        "## Compression" + ("" if args.section == "compress" else f" ({args.section})"), "",
        f"Measured {info['date']} on {machine_line(info['machine'])}.  ",
        f"Command: `{info['command']}`  ",
        "Images per set: " + ", ".join(f"{s} {n} of {t}" for s, (n, t) in counts.items()) + subset + ".",
        "",
        "Protocol: docs/protocol.md (files in, files out; speed), and for compression: bpp = 8 × bytes of the whole "
        "compressed file (headers included) / (H × W); distortion of the decoded 8-bit image against the PNG original: "
        "RGB PSNR (dB, data range 255, one MSE over the three channels) and MS-SSIM (`pytorch_msssim.ms_ssim`, "
        f"pytorch-msssim {v.get('pytorch-msssim')}, data_range 255, 5 scales, RGB, mean over channels); each point is "
        "the mean bpp, PSNR and MS-SSIM over the set's images. Every method encodes each folder at each quality with "
        "one command, then decodes the coded files to PNG with one command; encode and decode s/MP = wall time "
        f"(median of {args.repeats}) per megapixel of input, over all sets and the points where every image was scored, "
        "interpreter start and model loading included; each codec uses its library's default threads. "
        f"Baselines (benchmarks/compress.py `codec`, Pillow {v['pillow']}): JPEG (libjpeg {v['libjpeg']}, "
        f"4:2:0, optimize=True), WebP (libwebp {v['libwebp']}, method=6), AVIF (libavif {v['libavif']}, Pillow's "
        f"defaults: speed 6, 4:2:0), JPEG XL (pillow-jxl-plugin {v.get('pillow-jxl-plugin')}, its defaults: effort 7); "
        f"their quality grid, fixed in advance, is {','.join(map(str, BASELINE_QUALITIES))}. "
        "BD-rate (Bjøntegaard delta rate on PSNR): ln(bpp) as a cubic polynomial of PSNR fitted to all of a curve's "
        "points (VCEG-M33), the mean difference over the PSNR interval both curves cover, as % of rate; in brackets "
        "the same with a monotone piecewise-cubic (pchip) interpolation, and the interval. Negative = fewer bits "
        "than the anchor for the same PSNR.",
    ]
    filtered = [f for f in ran if f in FILTERED]
    if filtered:
        used = {f: sorted({x for n in args.sets for c in results.get(f, {}).get(n, {}).values()
                           for x in c.get("filter", [])}) or info.get("filters", {}).get(f) or ["unknown"]
                for f in filtered}
        lines += ["", "Learned decoder (X + aetool filter): no encode of its own. Each point decodes the files that the "
                      "base codec's point wrote at the same quality in this run, with `aetool decompress ENC -o DEC "
                      "--format png -q --json --overwrite" + (f" --model {args.filter_model}" if args.filter_model
                                                               else "") +
                      "` (the codec's own decoder, then aetool's learned post-filter for that codec: "
                      + ("the one --model names for the codecs it serves, the installed default for the others"
                         if args.filter_model else "the installed default post-filters") +
                      "), so the bytes and the bpp are the base's and a BD-rate of X + filter against X is the gain "
                      "of the learned decoder alone. Decode s/MP = that whole command (classical decode, filter, "
                      "start-up and model loading); encode is the base's. Post-filters used (as aetool reports): "
                      + "; ".join(f"{LABELS[f]}: {', '.join(f'`{x}`' for x in used[f])}" for f in filtered)
                      + ". Sweeps: " + "; ".join(f"{LABELS[f]} {','.join(f'{q:g}' for q in args.sweeps[f])}"
                                                 for f in filtered) + "."]
    if "aetool" in args.methods:
        lines += ["", f"aetool: {info.get('aetool_version') or 'version unknown'}, model {info['model_label']}, "
                      f"qualities {','.join(f'{q:g}' for q in args.sweeps['aetool'])}; run as `aetool compress IN -o "
                      "OUT --quality Q -q --json --overwrite` and `aetool decompress CODED -o DEC --format png -q --json "
                      "--overwrite` with its other defaults (the codec's transforms run in fp32 whatever "
                      "`--precision`)."]
    if info.get("plot_rel"):
        lines += ["", f"![PSNR against bpp, one panel per set]({info['plot_rel']})"]
    pairs = [("aetool", b) for b in BASELINES if b in ran] if "aetool" in ran else []
    if pairs:
        lines += ["", "### BD-rate of aetool (PSNR)", "", bd_table(bd, args.sets, pairs),
                  "", "### BD-rate of aetool (MS-SSIM in dB, -10 log10(1 - MS-SSIM), cubic)", "",
                  bd_table(bd, args.sets, pairs, "ms_ssim_db_cubic")]
    ctx = [(b, "jpeg") for b in BASELINES if b in ran and b != "jpeg"] if "jpeg" in ran else []
    if ctx:
        lines += ["", "### BD-rate of the other baselines against JPEG (PSNR; context)", "", bd_table(bd, args.sets, ctx)]
    learned = [(f, FILTERED[f]) for f in filtered]
    if learned:
        lines += ["", "### BD-rate of the learned decoder (PSNR)", "",
                  "The same files decoded by aetool (post-filter) and by the codec alone: negative = the filter "
                  "gives the PSNR of the plain decode with that many % fewer bits.", "",
                  bd_table(bd, args.sets, learned, short=True),
                  "", "### BD-rate of the learned decoder (MS-SSIM in dB, -10 log10(1 - MS-SSIM), cubic)", "",
                  bd_table(bd, args.sets, learned, "ms_ssim_db_cubic", short=True)]
    vs_avif = [(a, "avif") for a in ran if a != "avif"] if "avif" in ran else []
    if vs_avif:
        lines += ["", "### BD-rate against AVIF (PSNR)", "", bd_table(bd, args.sets, vs_avif, by_pair=True)]
    lines += ["", "### Targets", "",
              md_table(["target", "scope", "measured", "needed", "margin", "result"],
                       [[r["target"], r["scope"], r["measured"], r["needed"], r["margin"], r["result"]]
                        for r in target_rows])]
    lines += ["", "### Speed (s/MP of input)", "", speed_table(results, ran, args.sets)]
    if filtered:
        lines += ["", "A + aetool filter method encodes nothing (it decodes its base's files): its encode is \"–\", "
                      "its decode is the whole `aetool decompress` command."]
    if args.limit:
        lines += ["", "With --limit the folders are small, so start-up (interpreter, imports, model loading) "
                      "weighs heavily in s/MP."]
    if info["machine"].get("gpu") and "aetool" in ran:
        lines += ["", "A GPU was present: aetool may have used it (its timings are not CPU-only)."]
    for n in args.sets:
        lines += ["", f"### {n}: rate and distortion per point", "", points_table(results, ran, n)]
    if rc is not None:
        lines += ["", "### Rate control (aetool --bpp, --size, --psnr)", "",
                  f"One `aetool compress` per target over each folder. Miss = (actual - target) / target for --bpp and "
                  f"--size (actual bpp or file bytes; KB read as 1000 bytes), actual PSNR - target for --psnr (the "
                  f"file decoded with `aetool decompress`). Tolerance: bpp and size at or under the target by at most "
                  f"{100 * RATE_TOLERANCE:.0f} %; PSNR at or above the target by at most {PSNR_TOLERANCE} dB. Where a "
                  f"target lies beyond the model's range for an image (a size below its quality-1 file, a PSNR above "
                  f"its quality-8 result, and the like), aetool writes the nearest end with a warning, as it should: "
                  f"that miss is excused and counted apart, and a target every image misses that way is n/a. "
                  f"'Reachable' = the images whose target was in range. PASS = every image within.", "",
                  rc_table(rc, args.sets)]
    if extra := notes(results, args.methods, args.sets, unavailable):
        lines += ["", "Notes:", ""] + extra
    return "\n".join(lines) + "\n"


def plot(path: Path, results, methods, sets, counts, max_bpp: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if max_bpp is None:
        ours = [c["bpp"] for n in sets for c in curve(results, "aetool", n)]
        if not ours:  # without aetool, the learned decoder's curves set the scale
            ours = [c["bpp"] for f in FILTERED if f in methods for n in sets for c in curve(results, f, n)]
        max_bpp = max(1.0, 1.25 * max(ours)) if ours else 3.0
    styles = {"aetool": ("C3", "o", 2.2), "jpeg": ("C0", "s", 1.3), "webp": ("C2", "^", 1.3),
              "avif": ("C1", "D", 1.3), "jxl": ("C4", "v", 1.3)}
    fig, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4.2), squeeze=False)
    for ax, n in zip(axes[0], sets):
        ys = []
        for m in methods:
            pts = curve(results, m, n)
            if not pts:
                continue
            colour, marker, lw = styles[FILTERED.get(m, m)]
            x, y = [c["bpp"] for c in pts], [c["psnr"] for c in pts]
            if m in FILTERED:  # the learned decoder: its base's colour, dashed, hollow markers
                ax.plot(x, y, color=colour, marker=marker, markersize=5, linewidth=lw, linestyle="--",
                        markerfacecolor="none", label=LABELS[m])
            else:
                ax.plot(x, y, color=colour, marker=marker, markersize=4, linewidth=lw, label=LABELS[m])
            ys += [yy for xx, yy in zip(x, y) if xx <= max_bpp]
        ax.set_xlim(0, max_bpp)
        if ys:
            ax.set_ylim(min(ys) - 0.5, max(ys) + 0.5)
        ax.set_title(f"{n} ({counts[n][0]} of {counts[n][1]} images)")
        ax.set_xlabel("bits per pixel (whole file)")
        ax.set_ylabel("RGB PSNR (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ================================================================= main
def aetool_status(args) -> tuple[str | None, str | None]:
    """(why aetool cannot run, or None; its --version)."""
    try:
        proc = subprocess.run(resolve_command(args.aetool) + ["compress", "--help"], capture_output=True,
                              text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {args.aetool}: {exc}", None
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        return f"`aetool compress --help` failed ({tail[-1].strip() if tail else proc.returncode})", None
    return None, aetool_version(args)


def aetool_version(args) -> str | None:
    try:
        ver = subprocess.run(resolve_command(args.aetool) + ["--version"], capture_output=True, text=True, timeout=120)
        return (ver.stdout.strip() or None) if ver.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def filter_status(args, method: str) -> tuple[str | None, list[str]]:
    """(why the learned decoder of `method` cannot run, or None; the post-filters aetool reports):
    one small image coded by the base codec, decoded by the same command as the benchmark's."""
    from PIL import Image

    base = FILTERED[method]
    with tempfile.TemporaryDirectory(prefix="compress-filter-check-") as tmp:
        enc, dec = Path(tmp) / "enc", Path(tmp) / "dec"
        enc.mkdir()
        y, x = np.mgrid[0:64, 0:64]
        rgb = np.stack([4 * x, 4 * y, 2 * (x + y)], axis=-1).astype(np.uint8)
        try:
            _encoder(base)(Image.fromarray(rgb, "RGB"), 50, enc / ("check" + EXT[base]))
        except Exception as exc:
            return f"cannot write a {LABELS[base]} file to check it ({type(exc).__name__}: {exc})", []
        run = run_timed(filter_command(args, enc, dec), 1)
        lines = json_lines(run.stdout)
        if run.error:
            return f"`aetool decompress` of a {LABELS[base]} file failed: {failure(run)}", []
        return None, sorted({str(o["filter"]) for o in lines if o.get("filter")})


def model_label(args) -> str:
    if args.model:
        return f"`{args.model}`"
    for p in sorted((ROOT / "weights").glob("*.json")):
        try:
            card = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(card, dict) and card.get("task") == "compress" and card.get("default"):
            return f"shipped default `{p.stem}`"
    return "shipped default"


def card_metrics(data: dict) -> dict:
    """The card's `metrics` from a finished run's JSON (--out-json): BD-rates of aetool against
    each baseline per set (PSNR, cubic), its s/MP, and where it came from."""
    m: dict = {"bd_rate_percent_psnr": {}, "protocol": "docs/protocol.md, compression (benchmarks/compress.py)",
               "measured": data["date"], "machine": machine_line(data["machine"]), "command": data["command"]}
    for name, per in data["bd_rate"].items():
        for base, v in per.get("aetool", {}).items():
            if base in BASELINES and v.get("cubic") is not None:
                m["bd_rate_percent_psnr"].setdefault(name, {})[base] = round(v["cubic"], 1)
    for row in data["targets"]:
        if row["target"].startswith(("encode", "decode")):
            m[row["target"].split()[0] + "_s_per_mp"] = float(row["measured"].split()[0])
    return m


def update_card(results_json: Path) -> str:
    """Write card_metrics of a full run into the card of the model it measured (the shipped
    default unless the run named one); a run with --limit is refused."""
    from aetool.registry import default_model, find_card

    data = json.loads(Path(results_json).read_text())
    if data.get("limit"):
        raise SystemExit("--update-card needs a run over whole sets (it had --limit)")
    card = find_card(data["model"]) if data.get("model") else default_model("compress", 3)
    path = card.path.with_suffix(".json")
    raw = json.loads(path.read_text())
    raw["metrics"] = card_metrics(data)
    path.write_text(json.dumps(raw, indent=2) + "\n")
    return f"wrote the metrics of {path}"


def update_filter_cards(results_json: Path) -> str:
    """Write the learned decoder's BD-rates of a full run (--methods with +filter) into the cards of
    the default post-filters: against the codec's own decode and against AVIF, per set (PSNR, cubic)."""
    from aetool.registry import default_model

    data = json.loads(Path(results_json).read_text())
    if data.get("limit"):
        raise SystemExit("update-filter-cards needs a run over whole sets (it had --limit)")
    written = []
    for f, base in FILTERED.items():
        if f not in data["results"]:
            continue
        own = {n: round(per[f][base]["cubic"], 1) for n, per in data["bd_rate"].items()
               if per.get(f, {}).get(base, {}).get("cubic") is not None}
        vs_avif = {n: round(per[f]["avif"]["cubic"], 1) for n, per in data["bd_rate"].items()
                   if per.get(f, {}).get("avif", {}).get("cubic") is not None}
        path = default_model("denoise", 3, codec=base).path.with_suffix(".json")
        raw = json.loads(path.read_text())
        metrics = raw.setdefault("metrics", {})
        metrics.setdefault("bd_rate_vs_own_codec", {})[base] = own
        metrics.setdefault("bd_rate_vs_avif", {})[base] = vs_avif
        metrics["learned_decoder"] = {"protocol": "docs/protocol.md, compression: the learned decoder "
                                                  "(benchmarks/compress.py, section compress-filter)",
                                      "measured": data["date"], "machine": machine_line(data["machine"])}
        path.write_text(json.dumps(raw, indent=2) + "\n")
        written.append(f"{path.name} ({base})")
    return "wrote the learned-decoder metrics of " + (", ".join(written) or "no card (no +filter method ran)")


def main(argv=None) -> int:
    prog = sys.argv[0] if argv is None else __file__
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["codec"]:
        return codec_main(argv[1:])
    if argv[:1] == ["update-filter-cards"]:  # python benchmarks/compress.py update-filter-cards RESULTS.json
        print(update_filter_cards(Path(argv[1]) if len(argv) > 1
                                  else ROOT / "benchmarks" / "results" / "compress-filter.json"))
        return 0
    if argv[:1] == ["update-card"]:  # python benchmarks/compress.py update-card [RESULTS.json]
        print(update_card(Path(argv[1]) if len(argv) > 1 else ROOT / "benchmarks" / "results" / "compress.json"))
        return 0
    args = parse_args(argv)
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "command": shlex.join([sys.executable, prog] + argv),
            "data": str(args.data.resolve()), "limit": args.limit, "methods": args.methods,
            "sweeps": args.sweeps, "repeats": args.repeats, "versions": versions(),
            "bd_rate_method": "cubic polynomial fit of ln(bpp) against PSNR (VCEG-M33); pchip as a check"}
    unavailable: dict[str, str] = {}
    info["filter_model"] = args.filter_model
    info["filters"] = {}
    for m in args.methods:
        if m in FILTERED:
            base = FILTERED[m]
            if base in unavailable:
                why = f"it decodes {LABELS[base]}'s files and {LABELS[base]} is not run"
            else:
                if "aetool_version" not in info:
                    info["aetool_version"] = aetool_version(args)
                why, info["filters"][m] = filter_status(args, m)
        elif m == "aetool":
            why, info["aetool_version"] = aetool_status(args)
            info["model_label"] = model_label(args)
            try:
                info["aetool_cpu_precision"] = cpu_precision()
            except Exception:  # an older aetool: the report then says "None"
                info["aetool_cpu_precision"] = None
        else:
            try:
                _encoder(m)
                why = None
            except RuntimeError as exc:
                why = str(exc)
        if why:
            unavailable[m] = why
            print(f"{LABELS[m]}: not run, {why}", file=sys.stderr, flush=True)
    info["unavailable"] = unavailable
    work = args.work or Path(tempfile.mkdtemp(prefix="compress-bench-"))
    results: dict = {m: {} for m in args.methods if m not in unavailable}
    rc = {} if args.rate_control and "aetool" in results else None
    counts = {}
    try:
        for name in args.sets:
            folder = args.set_dirs.get(name, args.data / "test" / "denoise" / name)
            paths = list_images(folder) if folder.is_dir() else []
            if not paths:
                raise SystemExit(f"no images in {folder}")
            used = paths[:args.limit]
            counts[name] = (len(used), len(paths))
            refs = [(p.name, read_image(p, "RGB")) for p in used]
            mp = megapixels(r for _, r in refs)
            inp = input_folder(folder, used, work, name, len(used) < len(paths))
            for method in results:
                for q in args.sweeps[method]:
                    cell = run_point(args, method, q, name, inp, refs, mp, work)
                    results[method].setdefault(name, {})[qkey(q)] = cell
                    msg = cell.get("error") or (f"{cell['bpp']:.3f} bpp, {cell['psnr']:.2f} dB, MS-SSIM "
                                                f"{f2(cell['ms_ssim'], '{:.4f}')}, encode "
                                                f"{f2(cell['encode'].get('s_per_mp'), '{:.3f}')} / decode "
                                                f"{f2(cell['decode'].get('s_per_mp'), '{:.3f}')} s/MP")
                    print(f"{name} {method} {qkey(q)}: {msg}", file=sys.stderr, flush=True)
            if rc is not None:
                rc[name] = rate_control(args, name, inp, refs, mp, work)
                for e in rc[name]:
                    print(f"{name} rate control --{e['kind']} {e['target']}: {e['result']}, "
                          f"{e['images_ok']} of {len(e['images'])} within"
                          + (f", mean miss {e['mean_miss']:+.4f}" if "mean_miss" in e else "")
                          + (f" ({e['error']})" if e.get("error") else ""), file=sys.stderr, flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    ran = list(results)
    bd: dict = {}
    for n in args.sets:
        for a, b in bd_pairs(ran):
            bd.setdefault(n, {}).setdefault(a, {})[b] = bd_entry(results, a, b, n)
    target_rows = targets(results, bd, args.sets, ran, unavailable)
    if args.plot:
        plot_path = Path(args.plot)
        try:
            plot(plot_path, results, ran, args.sets, counts, args.plot_max_bpp)
            info["plot"] = str(plot_path)
            info["plot_rel"] = os.path.relpath(plot_path.resolve(), args.out_md.resolve().parent)
        except Exception as exc:  # the numbers matter more than the picture
            print(f"the plot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    text = report(args, info, counts, results, bd, target_rows, rc, unavailable)
    write_section(args.out_md, args.section, text)
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(
        {**info, "images": {s: {"used": n, "in_set": t} for s, (n, t) in counts.items()}, "results": results,
         "bd_rate": bd, "targets": target_rows, "rate_control": rc}, indent=1) + "\n")
    print(text)
    print(f"wrote {args.out_md} and {args.out_json}" + (f" and {args.plot}" if args.plot else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
