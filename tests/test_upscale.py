"""`aetool upscale` and `aetool.upscale`: sizes, alpha edges, 16-bit, grey, metadata, tiling,
exit codes and JSON, with small generated images and small models (no ../shared)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aetool.cli import app
from conftest import structured_image

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture
def small_photo(tmp_path):
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    Image.fromarray(structured_image(48, 64, seed=4)).save(path, dpi=(72, 72))
    return path


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_each_scale_gives_its_size(small_photo, tmp_path, make_upscaler, scale):
    out = tmp_path / "out"
    r = run("upscale", small_photo.parent, "-o", out, "--model", make_upscaler(scale), "--json")
    assert r.exit_code == 0, r.output
    rec = json_lines(r.stdout)[0]
    assert rec["status"] == "ok" and rec["scale"] == scale and rec["size"] == [64 * scale, 48 * scale]
    with Image.open(out / "photo.png") as im:
        assert im.size == (64 * scale, 48 * scale) and im.mode == "RGB"
        assert im.info["dpi"] == pytest.approx((72 * scale, 72 * scale), rel=1e-3)  # same print size


def test_outscale_width_and_height(small_photo, tmp_path, make_upscaler):
    x2 = make_upscaler(2)
    cases = [(["--outscale", "1.5"], (96, 72)), (["--width", "100"], (100, 75)), (["--height", "30"], (40, 30)),
             (["--width", "1000", "--height", "96"], (128, 96))]
    for i, (opts, size) in enumerate(cases):
        out = tmp_path / f"o{i}.png"
        r = run("upscale", small_photo, "-o", out, "--model", x2, *opts)
        assert r.exit_code == 0, (opts, r.output)
        with Image.open(out) as im:
            assert im.size == size, opts


def test_alpha_hard_edge_has_no_fringe(make_upscaler):
    from aetool import upscale

    # An opaque red square on a transparent background whose hidden colour is black.
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 10:30] = [220, 30, 30, 255]
    out = upscale(rgba, model=str(make_upscaler(2, bicubic=True)), device="cpu")
    assert out.shape == (80, 80, 4)
    visible = out[..., 3] >= 128
    assert visible.sum() == pytest.approx(40 * 40, rel=0.1)  # the edge stays where it was
    # Every visible pixel keeps the square's colour: no dark band along the edge.
    assert np.abs(out[visible][:, :3].astype(int) - [220, 30, 30]).max() <= 8
    # Without the fill, the same bicubic model would darken the edge: the check has teeth.
    from aetool.tasks.upscale import Upscaler

    up = Upscaler(str(make_upscaler(2, bicubic=True)))
    naive = up.enlarge(rgba[..., :3].astype(np.float32) / 255, 2)
    assert np.abs(naive[visible][:, 0] * 255 - 220).max() > 30


def test_grey_stays_grey_and_16_bit_stays_16_bit(tmp_path, make_upscaler):
    grey = tmp_path / "in" / "grey.png"
    grey.parent.mkdir()
    Image.fromarray(structured_image(32, 40, channels=1)).save(grey)
    deep = tmp_path / "in" / "deep.png"
    import png  # pypng writes 16-bit RGB, which Pillow cannot

    a16 = (structured_image(32, 40).astype(np.uint16) * 257)
    png.from_array(a16.reshape(32, -1), "RGB;16").save(str(deep))
    out = tmp_path / "out"
    r = run("upscale", grey.parent, "-o", out, "--model", make_upscaler(2))
    assert r.exit_code == 0, r.output
    with Image.open(out / "grey.png") as im:
        assert im.mode == "L" and im.size == (80, 64)
    reader = png.Reader(filename=str(out / "deep.png"))
    w, h, rows, info = reader.read()
    assert (w, h, info["bitdepth"], info["planes"]) == (80, 64, 16, 3)


def test_exif_and_icc_are_carried_over(tmp_path, make_upscaler):
    src = tmp_path / "in.jpg"
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    icc = Image.new("RGB", (1, 1)).info.get("icc_profile") or b""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(structured_image(32, 40)).save(src, exif=exif, icc_profile=icc, quality=95)
    out = tmp_path / "out.jpg"
    r = run("upscale", src, "-o", out, "--model", make_upscaler(2))
    assert r.exit_code == 0, r.output
    with Image.open(out) as im:
        assert im.size == (80, 64)
        assert im.getexif().get(0x010F) == "TestCam"
        assert im.info.get("icc_profile") == icc


def test_tiled_equals_untiled(make_upscaler):
    from aetool.tasks.upscale import Upscaler
    from aetool.engine import EngineOptions

    model = str(make_upscaler(2, width=16, blocks=8))  # the shipped depth: receptive radius 19
    img = structured_image(200, 232, seed=5).astype(np.float32) / 255
    whole = Upscaler(model, EngineOptions(tile=0, device="cpu"))(img, scale=2)[0]
    tiled = Upscaler(model, EngineOptions(tile=128, device="cpu"))(img, scale=2)[0]
    assert np.abs(whole - tiled).max() <= 1 / 255


def test_files_are_enlarged_straight_into_integers(make_upscaler):
    """The command line's path (Upscaler.picture) assembles an 8-bit file's output as uint8 (no
    float copy of the enlargement): the same pixels as the float path rounded, resized outputs
    and alpha still right."""
    from aetool.engine import EngineOptions
    from aetool.imageio import Picture, to_integer
    from aetool.tasks.upscale import Upscaler

    up = Upscaler(str(make_upscaler(2)), EngineOptions(tile=64, device="cpu", precision="fp32"))
    img = structured_image(90, 120, seed=3).astype(np.float32) / 255
    out, info = up.picture(Picture(img))
    assert out.pixels.dtype == np.uint8 and out.pixels.shape == (180, 240, 3)
    np.testing.assert_array_equal(out.pixels, to_integer(up(img, scale=2)[0], 8))
    resized, _ = up.picture(Picture(img), outscale=1.5)  # a resize follows: floats, as before
    assert resized.pixels.dtype == np.float32 and resized.pixels.shape == (135, 180, 3)
    alpha = np.ones((90, 120), np.float32)
    alpha[:, :30] = 0.0
    with_alpha, _ = up.picture(Picture(img, alpha=alpha))
    assert with_alpha.alpha.shape == (180, 240) and with_alpha.alpha[:, :50].max() < 0.1


def test_python_api_kinds(make_upscaler):
    import torch

    from aetool import upscale

    model = str(make_upscaler(3))
    pil = Image.fromarray(structured_image(20, 30))
    assert upscale(pil, model=model).size == (90, 60)
    arr = upscale(structured_image(20, 30, channels=1), model=model)
    assert arr.shape == (60, 90) and arr.dtype == np.uint8
    t = upscale(torch.rand(2, 3, 20, 30), model=model)
    assert t.shape == (2, 3, 60, 90)
    assert upscale(pil, model=model, outscale=2.0).size == (60, 40)


def test_usage_errors(small_photo, tmp_path, make_upscaler):
    x2 = make_upscaler(2)
    for args in (["--scale", "5"], ["--scale", "3", "--model", x2], ["--model", "denoise-color"],
                 ["--scale", "2", "--width", "100"], ["--outscale", "0"]):
        r = run("upscale", small_photo, "-o", tmp_path / "o", *args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output


def test_bad_file_does_not_stop_the_batch(small_photo, tmp_path, make_upscaler):
    (small_photo.parent / "broken.png").write_bytes(b"not a png")
    r = run("upscale", small_photo.parent, "-o", tmp_path / "out", "--model", make_upscaler(2), "--json")
    assert r.exit_code == 1
    recs = json_lines(r.stdout)
    assert {x["status"] for x in recs[:-1]} == {"ok", "failed"}
    assert recs[-1]["summary"]["ok"] == 1 and recs[-1]["summary"]["failed"] == 1


def test_stdin_to_stdout(small_photo, make_upscaler):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "aetool", "upscale", "-", "--model", str(make_upscaler(2))],
                          input=small_photo.read_bytes(), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    assert Image.open(io.BytesIO(proc.stdout)).size == (128, 96)


def test_missing_shipped_model_is_a_usage_error_with_a_hint(small_photo, tmp_path, monkeypatch):
    monkeypatch.setattr("aetool.registry.weights_dir", lambda: tmp_path / "no-weights")
    r = run("upscale", small_photo, "-o", tmp_path / "o.png", "--scale", "3")
    assert r.exit_code == 2 and "aetool train upscale --scale 3" in r.output
    assert not (tmp_path / "o.png").exists()


def test_integer_pixels_give_the_float_paths_result(make_upscaler, tiny_model):
    """upscale and denoise read files as integers (read_image(integer=True)): every path, the
    direct integer one and those that need floats (alpha, resize, strength), gives what floats give."""
    from aetool.engine import EngineOptions
    from aetool.tasks.denoise import Denoiser
    from aetool.tasks.upscale import Upscaler

    img = structured_image()[:96, :80]
    floats = img.astype(np.float32) / 255
    up = Upscaler(str(make_upscaler(2)), EngineOptions(tile=64, overlap=16, device="cpu", precision="fp32"))
    for kwargs in ({"bits": 8}, {"bits": 8, "width": 150}, {}):
        a = up(img, **kwargs)[0]
        b = up(floats, **kwargs)[0]
        assert a.dtype == b.dtype and np.abs(a.astype(np.float32) - b.astype(np.float32)).max() <= (1 if a.dtype == np.uint8 else 1e-6)
    alpha = np.ones(img.shape[:2], np.float32)
    alpha[:10] = 0.5
    assert np.abs(up(img, alpha, bits=8)[0] - up(floats, alpha, bits=8)[0]).max() < 1e-6
    den = Denoiser(str(tiny_model), EngineOptions(device="cpu", precision="fp32"))
    for kwargs in ({"bits": 8}, {"bits": 8, "strength": 0.5}, {}):
        a, _ = den(img, sigma=10, **kwargs)
        b, _ = den(floats, sigma=10, **kwargs)
        assert a.dtype == b.dtype and np.abs(a.astype(np.float32) - b.astype(np.float32)).max() <= (1 if a.dtype == np.uint8 else 1e-6)
    a, info = den(img)  # blind: the estimate reads floats made from the integers
    assert info["sigma_estimated"] == den(floats)[1]["sigma_estimated"] and a.dtype == np.float32
    # the integer path hands the estimate its integers (no float copy): the same estimate
    a, info = den(img, bits=8)
    assert info["sigma_estimated"] == den(floats)[1]["sigma_estimated"] and a.dtype == np.uint8
    wide = img.astype(np.uint16) * 257
    a, info16 = den(wide, bits=16)
    assert info16["sigma_estimated"] == info["sigma_estimated"] and a.dtype == np.uint16
