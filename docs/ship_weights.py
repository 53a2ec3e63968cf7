"""Promote a file written by `aetool train` to a shipped pretrained model.

    python docs/ship_weights.py runs/ft/denoise-color.safetensors [--note TEXT]

Copies the weights into weights/<name>.safetensors (name: the card's, from --name at training
time) with its card, makes it the default for its task, channels (and scale), copies the training
curves to docs/<name>-training.png, and clears the card's metrics: they are measured again by the
benchmark script of the task (`--update-cards`), never carried over from another file. Then run
`python docs/make_models_md.py`. Standard library only.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "weights"


def same_slot(a: dict, b: dict) -> bool:
    """Two models that compete for one default: same task, channels, scale and (post-filters) codecs."""
    def slot(c: dict) -> tuple:
        return (c.get("task"), c.get("channels"), c.get("config", {}).get("scale"),
                tuple(c.get("degradation", {}).get("codecs", [])))
    return slot(a) == slot(b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path, help="a .safetensors written by `aetool train` (its .json beside it)")
    ap.add_argument("--note", default=None, help="a line for the card's training record (how the run went)")
    ap.add_argument("--not-default", action="store_true", help="ship it without making it the default")
    ap.add_argument("--name", default=None, help="ship it under this name instead of the card's (a run "
                    "trained by a benchmark script, which names it after its file)")
    args = ap.parse_args(argv)
    src = args.weights
    card = json.loads(src.with_suffix(".json").read_text())
    name = card["name"] = args.name or card["name"]
    dst = WEIGHTS / f"{name}.safetensors"
    shutil.copyfile(src, dst)
    dst.chmod(0o644)
    card["file"] = dst.name
    card["metrics"] = {}
    card["default"] = not args.not_default
    curves = src.with_suffix(".png")
    if curves.is_file():
        shutil.copyfile(curves, ROOT / "docs" / f"{name}-training.png")
        card["training"]["curves"] = f"docs/{name}-training.png"
    if args.note:
        card["training"]["note"] = args.note
    if card["default"]:  # one default per task, channel count and scale
        for other in WEIGHTS.glob("*.json"):
            data = json.loads(other.read_text())
            if other != dst.with_suffix(".json") and same_slot(data, card) and data.get("default"):
                data["default"] = False
                other.write_text(json.dumps(data, indent=2) + "\n")
                print(f"{data['name']} is no longer the default", file=sys.stderr)
    dst.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"shipped {dst} ({card['training'].get('steps')} steps, validation PSNR "
          f"{card['training'].get('final_val_psnr')}); now measure it and run docs/make_models_md.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
