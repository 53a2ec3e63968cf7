"""Top-level Typer app. Commands import their heavy modules inside the function body so that
`aetool --help` never imports torch."""
from __future__ import annotations

from typing import Optional

import typer

from .. import __version__
from . import anomaly, autoencoder, bench, compress, denoise, inpaint, serve, upscale
from .models import models_app
from .train import train_app

app = typer.Typer(
    name="aetool",
    help="Restore, compress and inspect images with pretrained autoencoders: denoise, upscale, inpaint, "
         "compress, find anomalies, and train your own.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    rich_markup_mode=None,
)
denoise.register(app)
upscale.register(app)
inpaint.register(app)
compress.register(app)
anomaly.register(app)
autoencoder.register(app)
bench.register(app)
serve.register(app)
app.add_typer(models_app, name="models")
app.add_typer(train_app, name="train")


def _version(value: bool):
    if value:
        print(f"aetool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")):
    """aetool: image restoration with autoencoders."""


def main() -> None:
    app()
