"""Options shared by every image command, declared once and reused with Annotated."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import List, Optional

import typer
from typing_extensions import Annotated

# The inputs are described in each command's help text (INPUTS_HELP): a visible argument would be
# listed with Typer's type label, "<list[str]>", which tells a user nothing.
INPUTS_HELP = ("INPUT: image files, folders, glob patterns ('photos/*.jpg', quoted), or - for one image on "
               "standard input.")
Inputs = Annotated[List[str], typer.Argument(metavar="INPUT", hidden=True, show_default=False)]
Output = Annotated[Optional[str], typer.Option("--output", "-o", metavar="PATH", help="Output folder; or a file "
                                               "name when there is one input; - for standard output.",
                                               show_default=False)]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Go into subfolders; the output mirrors the tree.")]
Include = Annotated[Optional[List[str]], typer.Option(
    "--include", metavar="GLOB", show_default=False,
    help="In folders (and glob inputs), take only files that match; repeatable. A pattern with a / is matched "
         "against the path below the folder given ('raw/**/*.png'), one without against the file name "
         "('IMG_*.jpg'); * stays within a folder name, ** crosses folders; any case.")]
Exclude = Annotated[Optional[List[str]], typer.Option(
    "--exclude", metavar="GLOB", show_default=False,
    help="In folders (and glob inputs), leave out files that match; repeatable; patterns as for --include.")]
MaxDepth = Annotated[Optional[int], typer.Option(min=0, metavar="N", show_default=False,
                                                 help="Go at most N folder levels down (implies -r; 0: only the "
                                                      "folder itself).")]
Suffix = Annotated[str, typer.Option(metavar="TEXT", help="Text added to each output file name before the "
                                     "extension.")]
Format = Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="Output format: png, jpg, webp, "
                                     "tiff, bmp, avif, or same (keep each input's format; GIF, HEIC and "
                                     "standard input give PNG). Ignored when -o names a file.")]
Quality = Annotated[Optional[int], typer.Option(min=1, max=100, metavar="N", help="JPEG/WebP quality (default "
                                                "95; WebP 100 = lossless), AVIF (default 90).", show_default=False)]
Device = Annotated[str, typer.Option(metavar="DEVICE", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N "
                                     "or mps.")]
BatchSize = Annotated[int, typer.Option(min=0, metavar="N", help="Tiles per forward pass (0: 8 on GPU, 1 on CPU).")]
Tile = Annotated[str, typer.Option(metavar="SIZE", help="Tile size in pixels for large images: auto, 0 (never "
                                   "tile) or N.")]
Precision = Annotated[str, typer.Option(metavar="PRECISION", help="auto (bf16/fp16 on GPU; bf16 on CPUs with "
                                        "native bf16, else fp32), fp32, fp16 or bf16.")]
Workers = Annotated[int, typer.Option(min=0, metavar="N", help="Threads that decode and encode files (0: auto).")]
Overwrite = Annotated[bool, typer.Option("--overwrite/--skip-existing", help="Replace outputs that exist, or "
                                         "skip them (default: skip, so a re-run finishes only what is missing).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Preflight: check the model, every input's header "
                                      "and the output folders, show what would be written, write nothing; exits "
                                      "with the code the real run would.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object per file (as each output "
                                   "is written) and a summary on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors (no progress bar, no "
                                     "summary line).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Print a line per file on stderr (with --json too).")]
Ray = Annotated[Optional[str], typer.Option(
    "--ray", metavar="ADDRESS", show_default=False,
    help="Run the files on Ray Data: local (start Ray on this machine for the run), auto (the cluster that "
         "`ray start` runs) or the head's host:port or ray://host:port. Inputs and outputs must be on a file "
         "system every node sees at the same path. Needs pip install \"aetool[ray]\"; see docs/scale.md.")]
Devices = Annotated[Optional[str], typer.Option(
    metavar="LIST", show_default=False,
    help="Run a copy of the model on each of several devices, one file per device at a time: all (every "
         "visible GPU with --device cuda or auto; else the one device) or a comma list (cuda:0,cuda:1). "
         "Default: one device (--device).")]
RayActors = Annotated[int, typer.Option(min=0, metavar="N", help="With --ray: copies of the model to run (0: one "
                                        "per GPU of the cluster, or one per CPU when it has none or with --device "
                                        "cpu).")]
MaxPixels = Annotated[float, typer.Option(metavar="MP", help="Refuse images above this many megapixels, input or "
                                          "output (guards against decompression bombs); images that would need more "
                                          "memory than is available are refused too.")]


# ---------------------------------------------------------------- the options of every image command
@dataclass
class ImageArgs:
    """What every image command takes besides its inputs, output and own options."""
    recursive: bool = False
    include: Optional[List[str]] = None  # --include GLOB patterns (None: every image)
    exclude: Optional[List[str]] = None  # --exclude GLOB patterns
    max_depth: Optional[int] = None  # folder levels to go down; implies recursive
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
    ray: Optional[str] = None  # --ray ADDRESS: local, auto, host:port, ray://host:port
    ray_actors: int = 0
    devices: Optional[str] = None  # --devices LIST: all, or cuda:0,cuda:1 (one model replica each)


_IMAGE_OPTIONS = {"recursive": Recursive, "include": Include, "exclude": Exclude, "max_depth": MaxDepth,
                  "suffix": Suffix, "fmt": Format, "quality": Quality, "device": Device,
                  "batch_size": BatchSize, "tile": Tile, "precision": Precision, "workers": Workers,
                  "overwrite": Overwrite, "dry_run": DryRun, "as_json": Json, "quiet": Quiet, "verbose": Verbose,
                  "max_pixels": MaxPixels, "ray": Ray, "ray_actors": RayActors,
                  "devices": Devices}


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


def image_command(fn, omit: tuple[str, ...] = ()):
    """`fn(..., args: ImageArgs)` gets the options of every image command, and its help text the
    description of INPUT. `omit`: options that mean nothing to a command that writes no image
    per input (embed: --suffix, --format, ...); they keep their defaults in `args`."""
    defaults = ImageArgs()
    shared = {name: (annotation, getattr(defaults, name)) for name, annotation in _IMAGE_OPTIONS.items()
              if name not in omit}
    command = with_shared_options(fn, shared, ImageArgs, "args")
    doc = inspect.cleandoc(fn.__doc__ or "")
    # A command whose inputs are not images (decompress) describes its INPUT itself.
    command.__doc__ = doc if "INPUT:" in doc else f"{doc}\n\n{INPUTS_HELP}"
    return command
