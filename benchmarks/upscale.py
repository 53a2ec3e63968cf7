"""Super-resolution benchmark: `aetool upscale` against bicubic and Lanczos upsampling, by the
protocol of docs/protocol.md ("Rules common to every task" and "Super-resolution").

For every test set and scale (set5 and set14 at x2, x3, x4; bsd100 at x4; DATA/test/sr/<set>/x<s>)
each method runs as one command over the provided LR folder (`aetool upscale`, and
benchmarks/sr_baselines.py for Pillow BICUBIC / LANCZOS), timed for the whole folder (median of
--repeats runs), and its outputs are scored against the HR images on the Y channel of ITU-R BT.601
(Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, RGB in [0, 1], float64, not rounded), with
`scale` pixels cropped from each border: PSNR with data range 255, and SSIM
(skimage structural_similarity, data_range 255) as a secondary number. Grey images are scored like
colour ones (R = G = B). An output whose size differs from the HR image by fewer than `scale`
pixels in each dimension is scored on the common top-left part (the report says so); a larger
difference is an error for that image. Reported: the mean per set, and the speed in seconds per
megapixel of output, interpreter start and model loading included.

It writes a markdown section (between <!-- upscale:begin --> and <!-- upscale:end --> of --out-md)
with the tables and the check of the targets, and a JSON file with every per-image number.

Full run:
    python benchmarks/upscale.py --update-cards
The baselines alone (fast):
    python benchmarks/upscale.py --methods bicubic,lanczos --out-md /tmp/up.md --out-json /tmp/up.json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, add_run_options, check_methods, json_lines, list_images, machine,  # noqa: E402
                    machine_line, md_table, measure, megapixels, named_sets, psnr, read_image,
                    resolve_command, ssim, write_section)

METHODS = ["aetool", "bicubic", "lanczos"]
SETS = {"set5": (2, 3, 4), "set14": (2, 3, 4), "bsd100": (4,)}
SET_LABELS = {"set5": "Set5", "set14": "Set14", "bsd100": "BSD100"}
# The targets of the super-resolution issue: aetool's mean Y-PSNR (dB) per set and scale.
TARGETS = {("set5", 2): 37.3, ("set5", 3): 33.4, ("set5", 4): 31.0,
           ("set14", 2): 32.9, ("set14", 3): 29.7, ("set14", 4): 27.8,
           ("bsd100", 4): 27.0}


def parse_args(argv=None):
    csv = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="data folder (default: ../shared/data from the project root); sets are read "
                         "from DATA/test/sr/<set>/x<scale>/{hr,lr}")
    ap.add_argument("--sets", type=csv, default=list(SETS),
                    help="subset of set5,set14,bsd100; LABEL=FOLDER for photos elsewhere, laid out as "
                         "FOLDER/x<scale>/{hr,lr} (benchmarks/heldout_photos.py writes one)")
    ap.add_argument("--scales", type=lambda s: [int(x) for x in csv(s)], default=[2, 3, 4],
                    help="scales to measure (default 2,3,4; bsd100 has x4 only)")
    add_run_options(ap, "upscale", METHODS)
    ap.add_argument("--model", default=None,
                    help="model for every scale, passed as `--model`; {scale} is replaced by the scale "
                         "(e.g. my-sr-x{scale}.safetensors). Default: aetool's shipped model for the scale")
    for s in (2, 3, 4):
        ap.add_argument(f"--model-x{s}", default=None, help=f"model for x{s} (overrides --model)")
    ap.add_argument("--update-cards", action="store_true",
                    help="write the measured aetool Y-PSNR/SSIM per set into the metrics of the card of the "
                         "model used for each scale (refused with --limit)")
    args = ap.parse_args(argv)
    check_methods(ap, args, METHODS)
    args.sets, args.set_dirs = named_sets(args.sets)
    bad = set(args.sets) - set(SETS) - set(args.set_dirs)
    if bad:
        ap.error(f"unknown set(s) {', '.join(sorted(bad))}; choose from {', '.join(SETS)}")
    if args.update_cards and args.limit:
        ap.error("--update-cards measures whole sets: leave out --limit")
    if args.update_cards and "aetool" not in args.methods:
        ap.error("--update-cards needs the aetool method")
    args.methods = [m for m in METHODS if m in args.methods]
    scales = {name: [s for s in (2, 3, 4) if (folder / f"x{s}" / "hr").is_dir()] for name, folder in args.set_dirs.items()}
    scales.update(SETS)
    args.cells = [(name, s) for name in args.sets for s in scales[name] if s in args.scales]
    if not args.cells:
        ap.error("no set has any of the scales asked for")
    return args


def model_for(args, scale: int) -> str | None:
    """The --model argument for a scale, or None for aetool's shipped default."""
    explicit = getattr(args, f"model_x{scale}", None)
    if explicit:
        return explicit
    return args.model.replace("{scale}", str(scale)) if args.model else None


# ---------------------------------------------------------------- the protocol
def y_channel(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of a uint8 RGB image: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 with
    R, G, B in [0, 1] (so Y in [16, 235]), float64, not rounded."""
    x = rgb.astype(np.float64) / 255.0
    return 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2])


def score_image(hr: np.ndarray, out: np.ndarray, scale: int) -> dict:
    """Y-PSNR and Y-SSIM of an output (uint8 RGB) against its HR image, `scale` pixels cropped from
    each border. A size difference below `scale` pixels is scored on the common top-left part."""
    (H, W), (h, w) = hr.shape[:2], out.shape[:2]
    row: dict = {}
    if (h, w) != (H, W):
        if abs(h - H) >= scale or abs(w - W) >= scale:
            return {"error": f"output is {w}x{h}, HR is {W}x{H}"}
        h, w = min(h, H), min(w, W)
        hr, out = hr[:h, :w], out[:h, :w]
        row["cropped_to"] = [w, h]
    c = scale
    if h <= 2 * c or w <= 2 * c:
        return {"error": f"image {w}x{h} is too small for a {c}-pixel border crop"}
    y_ref, y_out = y_channel(hr)[c:-c, c:-c], y_channel(out)[c:-c, c:-c]
    row.update({"psnr": psnr(y_ref, y_out), "ssim": ssim(y_ref, y_out)})
    return row


def find_output(out: Path, name: str, reported: dict) -> Path | None:
    for p in (reported.get(name), out / name, out / (Path(name).stem + ".png")):
        if p is not None and Path(p).is_file():
            return Path(p)
    return None


def score(hr_images, scale: int, out: Path, stdout: str) -> dict:
    """Per-image scores of the outputs in `out`; the set's means when every image has one."""
    reported = {Path(o["input"]).name: Path(o["output"]) for o in json_lines(stdout)
                if isinstance(o.get("input"), str) and isinstance(o.get("output"), str)}
    rows = []
    for name, hr in hr_images:
        path = find_output(out, name, reported)
        if path is None:
            rows.append({"file": name, "error": "no output"})
            continue
        try:
            result = read_image(path, "RGB")
        except OSError as exc:
            rows.append({"file": name, "error": f"cannot read the output: {exc}"})
            continue
        rows.append({"file": name, **score_image(hr, result, scale)})
    bad = [r for r in rows if "error" in r]
    cell: dict = {"images": rows}
    if bad:
        cell["error"] = (f"{len(bad)} of {len(rows)} images not scored ({bad[0]['file']}: {bad[0]['error']}"
                         + (", ..." if len(bad) > 1 else "") + ")")
        return cell
    cell["psnr"] = float(np.mean([r["psnr"] for r in rows]))
    cell["ssim"] = float(np.mean([r["ssim"] for r in rows]))
    cell["cropped"] = sum("cropped_to" in r for r in rows)
    return cell


def command(method: str, args, scale: int, inp: Path, out: Path) -> list[str]:
    if method == "aetool":
        cmd = resolve_command(args.aetool) + ["upscale", str(inp), "-o", str(out), "--scale", str(scale),
                                              "-q", "--json", "--overwrite"]
        model = model_for(args, scale)
        return cmd + (["--model", model] if model else [])
    return [sys.executable, str(Path(__file__).with_name("sr_baselines.py")), method, "--scale", str(scale),
            str(inp), str(out)]


def input_folder(lr_dir: Path, names: list[str], work: Path, limited: bool) -> Path:
    """The LR folder itself, or with --limit a folder of symbolic links to its first files (the data
    is read where it lies, never copied)."""
    if not limited:
        return lr_dir
    sub = work / "lr" / lr_dir.parent.parent.name / lr_dir.parent.name
    shutil.rmtree(sub, ignore_errors=True)
    sub.mkdir(parents=True)
    for n in names:
        (sub / n).symlink_to((lr_dir / n).resolve())
    return sub


# ---------------------------------------------------------------- model cards
def aetool_card_info(args, name: str) -> dict | None:
    """`aetool models info NAME --json` (or without --json, which also prints JSON), parsed."""
    base = resolve_command(args.aetool) + ["models", "info", name]
    for cmd in (base + ["--json"], base):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode == 0:
            try:
                data = json.loads(proc.stdout)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data
    return None


def default_card_path(scale: int, weights: Path = ROOT / "weights") -> Path | None:
    """The card in weights/ of the shipped default upscaler for a scale (colour preferred)."""
    found = []
    for p in sorted(weights.glob("*.json")):
        try:
            card = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(card, dict) or card.get("task") != "upscale" or not card.get("default"):
            continue
        if (card.get("config") or {}).get("scale", card.get("scale")) == scale:
            found.append((card.get("channels", 3) != 3, p))
    return min(found)[1] if found else None


def card_path(args, scale: int) -> Path | None:
    """The card JSON of the model `aetool upscale` used for a scale, or None if it cannot be found."""
    model = model_for(args, scale)
    if model is None:
        return default_card_path(scale)
    if model.endswith(".safetensors") or Path(model).is_file():
        p = Path(model).with_suffix(".json")
        return p if p.is_file() else None
    info = aetool_card_info(args, model)
    if info and info.get("path"):
        p = Path(info["path"]).with_suffix(".json")
        if p.is_file():
            return p
    p = ROOT / "weights" / f"{model}.json"
    return p if p.is_file() else None


def update_cards(args, info: dict, results: dict, counts: dict) -> list[str]:
    """Write aetool's measured Y-PSNR/SSIM per set (and speed) into the `metrics` of the card of
    the model used for each scale. Returns what was done, one line per scale."""
    done = []
    by_scale: dict[int, list[str]] = {}
    for name, s in args.cells:
        by_scale.setdefault(s, []).append(name)
    for s, sets in sorted(by_scale.items()):
        cells = {n: results.get("aetool", {}).get(n, {}).get(f"x{s}", {}) for n in sets}
        cells = {n: c for n, c in cells.items() if "psnr" in c}
        path = card_path(args, s)
        if not cells:
            done.append(f"x{s}: no aetool results, no card changed")
            continue
        if path is None:
            done.append(f"x{s}: no card found for {model_for(args, s) or 'the shipped default'}, nothing written")
            continue
        card = json.loads(path.read_text())
        metrics: dict = {}  # from this run only: numbers of an earlier model must not linger
        card["metrics"] = metrics
        for n, c in cells.items():
            metrics.setdefault("psnr_y", {})[n] = round(c["psnr"], 2)
            metrics.setdefault("ssim_y", {})[n] = round(c["ssim"], 4)
            metrics.setdefault("images", {})[n] = {"used": counts[(n, s)][0], "in_set": counts[(n, s)][1]}
        secs = [c["seconds"] for c in cells.values() if c.get("seconds") is not None]
        mps = [c["megapixels"] for c in cells.values() if c.get("seconds") is not None]
        if secs:
            metrics["seconds_per_output_megapixel"] = round(sum(secs) / sum(mps), 3)
        metrics.update({"protocol": f"docs/protocol.md super-resolution x{s}: Y channel (BT.601), "
                                    f"{s}-pixel border crop (benchmarks/upscale.py)",
                        "measured": info["date"], "machine": machine_line(info["machine"])})
        path.write_text(json.dumps(card, indent=2) + "\n")
        done.append(f"x{s}: updated the metrics of {path}")
    return done


# ---------------------------------------------------------------- report
def label(method: str) -> str:
    return {"aetool": "aetool", "bicubic": "bicubic (Pillow)", "lanczos": "Lanczos (Pillow)"}[method]


def cell_name(name: str, s: int) -> str:
    return f"{SET_LABELS.get(name, name)} x{s}"


def get(results, method, name, s, key="psnr"):
    return results.get(method, {}).get(name, {}).get(f"x{s}", {}).get(key)


def speed(results, method, cells):
    """Seconds per output megapixel over all the folders that ran (total time / total MP)."""
    cs = [results.get(method, {}).get(n, {}).get(f"x{s}", {}) for n, s in cells]
    cs = [c for c in cs if c.get("seconds") is not None]
    return sum(c["seconds"] for c in cs) / sum(c["megapixels"] for c in cs) if cs else None


def table(results, methods, cells, key, with_speed) -> str:
    fmt = (lambda v: f"{v:.2f}") if key == "psnr" else (lambda v: f"{v:.4f}")
    header = ["method"] + [cell_name(n, s) for n, s in cells] + (["s/MP (output)"] if with_speed else [])
    rows = []
    for m in methods:
        row = [label(m)] + [fmt(v) if (v := get(results, m, n, s, key)) is not None else "error" for n, s in cells]
        if with_speed:
            row.append(f"{v:.3f}" if (v := speed(results, m, cells)) is not None else "–")
        rows.append(row)
    return md_table(header, rows)


def notes(results, methods, cells) -> list[str]:
    out = []
    for m in methods:
        for n, s in cells:
            c = results.get(m, {}).get(n, {}).get(f"x{s}", {})
            if c.get("error"):
                out.append(f"- {label(m)}, {cell_name(n, s)}: {c['error']}")
            elif c.get("cropped"):
                out.append(f"- {label(m)}, {cell_name(n, s)}: {c['cropped']} output(s) differed in size from "
                           "HR by less than the scale and were scored on the common part")
    return out


def targets(results, cells, ran_aetool: bool) -> list[dict]:
    rows = []
    for n, s in cells:
        if (n, s) not in TARGETS:
            continue
        need, a, b = TARGETS[(n, s)], get(results, "aetool", n, s), get(results, "bicubic", n, s)
        row = {"set": cell_name(n, s), "needed": need, "aetool": a, "bicubic": b,
               "margin": None if a is None else a - need}
        row["result"] = ("PASS" if a >= need else "MISS") if a is not None else \
            ("n/a (aetool failed)" if ran_aetool else "n/a (aetool not run)")
        rows.append(row)
    return rows


def report(args, info, counts, results, target_rows, models) -> str:
    subset = f" — **subset: only the first {args.limit} by file name (--limit)**" if args.limit else ""
    cells = args.cells
    lines = [
        "## Super-resolution" + ("" if args.section == "upscale" else f" ({args.section})"), "",
        f"Measured {info['date']} on {machine_line(info['machine'])}.  ",
        f"Command: `{info['command']}`  ",
        "Images: " + ", ".join(f"{cell_name(n, s)} {counts[(n, s)][0]} of {counts[(n, s)][1]}" for n, s in cells)
        + subset + ".",
        "",
        "Protocol: docs/protocol.md. Input: the provided LR PNG (MATLAB bicubic downscaling of HR). "
        "Scored against HR on the Y channel (BT.601, Y = 16 + (65.481 R + 128.553 G + 24.966 B)/255 with RGB "
        "in [0, 1], float64), `scale` pixels cropped from each border; PSNR (dB, data range 255) and SSIM "
        "(skimage, data_range 255), means per set. Grey images are scored with R = G = B. Bicubic and Lanczos "
        "are Pillow's `Image.resize` (BICUBIC, LANCZOS) by the integer scale (benchmarks/sr_baselines.py). "
        "Every method runs as one command per folder; s/MP = wall time (median of "
        f"{args.repeats}) per megapixel of output, over all folders, interpreter start and model loading included.",
    ]
    if "aetool" in args.methods:
        lines += ["", "aetool models: " + "; ".join(f"x{s}: {models[s]}" for s in sorted(models)) + "."]
    lines += ["", "### Y-PSNR (dB)", "", table(results, args.methods, cells, "psnr", True),
              "", "### Y-SSIM", "", table(results, args.methods, cells, "ssim", False)]
    if extra := notes(results, args.methods, cells):
        lines += [""] + extra
    if target_rows:
        f2 = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        lines += ["", "### Targets", "",
                  "aetool's mean Y-PSNR per set against the targets of the super-resolution issue; bicubic "
                  "from this run for reference.", "",
                  md_table(["set", "aetool (dB)", "needed (dB)", "margin (dB)", "result", "bicubic, this run (dB)"],
                           [[r["set"], f2(r["aetool"]), f"≥ {r['needed']:.1f}",
                             "–" if r["margin"] is None else f"{r['margin']:+.2f}", r["result"], f2(r["bicubic"])]
                            for r in target_rows])]
    if info["machine"].get("gpu") and "aetool" in args.methods:
        lines += ["", "A GPU was present: aetool may have used it (its timings are not CPU-only)."]
    return "\n".join(lines) + "\n"


def describe_models(args) -> dict:
    """What `--model` each scale runs with, for the report: a name, or the shipped default's card."""
    out = {}
    for s in sorted({s for _, s in args.cells}):
        model = model_for(args, s)
        if model:
            out[s] = f"`{model}`"
        else:
            p = default_card_path(s)
            out[s] = f"shipped default `{p.stem}`" if p else "shipped default (no card found in weights/)"
    return out


def aetool_version(args) -> str | None:
    try:
        proc = subprocess.run(resolve_command(args.aetool) + ["--version"], capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "command": shlex.join([sys.executable] + (sys.argv if argv is None else [__file__, *argv])),
            "data": str(args.data.resolve()), "limit": args.limit, "methods": args.methods,
            "cells": [f"{n} x{s}" for n, s in args.cells], "repeats": args.repeats,
            "models": {f"x{s}": model_for(args, s) for s in sorted({s for _, s in args.cells})}}
    if "aetool" in args.methods:
        info["aetool_version"] = aetool_version(args)
    models = describe_models(args) if "aetool" in args.methods else {}
    work = args.work or Path(tempfile.mkdtemp(prefix="upscale-bench-"))
    results: dict = {m: {} for m in args.methods}
    counts = {}
    try:
        for name, s in args.cells:
            folder = args.set_dirs.get(name, args.data / "test" / "sr" / name) / f"x{s}"
            paths = list_images(folder / "hr")
            if not paths:
                raise SystemExit(f"no images in {folder / 'hr'}")
            used = paths[:args.limit]
            counts[(name, s)] = (len(used), len(paths))
            hr_images = [(p.name, read_image(p, "RGB")) for p in used]
            mp = megapixels(hr for _, hr in hr_images)
            inp = input_folder(folder / "lr", [p.name for p in used], work,
                               args.limit is not None and args.limit < len(paths))
            for method in args.methods:
                out = work / "out" / method / name / f"x{s}"
                cell, run = measure(command(method, args, s, inp, out), args.repeats, out, mp,
                                    lambda stdout: score(hr_images, s, out, stdout))
                results[method].setdefault(name, {})[f"x{s}"] = cell
                msg = cell.get("error") or f"Y-PSNR {cell['psnr']:.2f} dB, Y-SSIM {cell['ssim']:.4f}, " \
                                           f"{cell['s_per_mp']:.3f} s/MP"
                print(f"{cell_name(name, s)} {method}: {msg}", file=sys.stderr, flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    target_rows = targets(results, args.cells, "aetool" in args.methods)
    text = report(args, info, counts, results, target_rows, models)
    write_section(args.out_md, args.section, text)
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(
        {**info, "images": {f"{n} x{s}": {"used": u, "in_set": t} for (n, s), (u, t) in counts.items()},
         "results": results, "targets": target_rows}, indent=1) + "\n")
    print(text)
    print(f"wrote {args.out_md} and {args.out_json}", file=sys.stderr)
    if args.update_cards:
        for line in update_cards(args, info, results, counts):
            print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
