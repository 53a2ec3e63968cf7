"""The learned codec: round trips of every kind of image, bit-exact decoding across threads and
processes, rate control, the command line on the engine, and files that are not what they claim."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture(scope="module")
def codec(tiny_codec):
    from aetool.tasks.compress import Codec

    return Codec(str(tiny_codec))


@pytest.mark.parametrize("h,w,c", [(1, 1, 3), (3, 5, 3), (17, 33, 3), (40, 70, 1), (64, 64, 3)])
def test_round_trip_shapes(codec, h, w, c):
    img = structured_image(max(h, 8), max(w, 8), channels=1 if c == 1 else 3)[:h, :w].astype(np.float32) / 255
    pixels = img[..., None] if c == 1 else img
    pic, info = codec.decode(codec.encode(pixels, 5))
    assert pic.pixels.shape == (h, w, c) and np.isfinite(pic.pixels).all()
    assert 0 <= pic.pixels.min() and pic.pixels.max() <= 1 and info["quality"] == 5


def test_alpha_is_lossless_and_16_bit_is_said(codec):
    img = structured_image(30, 40).astype(np.float32) / 255
    alpha = (np.arange(30 * 40).reshape(30, 40) % 256).astype(np.float32) / 255
    data = codec.encode(img, 4, alpha=alpha, bit_depth=16)
    pic, info = codec.decode(data)
    np.testing.assert_array_equal(np.round(pic.alpha * 255), np.round(alpha * 255))
    assert "16-bit" in info["note"]


def test_higher_quality_never_gives_a_smaller_file(codec):
    img = structured_image(96, 128).astype(np.float32) / 255
    sizes = [len(codec.encode(img, q)) for q in np.arange(1, 8.01, 0.5)]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0], sizes


def test_rate_control_lands_at_or_under_the_target(codec):
    img = structured_image(96, 128).astype(np.float32) / 255
    small, big = len(codec.encode(img, 1)), len(codec.encode(img, 8))
    target = (small + big) // 2
    data, info = codec.encode_to_target(img, size=target)
    assert len(data) <= target and 1 < info["quality"] < 8
    above, _ = codec.encode_to_target(img, quality=min(8.0, info["quality"] + 0.01))
    assert len(above) >= len(data)
    data, info = codec.encode_to_target(img, size=small - 1)  # impossible: the smallest file, and a warning
    assert info["quality"] == 1 and "below the smallest file" in info["warning"]
    bpp_data, _ = codec.encode_to_target(img, bpp=target * 8 / (96 * 128))
    assert len(bpp_data) <= target + 1


def test_psnr_target_is_reached_or_said(codec):
    # The random test codec does not get better with quality (its PSNR even falls a little), so
    # this checks the contract, not the search: the file reaches the target, or it is the best the
    # model does and a warning says so. The search itself is tested on the shipped model.
    img = structured_image(96, 128).astype(np.float32) / 255
    ref = np.round(img * 255)

    def psnr_of(data):
        out = np.round(codec.decode(data)[0].pixels.astype(np.float64) * 255)
        return 10 * np.log10(255 ** 2 / np.mean((out - ref) ** 2))

    for target in (psnr_of(codec.encode(img, 8)) - 0.001, 60.0):
        data, info = codec.encode_to_target(img, psnr=target)
        assert psnr_of(data) >= target or (info["quality"] == 8 and "above what the model reaches" in info["warning"])


def _decode_png(model: Path, aei: Path, threads: int) -> bytes:
    code = ("import sys, io, torch; torch.set_num_threads(int(sys.argv[3])); from aetool import decompress; "
            "im = decompress(open(sys.argv[2], 'rb').read(), model=sys.argv[1]); b = io.BytesIO(); "
            "im.save(b, 'PNG'); sys.stdout.buffer.write(b.getvalue())")
    return subprocess.run([sys.executable, "-c", code, str(model), str(aei), str(threads)], capture_output=True,
                          check=True).stdout


def test_decoding_is_identical_across_threads_and_processes(tiny_codec, tmp_path):
    from aetool import compress, decompress

    img = Image.fromarray(structured_image(80, 100))
    aei = tmp_path / "a.aei"
    aei.write_bytes(compress(img, quality=6, model=str(tiny_codec)))
    here = decompress(aei.read_bytes(), model=str(tiny_codec))
    buf = __import__("io").BytesIO()
    here.save(buf, "PNG")
    assert _decode_png(tiny_codec, aei, 1) == _decode_png(tiny_codec, aei, 2) == buf.getvalue()


def test_a_file_is_the_same_alone_and_in_a_batch(tiny_codec, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for k in range(3):
        Image.fromarray(structured_image(50, 60, seed=k)).save(d / f"{k}.png")
    assert run("compress", d, "-o", tmp_path / "batch", "--model", tiny_codec, "-q").exit_code == 0
    assert run("compress", d / "1.png", "-o", tmp_path / "alone.aei", "--model", tiny_codec, "-q").exit_code == 0
    assert (tmp_path / "batch" / "1.aei").read_bytes() == (tmp_path / "alone.aei").read_bytes()


def test_cli_folder_round_trip_with_json_and_info(tiny_codec, tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(structured_image(40, 50, seed=1)).save(d / "a.png")
    Image.fromarray(structured_image(40, 50, channels=1, seed=2)).save(d / "sub" / "g.png")
    rgba = np.dstack([structured_image(40, 50, seed=3), np.full((40, 50), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(d / "t.png")
    r = run("compress", d, "-o", tmp_path / "packed", "-r", "--model", tiny_codec, "--quality", "3.5", "--json")
    assert r.exit_code == 0, r.output
    recs = json_lines(r.stdout)
    assert recs[-1]["summary"]["ok"] == 3 and all(x["bytes"] > 0 and x["quality"] == 3.5 for x in recs[:-1])
    assert sorted(p.name for p in (tmp_path / "packed").rglob("*.aei")) == ["a.aei", "g.aei", "t.aei"]
    r = run("decompress", tmp_path / "packed", "-o", tmp_path / "back", "-r", "--model", tiny_codec, "--json")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "back" / "sub" / "g.png").mode == "L"
    back = Image.open(tmp_path / "back" / "t.png")
    assert back.mode == "RGBA" and (np.asarray(back)[..., 3] == 128).all()
    r = run("info", tmp_path / "packed" / "t.aei", "--json")
    d = json.loads(r.stdout)
    assert r.exit_code == 0 and d["model"] == "tiny-codec" and d["alpha"] and d["width"] == 50


def test_bad_files_fail_one_by_one_and_the_batch_goes_on(tiny_codec, tmp_path):
    packed = tmp_path / "packed"
    Image.fromarray(structured_image(40, 50)).save(tmp_path / "a.png")
    assert run("compress", tmp_path / "a.png", "-o", packed / "good.aei", "--model", tiny_codec).exit_code == 0
    good = (packed / "good.aei").read_bytes()
    (packed / "truncated.aei").write_bytes(good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    (packed / "flipped.aei").write_bytes(bytes(flipped))
    (packed / "magic.aei").write_bytes(b"not an aei file at all")
    r = run("decompress", packed, "-o", tmp_path / "out", "--model", tiny_codec, "--json")
    assert r.exit_code == 1
    recs = {Path(x["input"]).stem: x for x in json_lines(r.stdout)[:-1]}
    assert recs["good"]["status"] == "ok"
    assert "truncated" in recs["truncated"]["error"] and "checksum" in recs["flipped"]["error"]
    assert "not an aetool compressed file" in recs["magic"]["error"] and "Traceback" not in r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


def test_a_file_for_a_model_that_is_not_installed_names_it(tiny_codec, tmp_path):
    Image.fromarray(structured_image(40, 50)).save(tmp_path / "a.png")
    assert run("compress", tmp_path / "a.png", "-o", tmp_path / "a.aei", "--model", tiny_codec).exit_code == 0
    r = run("decompress", tmp_path / "a.aei", "-o", tmp_path / "a-back.png")
    assert r.exit_code == 1 and "needs the model 'tiny-codec' (sha256" in r.stderr


def test_size_option_parsing():
    from aetool.cli.compress import parse_size
    from aetool.errors import UsageError

    assert parse_size("150KB") == 150_000 and parse_size("1.5MiB") == 1_572_864 and parse_size("2000") == 2000
    with pytest.raises(UsageError):
        parse_size("big")


def test_large_images_are_coded_in_tiles_with_the_untiled_result(codec):
    img = structured_image(150, 230).astype(np.float32) / 255
    whole = codec.encode(img, 5)
    codec.tile = 64
    try:
        tiled = codec.encode(img, 5)
        tiled_pic, _ = codec.decode(tiled)
    finally:
        codec.tile = 1024
    whole_pic, _ = codec.decode(whole)
    assert tiled == whole  # the latents, hence the bytes, are the same
    assert np.abs(tiled_pic.pixels - whole_pic.pixels).max() < 1e-4


def test_out_of_memory_halves_the_codec_tiles(codec, monkeypatch):
    """Out of memory in the codec's transforms (a GPU's, simulated), the tile is halved until the
    transform fits, as the engine does for the other commands: the same file as the whole-image
    run and the same picture; still out of memory at 64 pixels, a MemoryError that says so; other
    errors are not retried."""
    import torch

    img = structured_image(150, 230).astype(np.float32) / 255
    whole = codec.encode(img, 5)
    whole_pic, _ = codec.decode(whole)
    real = codec._tiled_once
    tried = []

    def fits_in_64(fn, x, tile, *args):
        tried.append(tile)
        if tile > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(fn, x, tile, *args)

    monkeypatch.setattr(codec, "_tiled_once", fits_in_64)
    halved = codec.encode(img, 5)
    assert tried == [1024, 512, 256, 128, 64]
    assert halved == whole
    tried.clear()
    halved_pic, _ = codec.decode(halved)
    assert tried == [1024, 512, 256, 128, 64]  # the synthesis too
    assert np.abs(halved_pic.pixels - whole_pic.pixels).max() < 1e-4

    def never_fits(fn, x, tile, *args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB")

    monkeypatch.setattr(codec, "_tiled_once", never_fits)
    with pytest.raises(MemoryError, match="64-pixel tiles"):
        codec.encode(img, 5)

    def broken(fn, x, tile, *args):
        tried.append(tile)
        raise RuntimeError("a bug, not memory")

    tried.clear()
    monkeypatch.setattr(codec, "_tiled_once", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        codec.encode(img, 5)
    assert tried == [1024]


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA GPU (run on the device machine)")
def test_cpu_and_gpu_files_decode_to_the_same_symbols_on_either(tiny_codec):
    """A file encoded on the CPU decodes on the GPU to the same symbols, and the other way round;
    only the float synthesis may differ, by about a rounding step."""
    from aetool.container import unpack
    from aetool.engine import EngineOptions
    from aetool.tasks.compress import Codec

    cpu, gpu = Codec(str(tiny_codec), EngineOptions(device="cpu")), Codec(str(tiny_codec), EngineOptions(device="cuda"))
    img = structured_image(130, 200).astype(np.float32) / 255
    for encoder in (cpu, gpu):
        e = unpack(encoder.encode(img, 5))
        z_cpu, y_cpu = cpu.decode_symbols(e)
        z_gpu, y_gpu = gpu.decode_symbols(e)
        assert np.array_equal(z_cpu, z_gpu) and np.array_equal(y_cpu, y_gpu)
        a, b = cpu.decode(e)[0].pixels, gpu.decode(e)[0].pixels
        assert np.abs(a - b).max() < 2 / 255


def _crafted(tiny_codec, **fields) -> bytes:
    """A real file of the tiny codec with some fields rewritten and repacked: every length and
    checksum is valid, as a hostile writer's file would be (the fuzz benchmark's 'crafted fields')."""
    import dataclasses

    from aetool import compress
    from aetool.container import pack, unpack

    e = unpack(compress(Image.fromarray(structured_image(64, 64)), quality=5, model=str(tiny_codec)))
    return pack(dataclasses.replace(e, **fields))


def test_crafted_files_with_valid_checksums_are_refused_in_one_line(tiny_codec, tmp_path):
    import io

    from aetool.container import unpack

    e = unpack(_crafted(tiny_codec))
    bomb = io.BytesIO()
    Image.new("L", (20000, 20000)).save(bomb, "PNG", optimize=True)  # a few kB that decode to 400 MB
    cases = {
        "channels": _crafted(tiny_codec, y_shape=(e.y_shape[0] + 1, *e.y_shape[1:])),
        "alpha": _crafted(tiny_codec, has_alpha=True, alpha=bomb.getvalue()),
        "dot": _crafted(tiny_codec, model_name="."),
        "path": _crafted(tiny_codec, model_name=str(tiny_codec.with_suffix(""))),
    }
    for name, data in cases.items():
        (tmp_path / f"{name}.aei").write_bytes(data)
    r = run("decompress", *(tmp_path / f"{n}.aei" for n in ("channels", "alpha")), "-o", tmp_path / "out",
            "--model", tiny_codec, "--json")
    assert r.exit_code == 1
    lines = json_lines(r.stdout)
    assert all(line["status"] == "failed" and "\n" not in line["error"] for line in lines if "input" in line)
    assert "damaged" in " ".join(line.get("error", "") for line in lines)
    # a file names an installed model by name only, never by path (here, the tiny codec's own file)
    r = run("decompress", tmp_path / "dot.aei", tmp_path / "path.aei", "-o", tmp_path / "out2", "--json")
    assert r.exit_code == 1 and r.stdout.count("which is not installed") == 2
    assert not list(tmp_path.rglob("*.png"))  # nothing written for a refused file


def test_decompress_api_refuses_a_declared_size_above_max_pixels(tiny_codec):
    from aetool import decompress
    from aetool.container import ContainerError

    data = _crafted(tiny_codec)
    with pytest.raises(ContainerError):
        decompress(data, model=str(tiny_codec), max_pixels=1000)
    assert decompress(data, model=str(tiny_codec)).size == (64, 64)


def test_unreadable_exif_is_kept_as_it_came_not_a_failure(tiny_codec, tmp_path):
    (tmp_path / "a.aei").write_bytes(_crafted(tiny_codec, exif=b"not a TIFF header at all"))
    for fmt in ("png", "tiff", "jpg"):
        r = run("decompress", tmp_path / "a.aei", "-o", tmp_path / f"a.{fmt}", "--model", tiny_codec, "-q")
        assert r.exit_code == 0, (fmt, r.output)


@pytest.mark.parametrize("case", ["compress", "decompress", "compress --codec jpeg", "decompress .jpg",
                                  "denoise --kind jpeg"])
def test_a_read_only_file_system_stops_compress_and_decompress(tiny_codec, tmp_path, monkeypatch, case):
    """Writing into a read-only file system (EROFS) stops `aetool compress` and `decompress` (the
    learned codec, a standard codec, standard files through the post-filter) and `denoise --kind
    jpeg` as it stops the other commands (the engine's writer): exit 1, the reason in the JSON
    summary, the files not yet started left alone, nothing written, no traceback."""
    from aetool import codecs

    src = tmp_path / "in"
    src.mkdir()
    for k in range(5):
        pixels = structured_image(40, 50, seed=k)
        if case in ("decompress .jpg", "denoise --kind jpeg"):
            (src / f"a{k}.jpg").write_bytes(codecs.encode(pixels, "jpeg", 30))
        else:
            Image.fromarray(pixels).save(src / f"a{k}.png")
    command, *args = case.split()
    if case == "decompress":
        coded = tmp_path / "coded"
        assert run("compress", src, "-o", coded, "--model", tiny_codec).exit_code == 0
        src = coded
    if case in ("compress", "decompress"):
        args = ["--model", tiny_codec]
    elif case == "compress --codec jpeg":
        args += ["--quality", "40"]
    elif case == "decompress .jpg":
        args = []
    assert_read_only_file_system_stops(monkeypatch, run, command, src, "-o", tmp_path / "out", *args, "--json")
