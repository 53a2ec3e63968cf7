"""The runners that the Python API functions (`denoise()`, `upscale()`, `inpaint()`) keep between
calls: one per task and settings, so that a model is loaded once, not once per image."""
from __future__ import annotations

from typing import Any

from ..engine import EngineOptions


_RUNNERS: dict[tuple, Any] = {}


def _cached(cls, model: str | None, device: str, tile: int | None, precision: str):
    """One Denoiser/Upscaler/Inpainter per settings, so that repeated API calls load a model once."""
    key = (cls, model, device, tile, precision)
    if key not in _RUNNERS:
        _RUNNERS[key] = cls(model, EngineOptions(device=device, tile=tile, precision=precision))
    return _RUNNERS[key]
