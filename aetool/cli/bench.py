"""`aetool bench`: how fast this machine runs each task (the library is aetool.bench)."""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from typing_extensions import Annotated

from . import options as o
from .common import handle_errors

# "\b" keeps click from rewrapping the examples: each line is printed as written (under 80 columns).
EPILOG = """Examples:

\b
  # every task at 1, 6 and 24 MP (long on a small CPU: see above)
  aetool bench
\b
  # a quick check: two tasks, 1 MP
  aetool bench --tasks denoise,upscale --sizes 1
\b
  # for a bug report: the machine's speed as JSON
  aetool bench --tasks denoise --sizes 1,6 --json > bench.json
\b
  # the GPU in bf16, JPEG files, 5 runs per timing
  aetool bench --device cuda --precision bf16 --format jpg --repeat 5

\b
Columns, in seconds (the JSON has the same names with _s, and every run):
  decode    read and decode one input file (PNG or JPEG; decompress: .aei)
  estimate  denoise: the blind noise estimate (added without --sigma)
  model     the task on an already-decoded image: denoise at --sigma 15,
            upscale x2, inpaint of spots and scratches, compress at quality 4
  encode    encode the output to --format (compress: none, its output is
            the file's bytes)
  folder    a folder of 3 such files through the engine the commands use
            (decode ahead, model, encode and write behind), per image
  overhead  folder / model - 1: what reading and writing add to the model
            (median over the runs, each folder run against a run of the
            model alone just before it)
  An upscale row's size is its output's (the input is a quarter of it).

Exit codes: 0 done, 1 a task failed, 2 usage error, 130 Ctrl-C, 143 SIGTERM.
"""


def bench_command(
    tasks: Annotated[str, typer.Option("--tasks", "-t", metavar="LIST",
                                       help="Tasks to time, comma-separated: denoise, upscale, inpaint, "
                                            "compress, decompress, or all.")] = "all",
    sizes: Annotated[str, typer.Option("--sizes", "-s", metavar="MP,...",
                                       help="Image sizes in megapixels, comma-separated (0.01 for a check "
                                            "of seconds).")] = "1,6,24",
    device: o.Device = "auto",
    precision: o.Precision = "auto",
    threads: Annotated[int, typer.Option(min=0, metavar="N", help="torch threads (0: torch's default, "
                                         "one per core).")] = 0,
    tile: o.Tile = "auto",
    batch_size: o.BatchSize = 0,
    workers: o.Workers = 0,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="png|jpg",
                                     help="Format of the input and output files.")] = "png",
    repeat: Annotated[int, typer.Option(min=0, metavar="N", help="Runs per timing, median reported (0: 3 up "
                                        "to 2 MP, 2 up to 8 MP, 1 above). The folder runs as often, each "
                                        "time after a run of the model alone.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the machine, the settings and every row "
                                          "(with every run's time) as one JSON object.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")] = False,
):
    """Time each task on this machine: decode, model, encode and a folder end to end, on generated
    photo-like images of 1, 6 and 24 MP; print a table with the precision, threads and tile size
    the engine chose. Also how a bug report states a machine's speed.

    Duration: on a 2-core CPU the default run takes about 40 minutes (a 24 MP denoise is about
    three minutes a run, and the 24 MP rows are two thirds of the total); --sizes 1 about 3
    minutes, --sizes 1,6 about 12. A GPU takes a few minutes."""
    from ..bench import parse_sizes, parse_tasks, run_bench
    from ..engine import parse_tile

    task_list, size_list = parse_tasks(tasks), parse_sizes(sizes)  # usage errors before torch loads

    def step(message: str) -> None:
        if not quiet:
            print(f"aetool bench: {message}", file=sys.stderr, flush=True)

    result = run_bench(task_list, size_list, device=device, precision=precision, threads=threads,
                       tile=parse_tile(tile), batch_size=batch_size, workers=workers, fmt=fmt, repeat=repeat,
                       on_step=step)
    if as_json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)


def header_lines(result: dict) -> list[str]:
    m, s = result["machine"], result["settings"]
    rows = result["rows"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    load = f", load average {m['load_average'][0]:g} at start" if m.get("load_average") else ""
    lines = [f"aetool {m['aetool']}, torch {m['torch']}, Python {m['python']}",
             f"CPU {m['cpu']}, {m['cores']} cores{gpu}{load}",
             f"device {m['device']}, {m['torch_threads']} torch threads, {s['workers']} decode/encode threads, "
             f"{s['format']} files, repeat {s['repeat']}, folder of {s['folder_images']} files"]
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        tiles = ", ".join(f"{r['megapixels']:g} MP: {r['tile'] or 'whole'}" for r in mine)
        lines.append(f"{task}: precision {mine[0]['precision']}, batch {mine[0]['batch_size']}, tile {tiles}, "
                     f"model load {mine[0]['load_s']:.1f} s")
    return lines


COLUMNS = ("task", "MP", "input", "decode", "estimate", "model", "encode", "folder/img", "overhead")


def table_rows(result: dict) -> list[list[str]]:
    def sec(v):
        return "-" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"

    out = []
    for r in result["rows"]:
        overhead = "-" if r["overhead"] is None else f"{100 * r['overhead']:+.1f} %"
        out.append([r["task"], f"{r['megapixels']:g}", f"{r['input'][0]}x{r['input'][1]}", sec(r["decode_s"]),
                    sec(r.get("estimate_s")), sec(r["model_s"]), sec(r["encode_s"]), sec(r["end_to_end_s"]),
                    overhead])
    return out


def print_table(result: dict) -> None:
    """A rich table on a terminal; plain aligned text when piped (for bug reports and logs)."""
    lines, rows = header_lines(result), table_rows(result)
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="aetool bench (seconds)", caption="\n".join(lines), caption_justify="left")
        for i, name in enumerate(COLUMNS):
            table.add_column(name, justify="left" if i in (0, 2) else "right")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    print("\n".join(lines))
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)]
    for row in [list(COLUMNS)] + rows:
        print("  ".join(v.ljust(w) if i in (0, 2) else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    print("seconds; folder/img: wall time per image of a folder of "
          f"{result['settings']['folder_images']} files; overhead: folder / model - 1")


def register(app: typer.Typer) -> None:
    app.command("bench", short_help="Time each task on this machine (decode, model, encode, a folder).",
                epilog=EPILOG)(handle_errors(bench_command))
