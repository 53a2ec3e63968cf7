"""Validation hole PSNR per mask kind of inpainting weight files, on the trainer's own held-out
crops: `aetool train inpaint`'s validation (the last 8 training files by name held out, their
256-px centre crops, one fixed mask of each kind per crop), computed the same way for every file
given, so that a fine-tuned model can be compared with the shipped one like for like even when it
was trained on another mix of masks (its card's validation mean would not be comparable).

    python benchmarks/inpaint_val.py inpaint-color runs/inpaint3/inpaint-color.safetensors

Data: DATA/train/bsd200 and DATA/train/t91 (the shipped recipe's folders); the network runs on
each crop whole (as in training), bf16 autocast on CPUs with native bf16. Never a test set.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model names or .safetensors files")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args(argv)
    import torch

    from aetool.device import autocast_dtype
    from aetool.registry import find_card, load_model
    from aetool.training.inpaint import KINDS, InpaintTask

    task = InpaintTask([args.data / "train" / "bsd200", args.data / "train" / "t91"], kinds=KINDS)
    task.prepare("cpu")
    dtype = autocast_dtype("auto", "cpu")
    print("| model | " + " | ".join(KINDS) + " | mean |")
    print("|---" * (len(KINDS) + 2) + "|")
    for name in args.models:
        model = load_model(find_card(name), "cpu").eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            scores = task.validation_scores(model, "cpu")  # KINDS in turn on every crop
        means = [float(np.mean(scores[i::len(KINDS)])) for i in range(len(KINDS))]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in means) + f" | {np.mean(means):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
