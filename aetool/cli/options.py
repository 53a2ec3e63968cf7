"""Options shared by every image command, declared once and reused with Annotated."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import List, Optional

import typer
from typing_extensions import Annotated

Inputs = Annotated[List[str], typer.Argument(help="Image files, folders, glob patterns ('photos/*.jpg'), "
                                             "or - to read one image from standard input.", show_default=False)]
Output = Annotated[Optional[str], typer.Option("--output", "-o", help="Output folder; or a file name when there "
                                               "is one input; - for standard output.", show_default=False)]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Go into subfolders; the output mirrors the tree.")]
Suffix = Annotated[str, typer.Option(help="Text added to each output file name before the extension.")]
Format = Annotated[str, typer.Option("--format", "-f", help="Output format: png, jpg, webp, tiff, bmp, avif, or "
                                     "same (keep each input's format). Ignored when -o names a file.")]
Quality = Annotated[Optional[int], typer.Option(min=1, max=100, help="JPEG/WebP quality (default 95; WebP 100 "
                                                "= lossless), AVIF (default 90).", show_default=False)]
Device = Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")]
BatchSize = Annotated[int, typer.Option(min=0, help="Tiles per forward pass (0: 8 on GPU, 1 on CPU).")]
Tile = Annotated[str, typer.Option(help="Tile size in pixels for large images: auto, 0 (never tile) or N.")]
Precision = Annotated[str, typer.Option(help="auto (bf16/fp16 on GPU; bf16 on CPUs with native bf16, else fp32), fp32, fp16 or bf16.")]
Workers = Annotated[int, typer.Option(min=0, help="Threads that decode and encode files (0: auto).")]
Overwrite = Annotated[bool, typer.Option("--overwrite/--skip-existing", help="Replace outputs that exist, or "
                                         "skip them (default: skip, so a re-run finishes only what is missing).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would be written, and do nothing.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object per file and a summary on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Print a line per file.")]
MaxPixels = Annotated[float, typer.Option(help="Refuse images above this many megapixels (guards against "
                                          "decompression bombs).")]


# ---------------------------------------------------------------- the options of every image command
@dataclass
class ImageArgs:
    """What every image command takes besides its inputs, output and own options."""
    recursive: bool = False
    suffix: str = ""
    fmt: str = "same"
    quality: Optional[int] = None
    device: str = "auto"
    batch_size: int = 0
    tile: str = "auto"
    precision: str = "auto"
    workers: int = 0
    overwrite: bool = False
    dry_run: bool = False
    as_json: bool = False
    quiet: bool = False
    verbose: bool = False
    max_pixels: float = 250.0


_IMAGE_OPTIONS = {"recursive": Recursive, "suffix": Suffix, "fmt": Format, "quality": Quality, "device": Device,
                  "batch_size": BatchSize, "tile": Tile, "precision": Precision, "workers": Workers,
                  "overwrite": Overwrite, "dry_run": DryRun, "as_json": Json, "quiet": Quiet, "verbose": Verbose,
                  "max_pixels": MaxPixels}


def with_shared_options(fn, shared: dict, bundle, arg: str):
    """Give `fn` the `shared` options ({name: (Annotated type, default)}) as ordinary Typer options
    after its own, and call it with their values bundled as `arg` (bundle(**values)), so that each
    command declares only its own options. Only the signature changes: Typer reads it as usual."""
    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != arg]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
             for name, (annotation, default) in shared.items()]

    @functools.wraps(fn)
    def wrapper(*a, **kwargs):
        return fn(*a, **{arg: bundle(**{name: kwargs.pop(name) for name in shared})}, **kwargs)

    wrapper.__signature__ = inspect.Signature(own + extra)
    wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}  # evaluated, for get_type_hints
    del wrapper.__wrapped__  # Typer must read the new signature, not the wrapped one
    return wrapper


def image_command(fn):
    """`fn(..., args: ImageArgs)` gets the options of every image command."""
    defaults = ImageArgs()
    shared = {name: (annotation, getattr(defaults, name)) for name, annotation in _IMAGE_OPTIONS.items()}
    return with_shared_options(fn, shared, ImageArgs, "args")
