"""The files that cover a whole `aetool anomaly` run: scores.csv (one row per input, for
pipelines and spreadsheets) and index.html (one self-contained page for a person: flagged images
first, each beside its heatmap with its score and the threshold, and a histogram of the scores).
The page links the heatmaps (and inputs) beside it rather than inlining thousands of images."""
from __future__ import annotations

import csv
import html
import io
import os
from pathlib import Path

from . import atomic

COLUMNS = ["file", "status", "label", "score", "score_normalized", "threshold", "heatmap", "mask", "error"]


def read_scores(path: Path) -> dict[str, dict]:
    """The rows of an earlier run's scores.csv by input file (empty when there is none or it is unreadable)."""
    try:
        with open(path, newline="") as f:
            return {row["file"]: row for row in csv.DictReader(f) if row.get("file")}
    except (OSError, csv.Error, KeyError, UnicodeDecodeError):
        return {}


def write_scores(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    atomic.write_atomic(path, buf.getvalue().encode())


def _link(target: str | None, folder: Path) -> str:
    """A relative URL from the report folder to a file (absolute when on another drive)."""
    if not target or target == "-":
        return ""
    try:
        rel = os.path.relpath(Path(target).resolve(), folder.resolve())
    except ValueError:
        return Path(target).resolve().as_uri()
    return "/".join(html.escape(part, quote=True) for part in Path(rel).parts)


def histogram_svg(normal: list[float], flagged: list[float], threshold: float, width: int = 640,
                  height: int = 160, bins: int = 40) -> str:
    """Stacked histogram of the scores (normal grey, anomalous red) with the threshold as a line."""
    scores = normal + flagged
    if not scores:
        return ""
    lo, hi = min(scores + [threshold]), max(scores + [threshold])
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.02 * span, hi + 0.02 * span
    step = (hi - lo) / bins

    def counts(values):
        c = [0] * bins
        for v in values:
            c[min(bins - 1, int((v - lo) / step))] += 1
        return c

    cn, cf = counts(normal), counts(flagged)
    top = max(a + b for a, b in zip(cn, cf)) or 1
    bw = (width - 40) / bins
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 40}" role="img" '
             f'aria-label="histogram of scores">']
    for i, (n, f) in enumerate(zip(cn, cf)):
        x = 10 + i * bw
        hn, hf = (height - 10) * n / top, (height - 10) * f / top
        if n:
            parts.append(f'<rect x="{x:.1f}" y="{height - hn:.1f}" width="{bw - 1:.1f}" height="{hn:.1f}" fill="#999"/>')
        if f:
            parts.append(f'<rect x="{x:.1f}" y="{height - hn - hf:.1f}" width="{bw - 1:.1f}" height="{hf:.1f}" '
                         'fill="#d33"/>')
    tx = 10 + (threshold - lo) / step * bw
    parts.append(f'<line x1="{tx:.1f}" y1="0" x2="{tx:.1f}" y2="{height}" stroke="#000" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{tx + 4:.1f}" y="12" font-size="11">threshold {threshold:.4g}</text>')
    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        parts.append(f'<text x="{10 + frac * (width - 40):.1f}" y="{height + 16}" font-size="11" '
                     f'text-anchor="middle">{v:.4g}</text>')
    parts.append(f'<text x="{width / 2:.0f}" y="{height + 34}" font-size="11" text-anchor="middle">'
                 f'image score ({len(normal)} normal, {len(flagged)} anomalous)</text></svg>')
    return "".join(parts)


def _card(row: dict, folder: Path) -> str:
    name = html.escape(row["file"])
    heat = _link(row.get("heatmap"), folder)
    src = _link(row["file"], folder) if os.path.exists(row["file"]) else ""
    mask = _link(row.get("mask"), folder)
    img = f'<a href="{src}"><img src="{src}" loading="lazy" alt="input"></a>' if src else ""
    hm = f'<a href="{heat}"><img src="{heat}" loading="lazy" alt="heatmap"></a>' if heat else ""
    mk = f' <a href="{mask}">mask</a>' if mask else ""
    return (f'<div class="item {row.get("label", "")}"><div class="pics">{img}{hm}</div><div class="cap">'
            f'<b>{name}</b><br>score {float(row["score"]):.5g} (normalised {float(row["score_normalized"]):.3f}), '
            f'threshold {float(row["threshold"]):.5g}{mk}</div></div>')


def write_html(path: Path, rows: list[dict], model: str, threshold: float) -> None:
    folder = path.parent
    scored = [r for r in rows if r.get("label") in ("normal", "anomalous")]
    flagged = sorted((r for r in scored if r["label"] == "anomalous"), key=lambda r: -float(r["score"]))
    normal = sorted((r for r in scored if r["label"] == "normal"), key=lambda r: -float(r["score"]))
    failed = [r for r in rows if r.get("status") == "failed"]
    hist = histogram_svg([float(r["score"]) for r in normal], [float(r["score"]) for r in flagged], threshold)
    fail_items = "".join(f"<li>{html.escape(r['file'])}: {html.escape(r.get('error') or '')}</li>" for r in failed)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aetool anomaly report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
.item {{ display: inline-block; vertical-align: top; margin: 0 12px 16px 0; max-width: 540px; }}
.item img {{ width: 256px; height: auto; margin-right: 4px; border: 1px solid #ccc; image-rendering: auto; }}
.anomalous .cap b {{ color: #c00; }}
.cap {{ font-size: 13px; word-break: break-all; }}
</style></head><body>
<h1>Anomaly report</h1>
<p>Model <b>{html.escape(model)}</b>, threshold {threshold:.5g}: <b>{len(flagged)}</b> anomalous,
{len(normal)} normal, {len(failed)} failed, of {len(rows)} files. Heatmaps: red is at or above twice the
threshold, blue is low. Scores.csv beside this page has every row.</p>
{hist}
<h2>Anomalous ({len(flagged)})</h2>
{''.join(_card(r, folder) for r in flagged) or '<p>None.</p>'}
{f'<h2>Failed ({len(failed)})</h2><ul>{fail_items}</ul>' if failed else ''}
<details><summary><h2 style="display:inline">Normal ({len(normal)}), highest scores first</h2></summary>
{''.join(_card(r, folder) for r in normal)}
</details>
</body></html>
"""
    atomic.write_atomic(path, page.encode())

