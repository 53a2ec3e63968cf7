"""`aetool inpaint`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from . import options as o
from .common import handle_errors
from .imagecmd import engine_options, run_image_command

# Without torch: --help stays instant (aetool.tasks.inpaint imports torch only when it runs).
from ..tasks.inpaint_options import ENSEMBLE, TEXTURE_MIN_WIDTH, check_fill  # noqa: E402

# "\b" keeps click from rewrapping the examples: each line is printed as written (under 80 columns).
EPILOG = """Examples:

\b
  # one mask, white = fill
  aetool inpaint photo.jpg --mask scratches.png -o fixed.jpg
\b
  # one mask per file: scans/a.jpg with masks/a_mask.png
  aetool inpaint scans/ --mask-dir masks/ --mask-suffix _mask -o fixed/ -r
\b
  # transparent pixels are the holes
  aetool inpaint cutouts/ --mask alpha -o filled/
\b
  # remove an object: texture from the rest of the photo, not a smooth smudge
  aetool inpaint street.jpg --mask sign.png --dilate 4 --fill texture \\
      -o clean.jpg
\b
  # holes painted in magenta, grown by 2 pixels
  aetool inpaint shots/ --mask-color '#ff00ff' --tolerance 10 --dilate 2 \\
      -o fixed/

Exit codes: 0 all done (or skipped), 1 some inputs failed (each reported: missing
mask, size mismatch, ...) or the batch
stopped early (disk full, read-only, broken model), 2 usage error, 130 Ctrl-C, 143 SIGTERM.
"""


def inpaint_command(
    inputs: o.Inputs,
    output: o.Output = None,
    mask: Annotated[Optional[str], typer.Option("--mask", metavar="FILE|alpha",
                                                help="A mask image for every input (white / non-zero = "
                                                "fill, same size as the input), or 'alpha': the transparent "
                                                "pixels of each input are the holes.", show_default=False)] = None,
    mask_dir: Annotated[Optional[Path], typer.Option(metavar="FOLDER",
                                                     help="Folder with one mask per input, by file stem "
                                                     "(mirroring subfolders with -r).", show_default=False)] = None,
    mask_suffix: Annotated[str, typer.Option(metavar="TEXT",
                                             help="Added to the input's stem to name its mask in --mask-dir "
                                             "(photo.jpg -> photo_mask.png with _mask).")] = "",
    mask_color: Annotated[Optional[str], typer.Option(metavar="COLOR",
                                                      help="Pixels painted in this colour are the holes "
                                                      "('#ff00ff', 'ff00ff' or a name).", show_default=False)] = None,
    tolerance: Annotated[int, typer.Option(min=0, max=255, metavar="N",
                                           help="With --mask-color: largest difference per "
                                           "channel (0-255) still taken as the key colour.")] = 0,
    dilate: Annotated[int, typer.Option(min=0, max=256, metavar="N",
                                        help="Grow the holes by N pixels (masks drawn tight "
                                        "leave a rim of the defect).")] = 0,
    fill: Annotated[str, typer.Option("--fill", metavar="auto|smooth|texture",
                                      help="smooth: the network's fill (best for scratches, dust, text); "
                                      "texture: texture copied from the rest of the image, guided by the "
                                      "network (object removal); auto: texture for holes at least "
                                      f"{TEXTURE_MIN_WIDTH} px wide, smooth for thinner ones.")] = "auto",
    seed: Annotated[int, typer.Option(min=0, metavar="N",
                                      help="Random seed of the texture synthesis: the same seed gives "
                                      "the same pixels; another seed, another texture.")] = 0,
    ensemble: Annotated[int, typer.Option(metavar="N",
                                          help="Run the network on N flipped copies of each tile (1, 2, 4 "
                                          "or 8) and average the fills: a little better, N times the "
                                          "network's time.")] = ENSEMBLE,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|FILE",
                                                 help="Model name (see `aetool models`) or a "
                                                 ".safetensors file from `aetool train inpaint`.",
                                                 show_default=False)] = None,
    args: o.ImageArgs = None,
):
    """Fill masked regions (scratches, text, dust, objects) with an inpainting autoencoder."""
    from dataclasses import replace

    from ..engine import check_ensemble
    from ..errors import UsageError
    from ..masks import mask_options

    check_fill(fill)
    opts = replace(engine_options(args), ensemble=check_ensemble(ensemble))
    masks = mask_options(mask, mask_dir, mask_suffix, mask_color, tolerance, dilate)
    from ..registry import default_model, find_card

    # A wrong name, or no shipped model, is a usage error before any file is touched.
    card = find_card(model) if model is not None else default_model("inpaint", 3)
    if card.task != "inpaint":
        raise UsageError(f"model '{card.name}' is for `aetool {card.task}`, not for inpainting; "
                         "see `aetool models` for the inpainting models")

    def make_processor():
        from ..masks import MaskSource
        from ..tasks.inpaint import Inpainter

        source = MaskSource(masks)
        inp = Inpainter(model, opts, fill=fill, seed=seed)
        return lambda pic, item: inp.picture(pic, source.mask_for(item, pic), drop_alpha=masks.from_alpha)

    run_image_command("inpaint", inputs, output, args, opts, make_processor)


def register(app: typer.Typer) -> None:
    app.command("inpaint", short_help="Fill masked regions: scratches, text, dust, objects.", epilog=EPILOG)(handle_errors(o.image_command(inpaint_command)))
