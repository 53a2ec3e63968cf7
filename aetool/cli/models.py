"""`aetool models`: the pretrained models and their cards."""
from __future__ import annotations

import json
import sys

import typer
from typing_extensions import Annotated

from .common import handle_errors

models_app = typer.Typer(help="List the pretrained models, or show one model's card.", invoke_without_command=True)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def _metric(card) -> str:
    """One headline number per task, as measured by benchmarks/ (docs/benchmarks.md)."""
    m = card.metrics or {}
    if card.task == "upscale":
        v = (m.get("psnr_y") or {}).get("set5")
    elif card.task == "inpaint":
        kinds = (m.get("hole_psnr") or {}).get("kodak24") or {}
        v = sum(kinds.values()) / len(kinds) if kinds else None
    elif card.task == "anomaly":
        bench = m.get("anomaly_benchmark") or {}
        v = next((r.get("pixel_auroc") for r in bench.values() if isinstance(r, dict) and "pixel_auroc" in r), None)
        return f"pixel AUROC {v:.3f}" if isinstance(v, (int, float)) else "-"
    elif card.task == "autoencoder":
        fashion = m.get("fashion_mnist_test") or {}
        if isinstance(fashion.get("knn"), (int, float)):
            return f"k-NN {fashion['knn']:.3f}"
        dup = (m.get("near_duplicate_recall_at_1") or {}).get("all")
        return f"dup. recall {dup:.3f}" if isinstance(dup, (int, float)) else "-"
    elif card.task == "compress":  # a codec: its BD-rate against JPEG (progressive JPEG for the progressive one)
        bd = (m.get("bd_rate_percent_psnr") or {}).get("kodak24") or {}
        anchor = "jpeg-progressive" if card.arch == "recurrent_codec" else "jpeg"
        v = bd.get(anchor)
        label = "prog. JPEG" if anchor == "jpeg-progressive" else "JPEG"
        return f"{label} BD-rate {v:+.1f} %" if isinstance(v, (int, float)) else "-"
    elif card.degradation:  # a codec post-filter: its gain, or its BD-rate as a learned decoder
        gain = ((m.get("jpeg_artifacts") or {}).get("kodak24") or {}).get("q10", {}).get("gain_db")
        if isinstance(gain, (int, float)):
            return f"{gain:+.2f} dB at q10"
        bd = m.get("bd_rate_vs_own_codec") or {}
        v = (bd.get("avif") or {}).get("kodak24")
        return f"AVIF BD-rate {v:+.1f} %" if isinstance(v, (int, float)) else "-"
    else:
        v = m.get("psnr_sigma25_blind_mean")
    return f"{v:.2f} dB" if isinstance(v, (int, float)) else "-"


def _task(card) -> str:
    scale = card.config.get("scale")
    if card.degradation:
        return f"{card.task} {','.join(card.degradation.get('codecs', []))}"
    if card.arch == "recurrent_codec":
        return f"{card.task} progressive"
    return f"{card.task} x{scale}" if scale else card.task


@models_app.callback()
@handle_errors
def list_models(ctx: typer.Context,
                as_json: Annotated[bool, typer.Option("--json", help="Print the cards as JSON.")] = False):
    """List the pretrained models: name, task, channels, parameters, file size, measured quality."""
    if ctx.invoked_subcommand:
        return
    from ..registry import pretrained_cards

    cards = pretrained_cards()
    if as_json:
        print(json.dumps([c.to_dict() for c in cards], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="aetool pretrained models",
                  caption="measured: denoise PSNR blind at σ25, mean over the test sets; upscale on Set5, Y channel; "
                          "inpaint in the holes, kodak24, mean over the mask kinds; anomaly: pixel AUROC on its texture's "
                          "test crops; autoencoder: Fashion-MNIST test k-NN accuracy, or near-duplicate recall@1 on "
                          "photos; codec post-filters: PSNR gain over the plain JPEG decode at quality 10, or BD-rate "
                          "against plain AVIF, kodak24 (docs/benchmarks.md)")
    longest = max((len(c.name) for c in cards), default=4)
    table.add_column("name", no_wrap=True, min_width=longest)  # names are what scripts copy: never cut
    for col in ("task", "channels", "parameters", "file", "measured", "default"):
        table.add_column(col, no_wrap=True)
    for c in cards:
        size = c.path.stat().st_size if c.path and c.path.exists() else 0
        table.add_row(c.name, _task(c), "grey" if c.channels == 1 else "colour", f"{c.parameters / 1e6:.2f} M",
                      _size(size), _metric(c), "yes" if c.default else "")
    # Piped, rich assumes 80 columns and would cut names and sizes: give it room (the table keeps
    # its natural width).
    Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160).print(table)


@models_app.command("info", short_help="Print a model's card as JSON.")
@handle_errors
def info(name: Annotated[str, typer.Argument(metavar="NAME", hidden=True)]):  # described below: no "<str>" label
    """Print a model's card (provenance, training recipe, measured metrics) as JSON.

    NAME: a model name from `aetool models`, or a .safetensors file."""
    from ..registry import find_card, verify_model

    card = find_card(name)
    verify_model(card)  # a damaged or replaced file is an error here too, not a card printed as if fine
    d = card.to_dict()
    d["path"] = str(card.path)
    print(json.dumps(d, indent=2))
