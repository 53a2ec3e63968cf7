"""`from aetool import denoise` on PIL images, numpy arrays and torch tensors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import aetool
from conftest import structured_image


@pytest.fixture(scope="module")
def den(tiny_model):
    return lambda x, **kw: aetool.denoise(x, model=str(tiny_model), sigma=kw.pop("sigma", 10), **kw)


def test_pil_modes_round_trip(den):
    for mode in ("RGB", "L", "RGBA", "LA"):
        im = Image.fromarray(structured_image()).convert(mode)
        out = den(im)
        assert isinstance(out, Image.Image) and out.mode == mode and out.size == im.size
    rgba = Image.fromarray(structured_image()).convert("RGBA")
    rgba.putalpha(77)
    assert np.all(np.asarray(den(rgba))[..., 3] == 77)


def test_numpy_dtypes_and_shapes(den):
    img = structured_image()
    assert den(img).dtype == np.uint8 and den(img).shape == img.shape
    assert den(img.astype(np.uint16) * 257).dtype == np.uint16
    f = den(img.astype(np.float32) / 255)
    assert f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1
    assert den(img[..., 0]).shape == img.shape[:2]
    rgba = np.dstack([img, np.full(img.shape[:2], 9, np.uint8)])
    assert np.all(den(rgba)[..., 3] == 9)


def test_torch_tensors(den):
    import torch

    t = torch.from_numpy(structured_image()).permute(2, 0, 1).float() / 255
    assert den(t).shape == t.shape
    assert den(t[None].repeat(2, 1, 1, 1)).shape == (2, *t.shape)


def test_strength_blends_and_bad_input(den):
    img = structured_image().astype(np.float32) / 255
    assert np.allclose(den(img, strength=0.0), img)
    with pytest.raises(TypeError):
        den("not an image")


def test_blind_by_default_uses_the_estimate(tiny_model):
    from aetool.tasks.denoise import Denoiser

    out, info = Denoiser(str(tiny_model))(structured_image().astype(np.float32) / 255)
    assert "sigma_estimated" in info and out.shape == (96, 128, 3)


def test_old_api_module_names_the_task_modules_objects():
    """aetool.api is a facade over aetool/tasks/: the very same classes and functions, so that
    old imports and monkeypatches of aetool.api.Denoiser.__call__ keep working."""
    from aetool import api
    from aetool.tasks import denoise, inpaint, upscale

    assert api.Denoiser is denoise.Denoiser and api.denoise is denoise.denoise is aetool.denoise
    assert api.Upscaler is upscale.Upscaler and api.upscale is upscale.upscale is aetool.upscale
    assert api.Inpainter is inpaint.Inpainter and api.inpaint is inpaint.inpaint is aetool.inpaint
    assert api.hole_boxes is inpaint.hole_boxes


def test_denoised_files_are_assembled_as_integers(tiny_model):
    """The command line's path (Denoiser.picture) gives an 8-bit file's output as uint8 and a
    16-bit one's as uint16, equal to the float path rounded; a partial --strength stays float."""
    from aetool.engine import EngineOptions
    from aetool.imageio import Picture, to_integer
    from aetool.tasks.denoise import Denoiser

    den = Denoiser(str(tiny_model), EngineOptions(tile=64, device="cpu", precision="fp32"))
    img = structured_image(100, 140, seed=2).astype(np.float32) / 255
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        out, info = den.picture(Picture(img, bit_depth=bits), sigma=15)
        assert out.pixels.dtype == dtype and info["model"] == "tiny"
        # 16 bits resolve the last float32 bit of the blend (weights normalised in another order): 1 step.
        diff = np.abs(out.pixels.astype(np.int64) - to_integer(den(img, 15)[0], bits))
        assert diff.max() <= (0 if bits == 8 else 1)
    half, _ = den.picture(Picture(img), sigma=15, strength=0.5)
    assert half.pixels.dtype == np.float32
