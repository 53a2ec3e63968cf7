"""Model registry in the style of timm: architectures are registered by name, pretrained
weights are described by JSON cards in the weights folder, and `create` builds either.

A weights file is a .safetensors whose metadata holds the architecture name and its config
("aetool" key, JSON), so a model is rebuilt from its own file and never from tensor shapes.
The card beside it (same stem, .json) carries the provenance and measured metrics, and the
sha256 that loading checks. Nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ModelError

_ARCHITECTURES: dict[str, Callable[..., Any]] = {}


def register(name: str):
    """Decorator: register an architecture constructor under `name`."""

    def wrap(fn):
        _ARCHITECTURES[name] = fn
        return fn

    return wrap


def architectures() -> list[str]:
    _import_models()
    return sorted(_ARCHITECTURES)


def _import_models() -> None:
    from . import models  # noqa: F401  (registers the architectures)


def create_architecture(arch: str, config: dict):
    _import_models()
    if arch not in _ARCHITECTURES:
        raise ModelError(f"unknown architecture '{arch}'; known: {', '.join(sorted(_ARCHITECTURES))}")
    # JSON has lists where the constructors take tuples (channels per level, dilations, sizes).
    return _ARCHITECTURES[arch](**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def weights_dir() -> Path:
    """The shipped weights: installed as the package `aetool.weights`, or the repo's `weights/`."""
    try:
        from importlib.resources import files

        path = Path(str(files("aetool.weights")))
        if any(path.glob("*.json")):
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "weights"


@dataclass
class Card:
    name: str
    task: str
    arch: str
    config: dict
    file: str
    sha256: str = ""
    channels: int = 3
    parameters: int = 0
    default: bool = False
    description: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)  # anomaly models: threshold and normal-score statistics
    preprocessing: dict = field(default_factory=dict)  # vector-code autoencoders: size, channels, fit
    degradation: dict = field(default_factory=dict)  # codec post-filters: their codecs and condition map
    path: Path | None = None  # where the weights file is; not serialised

    @classmethod
    def from_json(cls, path: Path) -> "Card":
        try:
            data = json.loads(path.read_text())
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "path"}
            card = cls(**known)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ModelError(f"the model card {path} cannot be read ({exc}); restore it from the model's "
                             "source, or delete it to use the weights file alone") from None
        card.path = path.parent / card.file
        return card

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "path"}
        for key in ("calibration", "preprocessing", "degradation"):  # only some models have them
            if not d[key]:
                del d[key]
        return d

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def pretrained_cards(task: str | None = None) -> list[Card]:
    cards = []
    for p in sorted(weights_dir().glob("*.json")):
        card = Card.from_json(p)
        if task is None or card.task == task:
            cards.append(card)
    return cards


def default_model(task: str, channels: int = 3, scale: int | None = None, codec: str | None = None) -> Card:
    """The pretrained model marked default for a task (and channel count, and scale for upscalers;
    for denoisers, the codec whose artefacts it removes, None for Gaussian noise)."""
    cards = [c for c in pretrained_cards(task) if c.channels == channels
             and (scale is None or c.config.get("scale") == scale)
             and codec in (c.degradation.get("codecs") or [None])]
    if not cards:
        what = f"x{scale} " if scale else (f"{codec.upper()} " if codec else "")
        train = f"aetool train {task}" + (f" --scale {scale}" if scale else "") + (f" --codec {codec}" if codec else "")
        raise ModelError(f"no pretrained {what}{task} model for {channels}-channel images is installed; "
                         f"train one with `{train} --data DIR --out FILE.safetensors` and pass it with --model FILE")
    for c in cards:
        if c.default:
            return c
    return cards[0]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_card(name_or_path: str) -> Card:
    """A pretrained name (`aetool models`) or a path to a .safetensors file (its card optional)."""
    for card in pretrained_cards():
        if card.name == name_or_path:
            return card
    path = Path(name_or_path).expanduser()
    # (a path with no name, such as "" or "/", has no suffix to change: it is simply not a model)
    if path.name and path.suffix != ".safetensors" and path.with_suffix(".safetensors").exists():
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        names = ", ".join(c.name for c in pretrained_cards())
        raise ModelError(f"no model named or at '{name_or_path}'. Pretrained models: {names}. "
                         "A path must point at a .safetensors file written by `aetool train`.")
    card_path = path.with_suffix(".json")
    if card_path.is_file():
        card = Card.from_json(card_path)
        card.path = path
        return card
    meta = read_metadata(path)
    return Card(name=path.stem, task=meta.get("task", "?"), arch=meta["arch"], config=meta["config"],
                file=path.name, channels=meta["config"].get("in_channels", 3),
                calibration=meta.get("calibration") or {}, preprocessing=meta.get("preprocessing") or {},
                degradation=meta.get("degradation") or {}, path=path)


def read_metadata(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"{path} is not a readable .safetensors file: {exc}") from exc
    if "aetool" not in meta:
        raise ModelError(f"{path} has no aetool metadata; it was not written by `aetool train`")
    try:
        meta = json.loads(meta["aetool"])
        if not isinstance(meta.get("arch"), str) or not isinstance(meta.get("config"), dict):
            raise ValueError("no architecture or config")
    except (ValueError, AttributeError) as exc:
        raise ModelError(f"{path}: its aetool metadata is damaged ({exc}); re-train or restore the file") from None
    return meta


def verify_model(card: Card) -> dict:
    """Check everything that could make a model unusable, before any image is touched: the weights
    file is there, matches the card's sha256, carries aetool's metadata for a known architecture,
    and holds only finite numbers (a damaged file or a diverged training would write black images).
    Returns the file's metadata; raises ModelError with one line that says what to do."""
    if card.path is None or not card.path.is_file():
        raise ModelError(f"weights file {card.path} for model '{card.name}' is missing")
    key = (str(card.path), card.path.stat().st_mtime_ns, card.sha256)
    if key in _VERIFIED:
        return _VERIFIED[key]
    if card.sha256:
        actual = sha256_of(card.path)
        if actual != card.sha256:
            raise ModelError(f"{card.path}: sha256 {actual[:12]}... does not match the card's "
                             f"{card.sha256[:12]}...; the file is damaged or was replaced (re-install aetool, or "
                             "copy the weights again)")
    meta = read_metadata(card.path)
    _import_models()
    if meta.get("arch") not in _ARCHITECTURES:
        raise ModelError(f"{card.path}: unknown architecture '{meta.get('arch')}'; it needs a newer aetool "
                         f"(known: {', '.join(sorted(_ARCHITECTURES))})")
    from safetensors import safe_open

    try:
        with safe_open(str(card.path), framework="pt") as f:
            bad = [k for k in f.keys() if not _finite(f.get_tensor(k))]
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"{card.path} is not a readable .safetensors file: {exc}") from None
    if bad:
        raise ModelError(f"{card.path}: the weights hold NaN or infinite values ({bad[0]}{' and more' if len(bad) > 1 else ''}); "
                         "the file is damaged or its training diverged: re-train or restore it")
    _VERIFIED[key] = meta
    return meta


_VERIFIED: dict[tuple, dict] = {}  # (path, mtime, sha256) -> metadata: each file is checked once per process


def _finite(tensor) -> bool:
    return not tensor.is_floating_point() or bool(tensor.float().isfinite().all())


def load_model(name_or_path: str | Card, device: str = "cpu"):
    """Build the model, load its weights (checked by verify_model first), eval mode."""
    from safetensors.torch import load_file

    card = name_or_path if isinstance(name_or_path, Card) else find_card(name_or_path)
    meta = verify_model(card)
    model = create_architecture(meta["arch"], meta["config"])
    state = load_file(str(card.path))
    state = {k: v.float() for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{card.path} does not match its architecture config: {exc}") from exc
    model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    model.card = card
    model.meta = meta
    return model


def save_weights(model, path: Path, task: str, half: bool = True, extra: dict | None = None) -> None:
    """Write weights (fp16 by default, to keep files small) with the config in the metadata."""
    from safetensors.torch import save_file

    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in model.state_dict().items()}
    meta = {"arch": model.arch_name, "config": model.config, "task": task}
    if extra:
        meta.update(extra)
    save_file(state, str(path), metadata={"aetool": json.dumps(meta)})
    os.chmod(path, 0o644)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
