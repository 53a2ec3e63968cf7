"""The shipped pretrained models really denoise, tile seamlessly, and are checked on load."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from aetool.engine import EngineOptions
from aetool.noise import add_gaussian_noise
from aetool.registry import default_model, find_card, load_model, pretrained_cards
from aetool.tasks.denoise import Denoiser
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
    assert {c.channels for c in pretrained_cards("denoise")} == {1, 3}
    assert {c.config["scale"] for c in pretrained_cards("upscale")} == {2, 3, 4}
    assert len(pretrained_cards("inpaint")) == 1
    assert [c.name for c in pretrained_cards("compress")] == ["compress-color", "compress-progressive"]
    assert [c.name for c in pretrained_cards("compress") if c.default] == ["compress-color"]
    for task in ("denoise", "upscale", "inpaint", "compress"):
        for card in pretrained_cards(task):
            model = load_model(card)
            assert model.config["in_channels"] == card.channels
            assert sum(p.numel() for p in model.parameters()) == card.parameters
            assert card.training.get("command", "").startswith(f"aetool train {task}")
            assert card.path.stat().st_size < 10_000_000
    assert all(c.parameters < 2_000_000 for c in pretrained_cards("upscale"))


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


# Stated margins of the shipped upscalers over Pillow's bicubic on the generated test picture
# (Y PSNR, border = scale), and of the shipped inpainter over two simple fills (hole PSNR).
# Measured when shipped (session 3): x2 +1.77, x3 +1.13, x4 +0.63 dB over bicubic; inpaint 25.4 dB in the
# holes against 12.7 (mean colour) and 26.4 (diffusion), seam steps 4.1 against 6.8 in the original.
MIN_SR_GAIN_DB = {2: 1.2, 3: 0.8, 4: 0.4}
MIN_INPAINT_GAIN_DB = {"mean colour": 10.0, "diffusion": 0.0}
MAX_SEAM_RATIO = 1.2  # mean step across the hole border, filled / original


def y_psnr(a: np.ndarray, b: np.ndarray, border: int) -> float:
    weights = np.array([65.481, 128.553, 24.966]) / 255
    ya, yb = (x[border:-border, border:-border].astype(np.float64) @ weights for x in (a, b))
    return 10 * np.log10(255 ** 2 / np.mean((ya - yb) ** 2))


def sharp_image(h: int = 144, w: int = 192, seed: int = 0) -> np.ndarray:
    """Hard-edged shapes, thin lines and letters on a flat ground: what super-resolution is for."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (w, h), (200, 190, 170))
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x0 + int(rng.integers(10, 60)), y0 + int(rng.integers(10, 60))], fill=colour)
        else:
            draw.polygon([(x0, y0), (x0 + int(rng.integers(10, 60)), y0 + int(rng.integers(-20, 20))),
                          (x0 + int(rng.integers(-20, 40)), y0 + int(rng.integers(10, 60)))], fill=colour)
    for k in range(8):
        draw.text((6 + 22 * k, h - 24), "Ag8"[k % 3], fill=(20, 20, 30))
    for k in range(5):
        draw.line([(10, 10 + 6 * k), (w - 10, 30 + 9 * k)], fill=(40, 40, 40), width=1)
    return np.asarray(im)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_upscaler_beats_bicubic(scale):
    from PIL import Image

    from aetool.tasks.upscale import Upscaler
    from aetool.resize import downscale_uint8

    hr = sharp_image(seed=scale)
    lr = downscale_uint8(hr, scale)
    out, _, info = Upscaler(None, EngineOptions(device="cpu"))(lr.astype(np.float32) / 255, scale=scale)
    ours = np.round(out * 255).astype(np.uint8)
    bicubic = np.asarray(Image.fromarray(lr).resize((hr.shape[1], hr.shape[0]), Image.BICUBIC))
    gain = y_psnr(ours, hr, scale) - y_psnr(bicubic, hr, scale)
    assert info["model"] == default_model("upscale", 3, scale).name
    assert gain >= MIN_SR_GAIN_DB[scale], gain


def diffusion_fill(img: np.ndarray, mask: np.ndarray, iterations: int = 2000) -> np.ndarray:
    """Harmonic fill: hole pixels repeatedly take the mean of their four neighbours."""
    out = img.astype(np.float64).copy()
    out[mask] = out[~mask].mean(axis=0)
    for _ in range(iterations):
        p = np.pad(out, ((1, 1), (1, 1), (0, 0)), mode="edge")
        out[mask] = ((p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) / 4)[mask]
    return out


@pytest.fixture(scope="module")
def inpaint_case():
    """A generated picture with texture, a box over an edge and six strokes across the rest; the
    shipped inpainter's fill and the hole PSNR function."""
    from aetool.tasks.inpaint import Inpainter

    clean = structured_image(160, 192, seed=14)
    mask = np.zeros(clean.shape[:2], bool)
    mask[40:64, 100:130] = True  # a box over an edge of the blue rectangle
    for k in range(6):  # strokes across the texture, the disc and the text-like bars
        mask[20 + 22 * k:26 + 22 * k, 10 + 8 * k:90 + 8 * k] = True
    # The network's own fill (the model is what this tests; the texture fill has its own test).
    out, _ = Inpainter(None, EngineOptions(device="cpu"), fill="smooth")(clean.astype(np.float32) / 255, mask)

    def hole(img):
        return 10 * np.log10(255 ** 2 / np.mean((img[mask].astype(np.float64) - clean[mask]) ** 2))
    return clean, mask, np.round(out * 255), hole


def test_shipped_inpainter_beats_a_mean_colour_fill_without_a_halo(inpaint_case):
    clean, mask, filled, hole = inpaint_case
    mean_fill = clean.astype(np.float64).copy()
    mean_fill[mask] = clean[~mask].mean(axis=0)
    assert hole(filled) - hole(np.round(mean_fill)) >= MIN_INPAINT_GAIN_DB["mean colour"]
    # No halo: across the hole's border, neighbouring pixels differ about as much as in the original.
    border = mask[:, 1:] != mask[:, :-1]
    step = lambda img: np.abs(img[:, 1:].astype(np.float64) - img[:, :-1])[border].mean()  # noqa: E731
    assert step(filled) <= MAX_SEAM_RATIO * step(clean), (step(filled), step(clean))


def seam_ratio(clean, mask, fill) -> float:
    """Mean step across the hole border of `fill`'s output, over the original's."""
    from aetool.tasks.inpaint import Inpainter

    out, _ = Inpainter(None, EngineOptions(device="cpu"), fill=fill)(clean.astype(np.float32) / 255, mask)
    filled = np.round(out * 255)
    np.testing.assert_array_equal(filled[~mask], clean[~mask])
    border = mask[:, 1:] != mask[:, :-1]
    step = lambda img: np.abs(img[:, 1:].astype(np.float64) - img[:, :-1])[border].mean()  # noqa: E731
    return step(filled) / step(clean)


@pytest.mark.parametrize("fill", ["auto", "texture"])
def test_shipped_inpainter_texture_fills_have_no_strong_seam(inpaint_case, fill):
    """Texture in the box (auto), or in the box and the 6-px strokes (texture): across the hole
    border, neighbouring pixels differ at most as much more than in the original as with the
    smooth fill (measured 0.91 and 1.10; 1.26 and 1.84 before the copy faded in at the border)."""
    clean, mask, _, _ = inpaint_case
    assert seam_ratio(clean, mask, fill) <= MAX_SEAM_RATIO


@pytest.mark.xfail(strict=True, reason="known gap (session 3): the shipped inpainter, 6,000 CPU steps, "
                   "is 1.0 dB below a harmonic diffusion fill on this smooth generated picture")
def test_shipped_inpainter_beats_a_diffusion_fill(inpaint_case):
    clean, mask, filled, hole = inpaint_case
    assert hole(filled) - hole(np.round(diffusion_fill(clean, mask))) >= MIN_INPAINT_GAIN_DB["diffusion"]


def jpeg_at_rate(img: np.ndarray, bpp: float) -> tuple[float, float]:
    """(bpp, PSNR) of Pillow JPEG (4:2:0, optimize) at the highest quality not above `bpp`."""
    import io

    from PIL import Image

    best = None
    for q in range(5, 96):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=q, optimize=True, subsampling=2)
        rate = len(buf.getvalue()) * 8 / (img.shape[0] * img.shape[1])
        if rate > bpp:
            break
        best = (rate, psnr(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")), img))
    return best


def codec_case():
    from aetool.tasks.compress import Codec

    img = structured_image(192, 256, seed=21)
    codec = Codec(None)
    data, info = codec.encode_to_target(img.astype(np.float32) / 255, bpp=0.5)
    out = np.round(codec.decode(data)[0].pixels * 255).astype(np.uint8)
    rate = len(data) * 8 / (192 * 256)
    return rate, psnr(out, img), jpeg_at_rate(img, rate)


@pytest.mark.xfail(strict=True, reason="known gap (session 5): compress-color has had 24,580 CPU steps (91 min, "
                   "one thread) of a scale hyperprior that needs hundreds of thousands; here 26.5 dB against "
                   "Pillow JPEG's 31.5 dB at 0.5 bpp")
def test_shipped_codec_beats_jpeg_at_half_a_bit_per_pixel():
    rate, ours, (jpeg_rate, jpeg) = codec_case()
    assert rate <= 0.5 and ours >= jpeg + 1.0, (rate, ours, jpeg_rate, jpeg)
