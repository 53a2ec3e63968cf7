"""`aetool inpaint` and `aetool.inpaint`: every mask source, known pixels kept bit for bit, empty
masks, per-file mask errors, crops around holes against whole-image processing, training."""
from __future__ import annotations

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


def box(h=96, w=128, y=30, x=40, size=20) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y:y + size, x:x + size] = 255
    return m


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(structured_image(seed=1)).save(d / "a.png")
    Image.fromarray(structured_image(seed=2)).save(d / "sub" / "b.png")
    return d


def assert_known_pixels_kept(src, out, mask):
    a, b = np.asarray(Image.open(src)), np.asarray(Image.open(out))
    assert a.shape[:2] == b.shape[:2]
    keep = ~(mask > 0)
    np.testing.assert_array_equal(a[keep][..., :3], b[keep][..., :3])
    return a, b


def test_mask_file_for_every_input_keeps_known_pixels(photos, tmp_path, tiny_inpainter):
    m = box()
    Image.fromarray(m).save(tmp_path / "mask.png")
    r = run("inpaint", photos, "-r", "--mask", tmp_path / "mask.png", "-o", tmp_path / "out", "--model",
            tiny_inpainter, "--json")
    assert r.exit_code == 0, r.output
    recs = json_lines(r.stdout)
    assert [x["hole_pixels"] for x in recs[:-1]] == [400, 400]
    a, b = assert_known_pixels_kept(photos / "a.png", tmp_path / "out" / "a.png", m)
    assert np.abs(a[m > 0].astype(int) - b[m > 0]).max() > 0  # the hole was filled with something else
    assert_known_pixels_kept(photos / "sub" / "b.png", tmp_path / "out" / "sub" / "b.png", m)


def test_mask_dir_with_suffix_mirrors_subfolders(photos, tmp_path, tiny_inpainter):
    masks = tmp_path / "masks"
    (masks / "sub").mkdir(parents=True)
    Image.fromarray(box(y=5)).save(masks / "a_mask.png")
    Image.fromarray(box(y=50)).save(masks / "sub" / "b_mask.png")
    r = run("inpaint", photos, "-r", "--mask-dir", masks, "--mask-suffix", "_mask", "-o", tmp_path / "out",
            "--model", tiny_inpainter)
    assert r.exit_code == 0, r.output
    assert_known_pixels_kept(photos / "a.png", tmp_path / "out" / "a.png", box(y=5))
    assert_known_pixels_kept(photos / "sub" / "b.png", tmp_path / "out" / "sub" / "b.png", box(y=50))


def test_alpha_holes_give_an_opaque_output(tmp_path, tiny_inpainter):
    rgba = np.dstack([structured_image(), np.full((96, 128), 255, np.uint8)])
    rgba[10:30, 10:50, 3] = 0
    rgba[10:30, 10:50, :3] = 0  # what an eraser leaves
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    r = run("inpaint", tmp_path / "cut.png", "--mask", "alpha", "-o", tmp_path / "out.png", "--model", tiny_inpainter)
    assert r.exit_code == 0, r.output
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "RGB"
    assert_known_pixels_kept(tmp_path / "cut.png", tmp_path / "out.png", 255 - rgba[..., 3])


def test_key_colour_with_tolerance_and_dilation(tmp_path, tiny_inpainter):
    img = structured_image()
    img[40:44, 20:100] = [250, 3, 252]  # a magenta scribble, a little off the key
    Image.fromarray(img).save(tmp_path / "s.png")
    r = run("inpaint", tmp_path / "s.png", "--mask-color", "#ff00ff", "--tolerance", "5", "--dilate", "2", "-o",
            tmp_path / "out.png", "--model", tiny_inpainter, "--json")
    assert r.exit_code == 0, r.output
    assert json_lines(r.stdout)[0]["hole_pixels"] == (4 + 4) * (80 + 4)  # grown by 2 on each side
    grown = np.zeros((96, 128), np.uint8)
    grown[38:46, 18:102] = 255
    _, out = assert_known_pixels_kept(tmp_path / "s.png", tmp_path / "out.png", grown)
    assert not (np.abs(out[40:44, 20:100].astype(int) - [255, 0, 255]) <= 5).all(axis=2).any()
    r = run("inpaint", tmp_path / "s.png", "--mask-color", "#ff00ff", "-o", tmp_path / "o2.png", "--model",
            tiny_inpainter, "--json")
    assert json_lines(r.stdout)[0]["hole_pixels"] == 0  # tolerance 0: the off-key scribble is no hole


def test_empty_mask_is_a_no_op_and_mask_errors_are_per_file(photos, tmp_path, tiny_inpainter):
    masks = tmp_path / "masks"
    (masks / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((96, 128), np.uint8)).save(masks / "a.png")  # empty
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(masks / "sub" / "b.png")  # wrong size
    Image.fromarray(structured_image(seed=3)).save(photos / "c.png")  # no mask at all
    r = run("inpaint", photos, "-r", "--mask-dir", masks, "-o", tmp_path / "out", "--model", tiny_inpainter,
            "--json")
    assert r.exit_code == 1
    recs = {x["input"].split("/")[-1]: x for x in json_lines(r.stdout)[:-1]}
    assert recs["a.png"]["status"] == "ok" and recs["a.png"]["hole_pixels"] == 0
    np.testing.assert_array_equal(np.asarray(Image.open(photos / "a.png")),
                                  np.asarray(Image.open(tmp_path / "out" / "a.png")))
    assert recs["b.png"]["status"] == "failed" and "50x50" in recs["b.png"]["error"]
    assert recs["c.png"]["status"] == "failed" and "no mask" in recs["c.png"]["error"]


def test_usage_errors(photos, tmp_path, tiny_inpainter):
    Image.fromarray(box()).save(tmp_path / "m.png")
    for args in ([], ["--mask", tmp_path / "m.png", "--mask-color", "red"], ["--mask-color", "nocolour"],
                 ["--mask", tmp_path / "none.png"], ["--mask", tmp_path / "m.png", "--mask-suffix", "_m"],
                 ["--mask", tmp_path / "m.png", "--model", "denoise-color"]):
        r = run("inpaint", photos, "-o", tmp_path / "o", *args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output


def test_crops_around_holes_match_the_whole_image(monkeypatch, tiny_inpainter):
    from aetool.tasks import inpaint as inpaint_task
    from aetool.tasks.inpaint import Inpainter
    from aetool.engine import EngineOptions

    img = structured_image(320, 400, seed=6).astype(np.float32) / 255
    mask = np.zeros((320, 400), bool)
    mask[20:30, 30:60] = True
    mask[250:262, 300:330] = True
    inp = Inpainter(str(tiny_inpainter), EngineOptions(device="cpu", precision="fp32"))
    cropped, info = inp(img, mask)
    assert info["regions"] == 2
    monkeypatch.setattr(inpaint_task, "hole_boxes", lambda m, margin, cell: [((0, 320, 0, 400), np.ones((320, 400), bool))])
    whole, _ = inp(img, mask)
    assert np.abs(cropped - whole).max() <= 1 / 255
    np.testing.assert_array_equal(cropped[~mask], img[~mask])


def test_a_hole_beyond_the_models_reach_is_filled_coarse_to_fine(tiny_inpainter):
    from aetool.tasks.inpaint import Inpainter
    from aetool.engine import EngineOptions

    inp = Inpainter(str(tiny_inpainter), EngineOptions(device="cpu"))
    img = structured_image(200, 240, seed=8).astype(np.float32) / 255
    mask = np.zeros((200, 240), bool)
    mask[20:180, 30:210] = True  # far wider than the tiny model's reach
    calls = []
    real = inp._predict
    inp._predict = lambda crop, m: calls.append(crop.shape) or real(crop, m)
    out, _ = inp(img, mask)
    assert len({c[:2] for c in calls}) > 1  # ran at more than one resolution
    assert np.isfinite(out).all() and out.shape == img.shape
    np.testing.assert_array_equal(out[~mask], img[~mask])


def test_python_api_and_grey(tiny_inpainter):
    from aetool import inpaint

    grey = structured_image(channels=1)
    m = box()
    out = inpaint(grey, mask=m, model=str(tiny_inpainter))
    assert out.shape == grey.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[m == 0], grey[m == 0])
    pil = inpaint(Image.fromarray(structured_image()), mask=Image.fromarray(m), dilate=1, model=str(tiny_inpainter))
    assert pil.size == (128, 96) and pil.mode == "RGB"


def test_train_inpaint_end_to_end(tmp_path):
    d = tmp_path / "train"
    d.mkdir()
    for i in range(5):
        Image.fromarray(structured_image(80, 96, seed=i)).save(d / f"i{i}.png")
    out = tmp_path / "inp.safetensors"
    r = run("train", "inpaint", "--data", d, "--out", out, "--steps", "2", "--width", "8,16", "--dilations", "1,2",
            "--patch", "64", "--batch-size", "2", "--val-count", "2", "--val-every", "2", "--precision", "fp32",
            "--warmup", "1")
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["task"] == "inpaint" and card["training"]["data"]["masks"] == ["thin", "thick", "box"]
    assert 0 < card["training"]["final_val_psnr"] < 60
    src = tmp_path / "p.png"
    Image.fromarray(structured_image(seed=9)).save(src)
    Image.fromarray(box()).save(tmp_path / "m.png")
    r = run("inpaint", src, "--mask", tmp_path / "m.png", "-o", tmp_path / "o.png", "--model", out)
    assert r.exit_code == 0, r.output


def test_missing_shipped_model_is_a_usage_error_with_a_hint(photos, tmp_path, monkeypatch):
    monkeypatch.setattr("aetool.registry.weights_dir", lambda: tmp_path / "no-weights")
    Image.fromarray(box()).save(tmp_path / "m.png")
    r = run("inpaint", photos, "--mask", tmp_path / "m.png", "-o", tmp_path / "out")
    assert r.exit_code == 2 and "aetool train inpaint" in r.output
    assert not (tmp_path / "out").exists()
