"""The runners that the Python API functions (`denoise()`, `upscale()`, `inpaint()`) keep between
calls: one per task and settings, so that a model is loaded once, not once per image."""
from __future__ import annotations

from typing import Any

from ..engine import EngineOptions


_RUNNERS: dict[tuple, Any] = {}


def _cached(cls, model: str | None, device: str, tile: int | None, precision: str, ensemble: int = 1,
            **settings):
    """One Denoiser/Upscaler/Inpainter per settings, so that repeated API calls load a model once.
    `settings`: the runner's own keyword arguments (a denoiser's kind)."""
    key = (cls, model, device, tile, precision, ensemble, tuple(sorted(settings.items())))
    if key not in _RUNNERS:
        options = EngineOptions(device=device, tile=tile, precision=precision, ensemble=ensemble)
        _RUNNERS[key] = cls(model, options, **settings)
    return _RUNNERS[key]
