"""The part of every image command after parsing: find inputs, plan outputs, run, report."""
from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import typer

from ..discovery import IMAGE_EXTENSIONS, collect_inputs, has_image_extension, plan_output
from ..errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_TERMINATED, Terminated, UsageError
from ..limits import OutputSize
from .options import ImageArgs

if TYPE_CHECKING:
    from ..batch import FileResult, Summary
    from ..engine import EngineOptions

FORMATS = ["png", "jpg", "jpeg", "webp", "tiff", "tif", "bmp", "avif", "same"]


def engine_options(args: ImageArgs) -> EngineOptions:
    from ..device import check_names
    from ..engine import EngineOptions, parse_tile

    if args.max_pixels <= 0:
        raise UsageError("--max-pixels must be positive (megapixels)")
    check_names(args.device, args.precision)
    return EngineOptions(device=args.device, precision=args.precision, tile=parse_tile(args.tile),
                         batch_size=args.batch_size, workers=args.workers, max_pixels=int(args.max_pixels * 1e6))


def run_image_command(name: str, inputs: list[str], output: str | None, args: ImageArgs, options: EngineOptions,
                      make_processor: Callable[[], Callable], output_size: OutputSize | None = None, *,
                      input_extensions: set[str] = IMAGE_EXTENSIONS, output_extensions: set[str] = IMAGE_EXTENSIONS,
                      read: Callable | None = None, probe: Callable | None = None, integer_pixels: bool = False,
                      on_finish: Callable[[list[FileResult], Summary], int | None] | None = None,
                      file_per_input: bool = True) -> None:
    """Find inputs, plan outputs, check the model and every input's header, run, report, exit.
    `output_size` ((h, w) -> (h, w)): for commands that change the size, so that the pixel and
    memory limits are checked on the output before decoding. The keyword arguments let a command
    whose inputs or outputs are not images (compress, decompress) use the same engine: which files
    a folder scan takes, what an output file may end with, and how an input is read and probed
    (`read`, `probe`: aetool.imageio's read_image and probe_image unless given).
    args.fmt may be an extension (".aei") for such outputs. `on_finish(results, summary)` runs after
    the batch (not on --dry-run) with every file's result, to write what covers the whole run (the
    anomaly report); it may add to summary.extra and return an exit code for a run with no failure.
    `file_per_input=False`: the command writes no file per input (embed: one table for the run, by
    on_finish); `output` is then not planned from and `process` returns (None, info).
    `integer_pixels`: images are decoded (and their memory checked) as 8/16-bit integers, for a
    processor that takes them (upscale, denoise)."""
    # (numpy, Pillow and the engine load here, not with the command line: --help stays quick)
    from ..batch import FileResult, Summary, plan_jobs, preflight, run_jobs
    from ..imageio import FORMAT_EXTENSIONS, probe_image, read_image

    read, probe = read or read_image, probe or probe_image
    if integer_pixels:
        read, probe = partial(read, integer=True), partial(probe, integer=True)
    recursive, suffix, fmt, quality = args.recursive, args.suffix, args.fmt, args.quality
    overwrite, dry_run, as_json, quiet = args.overwrite, args.dry_run, args.as_json, args.quiet
    fmt = fmt.lower()
    if fmt not in FORMATS and not fmt.startswith("."):
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
    ray_address = check_ray(name, args, file_per_input)
    items, missing = collect_inputs(inputs, recursive, output=output if output != "-" else None, suffix=suffix,
                                    fmt=fmt, include=args.include or (), exclude=args.exclude or (),
                                    max_depth=args.max_depth, extensions=input_extensions,
                                    output_extensions=output_extensions)
    if not file_per_input:
        output = None
    to_stdout = file_per_input and (output == "-" or (output is None and any(it.is_stdin for it in items)))
    if to_stdout and len(items) + len(missing) != 1:
        raise UsageError("standard output takes exactly one image; give a folder with -o for several")
    if ray_address and (to_stdout or any(it.is_stdin for it in items)):
        raise UsageError("--ray reads and writes files: give input files or folders and an output folder with -o, "
                         "not standard input or output")
    if to_stdout and as_json:
        raise UsageError("--json prints to standard output, which is taken by the image; use -o FILE")
    if output is None and not to_stdout and file_per_input:
        raise UsageError("give an output with -o/--output (a folder, or a file for one input; - for stdout)")
    folder_input = any(Path(i).expanduser().is_dir() for i in inputs)
    single_file = (file_per_input and not to_stdout and len(items) == 1 and not folder_input
                   and has_image_extension(output, output_extensions) and not Path(output).expanduser().is_dir())
    out_path = None if to_stdout or output is None else Path(output).expanduser()
    if out_path is not None and not single_file and (out_path.is_file() or (
            has_image_extension(out_path, output_extensions) and not out_path.is_dir())):
        count = len(items) + len(missing)
        raise UsageError(f"-o {output} names a file, but there {'is 1 input' if count == 1 else f'are {count} inputs'}"
                         "; give an output folder")

    def plan(item):
        if not file_per_input:
            return None
        return plan_output(item, "-" if to_stdout else output, single_file, suffix, fmt)

    def suffix_for(job) -> str:
        if job.output is not None:
            return job.output.suffix.lower()
        return fmt if fmt.startswith(".") else FORMAT_EXTENSIONS["png" if fmt == "same" else fmt]

    jobs, decided = plan_jobs(items, plan, overwrite)
    # The model is checked before any input is read: a damaged one is one usage error (exit 2).
    process = model_replicas(make_processor, args, options) if jobs else None
    jobs, refused = preflight(jobs, options.max_pixels, output_size, options.workers, verify=dry_run, probe=probe)
    summary = Summary()
    started = time.perf_counter()
    # On a terminal a progress bar, unless the JSON lines go to the same terminal (they are the progress).
    interactive = sys.stderr.isatty() and not quiet and not (as_json and sys.stdout.isatty())
    reporter = Reporter(name, args, summary, jobs if interactive and not dry_run else None)
    ray_session = contextlib.ExitStack()
    if ray_address and jobs and not dry_run:
        from ..cluster import Session

        # Ray prints its workers' errors ("(raylet) ...") on stdout, which carries the JSON lines: send
        # them to stderr while Ray is connected (the reporter keeps the real stdout).
        ray_session.enter_context(contextlib.redirect_stdout(sys.stderr))
        # Connected now, so that a cluster that cannot be reached is a usage error before any file is reported.
        try:
            cluster = ray_session.enter_context(Session(ray_address, quiet))
        except BaseException:
            ray_session.close()
            raise
    for miss, why in missing:
        reporter(FileResult(miss, None, "failed", why))
    for r in decided + refused:
        reporter(r)
    if dry_run:
        for job in jobs:
            reporter(FileResult(str(job.item), str(job.output) if job.output else "-", "planned"))
        jobs = []
    if not items and not missing and not quiet:
        hint = (" (none that --include/--exclude take)" if args.include or args.exclude
                else "" if recursive or args.max_depth is not None else " (add -r to go into subfolders)")
        print(f"aetool: no images found in {' '.join(inputs)}{hint}", file=sys.stderr)
    reported_before = summary.total
    try:
        if jobs:
            reporter.start()
            run_options = dict(suffix_for=suffix_for, quality=quality, max_pixels=options.max_pixels,
                               workers=options.workers, overwrite=overwrite, output_size=output_size, read=read)
            if ray_address:  # the same run_jobs, in actors that build the processor themselves
                process = None  # (loaded here only to check the model: not held through the run)
                stopped = cluster.run_jobs(jobs, make_processor, on_result=reporter, device=options.device,
                                           actors=args.ray_actors, **run_options)
            else:
                stopped = run_jobs(jobs, process, on_result=reporter, on_progress=reporter.tiles, **run_options)
            if stopped:
                summary.stopped = stopped
    except KeyboardInterrupt as exc:
        summary.interrupted = True
        summary.stopped = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
    finally:
        reporter.stop()
        ray_session.close()  # a Ray instance started for the run stops, with its actors
    summary.not_started = max(0, len(jobs) - (summary.total - reported_before))
    summary.seconds = time.perf_counter() - started
    finish_code = on_finish(reporter.results, summary) if on_finish is not None and not dry_run else None
    reporter.finish()
    if summary.interrupted:
        print("aetool: " + ("terminated" if summary.stopped == "SIGTERM" else "interrupted")
              + "; finished outputs are complete, re-run to do the rest", file=sys.stderr)
        raise typer.Exit(EXIT_TERMINATED if summary.stopped == "SIGTERM" else EXIT_INTERRUPTED)
    if summary.stopped:
        print(f"aetool: stopped: {summary.stopped}; {summary.not_started} file(s) not started, "
              "re-run to do the rest once it is fixed", file=sys.stderr)
    raise typer.Exit(EXIT_SOME_FAILED if summary.failed or summary.stopped else finish_code or EXIT_OK)


def model_replicas(make_processor: Callable[[], Callable], args: ImageArgs, options: EngineOptions):
    """The processor, or with --devices one per device (each built with its Runners on that device),
    for batch.run_jobs to run side by side."""
    if not args.devices:
        return make_processor()
    if args.ray is not None:
        raise UsageError("--devices is for runs on this machine; with --ray the cluster places the model copies "
                         "(--ray-actors)")
    from ..device import parse_devices
    from ..engine import replica_on

    devices = parse_devices(args.devices, options.device)
    if len(devices) == 1:
        with replica_on(devices[0]):
            return make_processor()
    replicas = []
    for device in devices:
        with replica_on(device):
            replicas.append(make_processor())
    return replicas


def check_ray(name: str, args: ImageArgs, file_per_input: bool) -> str | None:
    """--ray's address as ray.init takes it (None without --ray), or a usage error: Ray Data not
    installed (with what to install), a value that is no address, a command that cannot run there."""
    if args.ray is None:
        if args.ray_actors:
            raise UsageError("--ray-actors is for --ray")
        return None
    from ..cluster import check_address, require_ray

    address = check_address(args.ray)
    require_ray()
    if not file_per_input:  # its result is built from every file in one process (embed's table)
        raise UsageError(f"`aetool {name}` does not run on Ray: it writes one result for the whole run")
    return address


class Reporter:
    """Reports each file's result (JSON line, failure or verbose line, progress bar) and the
    summary. Called from writer threads the moment an output is in place, so it takes a lock.
    JSON lines are written raw to stdout, never through rich (which would wrap them); the
    progress bar is weighted by megapixels and moves inside large images (tiles)."""

    def __init__(self, name: str, args: ImageArgs, summary: Summary, bar_jobs: list | None):
        self.name, self.args, self.summary = name, args, summary
        self.out = sys.stdout  # the JSON lines' stream, kept while a --ray run sends stray output to stderr
        self.lock = threading.RLock()
        self.progress = None
        self.bar_jobs = bar_jobs
        self.job_mp = {str(j.item): (j.megapixels or 1.0) for j in bar_jobs or []}  # files not reported yet
        self.total_files = len(self.job_mp)
        self.done_mp = 0.0
        self.in_flight: dict[str, float] = {}  # input -> fraction of its tiles done
        self.files_done = 0
        self.started = time.perf_counter()
        self.results: list[FileResult] = []  # every file's, in the order reported

    def start(self) -> None:
        if self.bar_jobs is None:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        # redirect_stdout=False: our JSON lines must reach stdout untouched.
        self.progress = Progress(TextColumn(f"[bold]{self.name}"), BarColumn(), TextColumn("{task.fields[files]}"),
                                 TextColumn("{task.fields[mps]:.2f} MP/s"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), transient=False, redirect_stdout=False,
                                 redirect_stderr=False)
        self.progress.start()
        total = sum(self.job_mp.values())
        self.bar = self.progress.add_task(self.name, total=total, mps=0.0, files=f"0/{self.total_files} files")

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _stderr(self, line: str) -> None:
        if self.progress is not None:
            self.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def tiles(self, job, fraction: float) -> None:
        with self.lock:
            self.in_flight[str(job.item)] = fraction
            self._refresh()

    def _refresh(self) -> None:
        if self.progress is None:
            return
        partial = sum(self.job_mp.get(k, 0.0) * f for k, f in self.in_flight.items())
        elapsed = max(1e-9, time.perf_counter() - self.started)
        self.progress.update(self.bar, completed=self.done_mp + partial, mps=self.done_mp / elapsed,
                             files=f"{self.files_done}/{self.total_files} files")

    def __call__(self, r: FileResult) -> None:
        args = self.args
        with self.lock:
            self.summary.add(r)
            self.results.append(r)
            if args.as_json:
                self.out.write(json.dumps(r.to_json()) + "\n")
                self.out.flush()
            if r.status == "failed" and not (args.as_json and args.quiet):
                self._stderr(f"aetool: failed: {r.input}: {r.error}")
            elif r.info.get("warning") and not args.quiet:  # done, but not as asked (a size target too small)
                self._stderr(f"aetool: warning: {r.input}: {r.info['warning']}")
            elif args.dry_run and not args.as_json and not args.quiet:
                print(f"{r.status}: {r.input} -> {r.output}" + (f" ({r.error})" if r.error else ""), file=self.out,
                      flush=True)
            elif args.verbose and not args.quiet:  # with --json too: verbose lines go to stderr
                extra = " ".join(f"{k}={v}" for k, v in r.info.items())
                self._stderr(f"{r.status}: {r.input} -> {r.output} {extra}".rstrip())
            if r.input in self.job_mp and r.status in ("ok", "failed", "skipped"):
                self.in_flight.pop(r.input, None)
                self.done_mp += self.job_mp.pop(r.input)
                self.files_done += 1
                self._refresh()

    def finish(self) -> None:
        """The summary: a JSON object with --json, and one line on stderr unless -q."""
        s, args = self.summary, self.args
        if args.as_json:
            self.out.write(json.dumps({"summary": s.to_json()}) + "\n")
            self.out.flush()
        if args.quiet:
            return
        if args.dry_run:
            print(f"{self.name} (dry run): {s.planned} to do, {s.skipped} skipped, {s.failed} would fail",
                  file=sys.stderr)
        else:
            print(s.line(self.name), file=sys.stderr)
