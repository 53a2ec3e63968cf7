"""`aetool compress`, `aetool decompress` and `aetool info`: the learned codec on the engine that
runs every image command (discovery, planning, claims, atomic writes, JSON records, exit codes)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from . import options as o
from .common import handle_errors
from .imagecmd import engine_options, run_image_command

COMPRESS_EPILOG = """Examples:

\b
  # a folder tree; quality 1 (smallest) to 8 (best), fractions allowed
  aetool compress photos/ -o packed/ -r --quality 4
\b
  # the largest quality whose file is at most 150 KB
  aetool compress photo.png -o photo.aei --size 150KB
\b
  # a rate in bits per pixel, or the smallest file that reaches 34 dB
  aetool compress in/ -o out/ --bpp 0.5
  aetool compress in/ -o out/ --psnr 34
\b
  # a pipe
  cat a.png | aetool compress - > a.aei
\b
  # standard AVIF files (or jpeg, webp) that every viewer opens, quality
  # 1-100; `aetool decompress` decodes them with a learned post-filter
  aetool compress photos/ -o web/ --codec avif --quality 50

Exit codes: 0 all done (or skipped), 1 some inputs failed (each reported) or the batch
stopped early (disk full, read-only, broken model), 2 usage error, 130 Ctrl-C, 143 SIGTERM.
"""

DECOMPRESS_EPILOG = """Examples:

\b
  # a folder tree of .aei files back to PNG (or --format tiff, jpg, webp)
  aetool decompress packed/ -o restored/ -r
\b
  # a pipe
  aetool decompress a.aei -o - > a.png
\b
  # JPEG, WebP and AVIF files too: the codec's decoder, then a learned
  # post-filter for that codec (--no-filter: the plain decode)
  aetool decompress old.jpg web/*.avif -o better/

Each .aei file names the model it needs (see `aetool info FILE`); --model gives another
place to find it (a .safetensors file). For JPEG/WebP/AVIF files, --model names the
post-filter (default: denoise-jpeg for JPEG, postfilter-webp-avif for WebP and AVIF).

Exit codes: 0 all done (or skipped), 1 some inputs failed (each reported) or the batch
stopped early, 2 usage error, 130 Ctrl-C, 143 SIGTERM.
"""

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 10 ** 6, "mb": 10 ** 6, "mib": 1 << 20,
          "g": 10 ** 9, "gb": 10 ** 9, "gib": 1 << 30}


def parse_size(text: str) -> int:
    """'150KB' -> 150000, '1.5MiB' -> 1572864, '20000' -> 20000 (bytes)."""
    from ..errors import UsageError

    m = _SIZE.match(text)
    unit = (m.group(2) or "").lower() if m else None
    if not m or unit not in _UNITS:
        raise UsageError(f"--size must be a number of bytes with an optional unit (150KB, 1.5MB, 2MiB), got '{text}'")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size < 1:
        raise UsageError("--size must be at least 1 byte")
    return size


# Every image option but --format and --quality: a compressed file has one format, and --quality
# is the codec's own here.
_COMPRESS_OPTIONS = {k: v for k, v in o._IMAGE_OPTIONS.items() if k not in ("fmt", "quality")}


def compress_command(
    inputs: o.Inputs,
    output: o.Output = None,
    quality: Annotated[Optional[float], typer.Option("--quality", "-Q", min=1.0, max=100.0, metavar="Q",
                                                     help="1 (smallest file) to 8 (best image), fractions allowed; "
                                                     "default 4. With --codec: the codec's 1-100.",
                                                     show_default=False)] = None,
    bpp: Annotated[Optional[float], typer.Option(min=0.001, metavar="BPP", help="Aim at this many bits per pixel: "
                                                 "the largest quality whose file is not bigger.",
                                                 show_default=False)] = None,
    size: Annotated[Optional[str], typer.Option(metavar="SIZE", help="Aim at a file size (150KB, 1.5MB, bytes): "
                                                "the largest quality whose file is not bigger.",
                                                show_default=False)] = None,
    psnr: Annotated[Optional[float], typer.Option(min=1.0, max=100.0, metavar="DB", help="The smallest file that "
                                                  "reaches this PSNR (dB, 8-bit).", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|FILE",
                                                 help="Codec (see `aetool models`) or a .safetensors file from "
                                                 "`aetool train compress`; default: compress-color.",
                                                 show_default=False)] = None,
    strip: Annotated[bool, typer.Option("--strip", help="Leave out the ICC profile and EXIF (kept by default).")]
    = False,
    codec: Annotated[Optional[str], typer.Option(metavar="CODEC",
                                                 help="Write standard files of a classical codec instead of .aei: "
                                                 "jpeg, webp, avif (jxl with pillow-jxl-plugin). `aetool "
                                                 "decompress` gives them a learned post-filter; any viewer "
                                                 "opens them as they are.", show_default=False)] = None,
    args: o.ImageArgs = None,
):
    """Compress images to .aei files with a learned codec.

    The codec is a variational autoencoder with a scale hyperprior, entropy-coded with a range
    coder; one model serves every quality. With --codec jpeg|webp|avif: standard files instead,
    which `aetool decompress` decodes with a learned post-filter.

    INPUT: image files, folders, glob patterns ('photos/*.jpg', quoted), or - for one image on
    standard input. Grey images are coded with the colour model and decoded as grey; 16-bit images
    are coded at 8 bits; alpha is kept losslessly.
    """
    from ..container import EXTENSION
    from ..errors import UsageError

    if sum(v is not None for v in (quality, bpp, size, psnr)) > 1:
        raise UsageError("give one of --quality, --bpp, --size or --psnr")
    target = {"quality": quality, "bpp": bpp, "size": parse_size(size) if size is not None else None, "psnr": psnr}
    if codec is not None:
        from ..codecs import get_codec

        if model is not None:
            raise UsageError("--model names a learned codec; --codec writes a classical one: give one of them")
        suffix = get_codec(codec).suffix  # an unknown or unavailable codec: a usage error now
        if quality is not None:
            if quality != int(quality):
                raise UsageError(f"--quality for --codec {codec} is a whole number from 1 to 100")
            target["quality"] = int(quality)
        args.fmt = suffix
        opts = engine_options(args)

        def make_classical():
            from ..tasks.classical import encode_classical

            return lambda pic, item: encode_classical(pic, codec, strip=strip, **target)

        run_image_command("compress", inputs, output, args, opts, make_classical, output_extensions={suffix})
        return
    if quality is not None and quality > 8:
        raise UsageError(f"--quality of the learned codec is 1 to 8 (got {quality:g}); 1-100 is for --codec")
    args.fmt = EXTENSION
    opts = engine_options(args)
    from ..registry import default_model, find_card

    card = find_card(model) if model is not None else default_model("compress", 3)
    if card.task != "compress":
        raise UsageError(f"model '{card.name}' is for `aetool {card.task}`, not a codec; see `aetool models`")

    def make_processor():
        from ..tasks.compress import Codec

        codec = Codec(model, opts)
        return lambda pic, item: codec.picture(pic, strip=strip, **target)

    run_image_command("compress", inputs, output, args, opts, make_processor, output_extensions={EXTENSION})


def decompress_command(
    inputs: Annotated[List[str], typer.Argument(metavar="INPUT", hidden=True, show_default=False)],
    output: o.Output = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|FILE",
                                                 help="Where to find the codec the .aei files name, when it is "
                                                 "not installed (a .safetensors file); for JPEG/WebP/AVIF "
                                                 "files, the post-filter to use.", show_default=False)] = None,
    no_filter: Annotated[bool, typer.Option("--no-filter", help="JPEG/WebP/AVIF files: the codec's own decode "
                                            "alone, without the learned post-filter.")] = False,
    args: o.ImageArgs = None,
):
    """Decompress .aei files, and JPEG, WebP and AVIF files with a learned post-filter, to images
    (PNG by default, or --format).

    INPUT: .aei, .jpg, .webp or .avif files, folders of them, glob patterns ('packed/*.aei',
    quoted), or - for one file on standard input. The format is read from each file's bytes.
    """
    from ..container import EXTENSION
    from ..tasks.compress import probe_encoded, read_encoded

    from ..errors import UsageError

    if args.fmt == "same":  # a decoded JPEG saved as JPEG again would gain new artefacts
        args.fmt = "png"
    opts = engine_options(args)
    learned = post_filter = None  # where --model goes: the .aei decoder or the post-filter
    if model is not None:
        from ..registry import find_card

        task = find_card(model).task  # a wrong name is a usage error before any file is touched
        if task not in ("compress", "denoise"):
            raise UsageError(f"--model '{model}' is a {task} model: give a codec or a post-filter")
        learned, post_filter = (model, None) if task == "compress" else (None, model)

    def make_processor():
        from ..container import EncodedImage
        from ..tasks.classical import ClassicalDecoder
        from ..tasks.compress import Decoders

        decoders = Decoders(learned, opts)
        classical = ClassicalDecoder(post_filter, opts, filter=not no_filter)
        return lambda data, item: (decoders.picture(data, opts.max_pixels) if isinstance(data, EncodedImage)
                                   else classical.picture(data))

    run_image_command("decompress", inputs, output, args, opts, make_processor,
                      input_extensions={EXTENSION, ".jpg", ".jpeg", ".webp", ".avif", ".jxl"},
                      read=read_encoded, probe=probe_encoded)


def info_command(
    files: Annotated[List[Path], typer.Argument(metavar="FILE", hidden=True, show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
):
    """Show what .aei files hold.

    FILE: .aei files. Prints the format version, the model and its hash, size, bit depth, bpp,
    alpha, ICC/EXIF, the coder, and the size of each section."""
    from ..container import describe, load
    from ..errors import EXIT_OK, EXIT_SOME_FAILED, ImageError

    failed = 0
    for path in files:
        try:
            d = describe(load(path))
        except ImageError as exc:
            failed += 1
            print(f"aetool: failed: {path}: {exc}", file=sys.stderr)
            continue
        d = {"file": str(path), **d}
        if as_json:
            print(json.dumps(d), flush=True)
            continue
        print(f"{path}: {d['width']}x{d['height']} {'grey' if d['channels'] == 1 else 'colour'}"
              f"{' + alpha' if d['alpha'] else ''}, {d['bytes']:,} bytes, {d['bits_per_pixel']:.3f} bpp, "
              f"quality {d['quality']:g}")
        print(f"  model {d['model']} (sha256 {d['model_sha256_prefix']}...), {d['coder']}, "
              f"format version {d['format_version']}, source {d['bit_depth']}-bit"
              f"{', ICC' if d['icc'] else ''}{', EXIF' if d['exif'] else ''}")
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def register(app: typer.Typer) -> None:
    defaults = o.ImageArgs()
    shared = {name: (annotation, getattr(defaults, name)) for name, annotation in _COMPRESS_OPTIONS.items()}
    app.command("compress", epilog=COMPRESS_EPILOG)(
        handle_errors(o.with_shared_options(compress_command, shared, o.ImageArgs, "args")))
    app.command("decompress", epilog=DECOMPRESS_EPILOG)(handle_errors(o.image_command(decompress_command)))
    app.command("info")(handle_errors(info_command))
