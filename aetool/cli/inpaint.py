"""`aetool inpaint`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from . import options as o
from .common import handle_errors
from .imagecmd import engine_options, run_image_command

EPILOG = """Examples:

  aetool inpaint photo.jpg --mask scratches.png -o fixed.jpg      # one mask, white = fill

  aetool inpaint scans/ --mask-dir masks/ --mask-suffix _mask -o fixed/ -r   # scans/a.jpg + masks/a_mask.png

  aetool inpaint cutouts/ --mask alpha -o filled/                 # transparent pixels are the holes

  aetool inpaint shots/ --mask-color '#ff00ff' --tolerance 10 --dilate 2 -o fixed/   # painted in magenta

Exit codes: 0 all done (or skipped), 1 some inputs failed (each reported: missing mask, size
mismatch, ...), 2 usage error.
"""


def inpaint_command(
    inputs: o.Inputs,
    output: o.Output = None,
    mask: Annotated[Optional[str], typer.Option("--mask", help="A mask image for every input (white / non-zero = "
                                                "fill, same size as the input), or 'alpha': the transparent "
                                                "pixels of each input are the holes.", show_default=False)] = None,
    mask_dir: Annotated[Optional[Path], typer.Option(help="Folder with one mask per input, by file stem "
                                                     "(mirroring subfolders with -r).", show_default=False)] = None,
    mask_suffix: Annotated[str, typer.Option(help="Added to the input's stem to name its mask in --mask-dir "
                                             "(photo.jpg -> photo_mask.png with _mask).")] = "",
    mask_color: Annotated[Optional[str], typer.Option(help="Pixels painted in this colour are the holes "
                                                      "('#ff00ff', 'ff00ff' or a name).", show_default=False)] = None,
    tolerance: Annotated[int, typer.Option(min=0, max=255, help="With --mask-color: largest difference per "
                                           "channel (0-255) still taken as the key colour.")] = 0,
    dilate: Annotated[int, typer.Option(min=0, max=256, help="Grow the holes by N pixels (masks drawn tight "
                                        "leave a rim of the defect).")] = 0,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name (see `aetool models`) or a "
                                                 ".safetensors file from `aetool train inpaint`.",
                                                 show_default=False)] = None,
    args: o.ImageArgs = None,
):
    """Fill masked regions (scratches, text, dust, objects) with an inpainting autoencoder."""
    from ..errors import UsageError
    from ..masks import mask_options

    opts = engine_options(args)
    masks = mask_options(mask, mask_dir, mask_suffix, mask_color, tolerance, dilate)
    from ..registry import default_model, find_card

    # A wrong name, or no shipped model, is a usage error before any file is touched.
    card = find_card(model) if model is not None else default_model("inpaint", 3)
    if card.task != "inpaint":
        raise UsageError(f"model '{card.name}' is a {card.task} model, not an inpainting model")

    def make_processor():
        from ..api import Inpainter
        from ..masks import MaskSource

        source = MaskSource(masks)
        inp = Inpainter(model, opts)
        return lambda pic, item: inp.picture(pic, source.mask_for(item, pic), drop_alpha=masks.from_alpha)

    run_image_command("inpaint", inputs, output, args, opts, make_processor)


def register(app: typer.Typer) -> None:
    app.command("inpaint", epilog=EPILOG)(handle_errors(o.image_command(inpaint_command)))
