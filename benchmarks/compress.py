"""Compression benchmark: `aetool compress` / `aetool decompress` against Pillow's JPEG, WebP and
AVIF encoders and JPEG XL (pillow-jxl-plugin), and aetool's learned decoder for JPEG, WebP and AVIF
files, by the protocol of docs/protocol.md ("Rules common to every task" and "Speed"; the
compression rules are those written out below and in the report).

Methods (--methods; default aetool,jpeg,webp,avif,jxl,progressive,jpeg-progressive):
- aetool: the learned .aei codec (--model names it; default the shipped one), --qualities 1-8;
- jpeg, webp, avif, jxl: the baselines, run by this script's `codec` helper, quality 0-100;
- progressive: the progressive .aei codec (recurrent autoencoder, --progressive-model, default
  compress-progressive): each folder encoded once with all the model's iterations (`aetool compress
  --model M`, timed: its encode s/MP), then for each iteration count k of --progressive-iterations
  (default 1,...,16) cut with `aetool truncate --iterations k` (no re-encoding; the same bits as
  `--quality k`) and decoded with `aetool decompress` (timed: decode s/MP); bpp = the cut file's bytes;
- jpeg-progressive: progressive JPEG (Pillow, progressive=True, otherwise as jpeg), the JPEG grid
  unless --jpeg-progressive-qualities;
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

With progressive in --methods, the progressive view ("prefix", --prefixes, default 1,2,5,10,15,
20,25,30,40,50,60,70,80,90,100 %): each image's full progressive file cut at N = floor(p x size)
bytes and decoded by `aetool decompress` (the complete iterations; a cut before the end of the first
iteration decodes to nothing: no image), against a progressive JPEG of the same image whose whole
file is the largest at or under the .aei file's size (quality 1-100, Pillow), cut at the same N bytes,
the EOI marker appended and decoded by Pillow with ImageFile.LOAD_TRUNCATED_IMAGES (a cut before the
data of its first scan decodes to nothing, as Pillow then returns a uniform fill: no image). Per set
and prefix the mean PSNR of each, and the target: aetool's preview better at every prefix from 10 %
(--prefix-target-from). Plot --prefix-plot, example picture --prefix-example.

--rate-control adds the check of aetool's rate control: `--bpp B`, `--size S` and `--psnr P`
targets, the per-image miss against the target, and whether each is within the tolerance.

It writes a markdown section (between <!-- compress:begin --> and <!-- compress:end --> of
--out-md, or those of --section), a JSON file with every per-image number, and a rate-distortion
plot (PSNR against bpp, one panel per set, one curve per method; a +filter curve dashed, with
hollow markers, in its base's colour).

Full run:
    python benchmarks/heldout_photos.py /tmp/heldout
    python benchmarks/compress.py --sets kodak24,cbsd68,heldout=/tmp/heldout/colour --rate-control
The progressive codec quickly, a checkpoint (and the script's self-check, no data):
    python benchmarks/compress.py --methods progressive,jpeg-progressive,jpeg --sets kodak24 --limit 2 \
        --progressive-model /tmp/p.safetensors --out-md /tmp/c.md --out-json /tmp/c.json --plot /tmp/c.png \
        --prefix-plot /tmp/prefix.png --prefix-example /tmp/prefix-example.png
    python benchmarks/compress.py selfcheck [--progressive-model /tmp/p.safetensors]
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
METHODS = ["aetool", "jpeg", "jpeg+filter", "webp", "webp+filter", "avif", "avif+filter", "jxl", "progressive",
           "jpeg-progressive"]
BASELINES = ["jpeg", "webp", "avif", "jxl", "jpeg-progressive"]
# The learned decoder: the base codec's own files, decoded by `aetool decompress` (the codec's
# decoder, then aetool's post-filter for that codec).
FILTERED = {"jpeg+filter": "jpeg", "webp+filter": "webp", "avif+filter": "avif"}
# What runs without --methods: the learned codec and the baselines (the +filter methods on request).
DEFAULT_METHODS = ["aetool", "jpeg", "webp", "avif", "jxl", "progressive", "jpeg-progressive"]
SETS = ["kodak24", "cbsd68"]
EXT = {"aetool": ".aei", "jpeg": ".jpg", "webp": ".webp", "avif": ".avif", "jxl": ".jxl", "progressive": ".aei",
       "jpeg-progressive": ".jpg"}
LABELS = {"aetool": "aetool", "jpeg": "JPEG", "webp": "WebP", "avif": "AVIF", "jxl": "JPEG XL",
          "progressive": "aetool progressive", "jpeg-progressive": "progressive JPEG"}
# The learned codecs (.aei): the BD-rate of each is taken against every other method.
LEARNED = ("aetool", "progressive")
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
# The progressive codec's targets: BD-rate (PSNR) against progressive JPEG, percent, on every set;
# the progressive view: aetool's preview of the first N bytes better (mean PSNR) than progressive
# JPEG's at every prefix from PREFIX_TARGET_FROM % of the file.
TARGET_BD_PROGRESSIVE = -20.0
PROGRESSIVE_ITERATIONS = list(range(1, 17))
PROGRESSIVE_MODEL = "compress-progressive"
PREFIXES = [1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100]  # percent of the .aei file
PREFIX_TARGET_FROM = 10.0
EXAMPLE_PREFIXES = [5, 10, 25, 100]
EXAMPLE_CROP = (384, 256)
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
    if method == "jpeg-progressive":
        return lambda im, q, path: im.save(path, "JPEG", quality=int(round(q)), subsampling="4:2:0", optimize=True,
                                           progressive=True)
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
                from aetool.pngstream import write_png

                with _open_coded(path) as im, open(target, "wb") as f:
                    # PNG written by aetool's writer, as `aetool decompress` writes it, so decode times compare
                    write_png(f, np.asarray(im.convert("RGB")))
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
        if m == "jpeg-progressive":
            ap.add_argument(f"--{m}-qualities", type=numbers, default=None,
                            help=f"{LABELS[m]}'s quality sweep (0-100; default: the same as --jpeg-qualities)")
            continue
        ap.add_argument(f"--{m}-qualities", type=numbers, default=list(BASELINE_QUALITIES),
                        help=f"{LABELS[m]}'s quality sweep (0-100; default {','.join(map(str, BASELINE_QUALITIES))})")
    ap.add_argument("--progressive-model", default=PROGRESSIVE_MODEL,
                    help="the progressive .aei codec of the progressive method: passed to its `aetool compress "
                         "--model` and `aetool decompress --model` (a name or a .safetensors file from `aetool train "
                         f"compress --arch recurrent`; default {PROGRESSIVE_MODEL})")
    ap.add_argument("--progressive-iterations", type=lambda t: [int(x) for x in csv(t)],
                    default=list(PROGRESSIVE_ITERATIONS),
                    help="the progressive method's points: iteration counts kept, each cut from one file of all "
                         "the model's iterations (default 1,2,...,16)")
    ap.add_argument("--prefixes", type=numbers, default=list(PREFIXES),
                    help="the progressive view: prefixes of each .aei file, percent of its bytes (default "
                         f"{','.join(map(str, PREFIXES))}; the example's {','.join(map(str, EXAMPLE_PREFIXES))} "
                         "are added when --prefix-example is on)")
    ap.add_argument("--prefix-target-from", type=float, default=PREFIX_TARGET_FROM,
                    help="the progressive view's target holds from this prefix (percent) up (default 10)")
    ap.add_argument("--no-prefix", action="store_true",
                    help="leave out the progressive view (it runs whenever progressive is in --methods)")
    ap.add_argument("--prefix-plot", default=str(ROOT / "docs" / "progressive-prefix.png"),
                    help="the progressive view's plot, mean PSNR against prefix, one panel per set (default "
                         "docs/progressive-prefix.png; '' or 'none' for none)")
    ap.add_argument("--prefix-example", default=str(ROOT / "docs" / "progressive-prefix-example.png"),
                    help="the progressive view of one photo (the first of a set named heldout, else kodim23, "
                         "else the first image of the first set) at "
                         f"{', '.join(f'{p} %%' for p in EXAMPLE_PREFIXES)} of its bytes, aetool and progressive "
                         "JPEG (default docs/progressive-prefix-example.png; '' or 'none' for none)")
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
    if args.jpeg_progressive_qualities is None:
        args.jpeg_progressive_qualities = list(args.jpeg_qualities)
    if any(not 1 <= k <= 64 for k in args.progressive_iterations):
        ap.error("--progressive-iterations must lie in 1..64")
    args.sweeps["progressive"] = sorted(set(args.progressive_iterations))
    if any(not 0 < p <= 100 for p in args.prefixes):
        ap.error("--prefixes must lie in (0, 100]")
    for m in BASELINES:
        qs = sorted(set(getattr(args, f"{m.replace('-', '_')}_qualities")))
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
    for opt in ("prefix_plot", "prefix_example"):
        if getattr(args, opt).strip().lower() in ("", "none"):
            setattr(args, opt, None)
    if args.prefix_example:
        args.prefixes = sorted(set(args.prefixes) | set(EXAMPLE_PREFIXES))
    args.prefixes = sorted(set(args.prefixes))
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


# ================================================================= the progressive codec
def progressive_command(args, step: str, inp: Path, out: Path, extra: list[str]) -> list[str]:
    """`aetool compress|decompress|truncate` of the progressive method; --progressive-model is given to
    compress and decompress (truncate needs no model)."""
    cmd = resolve_command(args.aetool) + [step, str(inp), "-o", str(out), "-q", "--json", "--overwrite"] + extra
    return cmd + (["--model", args.progressive_model] if step in ("compress", "decompress") else [])


def progressive_tables(args, files: list[Path]) -> dict:
    """`aetool info --json` of the full progressive files: {stem: info record} (its iteration table
    gives the bytes a file cut after each iteration has)."""
    if not files:
        return {}
    proc = subprocess.run(resolve_command(args.aetool) + ["info", "--json"] + [str(f) for f in files],
                          capture_output=True, text=True)
    return {Path(o["file"]).stem: o for o in json_lines(proc.stdout) if isinstance(o.get("file"), str)}


def progressive_status(args) -> str | None:
    """Why the progressive method cannot run, or None: one small image through `aetool compress
    --model M` and `aetool decompress`, as the benchmark runs them."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="compress-progressive-check-") as tmp:
        inp, enc, dec = Path(tmp) / "in", Path(tmp) / "enc", Path(tmp) / "dec"
        inp.mkdir()
        y, x = np.mgrid[0:64, 0:64]
        Image.fromarray(np.stack([4 * x, 4 * y, 2 * (x + y)], axis=-1).astype(np.uint8), "RGB").save(inp / "c.png")
        run = run_timed(progressive_command(args, "compress", inp, enc, []), 1)
        if run.error:
            return f"`aetool compress --model {args.progressive_model}` failed: {failure(run)}"
        info = progressive_tables(args, sorted(enc.glob("*.aei"))).get("c", {})
        if not info.get("iteration_table"):
            return (f"--progressive-model {args.progressive_model} does not write progressive files (no iteration "
                    f"table in `aetool info --json`: {info.get('format', 'no record')})")
        run = run_timed(progressive_command(args, "decompress", enc, dec, ["--format", "png"]), 1)
        if run.error:
            return f"`aetool decompress` of a progressive file failed: {failure(run)}"
    return None


def progressive_card(model: str) -> str | None:
    """A line on the progressive model measured: its card (beside a .safetensors file, or the installed
    one of that name): name, sha256 prefix, training steps; None when there is no card to read."""
    path = Path(model).with_suffix(".json") if model.endswith(".safetensors") else ROOT / "weights" / f"{model}.json"
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    steps = (card.get("training") or {}).get("steps")
    return (f"card {path.name}: {card.get('name')}, sha256 {str(card.get('sha256', ''))[:16]}"
            + (f", {steps} training steps" if steps is not None else ""))


def progressive_pictures(args, full: Path, stems) -> dict:
    """{stem: [uint8 RGB picture after iteration 1, 2, ...]} of the full progressive files, decoded
    in one pass each (ProgressiveCodec.decode_each: the same pixels as `aetool decompress
    --iterations k`, or of the file truncated or cut to k iterations; tested in
    tests/test_progressive.py and checked again by this script on the command line)."""
    sys.path.insert(0, str(ROOT))
    from aetool.container import load
    from aetool.tasks.progressive import ProgressiveCodec

    codec = ProgressiveCodec(args.progressive_model)
    out = {}
    for stem in stems:
        path = full / (stem + ".aei")
        if path.is_file():
            pics = codec.decode_each(load(path))
            out[stem] = [np.round(np.clip(np.repeat(p.pixels, 3 // p.pixels.shape[2], axis=2), 0, 1) * 255)
                         .astype(np.uint8) for p in pics]
    return out


def run_progressive(args, name: str, inp: Path, refs, mp: float, work: Path, done) -> dict:
    """The progressive method on one folder: one timed `aetool compress --model M` with all the model's
    iterations, then per iteration count k a `aetool truncate --iterations k` of those files (timed
    apart, not part of encode or decode); each truncated file scored as any other point (its bytes
    are the whole file). The decode timing is `aetool decompress` of the whole files (every
    iteration); the pictures of the points k < the model's iterations come from one decoder pass
    per image (progressive_pictures), and `aetool decompress` of the truncated files at k = 1 must
    give the same pixels (else the point is an error): decoding each k on the command line would
    cost 8.5 times as many decoder iterations. done(cell) takes each point's cell. Returns
    {stem: `aetool info` record of the full file}."""
    from PIL import Image

    full = work / "enc" / "progressive" / name / "full"
    erun = run_timed(progressive_command(args, "compress", inp, full, []), args.repeats, before=fresh(full))
    enc_timing = timing(erun, mp)
    enc_timing["note"] = "one encode per folder of all the model's iterations; each point is cut from it"
    enc_lines = by_input(erun.stdout)
    files = {fname: find_file(full, Path(fname).stem, ".aei", enc_lines.get(fname)) for fname, _ in refs}
    tables = progressive_tables(args, [f for f in files.values() if f])
    pictures = progressive_pictures(args, full, [Path(f).stem for f, p in files.items() if p])
    top = max(args.sweeps["progressive"])
    for k in args.sweeps["progressive"]:
        enc = work / "enc" / "progressive" / name / qkey(k)
        dec = work / "dec" / "progressive" / name / qkey(k)
        cell: dict = {"quality": k, "iterations": k, "megapixels": mp, "encode": dict(enc_timing)}
        tr_lines: dict = {}
        if any(files.values()):
            trun = run_timed(progressive_command(args, "truncate", full, enc, ["--iterations", str(k)]), 1,
                             before=fresh(enc))
            cell["truncate"] = timing(trun, mp)
            tr_lines = by_input(trun.stdout, key=lambda p: Path(p).stem)
        on_command_line = k in (1, top)
        if enc.is_dir() and any(p.suffix.lower() == ".aei" for p in enc.iterdir()) and on_command_line:
            drun = run_timed(progressive_command(args, "decompress", enc, dec, ["--format", "png"]), args.repeats,
                             before=fresh(dec))
            cell["decode"] = timing(drun, mp)
            dec_lines = by_input(drun.stdout, key=lambda p: Path(p).stem)
            dec_fallback = drun.error or None
            for stem, pics in pictures.items():  # the one-pass pictures must be the command line's
                got = find_file(dec, stem, ".png", dec_lines.get(stem))
                if got is not None and len(pics) >= k and not np.array_equal(read_image(got, "RGB"), pics[k - 1]):
                    dec_lines[stem] = {"status": "failed",
                                       "error": "aetool decompress differs from the one-pass decode"}
        elif enc.is_dir() and any(p.suffix.lower() == ".aei" for p in enc.iterdir()):
            fresh(dec)()
            dec_lines = {}
            for stem, pics in pictures.items():
                if len(pics) >= k:
                    Image.fromarray(pics[k - 1], "RGB").save(dec / (stem + ".png"), compress_level=1)
                    dec_lines[stem] = {"status": "ok", "iterations": k, "output": str(dec / (stem + ".png"))}
            cell["decode"] = {"seconds": None, "note": "one-pass decode (timed at k = 1 and at every iteration)"}
            dec_fallback = None
        else:
            cell["decode"] = {"seconds": None, "error": "nothing to decode"}
            dec_lines, dec_fallback = {}, "nothing to decode"
        rows = []
        for fname, ref in refs:
            stem = Path(fname).stem
            line = tr_lines.get(stem) or enc_lines.get(fname)
            coded = find_file(enc, stem, ".aei", tr_lines.get(stem))
            decoded = find_file(dec, stem, ".png", dec_lines.get(stem))
            row = score_image(fname, ref, coded, decoded, line, line_error(dec_lines.get(stem)) or dec_fallback)
            row["iterations"] = k
            table = tables.get(stem, {}).get("iteration_table") or []
            if len(table) < k:
                row.setdefault("error", f"the file has {len(table)} iterations, fewer than {k}")
            elif "bytes" in row:
                row["table_file_bytes"] = table[k - 1]["file_bytes"]
                row["encoder_psnr"] = table[k - 1].get("psnr")
            used = (dec_lines.get(stem) or {}).get("iterations")
            if used is not None and used != k and "error" not in row:
                row["error"] = f"decoded {used} iterations, not {k}"
            rows.append(row)
        cell["images"] = rows
        mismatch = [r["file"] for r in rows if "table_file_bytes" in r and r["table_file_bytes"] != r["bytes"]]
        if mismatch:
            cell["size_mismatch"] = mismatch  # the cut file's size is not what `aetool info` says
        bad = [r for r in rows if "error" in r]
        if bad:
            cell["error"] = (f"{len(bad)} of {len(rows)} images not scored ({bad[0]['file']}: {bad[0]['error']}"
                             + (", ..." if len(bad) > 1 else "") + ")")[:300]
        else:
            cell["bpp"] = float(np.mean([r["bpp"] for r in rows]))
            cell["psnr"] = float(np.mean([r["psnr"] for r in rows]))
            ms = [r.get("ms_ssim") for r in rows]
            cell["ms_ssim"] = float(np.mean(ms)) if all(v is not None for v in ms) else None
        done(cell)
    return tables, pictures


# ================================================================= the progressive view (prefixes)
def jpeg_scan_start(data: bytes) -> int | None:
    """Offset of the first byte after the header of the first SOS (start of scan) segment of a JPEG
    file (where its first scan's coded data begins), or None if the bytes hold no complete one."""
    i = 2 if data[:2] == b"\xff\xd8" else None
    while i is not None and i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:
            end = i + 2 + length
            return end if end <= len(data) else None
        i += 2 + length
    return None


def jpeg_prefix(data: bytes, n: int) -> tuple[np.ndarray | None, dict]:
    """The image that the first n bytes of a (progressive) JPEG file give: the cut bytes with an EOI
    marker appended, decoded by Pillow with ImageFile.LOAD_TRUNCATED_IMAGES (libjpeg then outputs
    what the scans so far hold). None when the cut ends before its first scan's data (Pillow would
    return a uniform fill) or Pillow raises. The dict says why, and how many scans the cut starts."""
    import io

    from PIL import Image, ImageFile

    rec: dict = {"bytes": min(n, len(data))}
    if n >= len(data):
        cut = data
        rec["whole_file"] = True
    else:
        cut = data[:n] + b"\xff\xd9"
    start = jpeg_scan_start(data[:n])
    if start is None or n <= start:
        rec["no_image"] = "cut before the first scan's data"
        return None, rec
    rec["scans_started"] = data[:n].count(b"\xff\xda")
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(io.BytesIO(cut)) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8), rec
    except Exception as exc:  # Pillow refused this cut: no image
        rec["no_image"] = f"Pillow: {type(exc).__name__}: {exc}"[:200]
        return None, rec
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def jpeg_for_budget(rgb: np.ndarray, budget: int) -> tuple[int, bytes]:
    """(quality, file) of the progressive JPEG (the jpeg-progressive encoder) of the image whose size
    is the largest at or under `budget` bytes, over qualities 1-100 (bisection, sizes taken as rising
    with quality, then the next few qualities checked); quality 1 if even that is larger."""
    import io

    from PIL import Image

    im = Image.fromarray(rgb, "RGB")
    enc, cache = _encoder("jpeg-progressive"), {}

    def coded(q: int) -> bytes:
        if q not in cache:
            buf = io.BytesIO()
            enc(im, q, buf)
            cache[q] = buf.getvalue()
        return cache[q]

    if len(coded(1)) > budget:
        return 1, coded(1)
    lo, hi = 1, 100
    if len(coded(100)) <= budget:
        return 100, coded(100)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if len(coded(mid)) <= budget else (lo, mid)
    best = max((q for q in range(lo, min(100, lo + 4) + 1) if len(coded(q)) <= budget), key=lambda q: len(coded(q)))
    return best, coded(best)


def cut_bytes(size: int, percent: float) -> int:
    return size if percent >= 100 else max(1, int(math.floor(size * percent / 100)))


def prefix_view(args, name: str, refs, full: Path, tables: dict, work: Path, example: str | None,
                pictures: dict | None = None) -> dict:
    """The progressive view of one set (see the module's doc): per image and prefix, the PSNR of
    aetool's cut file (`aetool decompress`, one command per prefix over the folder of cut files) and
    of the progressive JPEG of the same budget cut at the same byte. `example` names the image whose
    pictures are kept (under work/example) for the example figure."""
    pcts = args.prefixes
    images, jpegs = [], {}
    for fname, ref in refs:
        stem = Path(fname).stem
        src = full / (stem + ".aei")
        if not src.is_file():
            images.append({"file": fname, "error": "no progressive file"})
            continue
        data = src.read_bytes()
        q, jdata = jpeg_for_budget(ref, len(data))
        jpegs[fname] = jdata
        rec = {"file": fname, "bytes": len(data), "iterations": len(tables.get(stem, {}).get("iteration_table") or []),
               "jpeg_quality": q, "jpeg_bytes": len(jdata), "jpeg_over_budget": len(jdata) > len(data), "points": []}
        for p in pcts:
            cutdir = work / "prefix" / name / f"p{p:g}"
            cutdir.mkdir(parents=True, exist_ok=True)
            (cutdir / (stem + ".aei")).write_bytes(data[:cut_bytes(len(data), p)])
        images.append(rec)
    exdir = work / "example"
    from aetool.container import unpack

    checked = min(pcts, key=lambda v: abs(v - 25))  # the prefix decoded on the command line too
    for p in pcts:
        cutdir, dec = work / "prefix" / name / f"p{p:g}", work / "prefix-dec" / name / f"p{p:g}"
        lines: dict = {}
        fallback = "no cut files"
        if cutdir.is_dir() and (pictures is None or p == checked):
            run = run_timed(progressive_command(args, "decompress", cutdir, dec, ["--format", "png"]), 1,
                            before=fresh(dec))
            lines, fallback = by_input(run.stdout, key=lambda s: Path(s).stem), run.error
        if cutdir.is_dir() and pictures is not None:
            # The picture of the iterations whole in the cut, from the one-pass decode; at the
            # checked prefix it must equal the command line's decode of the cut file.
            fresh(dec)() if p != checked else None
            for cut in sorted(cutdir.glob("*.aei")):
                stem = cut.stem
                why = "truncated: the cut ends inside the first iteration: nothing can be decoded"
                try:
                    k = len(unpack(cut.read_bytes()).iterations)
                except Exception as exc:  # noqa: BLE001 - a cut before the table: no image
                    k, why = 0, str(exc)
                pics = pictures.get(stem) or []
                if p == checked:
                    got = find_file(dec, stem, ".png", lines.get(stem))
                    if got is not None and 0 < k <= len(pics) and not np.array_equal(read_image(got, "RGB"),
                                                                                      pics[k - 1]):
                        lines[stem] = {"status": "failed", "error": "aetool decompress of the cut file differs "
                                       "from the one-pass decode"}
                    continue
                if k == 0 or k > len(pics):
                    lines[stem] = {"status": "failed", "error": why if k == 0 else "no one-pass picture"}
                    continue
                from PIL import Image

                Image.fromarray(pics[k - 1], "RGB").save(dec / (stem + ".png"), compress_level=1)
                lines[stem] = {"status": "ok", "iterations": k, "output": str(dec / (stem + ".png"))}
                if k < len(tables.get(stem, {}).get("iteration_table") or []):
                    lines[stem]["warning"] = "cut: decoded the whole iterations"
        for rec, (fname, ref) in zip(images, refs):
            if "error" in rec:
                continue
            stem = Path(fname).stem
            n = cut_bytes(rec["bytes"], p)
            pt: dict = {"percent": p, "bytes": n}
            line = lines.get(stem) or {}
            decoded = find_file(dec, stem, ".png", line)
            if decoded is not None and not line_error(line):
                out = read_image(decoded, "RGB")
                pt["aetool_psnr"] = psnr(ref, out) if out.shape == ref.shape else None
                pt["aetool_iterations"] = line.get("iterations")
                if line.get("warning"):
                    pt["aetool_warning"] = str(line["warning"])[:200]
                if fname == example:
                    exdir.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(decoded, exdir / f"aetool-p{p:g}.png")
            else:
                pt["aetool_psnr"] = None
                pt["aetool_no_image"] = (line_error(line) or fallback or "no output")[:200]
            arr, jrec = jpeg_prefix(jpegs[fname], n)
            pt["jpeg_psnr"] = psnr(ref, arr) if arr is not None and arr.shape == ref.shape else None
            pt["jpeg_fraction"] = min(n, len(jpegs[fname])) / len(jpegs[fname])
            pt["jpeg"] = jrec
            if fname == example and arr is not None:
                from PIL import Image

                exdir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr, "RGB").save(exdir / f"jpeg-p{p:g}.png")
            rec["points"].append(pt)
    return {"prefixes": pcts, "images": images, "summary": prefix_summary(images, pcts, args.prefix_target_from)}


def prefix_summary(images: list[dict], pcts, target_from: float) -> list[dict]:
    """Per prefix: each method's mean PSNR over the images that decoded and how many did, the mean
    difference over the images both decoded, and whether the target holds there (from target_from %
    up): every image has an aetool preview and its mean PSNR beats progressive JPEG's (over the
    images both decoded; where JPEG decoded none, aetool's preview is all there is)."""
    ok = [r for r in images if "error" not in r]
    out = []
    for i, p in enumerate(pcts):
        pts = [r["points"][i] for r in ok]
        a = [t["aetool_psnr"] for t in pts if t.get("aetool_psnr") is not None]
        j = [t["jpeg_psnr"] for t in pts if t.get("jpeg_psnr") is not None]
        both = [(t["aetool_psnr"], t["jpeg_psnr"]) for t in pts
                if t.get("aetool_psnr") is not None and t.get("jpeg_psnr") is not None]
        s: dict = {"percent": p, "images": len(images), "mean_bytes": float(np.mean([t["bytes"] for t in pts])) if pts else None,
                   "aetool_decoded": len(a), "jpeg_decoded": len(j),
                   "aetool_psnr": float(np.mean(a)) if a else None, "jpeg_psnr": float(np.mean(j)) if j else None,
                   "aetool_iterations": (float(np.mean([t["aetool_iterations"] for t in pts
                                                        if t.get("aetool_iterations") is not None]))
                                         if a else None),
                   "jpeg_fraction": float(np.mean([t["jpeg_fraction"] for t in pts])) if pts else None,
                   "paired_difference": float(np.mean([x - y for x, y in both])) if both else None}
        if p >= target_from:
            if len(ok) < len(images) or not ok:
                s["holds"] = False
            elif len(a) < len(images):
                s["holds"] = False
            else:
                s["holds"] = bool(not both or s["paired_difference"] > 0)
        out.append(s)
    return out


def prefix_plot(path: Path, prefix: dict, sets, counts, target_from: float) -> None:
    """Mean PSNR against the prefix (percent of the .aei file's bytes), one panel per set; a point
    where some image had no image is drawn hollow (its mean is over fewer images)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [n for n in sets if n in prefix]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 4.2), squeeze=False)
    for ax, n in zip(axes[0], shown):
        summ = prefix[n]["summary"]
        for key, label, colour, marker in (("aetool", "aetool progressive", "C3", "o"),
                                           ("jpeg", "progressive JPEG", "C0", "s")):
            pts = [(s["percent"], s[f"{key}_psnr"], s[f"{key}_decoded"] == s["images"]) for s in summ
                   if s[f"{key}_psnr"] is not None]
            if not pts:
                continue
            ax.plot([x for x, _, _ in pts], [y for _, y, _ in pts], color=colour, linewidth=1.6, label=label)
            ax.scatter([x for x, _, a in pts if a], [y for _, y, a in pts if a], color=colour, marker=marker, s=22)
            part = [(x, y) for x, y, a in pts if not a]
            if part:
                ax.scatter(*zip(*part), facecolors="none", edgecolors=colour, marker=marker, s=30,
                           label=f"{label}: not every image decoded")
        ax.axvline(target_from, color="0.6", linestyle=":", linewidth=1)
        ax.set_title(f"{n} ({counts[n][0]} of {counts[n][1]} images)")
        ax.set_xlabel("prefix of the .aei file (% of its bytes; JPEG cut at the same byte)")
        ax.set_ylabel("mean RGB PSNR (dB) of what decodes")
        ax.set_xlim(0, 101)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prefix_example(path: Path, exdir: Path, ref: np.ndarray, rec: dict, set_name: str,
                   max_bytes: int = 1_500_000) -> dict:
    """One photo at EXAMPLE_PREFIXES of its .aei file's bytes: a row of aetool's previews and a row of
    progressive JPEG's (the same budget, cut at the same byte), a caption under each; a centre crop
    of EXAMPLE_CROP when the photo is larger, smaller crops while the PNG is over max_bytes. Returns
    what it drew."""
    for crop in (EXAMPLE_CROP, (320, 224), (256, 176)):
        out = _prefix_example(path, exdir, ref, rec, set_name, crop)
        if out["png_bytes"] <= max_bytes:
            break
    return out


def _prefix_example(path: Path, exdir: Path, ref: np.ndarray, rec: dict, set_name: str, crop) -> dict:
    from PIL import Image, ImageDraw, ImageFont

    h, w = ref.shape[:2]
    cw, ch = min(w, crop[0]), min(h, crop[1])
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    try:
        font = ImageFont.load_default(size=13)
        head = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = head = ImageFont.load_default()
    pad, cap, top, left = 8, 34, 30, 0
    cols = [p for p in EXAMPLE_PREFIXES if any(t["percent"] == p for t in rec["points"])]
    W = pad + len(cols) * (cw + pad)
    H = top + 2 * (ch + cap + 22) + pad
    canvas = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(canvas)
    crop_note = f", centre crop {cw}x{ch} of {w}x{h}" if (cw, ch) != (w, h) else ""
    draw.text((pad, 8), f"{rec['file']} ({set_name}{crop_note}): the first N bytes of the .aei file "
                        f"({rec['bytes']} B), and of a progressive JPEG of at most that size "
                        f"(quality {rec['jpeg_quality']}, {rec['jpeg_bytes']} B); PSNR of the whole image",
              fill="black", font=head)
    drawn = {}
    for row, (key, label) in enumerate((("aetool", "aetool progressive"), ("jpeg", "progressive JPEG"))):
        y = top + row * (ch + cap + 22)
        draw.text((pad, y), label, fill="black", font=head)
        y += 20
        for c, p in enumerate(cols):
            x = pad + c * (cw + pad)
            t = next(t for t in rec["points"] if t["percent"] == p)
            f = exdir / f"{key}-p{p:g}.png"
            v = t.get(f"{key}_psnr")
            if f.is_file() and v is not None:
                with Image.open(f) as im:
                    canvas.paste(im.convert("RGB").crop((x0, y0, x0 + cw, y0 + ch)), (x, y))
                extra = (f", {t.get('aetool_iterations')} it." if key == "aetool"
                         else f", {100 * t['jpeg_fraction']:.0f} % of its file")
                text = f"{p:g} % = {t['bytes']} B: {v:.2f} dB{extra}"
            else:
                draw.rectangle((x, y, x + cw - 1, y + ch - 1), fill=(200, 200, 200))
                draw.text((x + 10, y + ch // 2 - 8), "nothing decodes", fill="black", font=head)
                text = f"{p:g} % = {t['bytes']} B: no image"
            draw.text((x, y + ch + 4), text, fill="black", font=font)
            drawn[f"{key} {p:g}"] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)
    return {"file": rec["file"], "set": set_name, "crop": [x0, y0, cw, ch], "psnr": drawn,
            "png_bytes": path.stat().st_size}


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
    """The (codec under test, anchor) pairs whose BD-rate a run computes: each learned codec (aetool,
    progressive) against every other method, every method against JPEG and against AVIF, and each
    +filter against its base."""
    pairs = []
    for a in ran:
        for b in ran:
            if a != b and (a in LEARNED or b in ("jpeg", "avif") or FILTERED.get(a) == b):
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


def targets(results, bd, sets, methods, unavailable=None, prefix=None, prefix_from=PREFIX_TARGET_FROM) -> list[dict]:
    """The target rows. `bd` is the run's {set: {a: {b: bd_entry}}}; `methods` the methods that
    ran; `unavailable` why the others asked for did not; `prefix` the progressive view per set
    (prefix_view), None when it did not run."""
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
    goal = TARGET_BD_PROGRESSIVE
    name = f"progressive vs progressive JPEG BD-rate ≤ {goal:g} %"
    for n in sets:
        e = bd_all(bd, n, "progressive", "jpeg-progressive")
        v = e.get("cubic")
        if v is None:
            why = next((f"{m} not run, see the notes" if m in unavailable else f"{m} not in --methods"
                        for m in ("progressive", "jpeg-progressive") if m not in methods), None)
            add(name, n, "–", f"≤ {goal:.1f} %", "–", None, why or e.get("error", "no BD-rate"))
            continue
        add(name, n, f"{v:+.1f} % (pchip {e['pchip']:+.1f} %)" if e.get("pchip") is not None else f"{v:+.1f} %",
            f"≤ {goal:.1f} %", f"{goal - v:+.1f} points", v <= goal)
    name = f"progressive view: aetool's preview of the first N bytes beats progressive JPEG's (mean PSNR) at every prefix ≥ {prefix_from:g} %"
    for n in sets:
        summ = [s for s in (prefix or {}).get(n, {}).get("summary", []) if "holds" in s]
        if not summ:
            why = ("progressive not run, see the notes" if "progressive" in unavailable
                   else "progressive not in --methods" if "progressive" not in methods
                   else "no prefix at or above the threshold" if prefix and n in prefix else "the view did not run")
            add(name, n, "–", "every prefix", "–", None, why)
            continue
        held = [s for s in summ if s["holds"]]
        diffs = [(s["paired_difference"], s["percent"]) for s in summ if s["paired_difference"] is not None]
        worst = min(diffs) if diffs else None
        missing = [s["percent"] for s in summ if s["aetool_decoded"] < s["images"]]
        measured = (f"holds at {len(held)} of {len(summ)} prefixes"
                    + (f"; smallest mean lead {worst[0]:+.2f} dB at {worst[1]:g} %" if worst else "")
                    + (f"; aetool no image for some photos at {', '.join(f'{p:g} %' for p in missing)}" if missing else ""))
        add(name, n, measured, f"all {len(summ)} prefixes", f"{worst[0]:+.2f} dB" if worst else "–",
            len(held) == len(summ))
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


def progressive_lines(args, info, results, bd, prefix, ran) -> list[str]:
    """The report's progressive part: how it ran, its BD-rates, its speed, and the progressive view."""
    sets = args.sets
    lines = ["", "### Progressive codec (aetool progressive)", "",
             f"Model `{args.progressive_model}`"
             + (f" ({info['progressive_model_card']})" if info.get("progressive_model_card") else "")
             + f"; points: {','.join(str(k) for k in args.sweeps['progressive'])} iterations. Each folder is encoded "
               f"once with all the model's iterations (`aetool compress IN -o FULL -q --json --overwrite --model "
               f"{args.progressive_model}`: its time is the encode s/MP), then for each iteration count k cut without "
               "re-encoding (`aetool truncate FULL -o CUT --iterations k`, the same bits as `--quality k`; not timed "
               "as encode or decode) and decoded (`aetool decompress CUT -o DEC --format png --model ...`: the decode "
               "s/MP, averaged over the points). bpp = the cut file's bytes (checked against `aetool info --json`'s "
               "file_bytes of iteration k). Progressive JPEG: Pillow, progressive=True, otherwise as JPEG (4:2:0, "
               f"optimize=True), qualities {','.join(f'{q:g}' for q in args.sweeps['jpeg-progressive'])}. In the per-point "
               "tables, aetool progressive's quality is its number of iterations."]
    others = [b for b in ["jpeg", "jpeg-progressive", "webp", "avif", "jxl", "aetool"] if b in ran]
    if "progressive" in ran and others:
        pairs = [("progressive", b) for b in others]
        lines += ["", "BD-rate of aetool progressive (PSNR):", "", bd_table(bd, sets, pairs, by_pair=True),
                  "", "BD-rate of aetool progressive (MS-SSIM in dB, cubic):", "",
                  bd_table(bd, sets, pairs, "ms_ssim_db_cubic", by_pair=True)]
    if "progressive" in ran:
        enc, dec = speed(results, "progressive", sets, "encode"), speed(results, "progressive", sets, "decode")
        top = max(args.sweeps["progressive"])
        cells = [results["progressive"].get(n, {}).get(qkey(top), {}) for n in sets]
        cells = [c for c in cells if c.get("decode", {}).get("seconds") is not None and "error" not in c]
        dec_top = (sum(c["decode"]["seconds"] for c in cells) / sum(c["megapixels"] for c in cells)) if cells else None
        mism = [f"{n} {k}" for n in sets for k, c in results["progressive"].get(n, {}).items() if c.get("size_mismatch")]
        lines += ["", f"Speed of aetool progressive (s/MP of input, all sets): encode {f2(enc, '{:.3f}')} (all "
                      f"{top} iterations), decode {f2(dec, '{:.3f}')} (mean over the points), decode of all {top} "
                      f"iterations {f2(dec_top, '{:.3f}')}; the hyperprior aetool and the baselines in the speed table."
                      + (f" Cut files whose size differs from `aetool info`'s table: {', '.join(mism)}." if mism
                         else " Every cut file's size equals `aetool info`'s file_bytes of its iteration.")]
    if prefix:
        lines += ["", "### Progressive view: PSNR of the first N bytes", "",
                  "Each image's full .aei file (all iterations) cut at N = floor(p × its size) bytes and decoded by "
                  "`aetool decompress` (the complete iterations in the cut; nothing before the end of the first: no "
                  "image), against a progressive JPEG of the same image whose whole file is the largest at or under "
                  "the .aei file's size (Pillow quality 1-100, progressive=True, 4:2:0, optimize), cut at the same N "
                  "bytes, EOI (FF D9) appended, decoded by Pillow with `ImageFile.LOAD_TRUNCATED_IMAGES = True` "
                  "(libjpeg outputs what the scans so far hold; a cut before the first scan's data gives Pillow's "
                  "uniform fill: counted as no image). Mean PSNR over the images that decoded (decoded = how many "
                  "of the set's); lead = mean of aetool − JPEG over the images both decoded; the target holds at a "
                  f"prefix ≥ {args.prefix_target_from:g} % when every image has an aetool preview and the lead is "
                  "positive. Iterations = mean complete iterations in the cut; JPEG part = mean share of its own file."]
        if info.get("prefix_plot_rel"):
            lines += ["", f"![mean PSNR against prefix, one panel per set]({info['prefix_plot_rel']})"]
        if info.get("prefix_example_rel"):
            ex = info.get("prefix_example", {})
            lines += ["", f"![{ex.get('file')} at {', '.join(f'{p} %' for p in EXAMPLE_PREFIXES)} of its bytes: "
                          f"aetool progressive above, progressive JPEG below]({info['prefix_example_rel']})"]
        for n in sets:
            if n not in prefix:
                continue
            recs = [r for r in prefix[n]["images"] if "error" not in r]
            qs = [r["jpeg_quality"] for r in recs]
            over = sum(r["jpeg_over_budget"] for r in recs)
            rows = []
            for s in prefix[n]["summary"]:
                holds = "–" if "holds" not in s else ("yes" if s["holds"] else "**no**")
                rows.append([f"{s['percent']:g} %", f2(s["mean_bytes"], "{:.0f}"),
                             f"{s['aetool_decoded']}/{s['images']}", f2(s["aetool_psnr"]),
                             f2(s["aetool_iterations"], "{:.1f}"),
                             f"{s['jpeg_decoded']}/{s['images']}", f2(s["jpeg_psnr"]),
                             f2(s["jpeg_fraction"] and 100 * s["jpeg_fraction"], "{:.0f} %"),
                             f2(s["paired_difference"], "{:+.2f}"), holds])
            lines += ["", f"{n}: .aei files {f2(np.mean([r['bytes'] for r in recs]) if recs else None, '{:.0f}')} B "
                          f"on average; progressive JPEG quality {min(qs) if qs else '–'}-{max(qs) if qs else '–'}"
                          + (f" ({over} image(s) over the budget even at quality 1)" if over else "") + ".", "",
                      md_table(["prefix", "mean N (B)", "aetool decoded", "aetool PSNR", "iterations", "JPEG decoded",
                                "JPEG PSNR", "JPEG part", "lead (dB)", f"target (≥ {args.prefix_target_from:g} %)"],
                               rows)]
    return lines


def report(args, info, counts, results, bd, target_rows, rc, unavailable, prefix=None) -> str:
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
    if "progressive" in ran or prefix:
        lines += progressive_lines(args, info, results, bd, prefix, ran)
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
        ours = [c["bpp"] for m in LEARNED for n in sets for c in curve(results, m, n)]
        if not ours:  # without aetool, the learned decoder's curves set the scale
            ours = [c["bpp"] for f in FILTERED if f in methods for n in sets for c in curve(results, f, n)]
        max_bpp = max(1.0, 1.25 * max(ours)) if ours else 3.0
    styles = {"aetool": ("C3", "o", 2.2), "jpeg": ("C0", "s", 1.3), "webp": ("C2", "^", 1.3),
              "avif": ("C1", "D", 1.3), "jxl": ("C4", "v", 1.3), "progressive": ("C5", "P", 2.2),
              "jpeg-progressive": ("C9", "x", 1.3)}
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


# ================================================================= self-check (no data sets)
def selfcheck_main(argv) -> int:
    """`compress.py selfcheck [--progressive-model M] [--aetool CMD]`: checks of this script's
    progressive parts without the data sets. bd_rate on known curves; a progressive JPEG cut at rising
    prefixes (jpeg_prefix): nothing before its first scan's data, then images from Pillow whose PSNR
    does not fall much and ends at the whole file's; jpeg_for_budget within its budget. With a
    progressive model that loads (--progressive-model, default compress-progressive; skipped, not
    failed, when it does not): one photo through `aetool compress`, `aetool truncate --iterations k`
    (its size = `aetool info`'s file_bytes of iteration k; decoded, the same image as `--quality k`),
    a file cut inside an iteration (exit 0, its complete iterations, a warning), a file cut inside
    the first iteration (exit 1). One line per check; exit 1 if any failed."""
    import io

    from PIL import Image

    ap = argparse.ArgumentParser(prog="compress.py selfcheck", description=selfcheck_main.__doc__)
    ap.add_argument("--progressive-model", default=PROGRESSIVE_MODEL)
    ap.add_argument("--aetool", default="aetool")
    args = ap.parse_args(argv)
    failed = []

    def check(what: str, ok: bool, detail: str = "") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else ""), flush=True)
        if not ok:
            failed.append(what)

    r = [0.2, 0.4, 0.8, 1.6, 3.2]
    p = [28.0, 30.5, 33.0, 35.5, 38.0]
    check("bd_rate of a curve against itself is 0", abs(bd_rate(r, p, r, p)) < 1e-9)
    v = bd_rate([x / 2 for x in r], p, r, p)
    check("bd_rate of half the rate is -50 %", abs(v + 50) < 1e-6, f"{v:.6f}")
    try:
        from skimage import data as skdata

        rgb = np.ascontiguousarray(skdata.astronaut()[64:320, 128:384])
        src = "skimage astronaut, 256x256 crop"
    except Exception:
        y, x = np.mgrid[0:256, 0:256]
        noise = np.random.default_rng(0).integers(0, 40, (256, 256, 3))
        rgb = np.clip(np.stack([x, y, (x + y) // 2], -1) + noise, 0, 255).astype(np.uint8)
        src = "synthetic 256x256"
    buf = io.BytesIO()
    _encoder("jpeg-progressive")(Image.fromarray(rgb), 75, buf)
    jdata = buf.getvalue()
    start = jpeg_scan_start(jdata)
    scans = jdata.count(b"\xff\xda")
    check("progressive JPEG: first scan found", start is not None and start < len(jdata), f"{src}, {len(jdata)} B, "
          f"scan data from byte {start}, {scans} scans")
    arr, rec = jpeg_prefix(jdata, max(1, (start or 1) - 1))
    check("progressive JPEG cut before its first scan: no image", arr is None, rec.get("no_image", ""))
    curve_ = []
    for pct in (10, 20, 30, 50, 70, 90, 100):
        arr, rec = jpeg_prefix(jdata, cut_bytes(len(jdata), pct))
        curve_.append((pct, None if arr is None else psnr(rgb, arr), rec.get("scans_started")))
    with Image.open(io.BytesIO(jdata)) as im:
        whole = psnr(rgb, np.asarray(im.convert("RGB")))
    vals = [c[1] for c in curve_]
    check("progressive JPEG cuts at 10-100 % all decode (Pillow, EOI appended)", all(v is not None for v in vals),
          ", ".join(f"{c[0]} %: {f2(c[1])} dB ({c[2]} scans)" for c in curve_))
    if all(v is not None for v in vals):
        check("progressive JPEG: PSNR of the cuts rises (within 0.5 dB) and ends at the whole file's",
              all(b >= a - 0.5 for a, b in zip(vals, vals[1:])) and abs(vals[-1] - whole) < 1e-9
              and vals[0] < whole - 1, f"whole file {whole:.2f} dB")
    for budget in (3000, 8000, 20000):
        q, d = jpeg_for_budget(rgb, budget)
        check(f"jpeg_for_budget({budget}) within the budget", len(d) <= budget or q == 1, f"quality {q}, {len(d)} B")

    with tempfile.TemporaryDirectory(prefix="compress-selfcheck-") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        Image.fromarray(rgb).save(tmp / "in" / "photo.png")
        why = progressive_status(args)
        if why:
            print(f"skip the aetool checks: {why}", flush=True)
        else:
            aet = resolve_command(args.aetool)

            def run(*a):
                return subprocess.run(aet + list(a), capture_output=True, text=True)

            full, model = tmp / "full.aei", ["--model", args.progressive_model]
            proc = run("compress", str(tmp / "in" / "photo.png"), "-o", str(full), "-q", "--overwrite", *model)
            check("aetool compress (all iterations)", proc.returncode == 0 and full.is_file(), proc.stderr.strip()[-200:])
            table = progressive_tables(args, [full]).get("full", {}).get("iteration_table") or []
            check("aetool info --json: iteration table", len(table) > 2, f"{len(table)} iterations")
            if len(table) > 2:
                k = min(3, len(table) - 1)
                cut, ref_k = tmp / "cut.aei", tmp / "q.aei"
                proc = run("truncate", str(full), "-o", str(cut), "--iterations", str(k), "-q", "--overwrite")
                size = cut.stat().st_size if cut.is_file() else None
                check(f"aetool truncate --iterations {k}: size = info's file_bytes", proc.returncode == 0
                      and size == table[k - 1]["file_bytes"], f"{size} B, table {table[k - 1]['file_bytes']} B")
                run("compress", str(tmp / "in" / "photo.png"), "-o", str(ref_k), "-q", "--overwrite", "--quality",
                    str(k), *model)
                same = ref_k.is_file() and cut.is_file() and ref_k.read_bytes() == cut.read_bytes()
                for f in (cut, ref_k):
                    run("decompress", str(f), "-o", str(f.with_suffix(".png")), "-q", "--overwrite", *model)
                imgs = [read_image(f.with_suffix(".png"), "RGB") for f in (cut, ref_k) if f.with_suffix(".png").is_file()]
                check(f"truncated to {k} iterations decodes as --quality {k}",
                      len(imgs) == 2 and np.array_equal(*imgs), "identical files" if same else "files differ in bytes")
                data = full.read_bytes()
                mid = (table[k - 1]["file_bytes"] + table[k]["file_bytes"]) // 2
                (tmp / "mid.aei").write_bytes(data[:mid])
                proc = run("decompress", str(tmp / "mid.aei"), "-o", str(tmp / "mid.png"), "-q", "--json", "--overwrite",
                           *model)
                line = next((o for o in json_lines(proc.stdout) if o.get("input")), {})
                check(f"file cut inside iteration {k + 1}: exit 0, {k} iterations, a warning",
                      proc.returncode == 0 and line.get("iterations") == k and bool(line.get("warning")),
                      f"exit {proc.returncode}, iterations {line.get('iterations')}, warning {line.get('warning')!r}"[:300])
                if proc.returncode == 0 and imgs:
                    check("... and the same image as the truncated file",
                          np.array_equal(read_image(tmp / "mid.png", "RGB"), imgs[0]))
                (tmp / "early.aei").write_bytes(data[:table[0]["file_bytes"] - 1])
                proc = run("decompress", str(tmp / "early.aei"), "-o", str(tmp / "early.png"), "-q", "--overwrite",
                           *model)
                check("file cut inside the first iteration: exit 1", proc.returncode == 1,
                      f"exit {proc.returncode}: {proc.stderr.strip()[-160:]}")
    print(f"selfcheck: {len(failed)} failed" + (f" ({'; '.join(failed)})" if failed else ""))
    return 1 if failed else 0


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


def update_progressive_card(results_json: Path) -> str:
    """Write the progressive codec's measured figures of a full run into its card: BD-rates against
    every other method per set (PSNR, cubic), the mean PSNR of the progressive view per prefix
    against progressive JPEG's, encode and decode s/MP (all iterations), and where they came from."""
    from aetool.registry import find_card

    data = json.loads(Path(results_json).read_text())
    if data.get("limit"):
        raise SystemExit("update-progressive-card needs a run over whole sets (it had --limit)")
    if "progressive" not in data["results"]:
        raise SystemExit("the run has no progressive method")
    card = find_card(data["progressive_model"])
    path = card.path.with_suffix(".json")
    raw = json.loads(path.read_text())
    m: dict = {"bd_rate_percent_psnr": {}, "prefix_psnr": {},
               "protocol": "docs/protocol.md, compression: the progressive codec and the progressive view "
                           "(benchmarks/compress.py)",
               "measured": data["date"], "machine": machine_line(data["machine"]), "command": data["command"]}
    for name, per in data["bd_rate"].items():
        for base, v in per.get("progressive", {}).items():
            if v.get("cubic") is not None:
                m["bd_rate_percent_psnr"].setdefault(name, {})[base] = round(v["cubic"], 1)
    for name, view in (data.get("prefix") or {}).items():
        m["prefix_psnr"][name] = {f"{row['percent']:g}%": {
            "aetool": None if row["aetool_psnr"] is None else round(row["aetool_psnr"], 2),
            "progressive_jpeg": None if row["jpeg_psnr"] is None else round(row["jpeg_psnr"], 2)}
            for row in view["summary"]}
    encode, decode = [], []
    for cells in data["results"]["progressive"].values():
        top = max(cells.values(), key=lambda c: c.get("iterations", 0))
        encode.append(((top.get("encode") or {}).get("s_per_mp"), top.get("megapixels", 0)))
        decode.append(((top.get("decode") or {}).get("s_per_mp"), top.get("megapixels", 0)))
    for key, pairs in (("encode_s_per_mp", encode), ("decode_s_per_mp", decode)):
        pairs = [(v, w) for v, w in pairs if v is not None and w]
        if pairs:  # weighted by megapixels: total seconds over total megapixels
            m[key] = round(sum(v * w for v, w in pairs) / sum(w for _, w in pairs), 2)
    raw["metrics"] = m
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
    if argv[:1] == ["selfcheck"]:
        return selfcheck_main(argv[1:])
    if argv[:1] == ["update-filter-cards"]:  # python benchmarks/compress.py update-filter-cards RESULTS.json
        print(update_filter_cards(Path(argv[1]) if len(argv) > 1
                                  else ROOT / "benchmarks" / "results" / "compress-filter.json"))
        return 0
    if argv[:1] == ["update-progressive-card"]:  # python benchmarks/compress.py update-progressive-card [RESULTS]
        print(update_progressive_card(Path(argv[1]) if len(argv) > 1
                                      else ROOT / "benchmarks" / "results" / "compress.json"))
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
        elif m == "progressive":
            info["progressive_model"] = args.progressive_model
            if "aetool_version" not in info:
                info["aetool_version"] = aetool_version(args)
            why = progressive_status(args)
            info["progressive_model_card"] = progressive_card(args.progressive_model)
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
    prefix: dict = {}
    progressive_files: dict = {}
    progressive_pics: dict = {}  # per set: {stem: pictures after each iteration}, the one-pass decode
    heldout = [n for n in args.sets if n.startswith("heldout")]
    example_set = heldout[0] if heldout else ("kodak24" if "kodak24" in args.sets else args.sets[0])
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
                def done(cell, method=method):
                    q = cell["quality"]
                    results[method].setdefault(name, {})[qkey(q)] = cell
                    msg = cell.get("error") or (f"{cell['bpp']:.3f} bpp, {cell['psnr']:.2f} dB, MS-SSIM "
                                                f"{f2(cell['ms_ssim'], '{:.4f}')}, encode "
                                                f"{f2(cell['encode'].get('s_per_mp'), '{:.3f}')} / decode "
                                                f"{f2(cell['decode'].get('s_per_mp'), '{:.3f}')} s/MP")
                    print(f"{name} {method} {qkey(q)}: {msg}", file=sys.stderr, flush=True)

                if method == "progressive":
                    progressive_files[name], progressive_pics[name] = run_progressive(args, name, inp, refs, mp,
                                                                                       work, done)
                    continue
                for q in args.sweeps[method]:
                    done(run_point(args, method, q, name, inp, refs, mp, work))
            if "progressive" in results and not args.no_prefix:
                names = [f for f, _ in refs]
                example = None
                if args.prefix_example and name == example_set:
                    example = "kodim23.png" if not heldout and "kodim23.png" in names else names[0]
                prefix[name] = prefix_view(args, name, refs, work / "enc" / "progressive" / name / "full",
                                           progressive_files.get(name, {}), work, example,
                                           progressive_pics.get(name))
                for s in prefix[name]["summary"]:
                    print(f"{name} prefix {s['percent']:g} %: aetool {f2(s['aetool_psnr'])} dB "
                          f"({s['aetool_decoded']}/{s['images']}), progressive JPEG {f2(s['jpeg_psnr'])} dB "
                          f"({s['jpeg_decoded']}/{s['images']})" + (f", holds {s['holds']}" if "holds" in s else ""),
                          file=sys.stderr, flush=True)
                if example:
                    rec = next((r for r in prefix[name]["images"] if r["file"] == example and "error" not in r), None)
                    try:
                        if rec is None:
                            raise RuntimeError(f"no progressive file of {example}")
                        ex_path = Path(args.prefix_example)
                        info["prefix_example"] = prefix_example(ex_path, work / "example", dict(refs)[example], rec,
                                                                name)
                        info["prefix_example_rel"] = os.path.relpath(ex_path.resolve(), args.out_md.resolve().parent)
                    except Exception as exc:  # the numbers matter more than the picture
                        print(f"the example figure failed: {type(exc).__name__}: {exc}", file=sys.stderr)
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
    target_rows = targets(results, bd, args.sets, ran, unavailable, prefix if prefix else None, args.prefix_target_from)
    if prefix and args.prefix_plot:
        try:
            prefix_plot(Path(args.prefix_plot), prefix, args.sets, counts, args.prefix_target_from)
            info["prefix_plot"] = str(args.prefix_plot)
            info["prefix_plot_rel"] = os.path.relpath(Path(args.prefix_plot).resolve(), args.out_md.resolve().parent)
        except Exception as exc:
            print(f"the prefix plot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    if args.plot:
        plot_path = Path(args.plot)
        try:
            plot(plot_path, results, ran, args.sets, counts, args.plot_max_bpp)
            info["plot"] = str(plot_path)
            info["plot_rel"] = os.path.relpath(plot_path.resolve(), args.out_md.resolve().parent)
        except Exception as exc:  # the numbers matter more than the picture
            print(f"the plot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    text = report(args, info, counts, results, bd, target_rows, rc, unavailable, prefix or None)
    write_section(args.out_md, args.section, text)
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(
        {**info, "images": {s: {"used": n, "in_set": t} for s, (n, t) in counts.items()}, "results": results,
         "bd_rate": bd, "targets": target_rows, "rate_control": rc, "prefix": prefix or None,
         "progressive_files": progressive_files or None}, indent=1) + "\n")
    print(text)
    figs = [f for f in (args.plot, info.get("prefix_plot"), info.get("prefix_example") and args.prefix_example) if f]
    print(f"wrote {args.out_md} and {args.out_json}" + "".join(f" and {f}" for f in figs), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
