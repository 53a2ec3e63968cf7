"""The training loop shared by every task: schedule, mixed precision, validation, checkpoints
that `--resume` continues exactly (model, optimiser, step, random states), the final weights
file with its card, and a PNG plot of the curves.

Checkpoints are safetensors plus a JSON side file: nothing is pickled.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..device import autocast_dtype, resolve_device
from ..errors import UsageError


@dataclass
class TrainConfig:
    out: Path
    steps: int = 20000
    minutes: float | None = None  # a time budget for the loop (see lr_at); --steps stays an upper bound
    batch_size: int = 16
    patch: int = 64
    lr: float = 4e-4
    lr_min: float = 1e-6
    warmup: int = 200
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    val_every: int = 500
    checkpoint_minutes: float = 5.0
    resume: bool = False
    init: str | None = None
    threads: int = 0
    name: str | None = None
    command: str = ""
    quiet: bool = False


# Steps averaged into one point of the loss history (shorter runs use fewer, see loss_interval).
LOSS_INTERVAL = 20


@dataclass
class History:
    step: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    val_step: list = field(default_factory=list)
    val_psnr: list = field(default_factory=list)
    seconds: float = 0.0


def precision_name(precision: str, device: str) -> str:
    import torch

    dtype = autocast_dtype(precision, device)
    return {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[dtype]


def machine_description(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def lr_at(cfg: TrainConfig, step: int, seconds: float = 0.0) -> float:
    """The learning rate of `step`, `seconds` of training into the run: a linear warm-up over
    --warmup steps, then a cosine from --lr down to --lr-min.

    By steps (no --minutes) the cosine runs from the end of the warm-up to --steps. With a time
    budget (--minutes) it runs over the budget instead: progress is seconds / budget, or step /
    --steps when that is further on, so that a run cut by either limit ends at --lr-min; the
    warm-up still counts steps and caps the rate from the start (the lower of the two), so even a
    budget shorter than the warm-up ends low."""
    def cosine(t: float) -> float:
        return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(1.0, max(0.0, t))))

    warm = cfg.lr * (step + 1) / cfg.warmup if step < cfg.warmup else math.inf
    if cfg.minutes is None:
        return warm if step < cfg.warmup else cosine((step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return min(warm, cosine(max(seconds / (60 * cfg.minutes), step / cfg.steps)))


def checkpoint_paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.stem + ".ckpt.safetensors"), out.with_name(out.stem + ".ckpt.json")


def _save_checkpoint(out: Path, model, opt, step: int, rng: np.random.Generator, gen, history: History,
                     cfg: TrainConfig) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, st in opt_state["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"opt.{idx}.{k}"] = t.detach().cpu().contiguous()
    tensors["rng.torch"] = gen.get_state()
    side = {"step": step, "numpy_rng": rng.bit_generator.state, "param_groups": opt_state["param_groups"],
            "history": asdict(history), "config": {k: str(v) for k, v in asdict(cfg).items()}}
    st_path, js_path = checkpoint_paths(out)
    tmp_st, tmp_js = st_path.with_name(st_path.name + ".tmp"), js_path.with_name(js_path.name + ".tmp")
    save_file(tensors, str(tmp_st))
    tmp_js.write_text(json.dumps(side))
    os.replace(tmp_st, st_path)
    os.replace(tmp_js, js_path)


def _load_checkpoint(out: Path, model, opt, rng: np.random.Generator, gen) -> tuple[int, History]:
    import torch
    from safetensors.torch import load_file

    st_path, js_path = checkpoint_paths(out)
    if not st_path.is_file() or not js_path.is_file():
        raise UsageError(f"--resume: no checkpoint {st_path} next to {out}; run without --resume first")
    tensors = load_file(str(st_path))
    side = json.loads(js_path.read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": side["param_groups"]})
    rng.bit_generator.state = side["numpy_rng"]
    gen.set_state(tensors["rng.torch"])
    h = side["history"]
    return side["step"], History(**h)


def plot_history(history: History, path: Path, title: str, loss_label: str = "training loss (L1)",
                 val_label: str = "validation PSNR (dB)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax1 = plt.subplots(figsize=(8, 4.5), dpi=100)
    steps, loss = loss_curve(history)
    # Markers when the points are few: a lone point (a run of a few steps) has no line to show.
    ax1.plot(steps, loss, "o-" if len(loss) <= 50 else "-", color="tab:blue", lw=1, ms=3)
    ax1.set_xlabel("step")
    ax1.set_ylabel(loss_label, color="tab:blue")
    if len(loss) and loss.min() > 0 and loss.max() >= 10 * loss.min():
        ax1.set_yscale("log")  # only over a decade or more: a narrow range reads better, and labels plainly, linear
    ax2 = ax1.twinx()
    ax2.plot(history.val_step, history.val_psnr, "o-", color="tab:red", ms=3)
    ax2.set_ylabel(val_label, color="tab:red")
    ax1.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# Smallest --patch: below it a patch holds too little to learn from (and some losses are undefined).
MIN_PATCH = 8


def check_config(cfg: TrainConfig, world: int = 1) -> None:
    """Options that cannot work are usage errors before anything is loaded or written (`world`:
    the number of processes that share the batch)."""
    from .distributed import check_batch

    if Path(cfg.out).suffix != ".safetensors":
        raise UsageError(f"--out must end in .safetensors, got {Path(cfg.out).name}")
    for flag, value, least in (("--steps", cfg.steps, 1), ("--batch-size", cfg.batch_size, 1),
                               ("--val-every", cfg.val_every, 1), ("--patch", cfg.patch, MIN_PATCH),
                               ("--warmup", cfg.warmup, 0), ("--threads", cfg.threads, 0)):
        if value < least:
            raise UsageError(f"{flag} must be at least {least}, got {value}")
    if not cfg.lr > 0:
        raise UsageError(f"--lr must be positive, got {cfg.lr:g}")
    if cfg.minutes is not None and not (cfg.minutes > 0 and math.isfinite(cfg.minutes)):
        raise UsageError(f"--minutes must be positive, got {cfg.minutes:g}")
    if cfg.lr_min < 0:
        raise UsageError(f"--lr-min must be 0 or more, got {cfg.lr_min:g}")
    check_batch(cfg.batch_size, world)


def loss_interval(steps: int) -> int:
    """Steps averaged into one point of the loss history: 20, fewer for short runs so that
    their curve still has about 50 points (every step for a run of up to 100 steps)."""
    return max(1, min(LOSS_INTERVAL, steps // 50))


def loss_curve(history: History) -> tuple[np.ndarray, np.ndarray]:
    """The (step, loss) points the plot draws: every recorded point; from 400 points on (a
    20000-step run records 1000) a moving average over len/200 of them."""
    steps, loss = np.asarray(history.step, float), np.asarray(history.loss, float)
    k = len(loss) // 200
    if k > 1:
        loss = np.convolve(loss, np.ones(k) / k, mode="valid")
        steps = steps[k - 1:]
    return steps, loss


def train(cfg: TrainConfig, task) -> dict:
    """Run the loop for `task` (see training/denoise.py for the interface). Returns a summary.

    Started by torchrun (WORLD_SIZE > 1), every process runs this with the same arguments: the
    model is wrapped in DistributedDataParallel, each rank trains on its share of the global
    batch (--batch-size), and rank 0 alone validates, logs and writes files (training/distributed.py)."""
    from .distributed import Processes

    import signal
    import threading

    procs = Processes.from_env()
    # With several processes the loop asks SIGINT and SIGTERM to request a stop (see _train); the
    # caller's handlers come back afterwards.
    handlers = [signal.SIGINT, signal.SIGTERM] if procs.world > 1 and threading.current_thread() is \
        threading.main_thread() else []
    previous = {sig: signal.getsignal(sig) for sig in handlers}
    try:
        return _train(cfg, task, procs)
    finally:
        procs.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _train(cfg: TrainConfig, task, procs) -> dict:
    import torch

    from ..registry import find_card, load_model
    from .distributed import sample_share, wrap

    check_config(cfg, procs.world)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = procs.device(resolve_device(cfg.device))
    procs.start(device)
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed patch sizes: let cuDNN pick its fastest kernels
    amp_dtype = autocast_dtype(cfg.precision, device)
    out = Path(cfg.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)  # the initial weights
    if cfg.init:
        init_card = find_card(cfg.init)
        model = load_model(init_card, "cpu")
        for p in model.parameters():
            p.requires_grad_(True)
        model = task.adopt_init(model)
    else:
        model = task.build_model()
    model.train().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, history = 0, History()
    if cfg.resume:  # every rank reads the same checkpoint: the same weights and random state
        step, history = _load_checkpoint(out, model, opt, rng, gen)
    if procs.world > 1:
        ddp = wrap(model, task, device)
        if procs.rank:  # the codecs' quantisation noise comes from torch's global generator inside
            torch.manual_seed(cfg.seed + procs.rank)  # forward: another stream on each rank, not copies

        def compute_loss(batch):
            return ddp(batch)

        def draw(batch_size):
            return sample_share(task, rng, gen, batch_size, device, procs)
    else:
        def compute_loss(batch):
            return task.loss(model, batch)

        def draw(batch_size):
            return task.sample_batch(rng, gen, batch_size, device)
    task.prepare(device)
    for warning in getattr(task, "warnings", ()) if procs.main else ():  # printed even with --quiet
        print(f"aetool: warning: {warning}", file=sys.stderr, flush=True)

    # Training time runs from here (data loading in prepare() excluded) and goes on from the
    # checkpoint's history.seconds after --resume, so a time budget continues where it stopped.
    started = time.time() - history.seconds
    budget = None if cfg.minutes is None else 60 * cfg.minutes
    last_ckpt = time.time()
    interactive = sys.stderr.isatty() and not cfg.quiet and procs.main
    progress = None

    def where() -> str:
        if budget is None:
            return f"step {step}/{cfg.steps}"
        return f"step {step}  {(time.time() - started) / 60:.2f}/{cfg.minutes:g} min"

    def bar_position() -> float:
        return step if budget is None else min(budget, time.time() - started)

    if interactive:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        progress = Progress(TextColumn("[bold]train {task.fields[name]}"), BarColumn(),
                            TextColumn("{task.fields[where]}"),
                            TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]} dB  "
                                       "{task.fields[speed]:.2f} step/s"),
                            TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
        progress.start()
        bar = progress.add_task("train", total=cfg.steps if budget is None else budget, completed=bar_position(),
                                name=task.name, where=where(), loss=0.0, val="-", speed=0.0)

    def log(msg: str) -> None:
        if not cfg.quiet and not interactive and procs.main:
            print(msg, file=sys.stderr, flush=True)

    def validate_now() -> float:
        model.eval()
        with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=amp_dtype, enabled=amp_dtype is not None):
            psnr = task.validate(model, device)
        model.train()
        history.val_step.append(step)
        history.val_psnr.append(psnr)
        return psnr

    # SIGTERM (a scheduler or `kill`) stops like Ctrl-C: checkpoint first, so --resume loses nothing.
    import signal
    import threading

    from ..errors import Terminated

    def _terminate(signum, frame):
        raise Terminated()  # exit 143, as the image commands

    # With several processes a signal only asks to stop: the ranks agree on it at the start of the
    # next step (torchrun passes Ctrl-C and SIGTERM on to every rank), rank 0 saves a checkpoint of
    # that step, and all leave together; a second signal stops at once.
    stop_signal: list[int] = []

    def _request_stop(signum, frame):
        if stop_signal:
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        stop_signal.append(signum)

    if threading.current_thread() is threading.main_thread():
        if procs.world > 1:
            signal.signal(signal.SIGTERM, _request_stop)
            signal.signal(signal.SIGINT, _request_stop)
        else:
            signal.signal(signal.SIGTERM, _terminate)

    def save_interrupted() -> None:
        history.seconds = time.time() - started
        if procs.main:
            _save_checkpoint(out, model, opt, step, rng, gen, history, cfg)
        if progress is not None:
            progress.stop()
        if procs.main:
            print(f"interrupted at step {step}; checkpoint saved, continue with the same command and --resume",
                  file=sys.stderr)

    window: list[float] = []
    every = loss_interval(cfg.steps)
    t_window = time.time()
    steps_window = 0
    lr = lr_at(cfg, step, time.time() - started)
    stopped = False
    try:
        while step < cfg.steps:
            elapsed = time.time() - started
            if procs.world > 1:  # one time and one stop decision for all ranks: rank 0's
                stopped, elapsed = procs.agree(bool(stop_signal), elapsed)
                if stopped:
                    break
            if budget is not None and elapsed >= budget:
                log(f"time budget of {cfg.minutes:g} min reached at step {step}")
                break
            lr = lr_at(cfg, step, elapsed)
            for g in opt.param_groups:
                g["lr"] = lr
            if hasattr(task, "set_step"):  # a schedule inside the loss (the VAE's KL warm-up)
                task.set_step(step)
            batch = draw(cfg.batch_size)
            with torch.autocast(device.split(":")[0], dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = compute_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # with several processes, DDP averages the gradients of the ranks' shares
            opt.step()
            step += 1
            steps_window += 1
            lv = procs.mean(loss.detach())  # the global batch's loss (the same on every rank)
            if not math.isfinite(lv):
                raise RuntimeError(f"training diverged at step {step} (loss {lv}); lower --lr and --resume")
            window.append(lv)
            if step % every == 0 or step == cfg.steps:
                history.step.append(step)
                history.loss.append(float(np.mean(window)))
                window.clear()
            speed = steps_window / max(1e-9, time.time() - t_window)
            if procs.main and (step % cfg.val_every == 0 or step == cfg.steps):
                psnr = validate_now()
                log(f"{where()}  loss {history.loss[-1] if history.loss else lv:.4f}  "
                    f"val {psnr:.2f} dB  lr {lr:.2e}  {speed:.2f} step/s")
                t_window, steps_window = time.time(), 0
            elif step % 100 == 0:
                log(f"{where()}  loss {history.loss[-1]:.4f}  lr {lr:.2e}  {speed:.2f} step/s")
            if progress is not None:
                progress.update(bar, completed=bar_position(), where=where(),
                                loss=history.loss[-1] if history.loss else lv,
                                val=f"{history.val_psnr[-1]:.2f}" if history.val_psnr else "-", speed=speed)
            if procs.main and time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                history.seconds = time.time() - started
                _save_checkpoint(out, model, opt, step, rng, gen, history, cfg)
                export(model, out, task, cfg, history, step, device, procs.world)
                model.train()
                last_ckpt = time.time()
    except KeyboardInterrupt:
        save_interrupted()
        raise
    if stopped:  # by a signal, on every rank at the same step
        save_interrupted()
        procs.barrier()  # the others leave once the checkpoint is written
        raise KeyboardInterrupt() if stop_signal == [signal.SIGINT] else Terminated()
    # A run stopped by its time budget: the last partial loss point, and always a validation of
    # the final weights (a run that ends at --steps has just had one).
    if window:
        history.step.append(step)
        history.loss.append(float(np.mean(window)))
        window.clear()
    if procs.main and (not history.val_step or history.val_step[-1] != step):
        psnr = validate_now()
        log(f"{where()}  loss {history.loss[-1] if history.loss else float('nan'):.4f}  val {psnr:.2f} dB  "
            f"lr {lr:.2e} (last step)")
    if progress is not None:
        progress.update(bar, completed=bar_position(), where=where())
        progress.stop()
    history.seconds = time.time() - started
    if procs.main:
        _save_checkpoint(out, model, opt, step, rng, gen, history, cfg)
        export(model, out, task, cfg, history, step, device, procs.world)
    procs.barrier()  # every rank returns once the files are written
    return {"out": str(out), "card": str(out.with_suffix(".json")), "steps": step,
            "seconds": history.seconds, "val_psnr": history.val_psnr[-1] if history.val_psnr else None,
            "rank": procs.rank, "processes": procs.world}


def export(model, out: Path, task, cfg: TrainConfig, history: History, step: int, device: str,
           processes: int = 1) -> None:
    """Write the weights file, its card, the history and the curve plot (at checkpoints and at the
    end); `processes`: how many shared the training (torchrun), on the card when more than one."""
    from ..registry import Card, count_parameters, save_weights, sha256_of

    model.eval()
    if hasattr(model, "update_tables"):  # a codec's integer coding tables travel in its weights file
        model.update_tables()
    # An anomaly model's threshold, set on held-out images, travels in its weights file and card.
    calibration = task.calibrate(model, device) if hasattr(task, "calibrate") else None
    # What else the runtime needs from training (the autoencoders' preprocessing), in the file too.
    extra = dict(task.metadata()) if hasattr(task, "metadata") else {}
    if calibration:
        extra["calibration"] = calibration
    tmp = out.with_name(out.name + ".tmp")
    save_weights(model, tmp, task.task, extra=extra or None)
    os.replace(tmp, out)
    card = Card(name=cfg.name or out.stem, task=task.task, arch=model.arch_name, config=model.config,
                file=out.name, sha256=sha256_of(out), channels=model.config.get("in_channels", 3),
                parameters=count_parameters(model), description=task.description(),
                training={"command": cfg.command, "data": task.data_description(), "steps": step,
                          "batch_size": cfg.batch_size, "patch": cfg.patch, "lr": cfg.lr,
                          "seconds": round(history.seconds), "machine": machine_description(device),
                          "precision": precision_name(cfg.precision, device), "init": cfg.init,
                          "final_val_psnr": round(history.val_psnr[-1], 3) if history.val_psnr else None,
                          "validation": task.validation_description()}, calibration=calibration or {},
                preprocessing=extra.get("preprocessing") or {}, degradation=extra.get("degradation") or {})
    if cfg.minutes is not None:  # the time budget (only on runs that had one)
        card.training["minutes"] = cfg.minutes
    if processes > 1:  # batch_size is the global batch, split across them
        card.training["processes"] = processes
    if cfg.init:  # provenance of the starting point, so the card tells the whole recipe
        from ..registry import find_card

        start = find_card(cfg.init)
        card.training["init_from"] = {"name": start.name, "sha256": start.sha256, "training": start.training}
    card.save(out.with_suffix(".json"))
    (out.with_name(out.stem + ".history.json")).write_text(json.dumps(asdict(history)))
    plot_history(history, out.with_suffix(".png"), f"{card.name}: {task.name}",
                 *getattr(task, "plot_labels", ()))  # the task's own loss and validation, where not L1 and PSNR
