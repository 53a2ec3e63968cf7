"""Batch inference on Ray Data (`--ray ADDRESS`): the driver finds, plans and preflights the files
as a local run does, then the jobs go to Ray Data's map_batches, where one actor per GPU (or per
CPU slot) builds the command's processor (its model) once and runs each batch of jobs through
batch.run_jobs: the same claims, decode-ahead, atomic writes and per-file errors as a local run.
Each actor sends back the FileResult records, which the driver reports as they come.

Ray is an optional extra (`pip install "aetool[ray]"`), imported only here and only when --ray is
given. Inputs and outputs must be on a file system that every node sees at the same path (the
driver's working folder too, when paths are relative): see docs/scale.md.
"""
from __future__ import annotations

import logging
import math
import os
import pickle
import re
import signal
import threading
from typing import Callable

from .batch import FileResult, Job, run_jobs
from .errors import UsageError

INSTALL_HINT = 'pip install "aetool[ray]"'
ADDRESSES = "local (start Ray for this run), auto (the running cluster) or the head's host:port / ray://host:port"
# Jobs per map_batches call. Records come back a batch at a time (progress, JSON lines), a batch
# lost with its node is redone, and an interrupted run reports no file of a batch in flight: so
# small batches. run_jobs decodes the next file of a batch while the model runs on this one, so
# not single files when there are enough to go round: about 4 batches per actor, at most 4 files.
MAX_JOBS_PER_BATCH = 4


def require_ray():
    """The ray module, or a usage error that says what to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is the part --ray needs (ray[data])
    except ImportError:
        raise UsageError(f"--ray needs Ray Data, which is not installed; install it with: {INSTALL_HINT}") from None
    return ray


def check_address(address: str) -> str:
    """`address` as ray.init takes it, or a usage error (a bare --ray before the inputs takes the
    first input as its value: say so instead of trying to connect to it)."""
    value = address.strip()
    if value.lower() in ("local", "auto"):
        return value.lower()
    if value.startswith("ray://") or re.fullmatch(r"[A-Za-z0-9.\-]+:[0-9]{1,5}|\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}", value):
        return value
    raise UsageError(f"--ray takes {ADDRESSES}; got '{address}'")


class Session:
    """Ray connected for a run (a context manager; connects when made, so that a cluster that
    cannot be reached is a usage error before any work): a local instance started for the run
    (`local`), or the cluster at `address` (auto, host:port, ray://host:port). A process that has
    already called ray.init (a Python caller, the tests) keeps its connection, which is left open.
    Closing shuts down an instance started here (its actors with it) and removes from the output
    folders the claims and temporaries of actors on this machine that were killed in mid-file."""

    def __init__(self, address: str, quiet: bool = False):
        self.ray = ray = require_ray()
        self.connected = False  # ray.init called here: shut down (a local instance) or disconnected on close
        self.folders: set = set()  # output folders of the jobs run, cleaned on close
        if ray.is_initialized():
            return
        env = {k: os.environ[k] for k in ("AETOOL_STALE_SECONDS",) if k in os.environ}  # the same on every node
        # ray.init replaces the driver's SIGTERM handler with sys.exit: keep ours (SIGTERM stops a run
        # like Ctrl-C: summary, exit 143).
        main = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if main else None
        try:
            # log_to_driver=False: workers' output would be printed on our stdout, which carries the
            # JSON lines; actors' logs stay in Ray's session folder (/tmp/ray/session_latest/logs).
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR if quiet else logging.WARNING,
                     runtime_env={"env_vars": env} if env else None)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            hint = "start one with `ray start --head`, or use --ray local" if address != "local" else "see Ray's log"
            raise UsageError(f"--ray {address}: cannot connect to Ray ({str(exc).splitlines()[0]}); {hint}") from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, sigterm)
        self.connected = True

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.connected:
            self.connected = False
            self.ray.shutdown()
        # Temporaries and claims of actors that died in mid-file on this machine (only those: the
        # files' process must be gone; another node's are left until they are old, see atomic.py).
        from .atomic import clean_stale_temps

        for folder in self.folders:
            clean_stale_temps(folder)

    def run_jobs(self, jobs: list[Job], make_processor: Callable[[], Callable], *,
                 on_result: Callable[[FileResult], None], device: str = "auto", actors: int = 0,
                 **run_options) -> str | None:
        """batch.run_jobs on the cluster: `on_result` is called (on this thread) for each file as its
        batch comes back, in no set order; `run_options` are run_jobs' keyword arguments (suffix_for,
        quality, max_pixels, ...), sent to the actors with `make_processor`, so they must pickle
        (cloudpickle: closures are fine). Returns None when every job ran, or why the run stopped
        early (a batch's fatal error, or Ray's own failure); the jobs not reported are left to the
        caller to count, as with run_jobs. KeyboardInterrupt propagates; the run's actors stop with
        it: a file being written is either renamed into place whole or left as a temporary that the
        next run (or close()) removes."""
        if not jobs:
            return None
        ray = self.ray
        self.folders.update(job.output.parent for job in jobs if job.output is not None)
        _quiet_ray_data()
        count, resources = plan_actors(ray.cluster_resources(), device, actors)
        per_batch = jobs_per_batch(len(jobs), count)
        ds = ray.data.from_items([{"job": pickle.dumps(job)} for job in jobs],
                                 override_num_blocks=math.ceil(len(jobs) / per_batch))
        ds = ds.map_batches(JobRunner, batch_size=per_batch, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=count),
                            fn_constructor_kwargs={"make_processor": make_processor, "run_options": run_options,
                                                   "cwd": os.getcwd()}, **resources)
        rows = ds.iter_rows()
        try:
            for row in rows:
                on_result(pickle.loads(row["record"]))
                if row["stopped"]:
                    return str(row["stopped"])
        except Exception as exc:  # noqa: BLE001 - Ray's failures (an actor that cannot start, a lost object)
            return f"the Ray run failed: {_first_line(exc)}"
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()  # stops the actors of a run cut short (a fatal error, Ctrl-C)
        return None


def run_jobs_on_ray(address: str, jobs: list[Job], make_processor: Callable[[], Callable], *,
                    on_result: Callable[[FileResult], None], quiet: bool = False, **options) -> str | None:
    """Session(address).run_jobs(...) for one run (see there), closing the session after."""
    with Session(address, quiet) as session:
        return session.run_jobs(jobs, make_processor, on_result=on_result, **options)


def _quiet_ray_data() -> None:
    """No Ray Data progress bars or execution logs: aetool's own progress and summary report the run."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its warnings are about its own progress bars


def plan_actors(resources: dict, device: str, actors: int = 0) -> tuple[int, dict]:
    """How many actors, and what each asks Ray for: one per GPU when the cluster has GPUs and
    --device allows them (auto, cuda), else one per CPU. `actors` (--ray-actors) overrides the count
    and the GPUs or CPUs are shared out between them. Each CPU actor's torch then uses its share of
    threads (Ray sets OMP_NUM_THREADS to it)."""
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if device.startswith("cuda:"):
        raise UsageError("with --ray, Ray gives each actor its own GPU: use --device cuda or auto, not a GPU number")
    if device == "cuda" and not gpus:
        raise UsageError("--device cuda, but the Ray cluster has no GPU")
    if gpus and device in ("auto", "cuda"):
        n = actors or gpus
        return n, {"num_gpus": 1 if n <= gpus else gpus / n}
    n = actors or cpus
    return n, {"num_cpus": cpus // n if n <= cpus else cpus / n}


def jobs_per_batch(jobs: int, actors: int) -> int:
    return max(1, min(MAX_JOBS_PER_BATCH, math.ceil(jobs / (4 * actors))))


class JobRunner:
    """The callable class of map_batches, one per actor: the command's processor (its model) is
    built once, then each batch of jobs runs through batch.run_jobs as in a local run. A batch
    returns one row per reported file: the pickled FileResult, and why the batch stopped early
    (a fatal error: disk full, a broken model), or ''."""

    def __init__(self, make_processor: Callable[[], Callable], run_options: dict, cwd: str):
        # Relative paths are the driver's: on a shared file system its folder is at the same path.
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.process = make_processor()
        self.run_options = run_options

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        jobs: list[Job] = [pickle.loads(b) for b in batch["job"]]
        records: list[FileResult] = []
        lock = threading.Lock()

        def collect(result: FileResult) -> None:  # called from run_jobs' writer threads
            with lock:
                records.append(result)

        stopped = run_jobs(jobs, self.process, on_result=collect, **self.run_options)
        return {"record": np.array([pickle.dumps(r) for r in records], dtype=object),
                "stopped": np.array([stopped or ""] * len(records), dtype=object)}


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # Ray's message starts with its own wrapper lines; the last line is the original error.
    return lines[-1] if lines else type(exc).__name__
