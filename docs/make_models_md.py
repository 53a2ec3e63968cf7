"""Render the model cards weights/*.json into docs/models.md.

    python docs/make_models_md.py            # re-run whenever a card changes

Standard library only. The architecture papers are read from the "Papers:" list in the docstring
of the architecture's module (aetool/models/<arch>.py); the training-data papers are matched by
the names of the --data folders in each card.
"""
from __future__ import annotations

import ast
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"
OUT = ROOT / "docs" / "models.md"

# Training sets recognised by a word in a --data folder's name or its parent's.
DATASETS = {
    "bsd": ("BSDS (Berkeley Segmentation Dataset)",
            "D. Martin, C. Fowlkes, D. Tal, J. Malik, \"A Database of Human Segmented Natural Images and its "
            "Application to Evaluating Segmentation Algorithms and Measuring Ecological Statistics\", "
            "Proc. IEEE International Conference on Computer Vision (ICCV), 2001, vol. 2, pp. 416-423."),
    "fashion-mnist": ("Fashion-MNIST (MIT licence)",
                      "H. Xiao, K. Rasul, R. Vollgraf, \"Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine "
                      "Learning Algorithms\", arXiv:1708.07747, 2017."),
    "t91": ("T91",
            "J. Yang, J. Wright, T. S. Huang, Y. Ma, \"Image Super-Resolution via Sparse Representation\", "
            "IEEE Transactions on Image Processing 19(11), 2010, pp. 2861-2873."),
}


def arch_papers(arch: str) -> list[str]:
    """The '- ...' items under 'Papers:' in the module docstring of aetool/models/<arch>.py."""
    path = ROOT / "aetool" / "models" / f"{arch}.py"
    if not path.is_file():
        return []
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    papers: list[str] = []
    inside = False
    for line in doc.splitlines():
        if line.strip() == "Papers:":
            inside = True
        elif inside and line.startswith("- "):
            papers.append(line[2:].strip())
        elif inside and line.startswith("  ") and papers:
            papers[-1] += " " + line.strip()
        elif inside:
            break
    return papers


def data_folders(training: dict) -> list[str]:
    folders = (training.get("data") or {}).get("folders")
    if folders:
        return list(folders)
    try:
        words = shlex.split(training.get("command", ""))
    except ValueError:
        return []
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--data"]


def datasets(folders: list[str]) -> list[tuple[str, str]]:
    found = []
    for key, ref in DATASETS.items():
        if any(key in part.lower() for f in folders for part in Path(f).parts[-2:]) and ref not in found:
            found.append(ref)
    return found


def size(n: int) -> str:
    return f"{n / 1e6:.1f} MB ({n:,} bytes)" if n >= 1e5 else f"{n / 1e3:.0f} kB ({n:,} bytes)"


def duration(s) -> str:
    if not isinstance(s, (int, float)):
        return "-"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m} min" if h else f"{m} min" if m else f"{round(s)} s"


def cell(v) -> str:
    if isinstance(v, (list, dict)):
        v = json.dumps(v)
    return "-" if v is None else str(v).replace("|", "\\|")


def table(rows: dict[str, dict], corner: str) -> list[str]:
    """A dict of dicts (row -> column -> value) as a markdown table."""
    cols: list[str] = []
    for r in rows.values():
        cols += [c for c in r if c not in cols]
    lines = [f"| {corner} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(cell(r.get(c)) for c in cols) + " |")
    return lines


def metrics_section(metrics: dict) -> list[str]:
    out = ["### Metrics", ""]
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    for k, v in metrics.items():
        if not isinstance(v, dict):
            continue
        if all(isinstance(x, dict) for x in v.values()):
            corner = "set / σ" if k.startswith(("psnr", "ssim")) else "set"
            out += [f"`{k}`:", ""] + table(v, corner) + [""]
        else:
            out += [f"`{k}`: " + ", ".join(f"{a} = {cell(b)}" for a, b in v.items()), ""]
    out += [f"- `{k}`: {cell(v)}" for k, v in scalars.items()]
    return out + [""]


def model_section(card: dict, path: Path) -> list[str]:
    name = card.get("name", path.stem)
    weights = path.parent / card.get("file", path.stem + ".safetensors")
    nbytes = weights.stat().st_size if weights.is_file() else None
    channels = card.get("channels")
    out = [f"## {name}", "", card.get("description", ""), "",
           "| | |", "|---|---|",
           f"| task | {card.get('task', '-')} |",
           f"| channels | {channels} ({'grey' if channels == 1 else 'colour'}) |",
           f"| parameters | {card.get('parameters', 0):,} |",
           f"| file | `{card.get('file', '-')}`, {size(nbytes) if nbytes is not None else 'missing'} |",
           f"| sha256 | `{card.get('sha256') or '-'}` |",
           f"| default for its channel count{' and codecs' if card.get('degradation') else ''} | "
           f"{'yes' if card.get('default') else 'no'} |"]
    if card.get("degradation"):  # a codec post-filter: what its condition map holds
        deg = card["degradation"]
        out.append(f"| removes the artefacts of | {', '.join(c.upper() for c in deg.get('codecs', []))}; condition map "
                   f"`{json.dumps(deg.get('condition', {}))}` (\"quality\": made from the JPEG quality) |")
    out += ["", "### Architecture", "",
           f"`{card.get('arch', '-')}`, config `{json.dumps(card.get('config', {}))}`.", ""]
    papers = arch_papers(card.get("arch", ""))
    if papers:
        out += ["Based on:", ""] + [f"- {p}" for p in papers] + [""]

    tr = dict(card.get("training") or {})
    out += ["### Training", ""]
    if tr.get("command"):
        out += ["```sh", tr.pop("command"), "```", ""]
    data = tr.pop("data", None) or {}
    folders = data_folders({**card.get("training", {}), "data": data})
    rows = []
    if folders:
        rows.append(("data folders", ", ".join(f"`{f}`" for f in folders)))
    for k in ("train_images", "sigma_range", "noise"):
        if k in data:
            rows.append((k.replace("_", " "), cell(data[k])))
    if "steps" in tr:
        rows.append(("steps", cell(tr.pop("steps"))))
    if "seconds" in tr:
        rows.append(("time", duration(tr.pop("seconds"))))
    if "machine" in tr:
        rows.append(("machine", cell(tr.pop("machine"))))
    val = tr.pop("validation", None)
    if isinstance(val, dict) and isinstance(val.get("files"), list) and "crop" in val:
        files = val["files"]
        degraded = (f"σ {', '.join(map(str, val['sigmas']))}" if "sigmas" in val else
                    ", ".join(f"{c.upper()} q{q}" for c, q in val.get("settings", [])))
        rows.append(("validation", f"{len(files)} held-out files ({', '.join(files)}), {val.get('crop')}-pixel "
                                   f"centre crops{', ' + degraded if degraded else ''}; {val.get('metric', '')}"))
    elif isinstance(val, dict):  # anomaly models: a count of held-out images
        rows.append(("validation", f"{cell(val.get('files'))} held-out images; {val.get('metric', '')}"))
    earlier = tr.pop("init_from", None)
    for k, v in tr.items():
        rows.append((k.replace("_", " "), cell(v)))
    out += ["| | |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows] + [""]
    stage = 1
    while isinstance(earlier, dict):  # the chain of runs this one started from (--init)
        t = earlier.get("training") or {}
        out += [f"Started from `{earlier.get('name')}` (sha256 `{(earlier.get('sha256') or '')[:12]}...`), "
                f"trained by:", "", "```sh", t.get("command", "?"), "```", "",
                f"{cell(t.get('steps'))} steps, {duration(t.get('seconds', 0))}, validation PSNR "
                f"{cell(t.get('final_val_psnr'))} dB" + (f"; {t['note']}" if t.get("note") else "") + ".", ""]
        earlier, stage = t.get("init_from"), stage + 1
    refs = datasets(folders)
    if refs:
        out += ["Training data:", ""] + [f"- {n}: {r}" for n, r in refs] + [""]

    cal = card.get("calibration")
    if cal:  # anomaly models: the threshold and what it was set from
        stats = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in (cal.get("normal_scores") or {}).items()}
        out += ["### Calibration", "",
                f"Threshold {cal.get('threshold', 0):.4g} ({cal.get('method', '')}), from "
                f"{cell(stats.get('count'))} held-out normal images: scores "
                + ", ".join(f"{k} {cell(stats[k])}" for k in ("min", "median", "mean", "std", "p99", "max") if k in stats)
                + f". Map: `{json.dumps(cal.get('map', {}))}`, image size {cal.get('image_size')}.", ""]
    if card.get("metrics"):
        out += metrics_section(card["metrics"])
    else:
        how = ("`python benchmarks/jpeg_artifacts.py --update-card`, `python benchmarks/compress.py "
               "update-filter-cards`" if card.get("degradation") else "`python benchmarks/denoise.py --update-cards`")
        out += ["### Metrics", "", f"Not measured yet ({how}).", ""]
    return out


def main() -> int:
    cards = sorted(WEIGHTS.glob("*.json"))
    if not cards:
        print(f"no cards in {WEIGHTS}", file=sys.stderr)
        return 1
    lines = ["# Pretrained models", "",
             "Generated by `docs/make_models_md.py` from the cards `weights/*.json`; do not edit by hand. "
             "`aetool models` lists the same models and `aetool models info NAME` prints a card.", "",
             "Every metric below is measured by the protocol in `docs/protocol.md` (test sets, degradations, "
             "metrics, baselines, timing). The `--data` folders in the training commands (`../shared/data/...`) "
             "are the development team's checkout of public image sets, outside the repository; "
             "`docs/training.md` says where to get the same sets.", "",
             "| model | task | channels | parameters | default |", "|---|---|---|---|---|"]
    parsed = [(json.loads(p.read_text()), p) for p in cards]
    for card, _ in parsed:
        name = card.get("name", "?")
        lines.append(f"| [{name}](#{name.lower()}) | {card.get('task', '-')} | "
                     f"{'grey' if card.get('channels') == 1 else 'colour'} | {card.get('parameters', 0) / 1e6:.2f} M | "
                     f"{'yes' if card.get('default') else ''} |")
    lines.append("")
    for card, p in parsed:
        lines += model_section(card, p)
    OUT.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {OUT} ({len(parsed)} models)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
