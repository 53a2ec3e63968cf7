"""`aetool train ...`: fit a model on your own images."""
from __future__ import annotations

import inspect
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from ..errors import UsageError
from .common import handle_errors
from .options import with_shared_options

# Options every trainer shares, declared once.
Data = Annotated[List[Path], typer.Option("--data", metavar="FOLDER",
                                          help="Folder(s) of clean training images (repeat the option).")]
Out = Annotated[Path, typer.Option("--out", "-o", metavar="FILE",
                                   help="Weights file to write (.safetensors); its card, plot and "
                                   "checkpoint are written beside it.")]
BatchSize = Annotated[int, typer.Option(metavar="N", help="Patches per step, in all: under torchrun this global "
                                        "batch is split evenly across the processes (a multiple of their number).")]
Steps = Annotated[int, typer.Option(metavar="N", help="Optimiser steps in total (with --minutes: at most).")]
Minutes = Annotated[Optional[float], typer.Option(metavar="M",
                                                  help="Train for M minutes (data loading not counted; after "
                                                  "--resume, in all), then validate and write the weights as "
                                                  "usual: the learning-rate schedule runs over the time instead "
                                                  "of --steps, which stays an upper bound.", show_default=False)]
Lr = Annotated[float, typer.Option(metavar="RATE", help="Peak learning rate (Adam).")]
LrMin = Annotated[float, typer.Option(metavar="RATE", help="Final learning rate of the cosine schedule.")]
Warmup = Annotated[int, typer.Option(metavar="STEPS", help="Linear warm-up steps.")]
Val = Annotated[Optional[List[Path]], typer.Option(metavar="FOLDER",
                                                   help="Validation folder; default: hold out up to --val-count "
                                                   "of the training files.", show_default=False)]
ValCount = Annotated[int, typer.Option(metavar="N",
                                       help="Without --val: hold out the last N files for validation, but never "
                                       "more than 1 in 5 of them; with fewer than 5 files (or 0) none is held "
                                       "out and validation uses the training images (with a warning).")]
ValEvery = Annotated[int, typer.Option(metavar="N", help="Validate every N steps.")]
CheckpointMinutes = Annotated[float, typer.Option(metavar="MINUTES", help="Write a checkpoint every N minutes.")]
Init = Annotated[Optional[str], typer.Option(metavar="NAME|FILE",
                                             help="Start from a pretrained model (name or file) to fine-tune.",
                                             show_default=False)]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint next to --out.")]
Device = Annotated[str, typer.Option(metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps.")]
Precision = Annotated[str, typer.Option(metavar="PRECISION",
                                        help="auto (bf16/fp16 on CUDA; bf16 on CPUs with native bf16, else "
                                        "fp32), fp32, bf16, fp16.")]
Threads = Annotated[int, typer.Option(metavar="N", help="CPU threads for torch (0: torch's default).")]
Seed = Annotated[int, typer.Option(metavar="N", help="Random seed.")]
Name = Annotated[Optional[str], typer.Option(metavar="NAME", help="Model name for the card (default: the file stem).",
                                             show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output (warnings about the data are "
                                     "still printed).")]


# name: (option, default); a trainer may change a default (train_command(batch_size=8)).
TRAIN_OPTIONS = {"batch_size": (BatchSize, 16), "steps": (Steps, 20000), "minutes": (Minutes, None), "lr": (Lr, 4e-4),
                 "lr_min": (LrMin, 1e-6), "warmup": (Warmup, 200), "val": (Val, None), "val_count": (ValCount, 8),
                 "val_every": (ValEvery, 500), "checkpoint_minutes": (CheckpointMinutes, 5.0), "init": (Init, None),
                 "resume": (Resume, False), "device": (Device, "auto"), "precision": (Precision, "auto"),
                 "threads": (Threads, 0), "seed": (Seed, 0), "name": (Name, None), "quiet": (Quiet, False)}


def train_command(**defaults):
    """Decorator: `fn(..., common: dict)` gets the options every trainer shares."""
    shared = {k: (annotation, defaults.get(k, default)) for k, (annotation, default) in TRAIN_OPTIONS.items()}
    return lambda fn: with_shared_options(fn, shared, dict, "common")


def recorded_command(fn, values: dict, prefix: list[str]) -> str:
    """The command line that reproduces this run (options that differ from their defaults), for the card."""
    parts = list(prefix)
    for name, param in inspect.signature(fn).parameters.items():
        value = values[name]
        default = param.default
        if value is None or value == default or name == "quiet":
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + name.replace("_", "-"))  # --augment/--no-augment
        elif isinstance(value, list):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def run_training(task, values: dict, command: str) -> None:
    """Build the loop's config from the shared options, train, and say what was written."""
    from ..device import check_names
    from ..training.loop import TrainConfig, train

    check_names(values["device"], values["precision"])
    keys = ("out", "steps", "minutes", "batch_size", "patch", "lr", "lr_min", "warmup", "seed", "device", "precision",
            "val_every", "checkpoint_minutes", "resume", "init", "threads", "name", "quiet")
    summary = train(TrainConfig(**{k: values[k] for k in keys}, command=command), task)
    if not values["quiet"] and summary["rank"] == 0:  # under torchrun, rank 0 speaks for all
        val = f", validation PSNR {summary['val_psnr']:.2f} dB" if summary["val_psnr"] else ""
        print(f"wrote {summary['out']} ({summary['steps']} steps, {summary['seconds'] / 60:.1f} min{val})",
              file=sys.stderr)


train_app = typer.Typer(help="Train or fine-tune a model on your own images.", no_args_is_help=True)


# In the epilogs, "\b" keeps click from rewrapping an example: its lines are printed as written.
@train_app.command("denoise", epilog="""Examples:

\b
  # from scratch
  aetool train denoise --data ~/photos/clean --out my-denoiser.safetensors
\b
  # fine-tune a shipped model
  aetool train denoise --data ~/photos --init denoise-color --steps 2000 \\
      --lr 5e-5 --out tuned.safetensors
\b
  # continue after a stop
  aetool train denoise --data ~/photos --out my.safetensors --resume
\b
  # a JPEG artefact remover, from the Gaussian denoiser
  aetool train denoise --codec jpeg --grey-fraction 0.25 --data ~/photos \\
      --init denoise-color --out my-jpeg.safetensors
\b
  # 4 processes, on 4 GPUs (or CPU cores with --device cpu); any trainer:
  # --batch-size is the global batch, split across them (docs/training.md)
  torchrun --nproc-per-node 4 -m aetool train denoise --data ~/photos \\
      --out my.safetensors --batch-size 64
""")
@handle_errors
@train_command()
def train_denoise(
    data: Data,
    out: Out,
    channels: Annotated[int, typer.Option(metavar="N", help="3 for colour, 1 for grey.")] = 3,
    width: Annotated[str, typer.Option(metavar="LIST",
                                       help="Feature channels per U-Net level, comma-separated.")] = "32,64,128,192",
    blocks: Annotated[int, typer.Option(metavar="N", help="Residual blocks per level.")] = 2,
    patch: Annotated[int, typer.Option(metavar="PIXELS",
                                       help="Training patch size in pixels (8 or more); smaller images are "
                                       "skipped, with a warning.")] = 64,
    sigma_min: Annotated[float, typer.Option(metavar="SIGMA", help="Smallest noise sigma (0-255 units).")] = 0.0,
    sigma_max: Annotated[float, typer.Option(metavar="SIGMA", help="Largest noise sigma (0-255 units).")] = 55.0,
    codec: Annotated[Optional[str], typer.Option(metavar="LIST",
                                                 help="Train a post-filter for codec artefacts instead of Gaussian "
                                                 "noise: jpeg (told the quality), or any of webp,avif,jxl "
                                                 "(blind, one model for the list). Patches are compressed by "
                                                 "Pillow at random qualities.", show_default=False)] = None,
    grey_fraction: Annotated[float, typer.Option(metavar="P",
                                                 help="With --codec and 3 channels: the share of patches made "
                                                 "grey (encoded as grey files), so one model serves both.")] = 0.0,
    common: dict = None,
):
    """Train a denoising autoencoder on clean images with synthetic Gaussian noise (or codec artefacts)."""
    values = {**{k: v for k, v in locals().items() if k != "common"}, **common}
    command = recorded_command(train_denoise, values, ["aetool", "train", "denoise"])
    from ..errors import UsageError
    from ..training.denoise import DenoiseTask

    if channels not in (1, 3):
        raise UsageError("--channels must be 1 (grey) or 3 (colour)")
    try:
        widths = tuple(int(w) for w in width.split(","))
    except ValueError:
        raise UsageError(f"--width must be comma-separated integers, got '{width}'") from None
    shape = dict(channels=channels, width=widths, blocks=blocks, patch=patch, val=common["val"],
                 val_count=common["val_count"])
    if codec:
        from ..training.denoise import CodecArtefactTask

        if not 0.0 <= grey_fraction <= 1.0:
            raise UsageError("--grey-fraction must be between 0 and 1")
        task = CodecArtefactTask(data, codecs=tuple(c.strip().lower() for c in codec.split(",") if c.strip()),
                                 grey_fraction=grey_fraction if channels == 3 else 0.0, **shape)
    else:
        task = DenoiseTask(data, sigma_min=sigma_min, sigma_max=sigma_max, **shape)
    run_training(task, values, command)


@train_app.command("upscale", epilog="""Examples:

\b
  # a clean x2 model
  aetool train upscale --scale 2 --data ~/sharp --out my-x2.safetensors
\b
  # x4 for real photos (blur, noise and JPEG in the training inputs)
  aetool train upscale --scale 4 --degradation photo --data ~/photos \\
      --out photo-x4.safetensors
\b
  # fine-tune a shipped model
  aetool train upscale --scale 4 --data ~/photos --init upscale-x4 \\
      --steps 2000 --lr 5e-5 --out tuned.safetensors
""")
@handle_errors
@train_command(lr=5e-4)
def train_upscale(
    data: Data,
    out: Out,
    scale: Annotated[int, typer.Option("--scale", "-s", metavar="N", help="Enlargement: 2, 3 or 4.")] = 4,
    degradation: Annotated[str, typer.Option(metavar="KIND", help="How low-resolution inputs are made: bicubic (clean "
                                             "MATLAB-style downscale) or photo (random blur, downscale, noise "
                                             "and JPEG, for real photos).")] = "bicubic",
    width: Annotated[int, typer.Option(metavar="N", help="Feature channels.")] = 64,
    blocks: Annotated[int, typer.Option(metavar="N", help="Residual blocks.")] = 8,
    patch: Annotated[int, typer.Option(metavar="PIXELS",
                                       help="Low-resolution patch size in pixels, 8 or more (the target is scale "
                                       "times larger; smaller images are skipped, with a warning).")] = 48,
    common: dict = None,
):
    """Train a super-resolution autoencoder on sharp images (they are downscaled for you)."""
    values = {**{k: v for k, v in locals().items() if k != "common"}, **common}
    command = recorded_command(train_upscale, values, ["aetool", "train", "upscale"])
    from ..training.upscale import UpscaleTask

    task = UpscaleTask(data, scale=scale, width=width, blocks=blocks, patch=patch, degradation=degradation,
                       val=common["val"], val_count=common["val_count"])
    run_training(task, values, command)


@train_app.command("inpaint", epilog="""Examples:

\b
  # from scratch
  aetool train inpaint --data ~/photos --out my-inpaint.safetensors
\b
  # fine-tune a shipped model for thin scratches
  aetool train inpaint --data ~/scans --masks thin --init inpaint-color \\
      --steps 2000 --lr 5e-5 --out scratches.safetensors
""")
@handle_errors
@train_command(batch_size=8)
def train_inpaint(
    data: Data,
    out: Out,
    width: Annotated[str, typer.Option(metavar="LIST",
                                       help="Feature channels per U-Net level, comma-separated.")] = "32,64,96,128",
    dilations: Annotated[str, typer.Option(metavar="LIST", help="Dilation of each residual block at the bottom level, "
                                           "comma-separated.")] = "1,2,4,8,1",
    masks: Annotated[str, typer.Option(metavar="KINDS",
                                       help="Hole kinds to train on: thin, thick, box (comma-separated).")]
    = "thin,thick,box",
    max_hole: Annotated[float, typer.Option(metavar="FRACTION",
                                            help="Largest fraction of a patch that a mask may cover.")] = 0.5,
    patch: Annotated[int, typer.Option(metavar="PIXELS",
                                       help="Training patch size in pixels (8 or more); smaller images are "
                                       "skipped, with a warning.")] = 128,
    common: dict = None,
):
    """Train an inpainting autoencoder on clean images with random hole masks."""
    values = {**{k: v for k, v in locals().items() if k != "common"}, **common}
    command = recorded_command(train_inpaint, values, ["aetool", "train", "inpaint"])
    from ..errors import UsageError
    from ..training.inpaint import InpaintTask

    try:
        widths = tuple(int(w) for w in width.split(","))
        dils = tuple(int(d) for d in dilations.split(","))
    except ValueError:
        raise UsageError("--width and --dilations must be comma-separated integers") from None
    kinds = tuple(k.strip() for k in masks.split(",") if k.strip())
    task = InpaintTask(data, channels=widths, dilations=dils, patch=patch, kinds=kinds, max_hole=max_hole,
                       val=common["val"], val_count=common["val_count"])
    run_training(task, values, command)


@train_app.command("compress", epilog="""Examples:

\b
  # train the codec on your own kind of images (scans, microscopy, satellite)
  aetool train compress --data ~/scans --out my-codec.safetensors
\b
  # continue from a trained codec
  aetool train compress --data ~/scans --init my-codec.safetensors \\
      --steps 20000 --lr 5e-5 --out tuned.safetensors
\b
  # the progressive codec (a recurrent autoencoder): any prefix decodes
  aetool train compress --arch recurrent --data ~/photos \\
      --out progressive.safetensors --minutes 120 --threads 1
""")
@handle_errors
@train_command(batch_size=8, lr=2e-4)  # measured: 2e-4 learns fastest; 5e-4 diverged by step 2,000
def train_compress(
    data: Data,
    out: Out,
    arch: Annotated[str, typer.Option(metavar="ARCH", help="hyperprior: a variational autoencoder with a scale "
                                      "hyperprior (one rate per file, the best quality per byte); recurrent: a "
                                      "recurrent autoencoder whose files decode at every prefix (progressive)."
                                      )] = "hyperprior",
    channels: Annotated[int, typer.Option(metavar="N", help="3 for colour, 1 for grey.")] = 3,
    n: Annotated[int, typer.Option("--n", "--n-channels", metavar="CHANNELS",
                                   help="hyperprior: channels of the transforms and of the hyper-latent (N in "
                                   "Ballé et al.; spell it --n-channels under torchrun, which takes --n for "
                                   "its own options).")] = 64,
    m: Annotated[int, typer.Option("--m", "--m-channels", metavar="CHANNELS",
                                   help="hyperprior: channels of the latent (M; --m-channels under torchrun).")] = 96,
    bits: Annotated[int, typer.Option(metavar="N", help="recurrent: bits per 16x16 pixels per iteration "
                                      "(32: 1/8 bpp per iteration before entropy coding).")] = 32,
    iterations: Annotated[int, typer.Option(metavar="N", help="recurrent: iterations (refinements) a file can "
                                            "hold.")] = 16,
    decoder: Annotated[str, typer.Option(metavar="C0,C1,C2,C3", help="recurrent: the decoder cells' channels, "
                                         "coarse to fine, each a multiple of 4.")] = "128,128,64,32",
    patch: Annotated[Optional[int], typer.Option(metavar="PIXELS", help="Training patch size in pixels, a multiple "
                                                 "of 64 (hyperprior, default 128) or 16 (recurrent, default 64); "
                                                 "smaller images are skipped, with a warning.",
                                                 show_default=False)] = None,
    common: dict = None,
):
    """Train a learned image codec. hyperprior (default): a variational autoencoder with a scale
    hyperprior for every quality at once (rate + lambda * distortion at a random quality level per
    patch). recurrent: a recurrent autoencoder coding the image as a sequence of refinements, each
    of a fixed number of bits (loss: mean PSNR over the iterations)."""
    values = {**{k: v for k, v in locals().items() if k != "common"}, **common}
    if arch not in ("hyperprior", "recurrent"):
        raise UsageError(f"--arch must be hyperprior or recurrent, not {arch!r}")
    values["patch"] = patch or (128 if arch == "hyperprior" else 64)
    command = recorded_command(train_compress, {**values, "patch": patch}, ["aetool", "train", "compress"])
    from ..training.compress import CompressTask, ProgressiveCompressTask

    if arch == "recurrent":
        try:
            widths = tuple(int(c) for c in decoder.split(","))
        except ValueError:
            raise UsageError(f"--decoder must be comma-separated channel counts, got {decoder!r}") from None
        task = ProgressiveCompressTask(data, channels=channels, bits=bits, iterations=iterations,
                                       patch=values["patch"], val=common["val"], val_count=common["val_count"],
                                       decoder=widths)
    else:
        task = CompressTask(data, channels=channels, n=n, m=m, patch=values["patch"], val=common["val"],
                            val_count=common["val_count"])
    run_training(task, values, command)


@train_app.command("anomaly", epilog="""Examples:

\b
  # photos of good parts only; threshold: at most 1% of good parts flagged
  aetool train anomaly --data ~/parts/good --out parts.safetensors
\b
  # with some known bad parts: threshold at the best F1
  aetool train anomaly --data ~/parts/good --anomalous ~/parts/bad \\
      --out parts.safetensors --minutes 30
\b
  # then score new photos
  aetool anomaly ~/parts/new -o report/ --model parts.safetensors
""")
@handle_errors
@train_command(lr=5e-4, val_every=250)
def train_anomaly(
    data: Data,
    out: Out,
    family: Annotated[str, typer.Option(metavar="KIND", help="repair: a denoising autoencoder trained to undo "
                                        "synthetic defects (sharper maps); plain: a convolutional autoencoder with a "
                                        "narrow bottleneck.")] = "repair",
    size: Annotated[int, typer.Option(metavar="PIXELS", help="The model's working size: every image is resized to "
                                      "this square (scores and threshold are set at it).")] = 256,
    patch: Annotated[int, typer.Option(metavar="PIXELS", help="Training crop of the resized images (at most "
                                       "--size; smaller trains faster).")] = 128,
    channels: Annotated[int, typer.Option(metavar="N", help="1 grey, 3 colour, 0 from the data.")] = 0,
    val_split: Annotated[float, typer.Option(metavar="FRACTION", help="Share of the normal images held out (seeded) "
                                             "to validate and to set the threshold; with --val FOLDER, that "
                                             "folder's normal images do it and all of --data trains.")] = 0.1,
    anomalous: Annotated[Optional[List[Path]], typer.Option(metavar="FOLDER", show_default=False,
                                                            help="Known anomalous images: the threshold is then set "
                                                            "at the best F1 against the held-out normal ones.")] = None,
    fpr: Annotated[float, typer.Option(metavar="RATE", help="Without --anomalous: the threshold flags at most this "
                                       "share of the held-out normal images.")] = 0.01,
    ssim_weight: Annotated[float, typer.Option(metavar="W", help="Weight of the structural (1 - SSIM) error in the "
                                               "anomaly map; the rest is the absolute error.")] = 0.5,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Flip and turn the training crops (off "
                                          "when orientation matters, e.g. a part always photographed the same "
                                          "way up).")] = True,
    width: Annotated[Optional[str], typer.Option(metavar="LIST", show_default=False,
                                                 help="Feature channels per level, comma-separated (default: "
                                                 "32,64,96,128 plain; 32,64,128 repair).")] = None,
    latent: Annotated[int, typer.Option(metavar="N", help="Bottleneck channels of the plain family.")] = 16,
    common: dict = None,
):
    """Train an anomaly detector on normal images only; its threshold is set from held-out ones."""
    values = {**{k: v for k, v in locals().items() if k != "common"}, **common}
    command = recorded_command(train_anomaly, values, ["aetool", "train", "anomaly"])
    from ..errors import UsageError
    from ..training.anomaly import AnomalyTask

    if common["val_count"] != TRAIN_OPTIONS["val_count"][1]:
        raise UsageError("anomaly training holds out --val-split of the normal images (seeded), or takes --val "
                         "FOLDER of other normal images, to set the threshold; --val-count does not apply")
    try:
        widths = tuple(int(w) for w in width.split(",")) if width else None
    except ValueError:
        raise UsageError(f"--width must be comma-separated integers, got '{width}'") from None
    task = AnomalyTask(data, family=family, channels=channels, size=size, patch=patch, val_split=val_split,
                       val=common["val"], anomalous=anomalous, fpr=fpr, ssim_weight=ssim_weight, augment=augment, width=widths,
                       latent=latent, seed=common["seed"])
    run_training(task, values, command)


def parse_size(text: str) -> tuple[int, int]:
    """'28' (square) or 'WxH' to (height, width)."""
    from ..errors import UsageError

    try:
        parts = [int(p) for p in text.lower().replace("×", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[1], parts[0]
    raise UsageError(f"--size must be N (a square) or WxH, e.g. 28 or 64x48; got '{text}'")


def parse_widths(text: str, flag: str) -> tuple[int, ...]:
    from ..errors import UsageError

    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated integers, got '{text}'") from None


@train_app.command("autoencoder", epilog="""Examples:

\b
  # a convolutional autoencoder with a 16-number code, for embeddings
  aetool train autoencoder --arch conv --data ~/fashion/train --size 28 \\
      --latent 16 --out fashion.safetensors
\b
  # a variational one, to generate new images (aetool generate)
  aetool train autoencoder --arch vae --data ~/fashion/train --size 28 \\
      --latent 16 --out fashion-vae.safetensors --minutes 30
\b
  # colour photos at 64x64 (centre crop), trained on random crops
  aetool train autoencoder --arch conv --data ~/photos --size 64 --fit crop \\
      --augment crop --latent 64 --out photos.safetensors

Every image is brought to --size (grey by luma when the model is grey) exactly as embed,
generate and reconstruct will do it later: the preprocessing is stored in the weights file.
""")
@handle_errors
@train_command(batch_size=128, lr=1e-3, val_count=1000, val_every=1000, steps=20000)
def train_autoencoder(
    data: Data,
    out: Out,
    arch: Annotated[str, typer.Option(metavar="ARCH", help="dense: the vanilla fully connected autoencoder; conv: "
                                      "convolutional; vae: variational (can generate new images).")] = "conv",
    latent: Annotated[int, typer.Option(metavar="N", help="Numbers in the code (the embedding's dimension).")] = 16,
    size: Annotated[str, typer.Option(metavar="N|WxH", help="The model's image size: every image is resized to "
                                      "it.")] = "28",
    fit: Annotated[str, typer.Option(metavar="HOW", help="stretch: the whole image, aspect ratio not kept; crop: "
                                     "the largest centred crop of the model's aspect ratio.")] = "stretch",
    channels: Annotated[int, typer.Option(metavar="N", help="1 grey, 3 colour, 0 from the data.")] = 0,
    hidden: Annotated[str, typer.Option(metavar="LIST", help="dense: units of the hidden layers, encoder side "
                                        "(the decoder mirrors them).")] = "512,256",
    width: Annotated[str, typer.Option(metavar="LIST", help="conv, vae: feature channels per level (each level "
                                       "halves the image).")] = "32,64",
    beta: Annotated[float, typer.Option(metavar="B", help="vae: weight of the KL term (1: the true ELBO).")] = 1.0,
    kl_warmup: Annotated[int, typer.Option(metavar="STEPS", help="vae: steps over which the KL weight ramps "
                                           "from 0 to --beta.")] = 2000,
    augment: Annotated[str, typer.Option(metavar="KIND", help="none; flip: mirror left-right at random; crop: random "
                                         "crops of 35-100 %% of each image, mirrored (photos: a few hundred images "
                                         "give endless variety). Not for data whose orientation means something.")]
    = "none",
    input_dropout: Annotated[float, typer.Option(metavar="P", help="Zero each input pixel with probability P "
                                                 "while training (a denoising autoencoder: the code learns shapes, "
                                                 "not single pixels); 0: off.")] = 0.0,
    common: dict = None,
):
    """Train a dense, convolutional or variational autoencoder whose code is a vector: for
    embeddings (aetool embed), reconstructions and, with --arch vae, new images (aetool generate)."""
    values = {**{k: v for k, v in locals().items() if k != "common"}, **common}
    command = recorded_command(train_autoencoder, values, ["aetool", "train", "autoencoder"])
    from ..training.autoencoder import AutoencoderTask

    task = AutoencoderTask(data, arch=arch, latent=latent, size=parse_size(size), channels=channels, fit=fit,
                           hidden=parse_widths(hidden, "--hidden"), width=parse_widths(width, "--width"), beta=beta,
                           kl_warmup=kl_warmup, augment=augment, input_dropout=input_dropout, val=common["val"],
                           val_count=common["val_count"],
                           seed=common["seed"])
    values["patch"] = max(8, *parse_size(size))  # whole images: the card's "patch" is the image's larger side
    run_training(task, values, command)
