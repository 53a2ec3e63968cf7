"""Inpainting benchmark: `aetool inpaint` against OpenCV's Telea and Navier-Stokes inpainting, by
the protocol of docs/protocol.md ("Rules common to every task" and "Inpainting").

For every test set (kodak24 and cbsd68, DATA/test/denoise/<set>, read as RGB) and mask kind (thin
strokes, thick strokes, one box) it draws image i's mask (i = index in the set sorted by file name)
with `aetool.maskgen.protocol_mask(kind, h, w, i)` (numpy.random.default_rng(7000 + i)), writes the
masked inputs (missing pixels set to 0) as 8-bit PNGs into one folder and the masks (PNG, 255 =
missing) into a parallel folder with the same file names, runs each method as one command over the
folder (`aetool inpaint IN --mask-dir MASKS`, and benchmarks/inpaint_baselines.py for cv2.inpaint
TELEA / NS with radius 5), times the whole folder (median of --repeats runs), and scores every
output against the clean image: PSNR over the hole pixels only (all RGB channels of the missing
pixels, data range 255, float64), and PSNR and SSIM (skimage, data_range 255, channel_axis -1) of
the whole image. Reported: the means per set and kind, the speed in seconds per megapixel of input
over all folders (interpreter start and model loading included), and the check of the targets of
the inpainting issue.

It writes a markdown section (between <!-- inpaint:begin --> and <!-- inpaint:end --> of
--out-md), a JSON file with every per-image number, and a picture (--examples) of the first image
of the first set with each kind of mask filled by every method.

Full run:
    python benchmarks/inpaint.py --update-cards
The baselines alone (fast):
    python benchmarks/inpaint.py --methods telea,ns --out-md /tmp/inp.md --out-json /tmp/inp.json \\
        --examples /tmp/inp.png
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from aetool.maskgen import KINDS, protocol_mask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, add_run_options, cpu_precision, json_lines, list_images, machine,  # noqa: E402
                    machine_line, md_table, measure, megapixels, psnr, read_image, resolve_command,
                    named_sets, ssim, write_png, write_section)

METHODS = ["aetool", "telea", "ns"]
BASELINES = ["telea", "ns"]
SETS = ["kodak24", "cbsd68"]
# The targets of the inpainting issue: aetool's hole PSNR at least max(Telea, NS) + this many dB,
# per set and mask kind.
HOLE_MARGIN = {"thin": 0.5, "thick": 1.5, "box": 1.5}
HOLE_COLOUR = (255, 0, 255)  # how the holes are shown in the examples picture
PANEL_W = 256  # width of a panel in the examples picture


def parse_args(argv=None):
    csv = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="data folder (default: ../shared/data from the project root); sets are read "
                         "from DATA/test/denoise/<set>")
    ap.add_argument("--sets", type=csv, default=list(SETS),
                    help="colour sets, read as RGB (default kodak24,cbsd68); LABEL=FOLDER for photos elsewhere")
    ap.add_argument("--kinds", type=csv, default=list(KINDS), help=f"mask kinds, subset of {','.join(KINDS)}")
    add_run_options(ap, "inpaint", METHODS)
    ap.add_argument("--examples", default=str(ROOT / "docs" / "inpaint-examples.png"),
                    help="picture of the first image of the first set, one row per mask kind "
                         "(default docs/inpaint-examples.png; '' or 'none' for no picture)")
    ap.add_argument("--model", default=None,
                    help="model passed to `aetool inpaint --model` (a name or a .safetensors file); "
                         "default: aetool's shipped default inpainting model")
    ap.add_argument("--update-cards", action="store_true",
                    help="write aetool's measured numbers into the metrics of the card of the model used "
                         "(replacing them; refused with --limit)")
    args = ap.parse_args(argv)
    for attr, allowed in (("methods", METHODS), ("kinds", KINDS)):
        bad = set(getattr(args, attr)) - set(allowed)
        if bad:
            ap.error(f"unknown {attr[:-1]}(s) {', '.join(sorted(bad))}; choose from {', '.join(allowed)}")
    args.sets, args.set_dirs = named_sets(args.sets)
    if not args.sets:
        ap.error("no sets")
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be at least 1")
    if args.update_cards and args.limit:
        ap.error("--update-cards measures whole sets: leave out --limit")
    if args.update_cards and "aetool" not in args.methods:
        ap.error("--update-cards needs the aetool method")
    args.methods = [m for m in METHODS if m in args.methods]
    args.kinds = [k for k in KINDS if k in args.kinds]
    args.examples = None if args.examples.strip().lower() in ("", "none") else Path(args.examples)
    return args


# ---------------------------------------------------------------- the protocol
def load_set(data: Path, name: str, limit: int | None, folder: Path | None = None):
    folder = folder or data / "test" / "denoise" / name
    if not folder.is_dir():
        raise SystemExit(f"no folder {folder}")
    paths = list_images(folder)
    if not paths:
        raise SystemExit(f"no images in {folder}")
    return [(p.name, read_image(p, "RGB")) for p in paths[:limit]], len(paths)


def masked_input(clean: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The protocol's input: the clean image with the missing pixels set to 0."""
    x = clean.copy()
    x[mask] = 0
    return x


def score_image(clean: np.ndarray, out: np.ndarray, mask: np.ndarray) -> dict:
    """Hole PSNR (all RGB values of the missing pixels), whole-image PSNR and SSIM."""
    if out.shape != clean.shape:
        return {"error": f"output is {out.shape[1]}x{out.shape[0]}, input is {clean.shape[1]}x{clean.shape[0]}"}
    return {"hole_psnr": psnr(clean[mask], out[mask]), "psnr": psnr(clean, out), "ssim": ssim(clean, out)}


def output_path(out: Path, name: str, reported: dict) -> Path | None:
    for p in (reported.get(name), out / name, out / (Path(name).stem + ".png")):
        if p is not None and Path(p).is_file():
            return Path(p)
    return None


def reported_outputs(stdout: str) -> dict:
    return {Path(o["input"]).name: Path(o["output"]) for o in json_lines(stdout)
            if isinstance(o.get("input"), str) and isinstance(o.get("output"), str)}


def read_output(out: Path, name: str, reported: dict) -> np.ndarray | None:
    path = output_path(out, name, reported)
    if path is None:
        return None
    try:
        return read_image(path, "RGB")
    except OSError:
        return None


def score(images, masks, out: Path, stdout: str) -> dict:
    """Per-image scores of the outputs in `out`; the means when every image has one."""
    reported = reported_outputs(stdout)
    rows = []
    for (name, clean), mask in zip(images, masks):
        result = read_output(out, name, reported)
        row = {"file": name, "hole_fraction": float(mask.mean())}
        row.update({"error": "no readable output"} if result is None else score_image(clean, result, mask))
        rows.append(row)
    bad = [r for r in rows if "error" in r]
    cell: dict = {"images": rows}
    if bad:
        cell["error"] = (f"{len(bad)} of {len(rows)} images not scored ({bad[0]['file']}: {bad[0]['error']}"
                         + (", ..." if len(bad) > 1 else "") + ")")
        return cell
    for key in ("hole_psnr", "psnr", "ssim"):
        cell[key] = float(np.mean([r[key] for r in rows]))
    return cell


def command(method: str, args, inp: Path, masks: Path, out: Path) -> list[str]:
    if method == "aetool":
        cmd = resolve_command(args.aetool) + ["inpaint", str(inp), "--mask-dir", str(masks), "-o", str(out),
                                              "-q", "--json", "--overwrite"]
        return cmd + (["--model", args.model] if args.model else [])
    return [sys.executable, str(Path(__file__).with_name("inpaint_baselines.py")), method,
            str(inp), str(masks), str(out)]


# ---------------------------------------------------------------- model cards
def aetool_card_info(args, name: str) -> dict | None:
    """`aetool models info NAME` (it prints the card as JSON), parsed."""
    try:
        proc = subprocess.run(resolve_command(args.aetool) + ["models", "info", name], capture_output=True,
                              text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def default_card_path(weights: Path = ROOT / "weights") -> Path | None:
    """The card in weights/ of the shipped default inpainting model: task "inpaint", 3 channels,
    "default" true; like aetool itself, the first such card by file name when none is marked default."""
    found = []
    for p in sorted(weights.glob("*.json")):
        try:
            card = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(card, dict) and card.get("task") == "inpaint" and card.get("channels", 3) == 3:
            found.append((not card.get("default"), p.name, p))
    return min(found)[2] if found else None


def card_path(args) -> Path | None:
    """The card JSON of the model `aetool inpaint` ran with, or None if it cannot be found."""
    if args.model is None:
        return default_card_path()
    model = Path(args.model).expanduser()
    if args.model.endswith(".safetensors") or model.is_file():
        p = model.with_suffix(".json")
        return p if p.is_file() else None
    info = aetool_card_info(args, args.model)
    if info and info.get("path"):
        p = Path(info["path"]).with_suffix(".json")
        if p.is_file():
            return p
    p = ROOT / "weights" / f"{args.model}.json"
    return p if p.is_file() else None


def describe_model(args) -> str:
    if args.model:
        return f"`{args.model}`"
    p = default_card_path()
    return f"shipped default `{p.stem}`" if p else "shipped default (no inpaint card in weights/)"


def update_cards(args, info: dict, results: dict, counts: dict, coverage: dict, used_models: set) -> str:
    """Replace the `metrics` of the card of the model aetool used with this run's numbers."""
    cells = {(s, k): c for s, by_kind in results.get("aetool", {}).items() for k, c in by_kind.items()
             if "hole_psnr" in c}
    if not cells:
        return "no aetool results: no card changed"
    path = card_path(args)
    if path is None:
        return f"no card found for {args.model or 'the shipped default'}: nothing written"
    card = json.loads(path.read_text())
    if card.get("task") != "inpaint":
        return f"{path} is the card of a {card.get('task')} model, not an inpainting model: nothing written"
    if used_models and card.get("name") not in used_models:
        return (f"{path} is the card of '{card.get('name')}' but aetool reported running "
                f"{', '.join(sorted(used_models))}: nothing written")
    metrics: dict = {}  # from this run only: numbers of an earlier model must not linger
    for (s, k), c in cells.items():
        metrics.setdefault("hole_psnr", {}).setdefault(s, {})[k] = round(c["hole_psnr"], 2)
        metrics.setdefault("psnr", {}).setdefault(s, {})[k] = round(c["psnr"], 2)
        metrics.setdefault("ssim", {}).setdefault(s, {})[k] = round(c["ssim"], 4)
        metrics.setdefault("mask_coverage", {}).setdefault(s, {})[k] = round(coverage[s][k]["mean"], 4)
    metrics["images"] = {s: {"used": counts[s][0], "in_set": counts[s][1]} for s in sorted({s for s, _ in cells})}
    if (v := speed(results, "aetool")) is not None:
        metrics["seconds_per_megapixel"] = round(v, 3)
    metrics.update({"protocol": "docs/protocol.md inpainting: aetool.maskgen.protocol_mask, holes set to 0, "
                                "hole PSNR over the missing pixels, whole-image PSNR/SSIM (benchmarks/inpaint.py)",
                    "measured": info["date"], "machine": machine_line(info["machine"])})
    card["metrics"] = metrics
    path.write_text(json.dumps(card, indent=2) + "\n")
    return f"updated the metrics of {path}"


# ---------------------------------------------------------------- report
def label(method: str) -> str:
    return {"aetool": "aetool", "telea": "OpenCV Telea", "ns": "OpenCV NS"}[method]


def get(results, method, name, kind, key="hole_psnr"):
    return results.get(method, {}).get(name, {}).get(kind, {}).get(key)


def speed(results, method):
    """Seconds per megapixel of input over all the folders that ran (total time / total MP)."""
    cs = [c for by_kind in results.get(method, {}).values() for c in by_kind.values() if c.get("seconds") is not None]
    return sum(c["seconds"] for c in cs) / sum(c["megapixels"] for c in cs) if cs else None


def hole_table(results, methods, sets, kinds) -> str:
    header = ["method"] + [f"{s} {k}" for s in sets for k in kinds]
    rows = [[label(m)] + [f"{v:.2f}" if (v := get(results, m, s, k)) is not None else "error"
                          for s in sets for k in kinds] for m in methods]
    return md_table(header, rows)


def whole_table(results, methods, sets, kinds) -> str:
    header = ["method"] + [f"{s} {k}" for s in sets for k in kinds]
    rows = []
    for m in methods:
        row = [label(m)]
        for s in sets:
            for k in kinds:
                p, q = get(results, m, s, k, "psnr"), get(results, m, s, k, "ssim")
                row.append("error" if p is None else f"{p:.2f} / {q:.4f}")
        rows.append(row)
    return md_table(header, rows)


def speed_table(results, methods) -> str:
    rows = []
    for m in methods:
        cs = [c for by_kind in results.get(m, {}).values() for c in by_kind.values() if c.get("seconds") is not None]
        v = speed(results, m)
        rows.append([label(m), "–" if v is None else f"{v:.3f}",
                     f"{sum(c['seconds'] for c in cs):.1f}" if cs else "–",
                     f"{sum(c['megapixels'] for c in cs):.2f}" if cs else "–"])
    return md_table(["method", "s/MP (input)", "seconds, all folders", "megapixels, all folders"], rows)


def coverage_table(coverage, sets, kinds) -> str:
    rows = [[s] + [f"{100 * coverage[s][k]['mean']:.1f}% ({100 * coverage[s][k]['min']:.1f}–"
                   f"{100 * coverage[s][k]['max']:.1f}%)" for k in kinds] for s in sets]
    return md_table(["set"] + kinds, rows)


def notes(results, methods, sets, kinds) -> list[str]:
    """One line per method and distinct error, naming the cells it happened in."""
    out = []
    for m in methods:
        by_msg: dict[str, list[str]] = {}
        for s in sets:
            for k in kinds:
                if msg := results.get(m, {}).get(s, {}).get(k, {}).get("error"):
                    by_msg.setdefault(msg, []).append(f"{s} {k}")
        for msg, where in by_msg.items():
            out.append(f"- {label(m)} failed ({', '.join(where)}): {msg}")
    return out


def targets(results, sets, kinds, methods) -> list[dict]:
    rows = []

    def na(why_aetool: bool) -> str:
        if why_aetool:
            return "n/a (aetool failed)" if "aetool" in methods else "n/a (aetool not run)"
        return "n/a (a baseline is missing)"

    def add(target, scope, measured, needed, margin, result):
        rows.append({"target": target, "scope": scope, "measured": measured, "needed": needed,
                     "margin": margin, "result": result})

    for s in sets:
        for k in kinds:
            name = f"(1) hole PSNR ≥ max(Telea, NS) + {HOLE_MARGIN[k]} dB"
            a = get(results, "aetool", s, k)
            base = {m: get(results, m, s, k) for m in BASELINES}
            if a is None or None in base.values():
                add(name, f"{s} {k}", "–" if a is None else f"{a:.2f} dB", "–", "–", na(a is None))
                continue
            best = max(BASELINES, key=base.get)
            need = base[best] + HOLE_MARGIN[k]
            add(name, f"{s} {k}", f"{a:.2f} dB", f"≥ {need:.2f} dB ({label(best)} {base[best]:.2f})",
                f"{a - need:+.2f} dB", "PASS" if a >= need else "MISS")
    for s in sets:
        name = "(2) whole-image SSIM ≥ the better baseline, every kind"
        diffs, missing_a = {}, False
        for k in kinds:
            a = get(results, "aetool", s, k, "ssim")
            base = [get(results, m, s, k, "ssim") for m in BASELINES]
            if a is None:
                missing_a = True
            elif None not in base:
                diffs[k] = (a - max(base), max(base))
        if missing_a or len(diffs) < len(kinds):
            add(name, s, "–", "–", "–", na(missing_a))
            continue
        worst = min(diffs, key=lambda k: diffs[k][0])
        d, b = diffs[worst]
        add(name, s, f"worst kind {worst}: {b + d:.4f}", f"≥ {b:.4f} (better baseline, {worst})",
            f"{d:+.4f}", "PASS" if d >= 0 else "MISS")
    a, t = speed(results, "aetool"), speed(results, "telea")
    add("(3) speed, reported next to Telea's (no target)", "all folders",
        "–" if a is None else f"aetool {a:.3f} s/MP", "–" if t is None else f"Telea {t:.3f} s/MP",
        f"aetool takes {a / t:.1f}x Telea's time" if a is not None and t else "–", "(no target)")
    return rows


def report(args, info, counts, coverage, results, target_rows) -> str:
    subset = f" — **subset: only the first {args.limit} by file name (--limit)**" if args.limit else ""
    lines = [
        "## Inpainting" + ("" if args.section == "inpaint" else f" ({args.section})"), "",
        f"Measured {info['date']} on {machine_line(info['machine'])}.  ",
        f"Command: `{info['command']}`  ",
        "Images per set: " + ", ".join(f"{s} {n} of {total}" for s, (n, total) in counts.items()) + subset + ".",
        "",
        "Protocol: docs/protocol.md. Masks from `aetool.maskgen.protocol_mask(kind, h, w, i)` "
        "(numpy.random.default_rng(7000 + i), i = index in the set sorted by file name): thin strokes, thick "
        "strokes, one box of 1/16 of the area; PNG, 255 = missing. Inputs: 8-bit PNG, RGB, missing pixels set "
        "to 0. Hole PSNR: over all RGB values of the missing pixels only; whole-image PSNR and SSIM (skimage, "
        "data_range 255, channel_axis -1); dB, data range 255, float64; means per set and mask kind. Telea and "
        "NS are OpenCV `cv2.inpaint` (INPAINT_TELEA, INPAINT_NS, radius 5) given the image with holes set to 0 "
        "and the mask as uint8 255/0 (benchmarks/inpaint_baselines.py). Every method runs as one command per "
        "folder; s/MP = wall time (median of "
        f"{args.repeats}) per megapixel of input, over all folders, interpreter start and model loading included.",
    ]
    if "aetool" in args.methods:
        lines += ["", f"aetool model: {info['model_description']}; aetool runs with its defaults "
                      f"(`--precision auto`, which is {info['aetool_cpu_precision']} on this CPU)."]
    lines += ["", "### Mask coverage (fraction of missing pixels: mean, min–max)", "",
              coverage_table(coverage, list(counts), args.kinds),
              "", "### Hole PSNR (dB)", "", hole_table(results, args.methods, list(counts), args.kinds),
              "", "### Whole image: PSNR (dB) / SSIM", "", whole_table(results, args.methods, list(counts), args.kinds),
              "", "### Speed", "", speed_table(results, args.methods)]
    if extra := notes(results, args.methods, list(counts), args.kinds):
        lines += [""] + extra
    lines += ["", "### Targets", "",
              "Per set (not averaged over sets): hole PSNR at least the better of Telea and NS plus 1.5 dB "
              "(thick strokes, box) or 0.5 dB (thin strokes); whole-image SSIM not below the better baseline "
              "for any kind.", "",
              md_table(["target", "set / kind", "measured", "needed", "margin", "result"],
                       [[r["target"], r["scope"], r["measured"], r["needed"], r["margin"], r["result"]]
                        for r in target_rows])]
    if args.examples is not None:
        try:
            shown = args.examples.resolve().relative_to(ROOT)
        except ValueError:
            shown = args.examples
        lines += ["", f"Examples (`{shown}`): the first image of {next(iter(counts))}, one row per mask kind: "
                      "the input with its holes in magenta, Telea, NS, aetool and the original, each titled "
                      "with its hole PSNR."]
    if info["machine"].get("gpu") and "aetool" in args.methods:
        lines += ["", "A GPU was present: aetool may have used it (its timings are not CPU-only)."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- examples picture
def _font(size: int = 13):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _panel(img: np.ndarray | None, title: str, size: tuple[int, int], font) -> "Image.Image":
    from PIL import Image, ImageDraw

    w, h = size
    title_h = 20
    out = Image.new("RGB", (w, h + title_h), "white")
    draw = ImageDraw.Draw(out)
    if img is None:
        draw.rectangle((0, title_h, w - 1, h + title_h - 1), fill=(200, 200, 200))
        draw.text((8, title_h + h // 2 - 8), "no output", fill="black", font=font)
    else:
        out.paste(Image.fromarray(img).resize((w, h), Image.LANCZOS), (0, title_h))
    draw.text((4, 3), title, fill="black", font=font)
    return out


def write_examples(path: Path, name: str, clean: np.ndarray, masks: dict, outputs: dict, methods: list[str],
                   kinds: list[str]) -> None:
    """One row per mask kind: input (holes in magenta), Telea, NS, aetool, original; each titled."""
    from PIL import Image

    h, w = clean.shape[:2]
    size = (PANEL_W, max(1, round(h * PANEL_W / w)))
    font, gap = _font(), 6
    rows = []
    for k in kinds:
        mask = masks[k]
        shown = clean.copy()
        shown[mask] = HOLE_COLOUR
        row = [_panel(shown, f"input, {k}: {100 * mask.mean():.1f}% missing", size, font)]
        for m in ("telea", "ns", "aetool"):
            out = outputs.get(k, {}).get(m)
            if m not in methods:
                title, out = f"{label(m)}: not run", None
            elif out is None or out.shape != clean.shape:
                title, out = f"{label(m)}: error", None
            else:
                title = f"{label(m)}: hole {psnr(clean[mask], out[mask]):.2f} dB"
            row.append(_panel(out, title, size, font))
        row.append(_panel(clean, f"original ({Path(name).stem})", size, font))
        rows.append(row)
    pw, ph = rows[0][0].size
    sheet = Image.new("RGB", (len(rows[0]) * pw + (len(rows[0]) - 1) * gap, len(rows) * ph + (len(rows) - 1) * gap),
                      "white")
    for r, row in enumerate(rows):
        for c, p in enumerate(row):
            sheet.paste(p, (c * (pw + gap), r * (ph + gap)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "command": shlex.join([sys.executable] + (sys.argv if argv is None else [__file__, *argv])),
            "data": str(args.data.resolve()), "limit": args.limit, "sets": args.sets, "kinds": args.kinds,
            "methods": args.methods, "repeats": args.repeats, "model": args.model, "radius": 5}
    if "aetool" in args.methods:
        info["model_description"] = describe_model(args)
        info["aetool_cpu_precision"] = cpu_precision()
    work = args.work or Path(tempfile.mkdtemp(prefix="inpaint-bench-"))
    results: dict = {m: {} for m in args.methods}
    counts, coverage, used_models = {}, {}, set()
    example: dict = {"masks": {}, "outputs": {}}
    try:
        for set_index, name in enumerate(args.sets):
            images, total = load_set(args.data, name, args.limit, args.set_dirs.get(name))
            counts[name] = (len(images), total)
            mp = megapixels(c for _, c in images)
            for kind in args.kinds:
                inp, mask_dir = work / "in" / name / kind, work / "masks" / name / kind
                for d in (inp, mask_dir):
                    shutil.rmtree(d, ignore_errors=True)
                    d.mkdir(parents=True)
                masks = []
                for i, (fname, clean) in enumerate(images):
                    mask = protocol_mask(kind, clean.shape[0], clean.shape[1], i)
                    masks.append(mask)
                    stem = Path(fname).stem + ".png"
                    write_png(inp / stem, masked_input(clean, mask))
                    write_png(mask_dir / stem, mask.astype(np.uint8) * 255)
                fr = [float(m.mean()) for m in masks]
                coverage.setdefault(name, {})[kind] = {"mean": float(np.mean(fr)), "min": min(fr), "max": max(fr)}
                if set_index == 0:
                    example["masks"][kind] = masks[0]
                for method in args.methods:
                    out = work / "out" / method / name / kind
                    cell, run = measure(command(method, args, inp, mask_dir, out), args.repeats, out, mp,
                                        lambda stdout: score(images, masks, out, stdout))
                    if not run.error:
                        if method == "aetool":
                            used_models |= {o["model"] for o in json_lines(run.stdout)
                                            if isinstance(o.get("model"), str)}
                    results[method].setdefault(name, {})[kind] = cell
                    if set_index == 0:
                        example["outputs"].setdefault(kind, {})[method] = read_output(
                            out, images[0][0], reported_outputs(run.stdout)) if not run.error else None
                    msg = cell.get("error") or (f"hole PSNR {cell['hole_psnr']:.2f} dB, PSNR {cell['psnr']:.2f} dB, "
                                                f"SSIM {cell['ssim']:.4f}, {cell['s_per_mp']:.3f} s/MP")
                    print(f"{name} {kind} {method}: {msg}", file=sys.stderr, flush=True)
            if set_index == 0:
                example["name"], example["clean"] = images[0]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    info["models_reported_by_aetool"] = sorted(used_models)
    target_rows = targets(results, list(counts), args.kinds, args.methods)
    text = report(args, info, counts, coverage, results, target_rows)
    write_section(args.out_md, args.section, text)
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(
        {**info, "images": {s: {"used": n, "in_set": t} for s, (n, t) in counts.items()},
         "mask_coverage": coverage, "results": results, "targets": target_rows}, indent=1) + "\n")
    if args.examples is not None and "clean" in example:
        write_examples(args.examples, example["name"], example["clean"], example["masks"], example["outputs"],
                       args.methods, args.kinds)
    print(text)
    print(f"wrote {args.out_md} and {args.out_json}"
          + (f" and {args.examples}" if args.examples is not None else ""), file=sys.stderr)
    if args.update_cards:
        print(update_cards(args, info, results, counts, coverage, used_models), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
