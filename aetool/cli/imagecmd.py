"""The part of every image command after parsing: find inputs, plan outputs, run, report."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

import typer

from ..batch import FileResult, Summary, plan_jobs, run_jobs
from ..discovery import collect_inputs, has_image_extension, plan_output
from ..engine import EngineOptions, parse_tile
from ..errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, UsageError
from ..imageio import FORMAT_EXTENSIONS
from .options import ImageArgs

FORMATS = ["png", "jpg", "jpeg", "webp", "tiff", "tif", "bmp", "avif", "same"]


def engine_options(args: ImageArgs) -> EngineOptions:
    from ..device import check_names

    if args.max_pixels <= 0:
        raise UsageError("--max-pixels must be positive (megapixels)")
    check_names(args.device, args.precision)
    return EngineOptions(device=args.device, precision=args.precision, tile=parse_tile(args.tile),
                         batch_size=args.batch_size, workers=args.workers, max_pixels=int(args.max_pixels * 1e6))


def run_image_command(name: str, inputs: list[str], output: str | None, args: ImageArgs, options: EngineOptions,
                      make_processor: Callable[[], Callable]) -> None:
    recursive, suffix, fmt, quality = args.recursive, args.suffix, args.fmt, args.quality
    overwrite, dry_run, as_json, quiet, verbose = args.overwrite, args.dry_run, args.as_json, args.quiet, args.verbose
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
    exclude = Path(output).expanduser() if output not in (None, "-") else None
    items, missing = collect_inputs(inputs, recursive, exclude=exclude)
    to_stdout = output == "-" or (output is None and any(it.is_stdin for it in items))
    if to_stdout and len(items) + len(missing) != 1:
        raise UsageError("standard output takes exactly one image; give a folder with -o for several")
    if to_stdout and as_json:
        raise UsageError("--json prints to standard output, which is taken by the image; use -o FILE")
    if output is None and not to_stdout:
        raise UsageError("give an output with -o/--output (a folder, or a file for one input; - for stdout)")
    folder_input = any(Path(i).expanduser().is_dir() for i in inputs)
    single_file = (not to_stdout and len(items) == 1 and not folder_input and has_image_extension(output)
                   and not Path(output).expanduser().is_dir())
    out_path = None if to_stdout else Path(output).expanduser()
    if out_path is not None and not single_file and (out_path.is_file() or (has_image_extension(out_path)
                                                                             and not out_path.is_dir())):
        raise UsageError(f"-o {output} names a file, but there are {len(items) + len(missing)} inputs; "
                         "give an output folder")

    def plan(item):
        return plan_output(item, "-" if to_stdout else output, single_file, suffix, fmt)

    def suffix_for(job) -> str:
        if job.output is not None:
            return job.output.suffix.lower()
        return FORMAT_EXTENSIONS["png" if fmt == "same" else fmt]

    jobs, decided = plan_jobs(items, plan, overwrite)
    summary = Summary()
    interactive = sys.stderr.isatty() and not quiet
    started = time.perf_counter()
    progress = bar = None

    def report(r: FileResult) -> None:
        summary.add(r)
        if as_json:
            print(json.dumps(r.to_json()), flush=True)
        if r.status == "failed" and not (as_json and quiet):
            msg = f"aetool: failed: {r.input}: {r.error}"
            (progress.console.print(msg, markup=False, highlight=False) if progress else print(msg, file=sys.stderr))
        elif dry_run and not as_json and not quiet:
            print(f"{r.status}: {r.input} -> {r.output}" + (f" ({r.error})" if r.error else ""))
        elif verbose and not as_json:
            extra = " ".join(f"{k}={v}" for k, v in r.info.items())
            line = f"{r.status}: {r.input} -> {r.output} {extra}".rstrip()
            progress.console.print(line, markup=False) if progress else print(line, file=sys.stderr)
        if progress is not None and r.status in ("ok", "failed") and r.input in running:
            running.discard(r.input)
            done_mp[0] += r.megapixels
            elapsed = max(1e-9, time.perf_counter() - started)
            progress.update(bar, advance=1, mps=done_mp[0] / elapsed)

    running: set[str] = set()
    done_mp = [0.0]
    for miss, why in missing:
        report(FileResult(miss, None, "failed", why))
    for r in decided:
        report(r)
    if dry_run:
        for job in jobs:
            report(FileResult(str(job.item), str(job.output) if job.output else "-", "planned"))
        jobs = []
    if not items and not missing:
        if not quiet:
            hint = "" if recursive else " (add -r to go into subfolders)"
            print(f"aetool: no images found in {' '.join(inputs)}{hint}", file=sys.stderr)
    try:
        if jobs:
            process = make_processor()
            if interactive:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                           TimeElapsedColumn, TimeRemainingColumn)

                progress = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("{task.fields[mps]:.2f} MP/s"), TimeElapsedColumn(),
                                    TextColumn("ETA"), TimeRemainingColumn(), transient=False)
                progress.start()
                bar = progress.add_task(name, total=len(jobs), mps=0.0)
            running.update(str(j.item) for j in jobs)
            run_jobs(jobs, process, suffix_for=suffix_for, quality=quality, max_pixels=options.max_pixels,
                     workers=options.workers, on_result=report)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if progress is not None:
            progress.stop()
    summary.seconds = time.perf_counter() - started
    if as_json:
        print(json.dumps({"summary": summary.to_json()}), flush=True)
    elif (interactive or verbose) and not dry_run:
        rate = f", {summary.megapixels / summary.seconds:.2f} MP/s" if summary.seconds and summary.ok else ""
        print(f"{name}: {summary.ok} done, {summary.skipped} skipped, {summary.failed} failed "
              f"in {summary.seconds:.1f} s{rate}", file=sys.stderr)
    if summary.interrupted:
        print("aetool: interrupted; finished outputs are complete, re-run to do the rest", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_SOME_FAILED if summary.failed else EXIT_OK)
