"""`aetool anomaly`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from . import options as o
from .common import handle_errors
from .imagecmd import engine_options, run_image_command

EPILOG = """Examples:

\b
  # score a folder; report/index.html shows the flagged images first
  aetool anomaly ~/parts/new -o report/ --model parts.safetensors
\b
  # try the bundled example model (brick texture) on the repo's samples
  aetool anomaly docs/samples/anomaly -o report/ --model anomaly-brick
\b
  # in a pipeline: exit 3 when anything is flagged; one JSON line per file
  aetool anomaly incoming/ -o report/ -m parts.safetensors --fail-on-anomaly --json
\b
  # flag more (a lower threshold), and write the defect masks
  aetool anomaly incoming/ -o report/ -m parts.safetensors --sensitivity 1.5 --masks

Writes into the report folder: heatmaps/ (each image with its anomaly map over it, same size
and file names as the inputs), masks/ with --masks (white = above the threshold), scores.csv
(file, status, label, score, score_normalized, threshold, heatmap, mask, error) and index.html.
A re-run skips the images it has already scored (their rows are kept) unless --overwrite.

Exit codes: 0 all scored (or skipped), 1 some inputs failed (each reported) or the batch
stopped early, 2 usage error (bad model, a model without a threshold), 3 with
--fail-on-anomaly: every input scored and at least one is anomalous, 130 Ctrl-C, 143 SIGTERM.
"""


def anomaly_command(
    inputs: o.Inputs,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FOLDER", show_default=False,
                                                  help="The report folder (created).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|FILE", show_default=False,
                                                 help="A .safetensors file from `aetool train anomaly`, or a "
                                                 "model name (see `aetool models`).")] = None,
    threshold: Annotated[Optional[float], typer.Option(metavar="SCORE", show_default=False,
                                                       help="Flag scores above this instead of the model's "
                                                       "calibrated threshold.")] = None,
    sensitivity: Annotated[float, typer.Option(min=0.01, max=100.0, metavar="X",
                                               help="Divide the threshold by X: 2 flags more, 0.5 fewer.")] = 1.0,
    masks: Annotated[bool, typer.Option("--masks", help="Also write each image's binary defect mask "
                                        "(PNG, white = anomalous pixels).")] = False,
    fail_on_anomaly: Annotated[bool, typer.Option("--fail-on-anomaly", help="Exit 3 when at least one image is "
                                                  "anomalous (and none failed).")] = False,
    args: o.ImageArgs = None,
):
    """Score images against an anomaly model trained on normal ones: a score, a label and a heatmap
    per image, and a report (scores.csv, index.html) for the run."""
    from ..errors import UsageError

    if model is None:
        raise UsageError("give the model with --model: a file from `aetool train anomaly`, or a name from "
                         "`aetool models` (anomaly-brick is a bundled example)")
    if output is None or output == "-":
        raise UsageError("give the report folder with -o/--output (heatmaps, scores.csv and index.html go there)")
    report = Path(output).expanduser()
    if report.is_file():
        raise UsageError(f"-o {output} is a file; give a folder for the report")
    if args.fmt == "same":
        args.fmt = "png"  # a heatmap is a new picture, not the input's format
    opts = engine_options(args)
    state: dict = {}

    def make_processor():
        from ..atomic import write_atomic
        from ..discovery import plan_output
        from ..imageio import Picture, encode_image
        from ..tasks.anomaly import AnomalyDetector

        det = AnomalyDetector(model, opts, threshold, sensitivity)
        state["detector"] = det

        def process(pic, item):
            heat, result, info = det.picture(pic)
            if masks:
                path = plan_output(item, str(report / "masks"), False, args.suffix, "png")
                path.parent.mkdir(parents=True, exist_ok=True)
                mask = Picture(result.mask[..., None].astype("float32"))
                write_atomic(path, encode_image(mask, ".png"))
                info["mask"] = str(path)
            return heat, info

        return process

    def finish(results, summary):
        if not results:
            return None
        if "detector" not in state:  # every file was done before: the report is still rebuilt from their rows
            from ..tasks.anomaly import AnomalyDetector

            state["detector"] = AnomalyDetector(model, opts, threshold, sensitivity)
        return write_report(report, results, summary, state["detector"], args.quiet, fail_on_anomaly)

    run_image_command("anomaly", inputs, str(report / "heatmaps"), args, opts, make_processor, on_finish=finish)


def write_report(report: Path, results, summary, det, quiet: bool, fail_on_anomaly: bool) -> int | None:
    """scores.csv and index.html for the whole run; files skipped as already done keep the row an
    earlier run wrote. Returns EXIT_ANOMALY when asked to and something was flagged."""
    from .. import report as rep
    from ..errors import EXIT_ANOMALY, EXIT_SOME_FAILED

    earlier = rep.read_scores(report / "scores.csv")
    rows = []
    for r in results:
        info = r.info
        if r.status == "ok":
            rows.append({"file": r.input, "status": "ok", "label": info["label"], "score": info["score"],
                         "score_normalized": info["score_normalized"], "threshold": info["threshold"],
                         "heatmap": r.output, "mask": info.get("mask")})
        elif r.status == "skipped" and r.input in earlier and earlier[r.input].get("label"):
            rows.append({**earlier[r.input], "status": "skipped"})
        else:
            rows.append({"file": r.input, "status": r.status, "error": r.error})  # no heatmap was written
    rows.sort(key=lambda row: row["file"])
    try:
        rep.write_scores(report / "scores.csv", rows)
        rep.write_html(report / "index.html", rows, det.card.name, det.threshold)
    except OSError as exc:  # the heatmaps are in place; the run is not complete without its report
        print(f"aetool: failed: cannot write the report in {report}: {exc.strerror or exc}", file=sys.stderr)
        summary.extra["report_error"] = str(exc.strerror or exc)
        return EXIT_SOME_FAILED
    flagged = sum(1 for row in rows if row.get("label") == "anomalous")
    normal = sum(1 for row in rows if row.get("label") == "normal")
    summary.extra.update({"anomalous": flagged, "normal": normal, "threshold": det.threshold,
                          "report": str(report / "index.html")})
    if not quiet:
        print(f"anomaly: {flagged} anomalous, {normal} normal (threshold {det.threshold:.5g}); "
              f"report: {report / 'index.html'}", file=sys.stderr)
    return EXIT_ANOMALY if fail_on_anomaly and flagged else None


def register(app: typer.Typer) -> None:
    app.command("anomaly", short_help="Score images against a model of normal ones: heatmaps and a report.",
                epilog=EPILOG)(handle_errors(o.image_command(anomaly_command)))
