"""`aetool inpaint` and `aetool.inpaint`: every mask source, known pixels kept bit for bit, empty
masks, per-file mask errors, crops around holes against whole-image processing, training."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aetool.cli import app
from conftest import assert_read_only_file_system_stops, structured_image

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


# ---------------------------------------------------------------- fill modes (texture synthesis)
def texture_image(seed=0, size=128) -> np.ndarray:
    """A stationary noise texture (float32 RGB in [0, 1]): any blur of it is plain to see."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    t = ndimage.gaussian_filter(rng.random((size, size, 3)), (1.2, 1.2, 0))
    return np.clip(0.5 + 0.15 * (t - t.mean()) / t.std(), 0, 1).astype(np.float32)


def gradient_energy_ratio(clean, out, mask) -> float:
    def energy(x):
        gx = np.diff(x, axis=1, append=x[:, -1:])
        gy = np.diff(x, axis=0, append=x[-1:])
        return float((gx ** 2 + gy ** 2).sum(-1)[mask].sum())
    return energy(out) / energy(clean)


@pytest.fixture
def textured():
    img = texture_image()
    mask = np.zeros(img.shape[:2], bool)
    mask[40:80, 44:84] = True  # a 40 x 40 box: far wider than TEXTURE_MIN_WIDTH
    holes = img.copy()
    holes[mask] = 0
    return img, holes, mask


def test_texture_fill_puts_detail_back_where_smooth_fill_is_flat(textured, tiny_inpainter):
    from aetool.engine import EngineOptions
    from aetool.tasks.inpaint import Inpainter

    img, holes, mask = textured
    ratios = {}
    for fill in ("smooth", "texture", "auto"):
        out, info = Inpainter(str(tiny_inpainter), EngineOptions(device="cpu"), fill=fill)(holes, mask)
        np.testing.assert_array_equal(out[~mask], holes[~mask])  # known pixels: bit for bit
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        assert info["fill"] == fill
        ratios[fill] = gradient_energy_ratio(img, out, mask)
    # The stated floors: a smooth fill keeps under 30 % of the texture's gradient energy, the
    # synthesized texture over 60 % (measured 0.07 and 1.3 with the shipped model).
    assert ratios["smooth"] < 0.3, ratios
    assert ratios["texture"] > 0.6 and ratios["auto"] > 0.6, ratios


def test_texture_fill_of_a_grey_image(textured, tiny_inpainter):
    from aetool.engine import EngineOptions
    from aetool.tasks.inpaint import Inpainter

    img, holes, mask = (x[..., :1] if x.ndim == 3 else x for x in textured)
    out, info = Inpainter(str(tiny_inpainter), EngineOptions(device="cpu"), fill="texture")(holes, mask)
    assert out.shape == holes.shape and info["textured_holes"] == 1
    np.testing.assert_array_equal(out[~mask], holes[~mask])
    assert gradient_energy_ratio(img, out, mask) > 0.6


def test_texture_fill_is_deterministic_for_a_seed(textured, tiny_inpainter):
    from aetool.engine import EngineOptions
    from aetool.tasks.inpaint import Inpainter

    _, holes, mask = textured
    runs = [Inpainter(str(tiny_inpainter), EngineOptions(device="cpu"), fill="texture", seed=s)(holes, mask)[0]
            for s in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0] - runs[2])[mask].max() > 0.05  # another seed, another texture


def test_auto_fill_keeps_thin_scratches_smooth(textured, tiny_inpainter):
    from aetool.engine import EngineOptions
    from aetool.tasks.inpaint import TEXTURE_MIN_WIDTH, Inpainter

    _, holes, _ = textured
    thin = np.zeros(holes.shape[:2], bool)
    thin[10:10 + TEXTURE_MIN_WIDTH // 4, 5:120] = True  # a scratch, joined to a box
    thin[30:90, 60:62] = True
    box_mask = thin.copy()
    box_mask[40:80, 70:110] = True
    opts = EngineOptions(device="cpu")
    smooth, _ = Inpainter(str(tiny_inpainter), opts, fill="smooth")(holes, box_mask)
    auto, info = Inpainter(str(tiny_inpainter), opts, fill="auto")(holes, box_mask)
    assert info["textured_holes"] == 1
    far = thin.copy()
    far[30:96, 54:116] = False  # the scratches away from the box
    np.testing.assert_array_equal(auto[far], smooth[far])
    assert np.abs(auto - smooth)[45:75, 75:105].max() > 0.05
    only_thin, info = Inpainter(str(tiny_inpainter), opts, fill="auto")(holes, thin)
    assert info["textured_holes"] == 0


def test_fill_option_on_the_command_line(tmp_path, tiny_inpainter):
    img, holes, mask = texture_image(), None, None
    Image.fromarray((img * 255).round().astype(np.uint8)).save(tmp_path / "t.png")
    m = np.zeros((128, 128), np.uint8)
    m[40:80, 44:84] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    outs = {}
    for fill in ("smooth", "texture"):
        r = run("inpaint", tmp_path / "t.png", "--mask", tmp_path / "m.png", "-o", tmp_path / f"{fill}.png",
                "--fill", fill, "--seed", 2, "--model", tiny_inpainter, "--json")
        assert r.exit_code == 0, r.output
        rec = json_lines(r.output)[0]
        assert rec["status"] == "ok" and rec["fill"] == fill
        _, outs[fill] = assert_known_pixels_kept(tmp_path / "t.png", tmp_path / f"{fill}.png", m)
    hole = m > 0
    ref = np.asarray(Image.open(tmp_path / "t.png")).astype(np.float32) / 255
    assert gradient_energy_ratio(ref, outs["texture"] / 255.0, hole) > 0.6
    assert gradient_energy_ratio(ref, outs["smooth"] / 255.0, hole) < 0.3
    r = run("inpaint", tmp_path / "t.png", "--mask", tmp_path / "m.png", "-o", tmp_path / "x.png", "--fill", "wild")
    assert r.exit_code == 2 and "--fill" in r.output


def test_ensemble_option(tmp_path, tiny_inpainter):
    """--ensemble: 1 by default (recorded in the JSON) or 2, 4, 8; anything else is a usage error,
    on the command line and in the API."""
    from aetool import inpaint

    img = texture_image()
    Image.fromarray((img * 255).round().astype(np.uint8)).save(tmp_path / "t.png")
    m = np.zeros((128, 128), np.uint8)
    m[20:26, 10:120] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    for extra in ([], ["--ensemble", "2"]):
        name = tmp_path / f"e{len(extra)}.png"
        r = run("inpaint", tmp_path / "t.png", "--mask", tmp_path / "m.png", "-o", name, "--model", tiny_inpainter,
                "--json", *extra)
        assert r.exit_code == 0, r.output
        assert json_lines(r.output)[0]["ensemble"] == (2 if extra else 1)
        assert_known_pixels_kept(tmp_path / "t.png", name, m)
    r = run("inpaint", tmp_path / "t.png", "--mask", tmp_path / "m.png", "-o", tmp_path / "x.png", "--ensemble", "3")
    assert r.exit_code == 2 and "--ensemble" in r.output
    with pytest.raises(Exception, match="ensemble"):
        inpaint(img, mask=m, ensemble=5, model=str(tiny_inpainter))


def test_python_api_fill_and_seed(textured, tiny_inpainter):
    from aetool import inpaint

    _, holes, mask = textured
    a = inpaint(holes, mask=mask, fill="texture", seed=5, model=str(tiny_inpainter))
    b = inpaint(holes, mask=mask, fill="texture", seed=5, model=str(tiny_inpainter))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(Exception, match="fill"):
        inpaint(holes, mask=mask, fill="blurry", model=str(tiny_inpainter))


def test_thin_masks_cost_the_holes_not_the_image(tiny_inpainter):
    """A large image with a few small holes: the network sees only crops around them, so its work
    grows with the holes, not with the image (3 scratches on 12 MP: under 5 % of the pixels)."""
    from aetool.engine import EngineOptions
    from aetool.tasks.inpaint import Inpainter

    h, w = 3000, 4000
    mask = np.zeros((h, w), bool)
    for y, x in ((100, 200), (1500, 2000), (2800, 3700)):
        mask[y:y + 4, x:x + 60] = True  # scratches
    inp = Inpainter(str(tiny_inpainter), EngineOptions(device="cpu"))
    seen = []
    real = inp._predict
    inp._predict = lambda crop, m: seen.append(crop.shape[0] * crop.shape[1]) or real(crop, m)
    img = np.full((h, w, 3), 0.5, np.float32)
    out, info = inp(img, mask)
    assert info["regions"] == 3 and len(seen) == 3
    assert sum(seen) < 0.05 * h * w
    # Twice the scratches, twice the work (each crop the same size), whatever the image's size.
    seen.clear()
    mask[600:604, 600:660] = mask[2000:2004, 100:160] = mask[900:904, 3000:3060] = True
    inp(img, mask)
    assert len(seen) == 6 and sum(seen) <= 2.2 * sum(seen[:3])


def test_texture_of_a_few_holes_costs_the_holes_not_the_image(tiny_inpainter, monkeypatch):
    """Two boxes on a 12 MP image: texture is synthesized in two crops around them (three times
    their depth, on the cell grid), and a box's texture is the same with or without the other."""
    import aetool.texture
    from aetool.engine import EngineOptions
    from aetool.tasks.inpaint import Inpainter

    h, w = 3000, 4000
    img = np.tile(texture_image(size=200), (h // 200, w // 200, 1))
    mask = np.zeros((h, w), bool)
    mask[1000:1030, 1000:1030] = True
    inp = Inpainter(str(tiny_inpainter), EngineOptions(device="cpu"), fill="texture")
    inp._predict = lambda crop, m: crop  # the network is not what this measures
    real, crops = aetool.texture.synthesize, []
    monkeypatch.setattr(aetool.texture, "synthesize",
                        lambda image, *a, **k: crops.append(image.shape[:2]) or real(image, *a, **k))
    alone, _ = inp(img, mask)
    mask[2000:2030, 3000:3030] = True
    both, info = inp(img, mask)
    assert info["textured_holes"] == 2 and len(crops) == 3
    assert all(ch * cw < 0.005 * h * w for ch, cw in crops), crops  # 192 x 192 each
    np.testing.assert_array_equal(both[1000:1030, 1000:1030], alone[1000:1030, 1000:1030])



@pytest.mark.parametrize("fill", ["smooth", "texture"])
def test_a_read_only_file_system_stops_inpaint(tmp_path, tiny_inpainter, monkeypatch, fill):
    """Writing into a read-only file system (EROFS) stops `aetool inpaint` (the network's fill and
    texture synthesis) as it stops the other commands (the engine's writer): exit 1, the reason in
    the JSON summary, the files not yet started left alone, nothing written, no traceback."""
    src = tmp_path / "in"
    src.mkdir()
    for k in range(5):
        Image.fromarray(structured_image(seed=k)).save(src / f"a{k}.png")
    Image.fromarray(box()).save(tmp_path / "mask.png")

    assert_read_only_file_system_stops(monkeypatch, run, "inpaint", src, "--mask", tmp_path / "mask.png", "-o",
                                       tmp_path / "out", "--model", tiny_inpainter, "--fill", fill, "--json")
