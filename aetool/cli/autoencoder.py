"""`aetool embed`, `aetool reconstruct` and `aetool generate`: the autoencoders with a vector code
(`aetool train autoencoder`). embed and reconstruct run through the image engine like every image
command; generate has no inputs and writes its pictures atomically, with the same JSON records."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Tuple

import typer
from typing_extensions import Annotated

from . import options as o
from .common import handle_errors
from .imagecmd import engine_options, run_image_command

Model = Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|FILE", show_default=False,
                                              help="A model from `aetool train autoencoder` (.safetensors), or a "
                                              "name from `aetool models` (fashion-dense, fashion-conv, fashion-vae, "
                                              "photo-embed).")]

# Options of the image engine that mean nothing here: embed writes no image per input, and both run
# a small model on the whole (resized) image at once, in fp32 (no tiles, no batches of tiles).
NOT_TILED = ("tile", "batch_size", "precision")
NOT_FOR_EMBED = ("suffix", "fmt", "quality") + NOT_TILED

EMBED_EPILOG = """Examples:

\b
  # a folder of photos to a table of vectors, and its near-duplicates
  aetool embed ~/photos -r -o emb.parquet --model photo-embed --neighbours 5
\b
  # Fashion-MNIST-like images, with a 2-D map coloured by a labels file
  aetool embed test/ -o emb.npy -m fashion-conv --plot map.png --labels labels.csv
\b
  # one vector as JSON, for a script
  aetool embed shirt.png -m fashion-conv --json

Writes -o (.parquet: columns file and embedding; .npy: the vectors, with FILE.paths.csv of
the files in row order; .csv: file, z0, z1, ...), one row per image in input order; with
--neighbours K, FILE.neighbours.csv (file, rank, neighbour, distance: Euclidean, nearest first).
Every image is brought to the model's size and channels as in its training (the preprocessing
stored in the model). Files that fail are reported and left out; the others are written.

Exit codes: 0 all embedded, 1 some inputs failed (each reported), 2 usage error, 130/143
interrupted (nothing written).
"""


def embed_command(
    inputs: o.Inputs,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="FILE", show_default=False,
                                                  help="The table: .parquet, .npy or .csv (optional with --json, "
                                                  "whose lines carry each vector).")] = None,
    model: Model = None,
    plot: Annotated[Optional[Path], typer.Option(metavar="PNG", show_default=False,
                                                 help="Draw the set in 2-D (the model's code when it has 2 numbers, "
                                                 "else its first two principal components).")] = None,
    labels: Annotated[Optional[Path], typer.Option(metavar="CSV", show_default=False,
                                                   help="file,label rows to colour the --plot (file as given or "
                                                   "its name alone).")] = None,
    neighbours: Annotated[int, typer.Option(min=0, metavar="K", help="Write each image's K nearest images "
                                            "(FILE.neighbours.csv): near-duplicates come first.")] = 0,
    args: o.ImageArgs = None,
):
    """Embed images: one vector per image from an autoencoder's code, for search, clustering,
    near-duplicates and maps of a collection."""
    from ..embeddings import check_table_path, companion
    from ..errors import UsageError

    if model is None:
        raise UsageError("give the model with --model: a file from `aetool train autoencoder`, or a name from "
                         "`aetool models` (photo-embed for photos, fashion-conv for small grey images)")
    table = Path(output).expanduser() if output and output != "-" else None
    if table is None and not args.as_json:
        raise UsageError("give the table with -o FILE (.parquet, .npy or .csv), or --json for the vectors on stdout")
    if table is None and (neighbours or plot):
        raise UsageError("--neighbours and --plot go with a table: give -o FILE")
    if table is not None:
        check_table_path(table)
        planned = [table] + ([companion(table, "paths")] if table.suffix.lower() == ".npy" else [])
        planned += [companion(table, "neighbours")] if neighbours else []
        planned += [plot.expanduser()] if plot else []
        existing = [p for p in planned if p.exists()]
        if existing and not args.overwrite and not args.dry_run:
            raise UsageError(f"{existing[0]} exists; add --overwrite to replace it")
        check_writable(planned, create=not args.dry_run)
    label_map = None
    if labels is not None:
        if plot is None:
            raise UsageError("--labels colours the --plot; give --plot FILE.png too")
        from ..embeddings import read_labels

        label_map = read_labels(labels.expanduser())
    opts = engine_options(args)
    state: dict = {"files": [], "codes": [], "thumbs": []}

    def make_processor():
        from ..embeddings import THUMBNAILS_UP_TO
        from ..tasks.autoencoder import Autoencoder

        ae = Autoencoder.load(model, opts.device)
        state["ae"] = ae

        def process(pic, item):
            x = ae.inputs([pic.pixels])
            code = ae.embed_inputs(x)[0]
            state["files"].append(str(item))
            state["codes"].append(code)
            if plot is not None and len(state["thumbs"]) <= THUMBNAILS_UP_TO:
                state["thumbs"].append(x[0])
            return None, {"embedding": [round(float(v), 6) for v in code]} if args.as_json else {"dims": len(code)}

        return process

    def finish(results, summary):
        # A run cut short (Ctrl-C, SIGTERM, a fatal error) writes no table: a re-run embeds everything anyway.
        if table is None or not state["files"] or summary.interrupted or summary.stopped:
            return None
        return write_outputs(table, state, neighbours, plot, label_map, summary, args.quiet)

    run_image_command("embed", inputs, None, args, opts, make_processor, on_finish=finish, file_per_input=False)


def check_writable(paths, create: bool = True) -> None:
    """Before any image is read: each output's folder can be created and written to (a read-only
    or missing target is one usage error, not a run whose results are then lost). create=False
    (--dry-run) creates nothing."""
    from ..batch import folder_write_error
    from ..errors import UsageError

    for folder in {Path(p).expanduser().parent for p in paths}:
        why = folder_write_error(folder, create)
        if why is not None:
            raise UsageError(f"cannot write to folder {folder}: {why}; choose another output")


def write_outputs(table: Path, state: dict, neighbours: int, plot: Path | None, label_map, summary,
                  quiet: bool) -> int | None:
    """The table, neighbours and map of the whole run (atomically); a write failure is one line, exit 1."""
    import numpy as np

    from .. import embeddings as emb
    from ..errors import EXIT_SOME_FAILED
    from ..tasks.autoencoder import nearest_neighbours, project_2d

    files, codes = state["files"], np.stack(state["codes"])
    written = []
    try:
        written += emb.write_table(table, files, codes)
        if neighbours and len(files) > 1:
            idx, dist = nearest_neighbours(codes, neighbours)
            path = emb.companion(table, "neighbours")
            emb.write_neighbours(path, files, idx, dist)
            written.append(path)
        if plot is not None:
            points, how = project_2d(codes)
            labels = [emb.label_of(label_map, f) for f in files] if label_map else None
            thumbs = np.stack(state["thumbs"]).astype(np.float32) / 255 if len(files) <= emb.THUMBNAILS_UP_TO else None
            emb.plot_map(plot.expanduser(), points, how, labels, thumbs,
                         f"{len(files)} images, model {state['ae'].card.name}")
            written.append(plot.expanduser())
    except OSError as exc:  # the folder was writable at the start (check_writable): a full disk, a removed folder
        print(f"aetool: failed: cannot write {table} (or its companions): {exc.strerror or exc}", file=sys.stderr)
        summary.extra["write_error"] = str(exc.strerror or exc)
        return EXIT_SOME_FAILED
    summary.extra.update({"table": str(table), "rows": len(files), "dims": int(codes.shape[1]),
                          "written": [str(p) for p in written]})
    if not quiet:
        print(f"embed: {len(files)} x {codes.shape[1]} written to {', '.join(map(str, written))}", file=sys.stderr)
    return None


RECONSTRUCT_EPILOG = """Examples:

\b
  # what a model keeps of each image (outputs at the model's size)
  aetool reconstruct shirts/ -o recon/ --model fashion-conv
\b
  aetool reconstruct photo.jpg -o photo-recon.png -m photo-embed

Exit codes: 0 all done (or skipped), 1 some inputs failed, 2 usage error, 130/143 interrupted.
"""


def reconstruct_command(inputs: o.Inputs, output: o.Output = None, model: Model = None, args: o.ImageArgs = None):
    """Reconstruct images through an autoencoder's code (decode(encode(x))), at the model's size:
    what the embedding keeps of each image."""
    from ..errors import UsageError

    if model is None:
        raise UsageError("give the model with --model (a file from `aetool train autoencoder`, or a name from "
                         "`aetool models`)")
    if args.fmt == "same":
        args.fmt = "png"
    opts = engine_options(args)

    def make_processor():
        from ..imageio import Picture
        from ..tasks.autoencoder import Autoencoder

        ae = Autoencoder.load(model, opts.device)

        def process(pic, item):
            out = ae.decode(ae.embed_inputs(ae.inputs([pic.pixels])))[0]
            # The input's colour profile only where the channels match (an RGB profile on a grey PNG is invalid).
            icc = pic.icc if out.shape[2] == pic.channels else None
            return Picture(out, icc=icc), {"size": f"{out.shape[1]}x{out.shape[0]}"}

        return process

    run_image_command("reconstruct", inputs, output, args, opts, make_processor)


GENERATE_EPILOG = """Examples:

\b
  # 64 new images in a grid, reproducible
  aetool generate --model fashion-vae -n 64 --grid samples.png --seed 0
\b
  # closer to the typical image (temperature below 1), as single files
  aetool generate -m fashion-vae -n 16 --temperature 0.7 -o samples/
\b
  # a walk from one image to another through the code space
  aetool generate -m fashion-vae --interpolate a.png b.png --steps 8 --grid walk.png

New images need a variational model (train with --arch vae); --interpolate works with every
autoencoder. Files are named sample-0000.png (or step-00.png) in -o; existing ones are kept
unless --overwrite.

Exit codes: 0 written, 1 a file could not be written, 2 usage error (a model that cannot
generate, a bad input image).
"""


def generate_command(
    model: Model = None,
    n: Annotated[int, typer.Option("-n", "--count", min=1, max=100000, metavar="N", help="Images to draw.")] = 16,
    grid_path: Annotated[Optional[Path], typer.Option("--grid", metavar="PNG", show_default=False,
                                                      help="Write all the images tiled into one picture.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FOLDER", show_default=False,
                                                   help="Write each image as its own PNG file here.")] = None,
    seed: Annotated[Optional[int], typer.Option(metavar="N", show_default=False,
                                                help="Random seed: the same seed gives the same images.")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, metavar="T", help="Spread of the codes drawn: 1 the "
                                               "model's prior; below 1 more typical, cleaner images; above 1 more "
                                               "varied, stranger ones.")] = 1.0,
    interpolate: Annotated[Optional[Tuple[Path, Path]], typer.Option(metavar="A B", show_default=False,
                                                                     help="Two images: a walk from A to B in code "
                                                                     "space instead of new images.")] = None,
    steps: Annotated[int, typer.Option(min=2, max=1000, metavar="N", help="Images in an --interpolate walk.")] = 8,
    zoom: Annotated[int, typer.Option(min=0, max=64, metavar="X", help="Enlarge each image X times in the grid "
                                      "(nearest); 0: to at least 64 pixels.")] = 0,
    columns: Annotated[int, typer.Option(min=0, metavar="N", help="Grid columns (0: a square).")] = 0,
    overwrite: o.Overwrite = False,
    device: o.Device = "auto",
    as_json: o.Json = False,
    quiet: o.Quiet = False,
):
    """Generate new images with a variational autoencoder, or walk between two images."""
    import numpy as np

    from ..errors import EXIT_SOME_FAILED, UsageError
    from ..imageio import read_image

    if model is None:
        raise UsageError("give the model with --model: a variational autoencoder (fashion-vae is bundled, or train "
                         "one with `aetool train autoencoder --arch vae`)")
    if grid_path is None and output is None:
        raise UsageError("say where to write: --grid FILE.png (one picture) and/or -o FOLDER (one file each)")
    if grid_path is not None and grid_path.suffix.lower() != ".png":
        raise UsageError(f"--grid {grid_path.name}: the grid is written as PNG; name it .png")
    check_writable(([output.expanduser() / "x"] if output is not None else [])
                   + ([grid_path.expanduser()] if grid_path is not None else []))
    from ..tasks.autoencoder import Autoencoder, grid

    ae = Autoencoder.load(model, device)
    if interpolate:
        ends = []
        for path in interpolate:
            try:
                ends.append(read_image(path.expanduser()).pixels)
            except Exception as exc:  # an ImageError says what is wrong with the file
                raise UsageError(f"--interpolate {path}: {exc}") from None
        images, stem = ae.interpolate(ends[0], ends[1], steps), "step"
    else:
        images, stem = ae.generate(n, seed, temperature), "sample"
    plan = []
    if output is not None:
        width = max(4 if stem == "sample" else 2, len(str(len(images) - 1)))
        plan += [(output.expanduser() / f"{stem}-{i:0{width}d}.png", images[i:i + 1]) for i in range(len(images))]
    if grid_path is not None:
        z = zoom or max(1, -(-64 // max(ae.size)))
        plan.append((grid_path.expanduser(), grid(images, columns or None, z)[None]))
    failed = write_pictures(plan, overwrite, as_json)
    if not quiet:
        what = f"{len(images)} images" + (f" from {interpolate[0].name} to {interpolate[1].name}" if interpolate else "")
        print(f"generate: {what}; {len(plan) - failed} file(s) written" + (f", {failed} failed" if failed else ""),
              file=sys.stderr)
    if failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def write_pictures(plan, overwrite: bool, as_json: bool) -> int:
    """Encode and write each (path, (1, H, W, C) image) atomically, with a JSON record per file
    (as the image commands print them); returns how many failed."""
    from ..atomic import write_atomic
    from ..batch import FileResult
    from ..imageio import Picture, encode_image

    failed = 0
    for path, image in plan:
        if path.exists() and not overwrite:
            result = FileResult("-", str(path), "skipped", "output exists (use --overwrite)")
        else:
            try:
                write_atomic(path, encode_image(Picture(image[0].astype("float32")), ".png"))
                result = FileResult("-", str(path), "ok", info={"size": f"{image.shape[2]}x{image.shape[1]}"})
            except OSError as exc:
                result = FileResult("-", str(path), "failed", f"cannot write {path}: {exc.strerror or exc}")
                failed += 1
                print(f"aetool: failed: {result.error}", file=sys.stderr)
        if as_json:
            sys.stdout.write(json.dumps(result.to_json()) + "\n")
    sys.stdout.flush()
    return failed


def register(app: typer.Typer) -> None:
    app.command("embed", short_help="One vector per image (autoencoder code): tables, near-duplicates, maps.",
                epilog=EMBED_EPILOG)(handle_errors(o.image_command(embed_command, omit=NOT_FOR_EMBED)))
    app.command("reconstruct", short_help="Reconstruct images through an autoencoder's code.",
                epilog=RECONSTRUCT_EPILOG)(handle_errors(o.image_command(reconstruct_command, omit=NOT_TILED)))
    app.command("generate", short_help="New images from a variational autoencoder, or a walk between two.",
                epilog=GENERATE_EPILOG)(handle_errors(generate_command))
