"""`aetool denoise`."""
from __future__ import annotations

from typing import Optional

import typer
from typing_extensions import Annotated

from . import options as o
from .common import handle_errors
from .imagecmd import engine_options, run_image_command

# "\b" keeps click from rewrapping the examples: each line is printed as written (under 80 columns).
EPILOG = """Examples:

\b
  # a folder tree; run it again to finish after a stop
  aetool denoise ~/shoot -o ~/shoot-clean -r
\b
  # one file
  aetool denoise photo.jpg -o photo-clean.png
\b
  # a pipe
  cat noisy.png | aetool denoise - > clean.png
\b
  # told the noise level; JSON lines on stdout
  aetool denoise in/ -o out/ --json --sigma 25
\b
  # old, blocky JPEGs: artefact removal (quality read from each file), PNG out
  aetool denoise old-scans/ -o fixed/ --kind jpeg
\b
  # JPEGs only, not in raw/; outputs beside the inputs (re-runs skip them)
  aetool denoise ~/shoot -r --include '*.jpg' --exclude 'raw/**' \\
      -o ~/shoot --suffix _dn

Exit codes: 0 all done (or skipped), 1 some inputs failed (each reported) or the batch
stopped early (disk full, read-only, broken model), 2 usage error, 130 Ctrl-C, 143 SIGTERM.
"""


def denoise_command(
    inputs: o.Inputs,
    output: o.Output = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|FILE",
                                                 help="Model name (see `aetool models`) or a "
                                                 ".safetensors file from `aetool train`; default: the colour or "
                                                 "grey model to match each image.", show_default=False)] = None,
    sigma: Annotated[Optional[float], typer.Option(min=0, max=255, metavar="SIGMA",
                                                   help="Noise standard deviation in 0-255 units; "
                                                   "default: estimated per image (blind). Images under 1024 "
                                                   "pixels (colour, 32x32) or 3072 (grey, 56x56) are too small "
                                                   "for a reliable estimate and are left unchanged unless --sigma "
                                                   "is given.", show_default=False)] = None,
    strength: Annotated[float, typer.Option(min=0.0, max=1.0, metavar="X",
                                            help="1 = fully denoised, 0 = unchanged; blends in "
                                            "between.")] = 1.0,
    kind: Annotated[Optional[str], typer.Option(metavar="KIND",
                                                help="What to remove: gaussian (noise, the default), jpeg "
                                                "(blocks, ringing and colour bleeding of JPEG compression), "
                                                "webp or avif (those codecs' artefacts). Codec kinds write PNG "
                                                "unless --format says otherwise: saving the result as JPEG again "
                                                "would bring the artefacts back.", show_default=False)] = None,
    jpeg_quality: Annotated[Optional[int], typer.Option(min=1, max=100, metavar="N",
                                                        help="With --kind jpeg: the quality the JPEGs were saved "
                                                        "at; default: read from each JPEG file's quantisation "
                                                        "tables, or estimated from the pixels of other files "
                                                        "(left unchanged when they show no JPEG grid).",
                                                        show_default=False)] = None,
    args: o.ImageArgs = None,
):
    """Remove noise from photos with a denoising autoencoder, blind or told the noise level; or
    remove the artefacts of JPEG, WebP or AVIF compression (--kind)."""
    from ..errors import UsageError

    opts = engine_options(args)
    if kind is not None:
        kind = kind.lower()
    from ..tasks.denoise import resolve_kind

    kind = resolve_kind(model, kind)  # a wrong model name or kind is a usage error before any file is touched
    if jpeg_quality is not None and kind != "jpeg":
        raise UsageError("--jpeg-quality is for --kind jpeg")
    if sigma is not None and kind != "gaussian":
        raise UsageError(f"--sigma is for Gaussian noise; --kind {kind} needs no noise level")
    if kind != "gaussian" and args.fmt == "same":
        args.fmt = "png"

    def make_processor():
        from ..tasks.denoise import Denoiser

        den = Denoiser(model, opts, kind)
        # The decoded file is the batch's own: its pixels may hold the output.
        return lambda pic, item: den.picture(pic, sigma, strength, jpeg_quality, in_place=True)

    # Pixels decoded as integers, made floats tile by tile by the engine: a quarter of the memory.
    run_image_command("denoise", inputs, output, args, opts, make_processor, integer_pixels=True)


def register(app: typer.Typer) -> None:
    app.command("denoise", short_help="Remove noise from photos, blind or at a given noise level.", epilog=EPILOG)(handle_errors(o.image_command(denoise_command)))
