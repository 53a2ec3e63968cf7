"""Denoising benchmark: aetool against BM3D/CBM3D and OpenCV non-local means, by the protocol of
docs/protocol.md ("Rules common to every task" and "Denoising").

For every test set and noise level sigma it writes the noisy inputs as 8-bit PNGs (image i of the
set sorted by file name gets clip(round(x + n), 0, 255), n drawn from
numpy.random.default_rng(1000 * sigma + i)), runs each method as a command over that folder
(`aetool denoise` blind and told sigma, and blind with --precision fp32 to show what the default
bf16 on CPUs with native bf16 costs; benchmarks/baselines.py for BM3D and NLM), times the whole
folder, and scores the outputs: PSNR (data range 255, RGB) and SSIM (skimage), mean per set, time
in seconds per megapixel of input (median of --repeats runs). It writes a markdown section (between
<!-- denoise:begin --> and <!-- denoise:end --> of --out-md) with the tables and a check of the
project's targets, and a JSON file with every per-image number.

--published adds the protocol of the papers (DnCNN, FFDNet, DRUNet): float image in [0, 1],
unclipped noise from numpy.random.seed(0), aetool's Python API, output rounded to uint8.

Full run (BM3D costs about 70 s per megapixel on 2 cores, so this takes hours):
    python benchmarks/denoise.py --published --update-cards
Quick check of the plumbing:
    python benchmarks/denoise.py --limit 1 --sigmas 25 --sets kodak24 --gray-sets set12 \\
        --methods bm3d,nlm --out-md /tmp/bench.md --out-json /tmp/bench.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from aetool.noise import add_gaussian_noise

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import NLM_RULE  # noqa: E402
from common import (ROOT, add_run_options, check_methods, cpu_precision, json_lines, list_images,  # noqa: E402
                    machine, machine_line, md_table, measure, megapixels, psnr, read_image,
                    named_sets, resolve_command, ssim, to_uint8, write_png, write_section)

METHODS = ["aetool-blind", "aetool-sigma", "aetool-blind-fp32", "bm3d", "nlm"]
CARDS = {"color": ROOT / "weights" / "denoise-color.json", "gray": ROOT / "weights" / "denoise-gray.json"}


def parse_args(argv=None):
    csv = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="data folder (default: ../shared/data from the project root); sets are read "
                         "from DATA/test/denoise/<set>")
    ap.add_argument("--sets", type=csv, default=csv("cbsd68,kodak24,mcmaster"), help="colour sets (read as RGB); LABEL=FOLDER adds a folder of clean photos from elsewhere")
    ap.add_argument("--gray-sets", type=csv, default=csv("set12,bsd68"), help="grey sets (read as L)")
    ap.add_argument("--sigmas", type=lambda s: [int(x) for x in csv(s)], default=[15, 25, 50],
                    help="noise levels, 0-255 units (default 15,25,50)")
    add_run_options(ap, "denoise", METHODS)
    ap.add_argument("--update-cards", action="store_true",
                    help="write the aetool-blind numbers into the metrics of weights/denoise-{color,gray}.json "
                         "(with --limit the card says how many images per set were measured)")
    ap.add_argument("--published", action="store_true",
                    help="also run the published-paper protocol through aetool's Python API")
    args = ap.parse_args(argv)
    args.set_dirs = {}
    for attr in ("sets", "gray_sets"):
        labels, folders = named_sets(getattr(args, attr))
        setattr(args, attr, labels)
        args.set_dirs.update(folders)
    check_methods(ap, args, METHODS)
    args.methods = [m for m in METHODS if m in args.methods]
    return args


# ---------------------------------------------------------------- the protocol
def load_set(data: Path, name: str, mode: str, limit: int | None, folder: Path | None = None):
    folder = folder or data / "test" / "denoise" / name
    paths = list_images(folder)
    if not paths:
        raise SystemExit(f"no images in {folder}")
    return [(p.name, read_image(p, mode)) for p in paths[:limit]], len(paths)


def add_noise(clean: np.ndarray, sigma: int, i: int) -> np.ndarray:
    return add_gaussian_noise(clean, sigma, np.random.default_rng(1000 * sigma + i))


def command(method: str, args, sigma: int, inp: Path, out: Path) -> list[str]:
    if method.startswith("aetool"):
        cmd = resolve_command(args.aetool) + ["denoise", str(inp), "-o", str(out), "-q", "--json", "--overwrite"]
        if method == "aetool-blind-fp32":  # what the default (bf16 on CPUs that have it) costs in PSNR
            cmd += ["--precision", "fp32"]
        return cmd + (["--sigma", str(sigma)] if method == "aetool-sigma" else [])
    return [sys.executable, str(Path(__file__).with_name("baselines.py")), method, "--sigma", str(sigma),
            str(inp), str(out)]


def find_output(out: Path, name: str, reported: dict) -> Path | None:
    for p in (reported.get(name), out / name, out / (Path(name).stem + ".png")):
        if p is not None and Path(p).is_file():
            return Path(p)
    return None


def score(images, mode: str, out: Path, stdout: str) -> dict:
    """Per-image PSNR/SSIM of the outputs in `out` against the clean images."""
    reported = {Path(o["input"]).name: Path(o["output"]) for o in json_lines(stdout)
                if isinstance(o.get("input"), str) and isinstance(o.get("output"), str)}
    rows, missing = [], []
    for name, clean in images:
        path = find_output(out, name, reported)
        result = read_image(path, mode) if path else None
        if result is None or result.shape != clean.shape:
            missing.append(name)
            continue
        rows.append({"file": name, "psnr": psnr(clean, result), "ssim": ssim(clean, result)})
    if missing:
        return {"error": f"no usable output for {len(missing)} of {len(images)} images ({missing[0]}, ...)"}
    return {"psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows])),
            "images": rows}


def run_published(images, sigma: int, methods: list[str]) -> dict:
    """Papers' protocol: float x in [0,1], unclipped noise from numpy.random.seed(0) per image,
    aetool.denoise on the float array, output rounded to uint8, PSNR as above."""
    try:
        from aetool import denoise
    except Exception as exc:  # the API may not exist yet
        return {m: {"error": f"cannot import aetool.denoise: {exc}"} for m in methods}
    res = {}
    for m in methods:
        rows = []
        try:
            for name, clean in images:
                x = clean.astype(np.float64) / 255.0
                np.random.seed(0)
                noisy = x + np.random.normal(0, sigma / 255.0, x.shape)
                precision = "fp32" if m == "aetool-blind-fp32" else "auto"
                out = denoise(noisy, sigma=sigma if m == "aetool-sigma" else None, precision=precision)
                rows.append({"file": name, "psnr": psnr(clean, to_uint8(np.asarray(out), 255.0))})
            res[m] = {"psnr": float(np.mean([r["psnr"] for r in rows])), "images": rows}
        except Exception as exc:
            res[m] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return res


# ---------------------------------------------------------------- report
def label(method: str, group: str) -> str:
    return {"aetool-blind": "aetool (blind)", "aetool-sigma": "aetool (told sigma)",
            "aetool-blind-fp32": "aetool (blind, --precision fp32)",
            "bm3d": "CBM3D" if group == "color" else "BM3D", "nlm": "OpenCV NLM"}[method]


def get(results, method, name, sigma, key="psnr"):
    return results.get(method, {}).get(name, {}).get(str(sigma), {}).get(key)


def set_average(results, method, sets, sigma, key="psnr"):
    vals = [get(results, method, s, sigma, key) for s in sets]
    return None if not vals or None in vals else float(np.mean(vals))


def speed(results, method, sets):
    """Seconds per megapixel over all the folders of a group that ran (total time / total MP)."""
    cells = [c for s in sets for c in results.get(method, {}).get(s, {}).values() if c.get("seconds") is not None]
    return sum(c["seconds"] for c in cells) / sum(c["megapixels"] for c in cells) if cells else None


def table(results, methods, group, sets, sigmas, key, with_speed) -> str:
    fmt = (lambda v: f"{v:.2f}") if key == "psnr" else (lambda v: f"{v:.4f}")
    header = ["method"] + [f"{s} σ{sg}" for sg in sigmas for s in sets + ["avg"]] + (["s/MP"] if with_speed else [])
    rows = []
    for m in methods:
        row = [label(m, group)]
        for sg in sigmas:
            row += [fmt(v) if (v := get(results, m, s, sg, key)) is not None else "fail" for s in sets]
            row.append(fmt(v) if (v := set_average(results, m, sets, sg, key)) is not None else "–")
        if with_speed:
            row.append(f"{v:.2f}" if (v := speed(results, m, sets)) is not None else "–")
        rows.append(row)
    return md_table(header, rows)


def errors(results, methods, sets) -> list[str]:
    notes = []
    for m in methods:
        msgs = {c["error"] for s in sets for c in results.get(m, {}).get(s, {}).values() if c.get("error")}
        notes += [f"- {m} failed: {msg}" for msg in sorted(msgs)]
    return notes


def targets(results, groups, sigmas) -> list[dict]:
    rows = []

    def add(target, scope, measured, needed, margin, ok):
        rows.append({"target": target, "scope": scope, "measured": measured, "needed": needed,
                     "margin": margin, "result": "n/a" if ok is None else ("PASS" if ok else "MISS")})

    for group, sets in groups.items():
        base = label("bm3d", group)
        name = f"({1 if group == 'color' else 2}) {group}: blind ≥ {base} + 0.5 dB, no set below"
        for sg in sigmas:
            a, b = set_average(results, "aetool-blind", sets, sg), set_average(results, "bm3d", sets, sg)
            if a is None or b is None:
                add(name, f"σ{sg}", "–", "–", "–", None)
                continue
            worst = min(sets, key=lambda s: get(results, "aetool-blind", s, sg) - get(results, "bm3d", s, sg))
            d_worst = get(results, "aetool-blind", worst, sg) - get(results, "bm3d", worst, sg)
            margin = min(a - b - 0.5, d_worst)
            add(name, f"σ{sg}", f"{a:.2f} dB (worst set {worst}: {d_worst:+.2f} vs {base})",
                f"≥ {b + 0.5:.2f} dB, every set ≥ {base}", f"{margin:+.2f} dB", margin >= 0)
    all_sets = [s for sets in groups.values() for s in sets]
    for sg in sigmas:
        diffs = {s: get(results, "aetool-blind", s, sg) - get(results, "aetool-sigma", s, sg) for s in all_sets
                 if get(results, "aetool-blind", s, sg) is not None and get(results, "aetool-sigma", s, sg) is not None}
        name = "(3) blind within 0.2 dB of told sigma, every set"
        if not diffs or len(diffs) < len(all_sets):
            add(name, f"σ{sg}", "–", "–", "–", None)
            continue
        worst = min(diffs, key=diffs.get)
        add(name, f"σ{sg}", f"worst {worst}: {diffs[worst]:+.2f} dB", "≥ -0.20 dB",
            f"{diffs[worst] + 0.2:+.2f} dB", diffs[worst] >= -0.2)
    for group, sets in groups.items():
        ours = [v for m in ("aetool-blind", "aetool-sigma") if (v := speed(results, m, sets)) is not None]
        base, name = speed(results, "bm3d", sets), f"(4) speed, {group}: aetool s/MP ≤ {label('bm3d', group)} / 10"
        if not ours or base is None:
            add(name, "all σ", "–", "–", "–", None)
            continue
        a = max(ours)
        add(name, "all σ", f"{a:.2f} s/MP", f"≤ {base / 10:.2f} s/MP", f"{base / a:.1f}x faster (need 10x)",
            a <= base / 10)
    return rows


def published_table(pub, groups, sigmas) -> str:
    parts = []
    for group, sets in groups.items():
        methods = sorted({m for s in sets for c in pub.get(s, {}).values() for m in c})
        res = {m: {s: {str(sg): pub[s][str(sg)][m] for sg in sigmas} for s in sets} for m in methods}
        parts.append(table(res, methods, group, sets, sigmas, "psnr", False))
        if notes := errors(res, methods, sets):
            parts.append("\n".join(notes))
    return "\n\n".join(parts)


def report(args, info, counts, results, pub, target_rows, groups) -> str:
    subset = f" — **subset: only the first {args.limit} by file name (--limit)**" if args.limit else ""
    lines = [
        "## Denoising" + ("" if args.section == "denoise" else f" ({args.section})"), "",
        f"Measured {info['date']} on {machine_line(info['machine'])}.  ",
        f"Command: `{info['command']}`  ",
        "Images per set: " + ", ".join(f"{s} {n} of {total}" for s, (n, total) in counts.items()) + subset + ".",
        "",
        "Protocol: docs/protocol.md. 8-bit PNG inputs, noise clip(round(x + n)) with "
        "n from default_rng(1000·sigma + i); PSNR (dB, RGB, range 255) and SSIM (skimage) are means per set. "
        f"BM3D/CBM3D (`bm3d` package) is told the true sigma. {NLM_RULE}. Every method runs as one command "
        f"per folder; s/MP = wall time (median of {args.repeats}) per megapixel of input, over all folders of the "
        "group, interpreter start and model loading included. aetool runs with its defaults "
        f"(`--precision auto`, which is {info['aetool_cpu_precision']} on this CPU) unless the row says otherwise.",
    ]
    for group, sets in groups.items():
        title = "Colour" if group == "color" else "Grey"
        lines += ["", f"### {title}: PSNR (dB)", "", table(results, args.methods, group, sets, args.sigmas, "psnr", True),
                  "", f"### {title}: SSIM", "", table(results, args.methods, group, sets, args.sigmas, "ssim", False)]
        notes = errors(results, args.methods, sets)
        if notes:
            lines += [""] + notes
    lines += ["", "### Targets", "",
              md_table(["target", "σ", "measured", "needed", "margin", "result"],
                       [[r["target"], r["scope"], r["measured"], r["needed"], r["margin"], r["result"]]
                        for r in target_rows])]
    if info["machine"].get("gpu"):
        lines += ["", "A GPU was present: aetool may have used it, so (4) is not a CPU-only measurement."]
    if pub is not None:
        lines += ["", "### Published protocol (a different protocol: for comparison with papers only)", "",
                  "Float image in [0, 1] plus unclipped noise (`numpy.random.seed(0)` per image, "
                  "`normal(0, sigma/255)`), through `aetool.denoise`; output rounded to uint8; PSNR (dB).", "",
                  published_table(pub, groups, args.sigmas)]
    return "\n".join(lines) + "\n"


def update_cards(info, results, pub, groups, sigmas, counts) -> None:
    for group, sets in groups.items():
        path = CARDS[group]
        if not sets or not path.exists():
            continue
        card = json.loads(path.read_text())
        metrics: dict = {}  # from this run only: numbers of an earlier model must not linger
        found = False
        for s in sets:
            for sg in sigmas:
                if (p := get(results, "aetool-blind", s, sg)) is None:
                    continue
                found = True
                metrics.setdefault("psnr", {}).setdefault(s, {})[str(sg)] = round(p, 2)
                metrics.setdefault("ssim", {}).setdefault(s, {})[str(sg)] = round(get(results, "aetool-blind", s, sg, "ssim"), 4)
                if pub and "psnr" in pub[s][str(sg)].get("aetool-blind", {}):
                    metrics.setdefault("psnr_published_protocol", {}).setdefault(s, {})[str(sg)] = \
                        round(pub[s][str(sg)]["aetool-blind"]["psnr"], 2)
        if not found:
            print(f"no aetool-blind results for {group}; {path.name} left as it is", file=sys.stderr)
            continue
        at25 = [get(results, "aetool-blind", s, 25) for s in sets]
        if all(v is not None for v in at25):
            metrics["psnr_sigma25_blind_mean"] = round(float(np.mean(at25)), 2)
        metrics["images"] = {s: {"used": counts[s][0], "in_set": counts[s][1]} for s in sets}
        metrics.update({"protocol": "docs/protocol.md denoising, blind, 8-bit PNG with clipped noise "
                                    "(benchmarks/denoise.py)",
                        "measured": info["date"], "machine": machine_line(info["machine"])})
        if (v := speed(results, "aetool-blind", sets)) is not None:
            metrics["seconds_per_megapixel"] = round(v, 3)
        card["metrics"] = metrics
        path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"updated the metrics of {path}", file=sys.stderr)


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "command": shlex.join([sys.executable] + (sys.argv if argv is None else [__file__, *argv])),
            "data": str(args.data.resolve()), "limit": args.limit, "sigmas": args.sigmas, "methods": args.methods,
            "repeats": args.repeats, "nlm_rule": NLM_RULE, "aetool_cpu_precision": cpu_precision()}
    groups = {g: sets for g, sets in (("color", args.sets), ("gray", args.gray_sets)) if sets}
    mode = {s: ("RGB" if g == "color" else "L") for g, sets in groups.items() for s in sets}
    work = args.work or Path(tempfile.mkdtemp(prefix="denoise-bench-"))
    results = {m: {} for m in args.methods}
    pub = {} if args.published else None
    counts = {}
    aetool_methods = [m for m in args.methods if m.startswith("aetool")] or ["aetool-blind", "aetool-sigma"]
    try:
        for name in mode:
            images, total = load_set(args.data, name, mode[name], args.limit, args.set_dirs.get(name))
            counts[name] = (len(images), total)
            for sigma in args.sigmas:
                noisy_dir = work / "noisy" / name / f"sigma{sigma}"
                noisy_dir.mkdir(parents=True, exist_ok=True)
                for i, (fname, clean) in enumerate(images):
                    write_png(noisy_dir / fname, add_noise(clean, sigma, i))
                mp = megapixels(c for _, c in images)
                for method in args.methods:
                    out = work / "out" / method / name / f"sigma{sigma}"
                    cell, _ = measure(command(method, args, sigma, noisy_dir, out), args.repeats, out, mp,
                                      lambda stdout: score(images, mode[name], out, stdout))
                    results[method].setdefault(name, {})[str(sigma)] = cell
                    msg = cell.get("error") or f"PSNR {cell['psnr']:.2f} dB, SSIM {cell['ssim']:.4f}, " \
                                               f"{cell['s_per_mp']:.2f} s/MP"
                    print(f"{name} σ{sigma} {method}: {msg}", file=sys.stderr, flush=True)
                if pub is not None:
                    t0 = time.perf_counter()
                    pub.setdefault(name, {})[str(sigma)] = run_published(images, sigma, aetool_methods)
                    print(f"{name} σ{sigma} published protocol: "
                          + ", ".join(f"{m} {c['psnr']:.2f} dB" if "psnr" in c else f"{m} failed"
                                      for m, c in pub[name][str(sigma)].items())
                          + f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    target_rows = targets(results, groups, args.sigmas)
    text = report(args, info, counts, results, pub, target_rows, groups)
    write_section(args.out_md, args.section, text)
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps({**info, "images": {s: {"used": n, "in_set": t} for s, (n, t) in counts.items()},
                                         "results": results, "published": pub, "targets": target_rows}, indent=1) + "\n")
    print(text)
    print(f"wrote {args.out_md} and {args.out_json}", file=sys.stderr)
    if args.update_cards:
        update_cards(info, results, pub, groups, args.sigmas, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
