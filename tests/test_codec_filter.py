"""Classical codecs and their learned post-filters: JPEG quality from tables and pixels, `aetool
denoise --kind jpeg|webp|avif`, `aetool compress --codec`, `aetool decompress` of standard files,
and the training task. Generated images only."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from aetool import codecs
from conftest import structured_image


def run(*args):
    return subprocess.run([sys.executable, "-m", "aetool", *map(str, args)], capture_output=True, text=True)


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255 ** 2 / mse))


def jpeg_bytes(img: np.ndarray, quality: int, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


PHOTO = structured_image(192, 256)


@pytest.mark.parametrize("grey", [False, True])
def test_quality_from_tables_is_exact_for_every_pillow_quality(grey):
    img = structured_image(16, 16, 1 if grey else 3)
    for q in range(1, 101):
        im = Image.open(io.BytesIO(jpeg_bytes(img, q)))
        assert codecs.jpeg_quality_from_tables(im.quantization) == q


@pytest.mark.parametrize("quality", [10, 30, 60, 90])
def test_quality_from_pixels_finds_the_jpeg_quality(quality):
    for channels in (3, 1):
        img = structured_image(160, 192, channels)
        decoded = np.asarray(Image.open(io.BytesIO(jpeg_bytes(img, quality))))
        assert codecs.jpeg_quality_from_pixels(decoded[..., None] if decoded.ndim == 2 else decoded) == quality


def test_quality_from_pixels_is_none_for_pixels_that_were_never_a_jpeg_or_left_the_grid():
    assert codecs.jpeg_quality_from_pixels(PHOTO) is None
    decoded = np.asarray(Image.open(io.BytesIO(jpeg_bytes(PHOTO, 30))))
    assert codecs.jpeg_quality_from_pixels(decoded[3:, 5:]) is None  # cropped off the 8x8 grid
    assert codecs.jpeg_quality_from_pixels(decoded[:20, :20]) is None  # too small to tell


def test_codec_of_reads_the_bytes_not_the_name():
    for name in ("jpeg", "webp", "avif"):
        assert codecs.codec_of(codecs.encode(PHOTO[:32, :32], name, 50)[:16]) == name
    buf = io.BytesIO()
    Image.fromarray(PHOTO).save(buf, "PNG")
    assert codecs.codec_of(buf.getvalue()[:16]) is None


def test_shipped_jpeg_filter_raises_psnr_at_q20_colour_and_grey():
    from aetool import denoise

    for channels, margin in ((3, 1.0), (1, 0.8)):
        img = structured_image(192, 256, channels)
        im = Image.open(io.BytesIO(jpeg_bytes(img, 20)))
        out = denoise(im, kind="jpeg")  # the quality comes from the PIL image's tables
        assert out.mode == im.mode
        gain = psnr(out, img) - psnr(np.asarray(im), img)
        assert gain >= margin, f"{channels} channels: {gain:.2f} dB"


def test_shipped_webp_avif_filter_raises_psnr():
    from aetool import decompress

    # Margins measured on this generated picture (photos gain more: docs/benchmarks.md, compress-filter).
    for codec, margin in (("webp", 0.3), ("avif", 0.05)):
        data = codecs.encode(PHOTO, codec, 30)
        plain = np.asarray(decompress(data, filter=False))
        assert np.array_equal(plain, codecs.decode(data))  # --no-filter is the codec's own decode
        gain = psnr(decompress(data), PHOTO) - psnr(plain, PHOTO)
        assert gain >= margin, f"{codec}: {gain:.2f} dB"


def test_denoise_kind_jpeg_cli_writes_png_and_says_where_the_quality_came_from(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "old.jpg").write_bytes(jpeg_bytes(PHOTO, 15))
    Image.fromarray(np.asarray(Image.open(src / "old.jpg"))).save(src / "resaved.png")  # JPEG pixels in a PNG
    Image.fromarray(PHOTO).save(src / "clean.png")  # never a JPEG
    r = run("denoise", src, "-o", tmp_path / "out", "--kind", "jpeg", "--json")
    assert r.returncode == 0, r.stderr
    lines = {o["input"].rsplit("/", 1)[-1]: o for o in json_lines(r.stdout) if "input" in o}
    assert (tmp_path / "out" / "old.png").is_file()  # PNG, not JPEG again
    assert lines["old.jpg"]["jpeg_quality"] == 15 and lines["old.jpg"]["jpeg_quality_from"] == "file"
    assert lines["resaved.png"]["jpeg_quality"] == 15 and lines["resaved.png"]["jpeg_quality_from"] == "pixels"
    assert lines["clean.png"]["jpeg_quality"] is None and "--jpeg-quality" in lines["clean.png"]["note"]
    clean_out = np.asarray(Image.open(tmp_path / "out" / "clean.png"))
    assert np.array_equal(clean_out, PHOTO)  # left unchanged, not filtered at an invented quality
    assert psnr(Image.open(tmp_path / "out" / "old.png"), PHOTO) > psnr(Image.open(src / "old.jpg"), PHOTO) + 1.0
    told = run("denoise", src / "clean.png", "-o", tmp_path / "told.png", "--kind", "jpeg", "--jpeg-quality", "40",
               "--json")
    assert told.returncode == 0 and json_lines(told.stdout)[0]["jpeg_quality"] == 40


@pytest.mark.parametrize("args, message", [
    (["--jpeg-quality", "20"], "--kind jpeg"),
    (["--kind", "jpeg", "--sigma", "10"], "--sigma"),
    (["--kind", "png"], "unknown kind"),
    (["--kind", "avif", "--model", "denoise-jpeg"], "not avif"),
])
def test_denoise_kind_usage_errors_exit_2(tmp_path, args, message):
    Image.fromarray(PHOTO).save(tmp_path / "a.png")
    r = run("denoise", tmp_path / "a.png", "-o", tmp_path / "b.png", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_compress_codec_writes_standard_files_that_pillow_opens(tmp_path):
    Image.fromarray(PHOTO).save(tmp_path / "a.png")
    for codec, fmt in (("avif", "AVIF"), ("webp", "WEBP"), ("jpeg", "JPEG")):
        out = tmp_path / codec
        r = run("compress", tmp_path / "a.png", "-o", out, "--codec", codec, "--quality", "40", "--json")
        assert r.returncode == 0, r.stderr
        path = out / ("a" + codecs.CODECS[codec].suffix)
        with Image.open(path) as im:
            assert im.format == fmt and im.size == (256, 192)
        assert json_lines(r.stdout)[0]["quality"] == 40


def test_compress_codec_rate_targets(tmp_path):
    Image.fromarray(PHOTO).save(tmp_path / "a.png")
    r = run("compress", tmp_path / "a.png", "-o", tmp_path / "s", "--codec", "jpeg", "--size", "4KB", "--json")
    assert r.returncode == 0, r.stderr
    size = (tmp_path / "s" / "a.jpg").stat().st_size
    q = json_lines(r.stdout)[0]["quality"]
    assert size <= 4000
    assert len(codecs.encode(PHOTO, "jpeg", q + 1)) > 4000 or q == 100  # the largest quality that fits
    r = run("compress", tmp_path / "a.png", "-o", tmp_path / "p", "--codec", "webp", "--psnr", "33", "--json")
    assert r.returncode == 0, r.stderr
    assert psnr(Image.open(tmp_path / "p" / "a.webp").convert("RGB"), PHOTO) >= 33


@pytest.mark.parametrize("args, message", [
    (["--codec", "avif", "--quality", "4.5"], "whole number"),
    (["--codec", "gif"], "unknown codec"),
    (["--codec", "jpeg", "--model", "compress-color"], "one of them"),
    (["--quality", "50"], "1-100 is for --codec"),
])
def test_compress_codec_usage_errors_exit_2(tmp_path, args, message):
    Image.fromarray(PHOTO).save(tmp_path / "a.png")
    r = run("compress", tmp_path / "a.png", "-o", tmp_path / "o", *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_decompress_reads_standard_files_by_their_bytes_with_and_without_the_filter(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpg").write_bytes(jpeg_bytes(PHOTO, 20))
    (src / "b.webp").write_bytes(codecs.encode(PHOTO, "webp", 30))
    (src / "c.avif").write_bytes(codecs.encode(PHOTO, "avif", 30))
    (src / "d.jpg").write_bytes(codecs.encode(PHOTO, "avif", 30))  # a misnamed AVIF
    lossless = io.BytesIO()
    Image.fromarray(PHOTO).save(lossless, "WEBP", lossless=True)
    (src / "e.webp").write_bytes(lossless.getvalue())
    (src / "f.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 50)  # damaged
    r = run("decompress", src, "-o", tmp_path / "out", "--json")
    assert r.returncode == 1, r.stderr  # the damaged file alone fails
    lines = {o["input"].rsplit("/", 1)[-1]: o for o in json_lines(r.stdout) if "input" in o}
    assert lines["f.jpg"]["status"] == "failed"
    assert lines["a.jpg"]["filter"] == "denoise-jpeg" and lines["a.jpg"]["jpeg_quality"] == 20
    assert lines["b.webp"]["filter"] == lines["c.avif"]["filter"] == "postfilter-webp-avif"
    assert lines["c.avif"]["codec"] == "avif" and lines["d.jpg"]["codec"] == "avif"
    assert lines["e.webp"]["filter"] is None and "lossless" in lines["e.webp"]["note"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "e.png")), PHOTO)
    for name in ("a", "b", "c"):
        assert (tmp_path / "out" / f"{name}.png").is_file()  # PNG by default
    plain = run("decompress", src / "a.jpg", "-o", tmp_path / "plain.png", "--no-filter", "--json")
    assert plain.returncode == 0 and json_lines(plain.stdout)[0]["filter"] is None
    assert np.array_equal(np.asarray(Image.open(tmp_path / "plain.png")), np.asarray(Image.open(src / "a.jpg")))
    filtered = psnr(Image.open(tmp_path / "out" / "a.png"), PHOTO)
    assert filtered > psnr(Image.open(tmp_path / "plain.png"), PHOTO) + 1.0


def test_train_codec_task_writes_its_condition_into_the_weights(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        Image.fromarray(structured_image(80, 80, 3, seed=i)).save(data / f"{i}.png")
    out = tmp_path / "m.safetensors"
    r = run("train", "denoise", "--codec", "jpeg", "--grey-fraction", "0.5", "--data", data, "--out", out,
            "--steps", "2", "--batch-size", "2", "--patch", "32", "--width", "8,16", "--blocks", "1",
            "--val-every", "2", "--warmup", "1", "--threads", "1", "-q")
    assert r.returncode == 0, r.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["degradation"] == {"codecs": ["jpeg"], "condition": {"jpeg": "quality"}}
    from aetool.registry import read_metadata

    assert read_metadata(out)["degradation"] == card["degradation"]
    used = run("denoise", data / "0.png", "-o", tmp_path / "o.png", "--model", out, "--jpeg-quality", "30", "--json")
    assert used.returncode == 0 and json_lines(used.stdout)[0]["kind"] == "jpeg", used.stderr
    mixed = run("train", "denoise", "--codec", "jpeg,webp", "--data", data, "--out", tmp_path / "x.safetensors")
    assert mixed.returncode == 2 and "JPEG alone" in mixed.stderr
