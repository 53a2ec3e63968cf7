"""`aetool upscale`."""
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
  # a folder, twice the width and height
  aetool upscale photos/ -o big/ --scale 2
\b
  # one file, 4x (the default)
  aetool upscale scan.png -o scan-4x.png
\b
  # any factor: the x2 model, then a Lanczos resize
  aetool upscale in/ -o out/ --outscale 1.5
\b
  # fit a width, keeping the aspect ratio
  aetool upscale in/ -o out/ --width 3840
\b
  # a pipe
  cat small.png | aetool upscale - --scale 3 > big.png

Exit codes: 0 all done (or skipped), 1 some inputs failed (each reported) or the batch
stopped early (disk full, read-only, broken model), 2 usage error, 130 Ctrl-C, 143 SIGTERM.
"""


def upscale_command(
    inputs: o.Inputs,
    output: o.Output = None,
    scale: Annotated[Optional[int], typer.Option("--scale", "-s", min=2, max=4, metavar="N",
                                                 help="Model scale: 2, 3 or 4 "
                                                 "(default 4, or the one --outscale/--width/--height needs).",
                                                 show_default=False)] = None,
    outscale: Annotated[Optional[float], typer.Option(min=0.01, max=16.0, metavar="FACTOR",
                                                      help="Final scale factor, any value: "
                                                      "the smallest model scale that reaches it runs, then a "
                                                      "Lanczos resize gives the exact size.",
                                                      show_default=False)] = None,
    width: Annotated[Optional[int], typer.Option("--width", "-W", min=1, metavar="PIXELS",
                                                 help="Output width in pixels (keeps the "
                                                 "aspect ratio; with --height, fits inside both).",
                                                 show_default=False)] = None,
    height: Annotated[Optional[int], typer.Option("--height", "-H", min=1, metavar="PIXELS",
                                                  help="Output height in pixels (keeps "
                                                  "the aspect ratio).", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|FILE",
                                                 help="Model name (see `aetool models`) or a "
                                                 ".safetensors file from `aetool train upscale`; default: the "
                                                 "shipped model for the scale.", show_default=False)] = None,
    args: o.ImageArgs = None,
):
    """Enlarge photos 2x, 3x, 4x or to any size with a super-resolution autoencoder."""
    from ..errors import UsageError

    opts = engine_options(args)
    if sum(x is not None for x in (scale, outscale)) > 1 or ((width or height) and (scale or outscale)):
        raise UsageError("give one of --scale, --outscale, or --width/--height")
    if model is not None:
        from ..registry import find_card

        card = find_card(model)  # a wrong name is a usage error before any file is touched
        if card.task != "upscale":
            raise UsageError(f"model '{card.name}' is for `aetool {card.task}`, not for upscaling; "
                             "see `aetool models` for the upscalers")
        if scale is not None and scale != card.config.get("scale"):
            raise UsageError(f"model '{card.name}' enlarges x{card.config.get('scale')}, not x{scale}; "
                             "drop --scale or use --outscale")
    if scale is None and outscale is None and not (width or height):
        scale = 4
    if model is None:  # no shipped model for what was asked: say so before any file is touched
        from ..registry import default_model, pretrained_cards

        if scale is not None:
            default_model("upscale", 3, scale)
        elif not pretrained_cards("upscale"):
            default_model("upscale", 3)

    def make_processor():
        from ..tasks.upscale import Upscaler

        up = Upscaler(model, opts)
        return lambda pic, item: up.picture(pic, scale, outscale, width, height)

    from ..registry import pretrained_cards
    from ..sizing import model_scale_for, target_size

    fixed_scale = card.config.get("scale") if model is not None else scale
    shipped_scales = sorted({c.config.get("scale") for c in pretrained_cards("upscale")})

    def output_size(h: int, w: int) -> tuple[int, int]:
        """The largest image the run holds for this input (the model's enlargement, or the final
        size), so that --max-pixels and the memory check apply to it before decoding."""
        final = target_size(h, w, fixed_scale or 4, outscale, width, height)
        s = fixed_scale or model_scale_for(max(final[0] / h, final[1] / w), shipped_scales)
        return max(final, (h * s, w * s), key=lambda size: size[0] * size[1])

    # Pixels decoded as integers, made floats tile by tile by the engine: a quarter of the memory.
    run_image_command("upscale", inputs, output, args, opts, make_processor, output_size=output_size,
                      integer_pixels=True)


def register(app: typer.Typer) -> None:
    app.command("upscale", short_help="Enlarge photos 2x, 3x, 4x or to any size.", epilog=EPILOG)(handle_errors(o.image_command(upscale_command)))
