"""The shipped pretrained models really denoise, tile seamlessly, and are checked on load."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from aetool.api import Denoiser
from aetool.engine import EngineOptions
from aetool.noise import add_gaussian_noise
from aetool.registry import default_model, find_card, load_model, pretrained_cards
from conftest import structured_image

# Stated margins: PSNR gain of the shipped models at sigma 25 on the generated test picture.
MIN_GAIN_DB = {3: 7.0, 1: 6.0}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / mse)


@pytest.fixture(scope="module")
def denoiser():
    return Denoiser(None, EngineOptions(device="cpu"))


@pytest.mark.parametrize("channels", [3, 1])
def test_shipped_model_raises_psnr_at_sigma_25(denoiser, channels):
    clean = structured_image(128, 160, channels=channels, seed=11)
    noisy = add_gaussian_noise(clean, 25, np.random.default_rng(25))
    x = (noisy.astype(np.float32) / 255).reshape(128, 160, -1)
    for sigma in (25, None):  # told, then blind
        out, info = denoiser(x, sigma)
        out8 = np.round(out * 255).astype(np.uint8).reshape(clean.shape)
        gain = psnr(out8, clean) - psnr(noisy, clean)
        assert gain >= MIN_GAIN_DB[channels], (sigma, gain)
        assert info["model"] == default_model("denoise", channels).name


def test_tiled_equals_untiled_with_the_shipped_model():
    clean = structured_image(200, 264, seed=12)
    x = add_gaussian_noise(clean, 25, np.random.default_rng(1)).astype(np.float32) / 255
    full, _ = Denoiser(None, EngineOptions(tile=0))(x, 25)
    tiled, _ = Denoiser(None, EngineOptions(tile=128, batch_size=4))(x, 25)
    assert np.abs(full - tiled).max() <= 1 / 255


def test_every_card_matches_its_weights():
    cards = pretrained_cards("denoise")
    assert {c.channels for c in cards} == {1, 3}
    for card in cards:
        model = load_model(card)
        assert model.config["in_channels"] == card.channels
        assert sum(p.numel() for p in model.parameters()) == card.parameters
        assert card.training.get("command", "").startswith("aetool train denoise")
        assert card.path.stat().st_size < 10_000_000


def test_damaged_weights_are_refused(tmp_path):
    from aetool.errors import ModelError

    card = find_card("denoise-color")
    shutil.copy(card.path, tmp_path / "x.safetensors")
    shutil.copy(card.path.with_suffix(".json"), tmp_path / "x.json")
    data = bytearray((tmp_path / "x.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "x.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_model(str(tmp_path / "x.safetensors"))
    (tmp_path / "y.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError):
        load_model(str(tmp_path / "y.safetensors"))
