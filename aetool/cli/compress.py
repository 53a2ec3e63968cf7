"""`aetool compress`, `aetool decompress`, `aetool truncate` and `aetool info`: the learned codecs on
the engine that runs every image command (discovery, planning, claims, atomic writes, JSON records, exit codes)."""
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
\b
  # progressive files: any prefix decodes (previews, streaming); --quality
  # is the number of iterations kept (1-16), --bpp/--size/--psnr choose it
  aetool compress photos/ -o packed/ --model progressive --bpp 1.0

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
\b
  # progressive files: a preview from the first part of the file only
  aetool decompress photo.aei --bpp 0.25 -o preview.png
  aetool decompress photo.aei --iterations 4 -o preview.png
  aetool decompress photo.aei --max-bytes 20KB -o preview.png

A progressive file cut at any byte (a broken download) decodes every iteration it holds whole,
with a warning, and exit code 0.

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
                                                     "default 4. Progressive codec: the iterations to keep, 1-16 "
                                                     "(default all). With --codec: the codec's 1-100.",
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
                                                 help="Codec (see `aetool models`), progressive (the installed "
                                                 "progressive codec), or a .safetensors file from `aetool train "
                                                 "compress`; default: compress-color.",
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

    The default codec is a variational autoencoder with a scale hyperprior, entropy-coded with a
    range coder; one model serves every quality. --model progressive: a recurrent autoencoder
    whose files are a sequence of refinements, any prefix of which decodes (`aetool decompress
    --bpp`, `aetool truncate`). With --codec jpeg|webp|avif: standard files instead, which `aetool
    decompress` decodes with a learned post-filter.

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
    args.fmt = EXTENSION
    opts = engine_options(args)
    from ..tasks.compress import codec_card
    from ..tasks.progressive import is_progressive_card

    card = codec_card(model)  # a wrong name or a model of another task: a usage error before any file
    if is_progressive_card(card):
        top = card.config.get("iterations", 16)
        if quality is not None and (quality != int(quality) or quality > top):
            raise UsageError(f"--quality of the progressive codec is the number of iterations to keep, 1 to {top} "
                             f"(got {quality:g})")
    elif quality is not None and quality > 8:
        raise UsageError(f"--quality of the learned codec is 1 to 8 (got {quality:g}); 1-100 is for --codec")

    def make_processor():
        from ..tasks.compress import make_codec

        codec = make_codec(model, opts)
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
    iterations: Iterations = None,
    bpp: PrefixBpp = None,
    max_bytes: MaxBytes = None,
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

    limits = prefix_limits(iterations, bpp, max_bytes)

    def make_processor():
        from ..container import EncodedImage, ProgressiveImage
        from ..tasks.classical import ClassicalDecoder
        from ..tasks.compress import Decoders

        decoders = Decoders(learned, opts, **limits)
        classical = ClassicalDecoder(post_filter, opts, filter=not no_filter)
        return lambda data, item: (decoders.picture(data, opts.max_pixels)
                                   if isinstance(data, (EncodedImage, ProgressiveImage)) else classical.picture(data))

    run_image_command("decompress", inputs, output, args, opts, make_processor,
                      input_extensions={EXTENSION, ".jpg", ".jpeg", ".webp", ".avif", ".jxl"},
                      read=read_encoded, probe=probe_encoded)


Iterations = Annotated[Optional[int], typer.Option(min=1, metavar="N", help="Progressive files: decode (keep) only "
                                                   "the first N iterations.", show_default=False)]
PrefixBpp = Annotated[Optional[float], typer.Option("--bpp", min=0.001, metavar="BPP",
                                                    help="Progressive files: as many iterations as the first BPP x "
                                                    "pixels / 8 bytes of the file hold (truncate: as fit in a file "
                                                    "of that size).", show_default=False)]
MaxBytes = Annotated[Optional[str], typer.Option(metavar="SIZE", help="Progressive files: as many iterations as the "
                                                 "first SIZE bytes of the file hold (truncate: as fit in a file of "
                                                 "at most SIZE); 20KB, 1.5MB, bytes.", show_default=False)]


def prefix_limits(iterations: int | None, bpp: float | None, max_bytes: str | None) -> dict:
    from ..errors import UsageError

    if sum(v is not None for v in (iterations, bpp, max_bytes)) > 1:
        raise UsageError("give one of --iterations, --bpp or --max-bytes")
    return {"iterations": iterations, "bpp": bpp,
            "max_bytes": parse_size(max_bytes) if max_bytes is not None else None}


TRUNCATE_EPILOG = """Examples:

\b
  # a preview-sized copy: the same bits, fewer iterations
  aetool truncate photo.aei --bpp 0.25 -o small.aei
\b
  # a folder, each file cut to at most 20 KB, or to its first 4 iterations
  aetool truncate packed/ -o previews/ --max-bytes 20KB
  aetool truncate packed/ -o previews/ --iterations 4

Files of `aetool compress --model compress-progressive` only; no model is needed and nothing is
re-encoded. A file that is already within the limit is copied as it is (its record says so).

Exit codes: 0 all done (or skipped), 1 some inputs failed (each reported) or the batch
stopped early, 2 usage error, 130 Ctrl-C, 143 SIGTERM.
"""


def truncate_command(
    inputs: Annotated[List[str], typer.Argument(metavar="INPUT", hidden=True, show_default=False)],
    output: o.Output = None,
    iterations: Iterations = None,
    bpp: PrefixBpp = None,
    max_bytes: MaxBytes = None,
    args: o.ImageArgs = None,
):
    """Cut smaller valid progressive .aei files from larger ones, without re-encoding.

    INPUT: progressive .aei files, folders of them, glob patterns, or - for standard input. Give
    one of --iterations, --bpp or --max-bytes."""
    from ..container import EXTENSION
    from ..errors import UsageError
    from ..tasks.compress import probe_encoded, read_encoded

    limits = prefix_limits(iterations, bpp, max_bytes)
    if all(v is None for v in limits.values()):
        raise UsageError("give one of --iterations, --bpp or --max-bytes: how much of each file to keep")
    args.fmt = EXTENSION
    opts = engine_options(args)

    def make_processor():
        from ..tasks.progressive import truncate_file

        return lambda e, item: truncate_file(e, **limits)

    run_image_command("truncate", inputs, output, args, opts, make_processor, input_extensions={EXTENSION},
                      output_extensions={EXTENSION}, read=read_encoded, probe=probe_encoded)


def info_command(
    files: Annotated[List[Path], typer.Argument(metavar="FILE", hidden=True, show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
):
    """Show what .aei files hold.

    FILE: .aei files. Prints the format version, the model and its hash, size, bit depth, bpp,
    alpha, ICC/EXIF, the coder, and the size of each section; for a progressive file, the
    iterations it holds with the size, bpp and the encoder's PSNR after each (whether it was cut)."""
    from ..container import ProgressiveImage, describe, describe_progressive, load
    from ..errors import EXIT_OK, EXIT_SOME_FAILED, ImageError

    failed = 0
    for path in files:
        try:
            e = load(path)
            d = describe_progressive(e) if isinstance(e, ProgressiveImage) else describe(e)
        except ImageError as exc:
            failed += 1
            print(f"aetool: failed: {path}: {exc}", file=sys.stderr)
            continue
        d = {"file": str(path), **d}
        if as_json:
            print(json.dumps(d), flush=True)
            continue
        if isinstance(e, ProgressiveImage):
            print_progressive(path, d)
            continue
        print(f"{path}: {d['width']}x{d['height']} {'grey' if d['channels'] == 1 else 'colour'}"
              f"{' + alpha' if d['alpha'] else ''}, {d['bytes']:,} bytes, {d['bits_per_pixel']:.3f} bpp, "
              f"quality {d['quality']:g}")
        print(f"  model {d['model']} (sha256 {d['model_sha256_prefix']}...), {d['coder']}, "
              f"format version {d['format_version']}, source {d['bit_depth']}-bit"
              f"{', ICC' if d['icc'] else ''}{', EXIF' if d['exif'] else ''}")
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


def print_progressive(path: Path, d: dict) -> None:
    cut = (f", cut: {d['iterations']} of {d['iterations_declared']} iterations whole" if d["cut"] else "")
    print(f"{path}: {d['width']}x{d['height']} {'grey' if d['channels'] == 1 else 'colour'}"
          f"{' + alpha' if d['alpha'] else ''}, {d['bytes']:,} bytes, {d['bits_per_pixel']:.3f} bpp, progressive, "
          f"{d['iterations']} iterations of {d['bits']} bits per 16x16 pixels{cut}")
    print(f"  model {d['model']} (sha256 {d['model_sha256_prefix']}...), {d['coder']}, "
          f"format version {d['format_version']}, source {d['bit_depth']}-bit"
          f"{', ICC' if d['icc'] else ''}{', EXIF' if d['exif'] else ''}")
    print("  iteration   bytes  file bytes     bpp  PSNR (encoder's, dB)")
    for row in d["iteration_table"]:
        psnr = f"{row['psnr']:.2f}" if row["psnr"] is not None else "-"
        print(f"  {row['iteration']:>9}  {row['bytes']:>6,}  {row['file_bytes']:>10,}  {row['bits_per_pixel']:>6.3f}"
              f"  {psnr}")


def register(app: typer.Typer) -> None:
    defaults = o.ImageArgs()
    shared = {name: (annotation, getattr(defaults, name)) for name, annotation in _COMPRESS_OPTIONS.items()}
    app.command("compress", epilog=COMPRESS_EPILOG)(
        handle_errors(o.with_shared_options(compress_command, shared, o.ImageArgs, "args")))
    app.command("decompress", epilog=DECOMPRESS_EPILOG)(handle_errors(o.image_command(decompress_command)))
    app.command("truncate", epilog=TRUNCATE_EPILOG)(handle_errors(o.image_command(
        truncate_command, omit=("fmt", "quality", "device", "batch_size", "tile", "precision"))))
    app.command("info")(handle_errors(info_command))
