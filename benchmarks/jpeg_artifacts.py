"""JPEG artefact removal benchmark: `aetool denoise --kind jpeg` against the plain JPEG decode and
against aetool's Gaussian denoiser told a matched sigma, by the protocol of docs/protocol.md ("Rules
common to every task", "JPEG artefact removal").

For every set (classic5, grey, DATA/test/jpeg/classic5; kodak24 and cbsd68, colour,
DATA/test/denoise/<set>; any LABEL=FOLDER given to --sets or --gray-sets) and every quality of
--qualities (default 10, 20, 30, 40), each clean PNG is encoded by Pillow's JPEG encoder (libjpeg's
standard tables scaled to the quality, 4:2:0 chroma for colour, as `Image.save(..., quality=Q)`
does by default; grey files as one-channel JPEGs), and then:

- jpeg: the file decoded by Pillow (the anchor);
- aetool: `aetool denoise FOLDER -o OUT --kind jpeg -q --json --overwrite` over the set's folder of
  JPEG files, one command, timed (interpreter start and model loading included); the model reads
  each file's quality from its quantisation tables;
- gaussian: the shipped Gaussian denoiser (`aetool.denoise(..., sigma=S)`, the Python API, not
  timed) told, per image, the sigma that matches the JPEG error: S = the RMS difference (0-255)
  between the decoded JPEG and the clean image, the best a noise-level-driven denoiser can be told.

Scores against the clean image, 8-bit, float64: PSNR (colour: one MSE over the RGB channels) and
PSNR-B (Yim and Bovik, "Quality Assessment of Deblocked Images", IEEE TIP 20(1), 2011): the MSE plus
the blocking effect factor BEF = eta * (D_B - D_Bc) of the output, where D_B is the mean squared
difference of horizontally and vertically adjacent pixels that straddle an 8x8 block boundary,
D_Bc that of all other adjacent pairs, and eta = log2(8) / log2(min(H, W)) when D_B > D_Bc (else
0); colour: the mean BEF of the three channels.

It writes a markdown section (between <!-- jpeg-artifacts:begin --> and <!-- jpeg-artifacts:end -->
of --out-md), a JSON file with every per-image number, and a figure (one crop: clean, JPEG,
Gaussian denoiser, aetool).

    python benchmarks/heldout_photos.py /tmp/heldout
    python benchmarks/jpeg_artifacts.py --sets kodak24,cbsd68,heldout=/tmp/heldout/colour \\
        --gray-sets classic5,heldout-grey=/tmp/heldout/grey --update-card
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, add_run_options, failure, json_lines, list_images, machine, machine_line,  # noqa: E402
                    md_table, megapixels, named_sets, psnr, read_image, resolve_command, run_timed,
                    write_section)

METHODS = ["jpeg", "gaussian", "aetool"]
LABELS = {"jpeg": "JPEG (plain decode)", "gaussian": "Gaussian denoiser, matched sigma", "aetool": "aetool --kind jpeg"}
QUALITIES = [10, 20, 30, 40]
TARGETS = {10: 1.0, 40: 0.6}  # dB over the plain decode, on every set
# Published context, another protocol (MATLAB's JPEG encoder, grey): DnCNN (Zhang et al., IEEE TIP
# 26(7), 2017), Table V, classic5 PSNR (dB).
PUBLISHED_CLASSIC5 = {"JPEG": {10: 27.82, 20: 30.12, 30: 31.48, 40: 32.43},
                      "AR-CNN": {10: 29.03, 20: 31.15, 30: 32.51, 40: 33.34},
                      "DnCNN-3": {10: 29.40, 20: 31.63, 30: 32.91, 40: 33.77}}


def bef(img: np.ndarray, block: int = 8) -> float:
    """Blocking effect factor of one channel (Yim and Bovik 2011)."""
    y = img.astype(np.float64)
    h, w = y.shape
    dh = (y[:, :-1] - y[:, 1:]) ** 2  # pairs (j, j+1): a boundary when j + 1 is a multiple of 8
    dv = (y[:-1, :] - y[1:, :]) ** 2
    hb = np.zeros(w - 1, bool)
    hb[block - 1::block] = True
    vb = np.zeros(h - 1, bool)
    vb[block - 1::block] = True
    d_b_sum = dh[:, hb].sum() + dv[vb, :].sum()
    n_b = dh[:, hb].size + dv[vb, :].size
    d_c_sum = dh[:, ~hb].sum() + dv[~vb, :].sum()
    n_c = dh[:, ~hb].size + dv[~vb, :].size
    if n_b == 0 or n_c == 0:
        return 0.0
    d_b, d_c = d_b_sum / n_b, d_c_sum / n_c
    eta = np.log2(block) / np.log2(min(h, w)) if d_b > d_c else 0.0
    return float(eta * (d_b - d_c))


def psnr_b(ref: np.ndarray, out: np.ndarray) -> float:
    mse = np.mean((ref.astype(np.float64) - out.astype(np.float64)) ** 2)
    planes = [out] if out.ndim == 2 else [out[..., k] for k in range(out.shape[2])]
    mse_b = mse + float(np.mean([bef(p) for p in planes]))
    return float("inf") if mse_b == 0 else float(10 * np.log10(255.0 ** 2 / mse_b))


def encode_jpeg(ref: np.ndarray, quality: int, path: Path) -> None:
    Image.fromarray(ref).save(path, "JPEG", quality=quality)


def parse_args(argv=None):
    csv = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="data folder (default ../shared/data from the project root)")
    ap.add_argument("--sets", type=csv, default=["kodak24", "cbsd68"],
                    help="colour sets (DATA/test/denoise/<set>), or LABEL=FOLDER")
    ap.add_argument("--gray-sets", type=csv, default=["classic5"],
                    help="grey sets (DATA/test/jpeg/<set>, else DATA/test/denoise/<set>), or LABEL=FOLDER")
    ap.add_argument("--qualities", type=lambda s: [int(x) for x in csv(s)], default=list(QUALITIES))
    ap.add_argument("--model", default=None, help="aetool's JPEG model (name or file; default denoise-jpeg)")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "jpeg-artifacts.png")
    ap.add_argument("--update-card", action="store_true",
                    help="write the measured figures into the model's card (weights/denoise-jpeg.json)")
    add_run_options(ap, "jpeg-artifacts", METHODS)
    args = ap.parse_args(argv)
    args.colour_sets, colour_dirs = named_sets(args.sets)
    args.grey_sets, grey_dirs = named_sets(args.gray_sets)
    args.set_dirs = {**colour_dirs, **grey_dirs}
    return args


def set_folder(args, name: str, grey: bool) -> Path:
    if name in args.set_dirs:
        return args.set_dirs[name]
    jpeg_dir = args.data / "test" / "jpeg" / name
    return jpeg_dir if grey and jpeg_dir.is_dir() else args.data / "test" / "denoise" / name


def run_set(args, name: str, grey: bool, work: Path) -> dict:
    from aetool import denoise

    folder = set_folder(args, name, grey)
    paths = list_images(folder)[:args.limit]
    if not paths:
        raise SystemExit(f"no images in {folder}")
    refs = {p.stem: read_image(p, "L" if grey else "RGB") for p in paths}
    mp = megapixels(refs.values())
    out: dict = {"grey": grey, "images": len(refs), "megapixels": mp, "qualities": {}}
    for q in args.qualities:
        jdir, adir = work / name / f"q{q}" / "jpeg", work / name / f"q{q}" / "aetool"
        jdir.mkdir(parents=True, exist_ok=True)
        for stem, ref in refs.items():
            encode_jpeg(ref, q, jdir / f"{stem}.jpg")
        cell: dict = {"images": {}}
        if "aetool" in args.methods:
            cmd = resolve_command(args.aetool) + ["denoise", str(jdir), "-o", str(adir), "--kind", "jpeg", "-q",
                                                  "--json", "--overwrite"] + (["--model", args.model] if args.model
                                                                              else [])
            run = run_timed(cmd, args.repeats, before=lambda d=adir: (shutil.rmtree(d, ignore_errors=True),
                                                                      d.mkdir(parents=True)))
            lines = {Path(o["input"]).stem: o for o in json_lines(run.stdout) if isinstance(o.get("input"), str)}
            cell["aetool_seconds"] = run.seconds
            cell["aetool_s_per_mp"] = run.seconds / mp if run.seconds else None
            if run.error:
                cell["aetool_error"] = failure(run)
        for stem, ref in refs.items():
            jpeg = np.asarray(Image.open(jdir / f"{stem}.jpg").convert("L" if grey else "RGB"))
            row = {"bytes": (jdir / f"{stem}.jpg").stat().st_size}
            outs = {"jpeg": jpeg}
            if "gaussian" in args.methods:
                sigma = float(np.sqrt(np.mean((jpeg.astype(np.float64) - ref) ** 2)))
                row["matched_sigma"] = sigma
                outs["gaussian"] = np.asarray(denoise(jpeg, sigma=sigma))
            if "aetool" in args.methods:
                path = adir / f"{stem}.png"
                if path.is_file():
                    outs["aetool"] = np.asarray(Image.open(path).convert("L" if grey else "RGB"))
                    line = lines.get(stem, {})
                    row["aetool_quality_read"] = line.get("jpeg_quality")
                else:
                    row["aetool_error"] = (lines.get(stem) or {}).get("error", "no output")
            for m, img in outs.items():
                if img.shape != ref.shape:
                    row[f"{m}_error"] = f"output is {img.shape}, the original {ref.shape}"
                    continue
                row[m] = {"psnr": psnr(ref, img), "psnr_b": psnr_b(ref, img)}
            cell["images"][stem] = row
            if args.figure and name == args.figure_set and q == min(args.qualities) and stem == args.figure_image:
                args.figure_arrays = {"clean": ref, **outs}
        for m in args.methods:
            rows = [r[m] for r in cell["images"].values() if m in r]
            if len(rows) == len(refs):
                cell[m] = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "psnr_b")}
        out["qualities"][str(q)] = cell
        print(f"{name} q{q}: " + ", ".join(f"{m} {cell[m]['psnr']:.2f}/{cell[m]['psnr_b']:.2f}" for m in args.methods
                                           if m in cell), file=sys.stderr, flush=True)
    return out


def targets(results, args) -> list[list[str]]:
    rows = []
    for name, res in results.items():
        for q, need in TARGETS.items():
            cell = res["qualities"].get(str(q), {})
            if "aetool" not in cell or "jpeg" not in cell:
                rows.append([f"PSNR gain at q{q} ≥ +{need} dB", name, "–", "n/a (not run)"])
                continue
            gain = cell["aetool"]["psnr"] - cell["jpeg"]["psnr"]
            rows.append([f"PSNR gain at q{q} ≥ +{need} dB", name, f"{gain:+.2f} dB", "PASS" if gain >= need else "MISS"])
    return rows


def figure(path: Path, arrays: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = arrays["clean"]
    h, w = ref.shape[:2]
    s = min(160, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    names = [k for k in ("clean", "jpeg", "gaussian", "aetool") if k in arrays]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.5))
    for ax, k in zip(np.atleast_1d(axes), names):
        crop = arrays[k][y:y + s, x:x + s]
        ax.imshow(crop, cmap="gray" if crop.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        label = "clean" if k == "clean" else f"{LABELS[k]}\n{psnr(ref, arrays[k]):.2f} dB"
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args, info, results, target_rows) -> str:
    lines = ["## JPEG artefact removal", "",
             f"Measured {info['date']} on {machine_line(info['machine'])}.  ",
             f"Command: `{info['command']}`", "",
             "Protocol: docs/protocol.md (\"JPEG artefact removal\"). Clean PNGs encoded by Pillow "
             f"{info['pillow']} JPEG at each quality (libjpeg tables, 4:2:0 for colour, grey as one-channel JPEG). "
             "PSNR: 8-bit, float64, one MSE over RGB for colour; PSNR-B: the MSE plus the blocking effect factor of "
             "Yim and Bovik (2011), 8x8 blocks, mean over RGB channels. aetool: `aetool denoise FOLDER -o OUT --kind "
             "jpeg` over each folder (the quality read from each file's tables); the Gaussian denoiser (shipped "
             "`denoise-color` / `denoise-gray`, Python API) is told per image the RMS error of the JPEG as sigma. "
             "Mean over each set's images. s/MP: wall time of the aetool command per megapixel, start-up and model "
             "loading included." + (f" **Subset: first {args.limit} images per set (--limit).**" if args.limit else ""),
             ""]
    for name, res in results.items():
        header = ["quality"] + [f"{LABELS[m]} PSNR / PSNR-B" for m in args.methods] + ["aetool gain (PSNR)",
                                                                                        "aetool s/MP"]
        rows = []
        for q, cell in res["qualities"].items():
            row = [q]
            for m in args.methods:
                row.append(f"{cell[m]['psnr']:.2f} / {cell[m]['psnr_b']:.2f}" if m in cell else
                           "– (" + cell.get(f"{m}_error", "not scored") + ")")
            gain = (cell["aetool"]["psnr"] - cell["jpeg"]["psnr"]) if "aetool" in cell and "jpeg" in cell else None
            row.append(f"{gain:+.2f} dB" if gain is not None else "–")
            row.append(f"{cell['aetool_s_per_mp']:.2f}" if cell.get("aetool_s_per_mp") else "–")
            rows.append(row)
        kind = "grey" if res["grey"] else "colour"
        lines += [f"### {name} ({res['images']} {kind} images, {res['megapixels']:.2f} MP)", "",
                  md_table(header, rows), ""]
    lines += ["### Targets", "", md_table(["target", "set", "measured", "result"], target_rows), ""]
    pub = [[m] + [f"{v[q]:.2f}" for q in QUALITIES] for m, v in PUBLISHED_CLASSIC5.items()]
    lines += ["### Published context (another protocol: MATLAB JPEG encoder; not comparable figure for figure)", "",
              "classic5 PSNR (dB) from the DnCNN paper (Zhang et al., IEEE TIP 2017, Table V); compare the gains over "
              "each paper's own JPEG row, not the absolute values. FBCNN (Jiang et al., ICCV 2021) publishes its "
              "classic5 and LIVE1 tables as images in its repository (figs/single_table.png); they are not "
              "transcribed here.", "",
              md_table(["method"] + [f"q{q}" for q in QUALITIES], pub), ""]
    if info.get("figure_rel"):
        lines += [f"![{info['figure_title']}]({info['figure_rel']})", ""]
    return "\n".join(lines)


def card_metrics(results) -> dict:
    out = {}
    for name, res in results.items():
        for q, cell in res["qualities"].items():
            if "aetool" in cell and "jpeg" in cell:
                out.setdefault(name, {})[f"q{q}"] = {
                    "psnr": round(cell["aetool"]["psnr"], 2), "psnr_b": round(cell["aetool"]["psnr_b"], 2),
                    "jpeg_psnr": round(cell["jpeg"]["psnr"], 2), "gain_db": round(cell["aetool"]["psnr"]
                                                                                   - cell["jpeg"]["psnr"], 2)}
    return out


def main(argv=None) -> int:
    import PIL

    prog = sys.argv[0] if argv is None else __file__
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.figure_set = args.colour_sets[0] if args.colour_sets else (args.grey_sets[0] if args.grey_sets else None)
    args.figure_image, args.figure_arrays = None, None
    if args.figure_set:
        grey0 = args.figure_set not in args.colour_sets
        first = list_images(set_folder(args, args.figure_set, grey0))
        args.figure_image = first[0].stem if first else None
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "command": shlex.join([sys.executable, prog] + argv), "pillow": PIL.__version__,
            "methods": args.methods, "qualities": args.qualities, "limit": args.limit}
    work = args.work or Path(tempfile.mkdtemp(prefix="jpeg-artifacts-"))
    results = {}
    try:
        for name in args.colour_sets:
            results[name] = run_set(args, name, False, work)
        for name in args.grey_sets:
            results[name] = run_set(args, name, True, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    target_rows = targets(results, args)
    if args.figure and args.figure_arrays:
        import os

        info["figure_title"] = (f"{args.figure_set}/{args.figure_image}, JPEG quality {min(args.qualities)}: "
                                "central 160x160 crop")
        figure(args.figure, args.figure_arrays, info["figure_title"])
        info["figure_rel"] = os.path.relpath(args.figure.resolve(), args.out_md.resolve().parent)
    write_section(args.out_md, args.section, report(args, info, results, target_rows))
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps({**info, "results": results, "targets": target_rows}, indent=1))
    if args.update_card:
        card_path = ROOT / "weights" / "denoise-jpeg.json"
        card = json.loads(card_path.read_text())
        card["metrics"] = {"jpeg_artifacts": card_metrics(results), "measured": info["date"],
                           "benchmark": "benchmarks/jpeg_artifacts.py (docs/benchmarks.md, jpeg-artifacts)"}
        card_path.write_text(json.dumps(card, indent=2) + "\n")
    for r in target_rows:
        print(" | ".join(r), file=sys.stderr)
    print(f"wrote {args.out_md} and {args.out_json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
