"""`aetool train ...`: fit a model on your own images."""
from __future__ import annotations

import inspect
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .common import handle_errors

def recorded_command(fn, values: dict, prefix: list[str]) -> str:
    """The command line that reproduces this run (options that differ from their defaults), for the card."""
    parts = list(prefix)
    for name, param in inspect.signature(fn).parameters.items():
        value = values[name]
        default = getattr(param.default, "default", param.default)
        if value is None or value == default or name == "quiet":
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag)
        elif isinstance(value, list):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


train_app = typer.Typer(help="Train or fine-tune a model on your own images.", no_args_is_help=True)


@train_app.command("denoise", epilog="""Examples:

  aetool train denoise --data ~/photos/clean --out my-denoiser.safetensors

  aetool train denoise --data ~/photos --init denoise-color --steps 2000 --lr 5e-5 --out tuned.safetensors

  aetool train denoise --data ~/photos --out my.safetensors --resume   # continue after a stop
""")
@handle_errors
def train_denoise(
    data: List[Path] = typer.Option(..., "--data", help="Folder(s) of clean training images (repeat the option)."),
    out: Path = typer.Option(..., "--out", "-o", help="Weights file to write (.safetensors); its card, "
                             "plot and checkpoint are written beside it."),
    channels: int = typer.Option(3, help="3 for colour, 1 for grey."),
    width: str = typer.Option("32,64,128,192", help="Feature channels per U-Net level, comma-separated."),
    blocks: int = typer.Option(2, help="Residual blocks per level."),
    patch: int = typer.Option(64, help="Training patch size in pixels."),
    batch_size: int = typer.Option(16, help="Patches per step."),
    steps: int = typer.Option(20000, help="Optimiser steps in total."),
    lr: float = typer.Option(4e-4, help="Peak learning rate (Adam)."),
    lr_min: float = typer.Option(1e-6, help="Final learning rate of the cosine schedule."),
    warmup: int = typer.Option(200, help="Linear warm-up steps."),
    sigma_min: float = typer.Option(0.0, help="Smallest noise sigma (0-255 units)."),
    sigma_max: float = typer.Option(55.0, help="Largest noise sigma (0-255 units)."),
    val: Optional[List[Path]] = typer.Option(None, help="Validation folder; default: hold out the last "
                                             "--val-count training files."),
    val_count: int = typer.Option(8, help="Files held out for validation when --val is not given."),
    val_every: int = typer.Option(500, help="Validate every N steps."),
    checkpoint_minutes: float = typer.Option(5.0, help="Write a checkpoint every N minutes."),
    init: Optional[str] = typer.Option(None, help="Start from a pretrained model (name or file) to fine-tune."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint next to --out."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option("auto", help="auto (bf16/fp16 on CUDA; bf16 on CPUs with native bf16, else fp32), fp32, bf16, fp16."),
    threads: int = typer.Option(0, help="CPU threads for torch (0: torch's default)."),
    seed: int = typer.Option(0, help="Random seed."),
    name: Optional[str] = typer.Option(None, help="Model name for the card (default: the file stem)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
):
    """Train a denoising autoencoder on clean images with synthetic Gaussian noise."""
    command = recorded_command(train_denoise, dict(locals()), ["aetool", "train", "denoise"])
    from ..device import check_names
    from ..errors import UsageError
    from ..training.denoise import DenoiseTask
    from ..training.loop import TrainConfig, train

    check_names(device, precision)
    if channels not in (1, 3):
        raise UsageError("--channels must be 1 (grey) or 3 (colour)")
    try:
        widths = tuple(int(w) for w in width.split(","))
    except ValueError:
        raise UsageError(f"--width must be comma-separated integers, got '{width}'") from None
    task = DenoiseTask(data, channels=channels, width=widths, blocks=blocks, patch=patch,
                       sigma_min=sigma_min, sigma_max=sigma_max, val=val, val_count=val_count)
    cfg = TrainConfig(out=out, steps=steps, batch_size=batch_size, patch=patch, lr=lr, lr_min=lr_min,
                      warmup=warmup, seed=seed, device=device, precision=precision, val_every=val_every,
                      checkpoint_minutes=checkpoint_minutes, resume=resume, init=init, threads=threads,
                      name=name, quiet=quiet, command=command)
    summary = train(cfg, task)
    if not quiet:
        val = f", validation PSNR {summary['val_psnr']:.2f} dB" if summary["val_psnr"] else ""
        print(f"wrote {summary['out']} ({summary['steps']} steps, {summary['seconds'] / 60:.1f} min{val})",
              file=sys.stderr)
