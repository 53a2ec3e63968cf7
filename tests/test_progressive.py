"""The progressive codec (aetool/tasks/progressive.py, aetool/models/recurrent.py) and its version-2
container: every prefix that ends on an iteration decodes, cut files decode what arrived whole,
truncation keeps valid files, coding is deterministic, damaged files fail in one line, and the
command line (compress, decompress, truncate, info) on the engine. A tiny random recurrent codec
is made here; the last test uses the shipped model when it is installed."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aetool.cli import app
from aetool.container import (MAGIC, PROGRESSIVE_HEADER_SIZE, PROGRESSIVE_VERSION, ContainerError,
                              ContainerTooLargeError, EncodedImage, ProgressiveImage, latent_shapes, load, pack,
                              pack_progressive, progressive_ends, progressive_sizes, truncate, unpack)
from aetool.errors import ImageError
from conftest import assert_read_only_file_system_stops, structured_image

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def photo(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A photo-like float picture (H, W, C) in [0, 1]: smooth gradients, edges, a little texture."""
    img = structured_image(h, w, channels=channels, seed=seed).astype(np.float32) / 255
    return img[..., None] if channels == 1 else img


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.round(a.astype(np.float64) * 255) - np.round(b.astype(np.float64) * 255)) ** 2))
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


def png_pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), np.float64)


def as_8bit(pixels: np.ndarray) -> np.ndarray:
    """What a decoded Picture becomes in a PNG (colour planes only)."""
    arr = np.round(np.clip(pixels, 0, 1) * 255)
    return arr[..., 0] if arr.shape[2] == 1 else arr


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: SIGALRM after `seconds`."""
    def expired(signum, frame):
        raise TimeoutError(f"took more than {seconds} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------------------
# A tiny recurrent codec, saved like `aetool train compress --arch recurrent` does (weights + card),
# with its integer bit tables fitted on two generated pictures.

ITERATIONS, BITS = 4, 8


@pytest.fixture(scope="module")
def tiny_progressive(tmp_path_factory) -> Path:
    import torch

    from aetool.models.recurrent import RecurrentCodec
    from aetool.registry import Card, count_parameters, save_weights, sha256_of

    torch.manual_seed(0)
    # the decoder's channel counts must be multiples of 4 (depth-to-space between its cells)
    model = RecurrentCodec(in_channels=3, bits=BITS, iterations=ITERATIONS, encoder=(8, 8, 16, 16),
                           decoder=(16, 16, 16, 16)).eval()
    with torch.no_grad():
        model.encoder_in.weight.mul_(3)  # bits that vary across the picture, as a trained model's do
    for seed in (0, 1):
        x = torch.from_numpy(photo(64, 96, seed=seed)).permute(2, 0, 1)[None]
        codes, _ = model.code(x)
        model.count_bits(codes)
    model.update_tables()
    assert int(model.bit_table.min()) > 0 and (model.bit_table != 32768).any()
    path = tmp_path_factory.mktemp("progressive") / "tiny-progressive.safetensors"
    save_weights(model, path, "compress")
    Card(name="tiny-progressive", task="compress", arch=model.arch_name, config=model.config, file=path.name,
         sha256=sha256_of(path), channels=3, parameters=count_parameters(model)).save(path.with_suffix(".json"))
    return path


@pytest.fixture(scope="module")
def codec(tiny_progressive):
    from aetool.tasks.progressive import ProgressiveCodec

    return ProgressiveCodec(str(tiny_progressive))


def alpha_plane(h: int, w: int) -> np.ndarray:
    return (np.add.outer(np.arange(h) * 7, np.arange(w) * 3) % 256).astype(np.float32) / 255


# name: (height, width, channels, alpha)
IMAGES = {"rgb": (40, 48, 3, False), "odd": (37, 53, 3, False), "grey": (40, 48, 1, False),
          "alpha": (33, 45, 3, True)}


@pytest.fixture(scope="module")
def files(codec) -> dict:
    """name -> (file bytes, source pixels, source alpha) for each of IMAGES, every iteration kept."""
    out = {}
    for k, (name, (h, w, c, has_alpha)) in enumerate(IMAGES.items()):
        pixels = photo(h, w, c, seed=10 + k)
        alpha = alpha_plane(h, w) if has_alpha else None
        data, info = codec.encode_to_target(pixels, alpha=alpha, icc=b"icc-profile" if name == "odd" else None)
        assert info["iterations"] == ITERATIONS and "warning" not in info
        out[name] = (data, pixels, alpha)
    return out


def table_end(e: ProgressiveImage) -> int:
    """Where a file's iterations start: header, name, metadata and its CRC, the table and its CRC."""
    metadata = len(e.model_name.encode("utf-8")) + len(e.alpha) + len(e.icc) + len(e.exif)
    return PROGRESSIVE_HEADER_SIZE + metadata + 4 + 10 * max(e.declared, len(e.iterations)) + 4


def prefix_ends(e: ProgressiveImage) -> list[int]:
    """Where each iteration of a file ends: the prefixes of the file that hold 1, 2, ... iterations
    whole. (progressive_sizes is another thing: the sizes of the files `truncate` writes, whose
    tables are shorter.)"""
    return [table_end(e) + sum(len(it) for it in e.iterations[:k]) for k in range(1, len(e.iterations) + 1)]


# ---------------------------------------------------------------------------------------------------
# 1. prefixes at iteration boundaries


@pytest.mark.parametrize("name", list(IMAGES))
def test_every_iteration_prefix_decodes_like_the_whole_file_and_the_truncated_one(codec, files, name):
    data, pixels, alpha = files[name]
    h, w, c = pixels.shape
    e = unpack(data)
    assert data[4] == PROGRESSIVE_VERSION and not e.cut and len(e.iterations) == e.declared == ITERATIONS
    assert (e.width, e.height, e.channels, e.bits) == (w, h, c, BITS) and e.has_alpha == (alpha is not None)
    sizes, ends = progressive_sizes(e), prefix_ends(e)
    assert progressive_ends(e) == ends and progressive_ends(unpack(data[:ends[0]])) == ends[:1]
    assert sizes == sorted(sizes) and sizes[-1] == ends[-1] == len(data)
    assert [end - size for end, size in zip(ends, sizes)] == [10 * (ITERATIONS - k) for k in range(1, ITERATIONS + 1)]
    previous = None
    for k in range(1, ITERATIONS + 1):
        prefix = unpack(data[:ends[k - 1]])
        assert prefix.iterations == e.iterations[:k] and prefix.cut == (k < ITERATIONS)
        from_prefix, info = codec.decode(prefix)
        from_whole, whole_info = codec.decode(e, iterations=k)
        truncated = truncate(e, k)
        assert len(truncated) == sizes[k - 1]
        from_truncated, truncated_info = codec.decode(unpack(truncated))
        assert info["iterations"] == whole_info["iterations"] == truncated_info["iterations"] == k
        assert ("warning" in info) == (k < ITERATIONS) and "warning" not in whole_info
        assert "warning" not in truncated_info
        # bytes_used: the first bytes of the file decoded from (a truncated file is shorter)
        assert whole_info["bytes_used"] == info["bytes_used"] == ends[k - 1]
        assert truncated_info["bytes_used"] == sizes[k - 1]
        for pic in (from_prefix, from_whole, from_truncated):
            assert pic.pixels.shape == (h, w, c) and pic.pixels.dtype == np.float32
            assert 0 <= pic.pixels.min() and pic.pixels.max() <= 1
        np.testing.assert_array_equal(from_prefix.pixels, from_whole.pixels)
        np.testing.assert_array_equal(from_truncated.pixels, from_whole.pixels)
        if alpha is not None:  # alpha is lossless at every iteration
            np.testing.assert_array_equal(np.round(from_prefix.alpha * 255), np.round(alpha * 255))
        else:
            assert from_prefix.alpha is None
        # the encoder's PSNR in the table is the decoder's, to its 1/100 dB
        assert abs(whole_info["psnr_estimate"] - psnr(from_whole.pixels, pixels)) < 0.011
        if previous is not None:
            assert not np.array_equal(previous, from_whole.pixels)  # each iteration changes the picture
        previous = from_whole.pixels
    assert codec.decode(e)[1]["iterations"] == ITERATIONS


@pytest.mark.parametrize("h,w", [(1, 1), (17, 1), (1, 40)])
def test_tiny_pictures(codec, h, w):
    pixels = photo(max(h, 8), max(w, 8), seed=h + w)[:h, :w]
    data, _ = codec.encode_to_target(pixels)
    e = unpack(data)
    assert e.code_shape == (BITS, -(-h // 16), -(-w // 16))
    for k in range(1, ITERATIONS + 1):
        pic, info = codec.decode(unpack(data[:prefix_ends(e)[k - 1]]))
        assert pic.pixels.shape == (h, w, 3) and info["iterations"] == k


@pytest.mark.parametrize("name", ["rgb", "grey"])
def test_decode_each_gives_every_prefix_in_one_pass(codec, files, name):
    data = files[name][0]
    e = unpack(data)
    pictures = codec.decode_each(e)
    assert len(pictures) == len(e.iterations)
    for k, pic in enumerate(pictures, 1):
        np.testing.assert_array_equal(pic.pixels, codec.decode(e, iterations=k)[0].pixels)
    cut = unpack(data[:prefix_ends(e)[1] + 1])
    assert len(codec.decode_each(cut)) == 2


def test_tiles_decode_with_the_encoders_reconstruction(codec):
    """Large pictures are coded in independent tiles (TILE pixels, here made small): decoding
    them gives what the encoder measured, partial tiles at the edges included."""
    from aetool.tasks.progressive import TILE

    pixels = photo(37, 53, seed=12)
    codec.tile = 32
    try:
        e = unpack(codec.encode_to_target(pixels)[0])
        for k in range(1, ITERATIONS + 1):
            pic, info = codec.decode(e, iterations=k)
            assert abs(info["psnr_estimate"] - psnr(pic.pixels, pixels)) < 0.011
    finally:
        codec.tile = TILE


def test_icc_and_exif_survive_truncation(files, codec):
    e = unpack(files["odd"][0])
    assert e.icc == b"icc-profile"
    for k in (1, 2):
        t = unpack(truncate(e, k))
        assert t.icc == b"icc-profile" and codec.decode(t)[0].icc == b"icc-profile"


# ---------------------------------------------------------------------------------------------------
# 2. cut files


def test_a_cut_inside_an_iteration_decodes_the_complete_ones_and_warns(codec, files):
    data, _, _ = files["rgb"]
    e = unpack(data)
    ends = prefix_ends(e)
    for k in range(1, ITERATIONS):
        whole_k = codec.decode(e, iterations=k)[0].pixels
        for cut in (ends[k - 1], ends[k - 1] + 1, ends[k] - 1):
            c = unpack(data[:cut])
            assert c.cut and c.iterations == e.iterations[:k] and c.declared == ITERATIONS and c.size == cut
            pic, info = codec.decode(c)
            assert info["iterations"] == k and info["iterations_in_file"] == ITERATIONS
            assert info["warning"] == (f"the file is cut ({cut:,} bytes): decoded {k} complete iterations of "
                                       f"{ITERATIONS}")
            np.testing.assert_array_equal(pic.pixels, whole_k)
    from aetool import decompress

    with pytest.warns(UserWarning, match="the file is cut"):
        decompress(data[:ends[1] + 2], model=str(codec.card.path))


def test_a_cut_before_the_first_iteration_is_whole_fails_clearly(codec, files):
    data, _, _ = files["rgb"]
    e = unpack(data)
    end, first = table_end(e), prefix_ends(e)[0]
    for cut in range(1, end):
        with pytest.raises(ContainerError) as err:
            unpack(data[:cut])
        text = str(err.value)
        assert "\n" not in text and text.startswith("truncated: the file ends at byte")
        if cut >= PROGRESSIVE_HEADER_SIZE:
            assert text == (f"truncated: the file ends at byte {cut}, before the end of its iteration table "
                            f"(byte {end}): nothing can be decoded")
    for cut in range(end, first):
        c = unpack(data[:cut])
        assert c.iterations == () and c.cut
        with pytest.raises(ImageError, match="inside its first iteration: nothing can be decoded"):
            codec.decode(c)


def test_cut_files_on_the_command_line(tiny_progressive, files, tmp_path):
    data, _, _ = files["rgb"]
    e = unpack(data)
    ends = prefix_ends(e)
    (tmp_path / "cut.aei").write_bytes(data[:ends[2] - 1])
    r = run("decompress", tmp_path / "cut.aei", "-o", tmp_path / "cut.png", "--model", tiny_progressive)
    assert r.exit_code == 0, r.output
    assert f"aetool: warning: {tmp_path / 'cut.aei'}: the file is cut" in r.stderr
    assert "decoded 2 complete iterations of 4" in r.stderr and (tmp_path / "cut.png").is_file()
    r = run("decompress", tmp_path / "cut.aei", "-o", tmp_path / "cut2.png", "--model", tiny_progressive, "--json")
    assert r.exit_code == 0, r.output
    rec = json_lines(r.stdout)[0]
    assert rec["status"] == "ok" and rec["iterations"] == 2 and "the file is cut" in rec["warning"]
    (tmp_path / "table.aei").write_bytes(data[:table_end(e) - 3])
    (tmp_path / "first.aei").write_bytes(data[:ends[0] - 1])
    for name, says in (("table", "before the end of its iteration table"), ("first", "inside its first iteration")):
        r = run("decompress", tmp_path / f"{name}.aei", "-o", tmp_path / f"{name}.png", "--model", tiny_progressive)
        assert r.exit_code == 1, (name, r.output)
        assert f"aetool: failed: {tmp_path / f'{name}.aei'}: truncated: " in r.stderr and says in r.stderr
        assert "Traceback" not in r.output and not (tmp_path / f"{name}.png").exists()
    r = run("info", tmp_path / "cut.aei", "--json")
    d = json.loads(r.stdout)
    assert r.exit_code == 0 and d["cut"] and d["iterations"] == 2 and d["iterations_declared"] == 4


# ---------------------------------------------------------------------------------------------------
# 3. truncation


def test_truncation_keeps_valid_checksums_and_the_same_bits(codec, files):
    from aetool.tasks.progressive import truncate_file

    for data, _, _ in files.values():
        e = unpack(data)
        for k in range(1, ITERATIONS + 1):
            t = truncate(e, k)
            u = unpack(t)
            assert not u.cut and u.declared == k and u.size == len(t)
            assert u.iterations == e.iterations[:k] and u.psnr == e.psnr[:k]
            same = ("model_name", "model_sha256_prefix", "width", "height", "channels", "bit_depth", "bits",
                    "coder", "has_alpha", "alpha", "icc", "exif")
            assert all(getattr(u, f) == getattr(e, f) for f in same)
            assert truncate(u, k) == t  # truncating is idempotent
            for j in range(1, k + 1):
                assert truncate(u, j) == truncate(e, j)
            assert [b.tolist() for b in codec.decode_bits(u, k)] == [b.tolist() for b in codec.decode_bits(e, k)]
        assert truncate(e, ITERATIONS) == data
        for bad in (0, ITERATIONS + 1):
            with pytest.raises(ValueError):
                truncate(e, bad)
    # a cut file truncates to a whole file of its complete iterations
    data = files["rgb"][0]
    e = unpack(data)
    cut = unpack(data[:prefix_ends(e)[2] - 1])
    whole, info = truncate_file(cut, iterations=4)
    assert whole == truncate(e, 2) and info["iterations"] == 2 and "cut" in info["note"]


def test_truncate_command(tiny_progressive, files, tmp_path):
    data, pixels, _ = files["rgb"]
    h, w, _ = pixels.shape
    e = unpack(data)
    sizes = progressive_sizes(e)
    src = tmp_path / "a.aei"
    src.write_bytes(data)
    before = src.stat().st_mtime_ns
    cases = [(("--iterations", 2), 2), (("--bpp", (sizes[1] + 0.5) * 8 / (w * h)), 2),
             (("--max-bytes", sizes[2]), 3), (("--max-bytes", sizes[2] - 1), 2), (("--iterations", 9), 4)]
    for n, (option, k) in enumerate(cases):
        out = tmp_path / f"out{n}.aei"
        r = run("truncate", src, "-o", out, *option, "--json")
        assert r.exit_code == 0, (option, r.output)
        rec = json_lines(r.stdout)[0]
        assert rec["status"] == "ok" and rec["iterations"] == k and rec["bytes"] == sizes[k - 1], option
        assert out.read_bytes() == truncate(e, k)
        if k == 4:
            assert "the file holds 4 iterations" in rec["note"]
    r = run("truncate", src, "-o", tmp_path / "one.aei", "--max-bytes", sizes[0] - 1, "--json")
    rec = json_lines(r.stdout)[0]
    assert r.exit_code == 0 and rec["iterations"] == 1 and "below the first iteration" in rec["note"]
    assert (tmp_path / "one.aei").read_bytes() == truncate(e, 1)
    # the input is never overwritten
    r = run("truncate", src, "-o", src, "--iterations", 1)
    assert r.exit_code == 1 and "would overwrite the input" in r.stderr
    r = run("truncate", tmp_path, "-o", tmp_path, "--iterations", 1)
    assert r.exit_code == 1 and "would overwrite the input" in r.stderr
    assert src.read_bytes() == data and src.stat().st_mtime_ns == before
    r = run("truncate", src, "-o", tmp_path / "x.aei")
    assert r.exit_code == 2 and "give one of --iterations, --bpp or --max-bytes" in r.output
    r = run("truncate", src, "-o", tmp_path / "x.aei", "--iterations", 1, "--bpp", 1)
    assert r.exit_code == 2


def hyperprior_file() -> bytes:
    """A version-1 (hyperprior) file: valid container, made without a model."""
    y, z = latent_shapes(16, 16, 8, 4)
    return pack(EncodedImage(model_name="codec-rgb", model_sha256_prefix=b"\0" * 8, width=16, height=16, channels=3,
                             bit_depth=8, quality=4.0, y_shape=y, z_shape=z, hyper_gain=(1, 2, 3, 4),
                             z_stream=b"zzzz", y_stream=b"yyyy"))


def test_truncate_a_batch_with_bad_files_goes_on(files, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good = files["rgb"][0]
    (src / "good.aei").write_bytes(good)
    (src / "junk.aei").write_bytes(MAGIC + bytes([PROGRESSIVE_VERSION]) + b"junk" * 20)
    (src / "v1.aei").write_bytes(hyperprior_file())
    (src / "empty.aei").write_bytes(b"")
    r = run("truncate", src, "-o", tmp_path / "out", "--iterations", 2, "--json")
    assert r.exit_code == 1, r.output
    recs = {Path(x["input"]).stem: x for x in json_lines(r.stdout) if "input" in x}
    assert recs["good"]["status"] == "ok"
    assert all(recs[n]["status"] == "failed" and "\n" not in recs[n]["error"] for n in ("junk", "v1", "empty"))
    assert "damaged" in recs["junk"]["error"] and "not a progressive file" in recs["v1"]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.aei"]
    assert (tmp_path / "out" / "good.aei").read_bytes() == truncate(unpack(good), 2)
    assert (src / "good.aei").read_bytes() == good and "Traceback" not in r.output


# ---------------------------------------------------------------------------------------------------
# 4. determinism


SUBPROCESS = """
import sys, numpy as np, torch
torch.set_num_threads(1)
from aetool.container import unpack
from aetool.tasks.progressive import ProgressiveCodec
codec = ProgressiveCodec(sys.argv[1])
data = codec.encode_to_target(np.load(sys.argv[2]))[0]
open(sys.argv[3] + ".aei", "wb").write(data)
e = unpack(data)
np.save(sys.argv[3] + "-bits.npy", np.stack(codec.decode_bits(e, len(e.iterations))))
np.save(sys.argv[3] + "-pixels.npy", codec.decode(e)[0].pixels)
"""


def test_encoding_and_decoding_bits_are_identical_across_threads_and_processes(codec, tiny_progressive, tmp_path):
    import torch

    pixels = photo(64, 80, seed=5)
    threads = torch.get_num_threads()
    made = {}
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            data = codec.encode_to_target(pixels)[0]
            e = unpack(data)
            made[n] = (data, np.stack(codec.decode_bits(e, ITERATIONS)), codec.decode(e)[0].pixels)
    finally:
        torch.set_num_threads(threads)
    np.save(tmp_path / "img.npy", pixels)
    subprocess.run([sys.executable, "-c", SUBPROCESS, str(tiny_progressive), str(tmp_path / "img.npy"),
                    str(tmp_path / "sub")], check=True, cwd=REPO, capture_output=True)
    data, bits, decoded = made[1]
    assert made[2][0] == data == (tmp_path / "sub.aei").read_bytes()
    assert bits.shape == (ITERATIONS, BITS, 4, 5) and 0 < bits.mean() < 1
    np.testing.assert_array_equal(made[2][1], bits)
    np.testing.assert_array_equal(np.load(tmp_path / "sub-bits.npy"), bits)
    np.testing.assert_array_equal(np.load(tmp_path / "sub-pixels.npy"), decoded)


def test_decode_bits_are_the_encoders_bits(codec):
    """What the range coder gives back is exactly what the network produced."""
    pixels = photo(48, 64, seed=6)
    codes, _ = codec.encode_all(pixels)
    e = unpack(codec.encode_to_target(pixels)[0])
    for k in range(1, ITERATIONS + 1):
        got = codec.decode_bits(e, k)
        assert len(got) == k and all(np.array_equal(a, b) for a, b in zip(got, codes))


# ---------------------------------------------------------------------------------------------------
# 5. damaged and fuzzed files


def refused(data, **kw) -> str:
    with pytest.raises(ContainerError) as err:
        unpack(data, **kw)
    text = str(err.value)
    assert text and "\n" not in text
    return text


def test_a_flipped_byte_anywhere_is_named_by_where_it_is():
    e = unpack(GOLDEN_BYTES)
    header_end = PROGRESSIVE_HEADER_SIZE
    metadata_end = header_end + len(e.model_name) + len(e.icc) + len(e.exif) + 4
    end = table_end(e)
    rng = random.Random(3)
    for i in range(len(GOLDEN_BYTES)):
        raw = bytearray(GOLDEN_BYTES)
        raw[i] ^= rng.randrange(1, 256)
        text = refused(bytes(raw))
        if i < 4:
            assert text.startswith("not an aetool compressed file")
        elif i == 4:
            assert "version" in text or text.startswith(("damaged", "truncated", "invalid"))
        elif i < header_end:
            assert text == "damaged: the header checksum does not match (a byte was changed)"
        elif i < metadata_end:
            assert text == "damaged: the checksum of the name and metadata does not match (a byte was changed)"
        elif i < end:
            assert text == "damaged: the iteration table's checksum does not match (a byte was changed)"
        else:
            k = 1 if i < end + len(e.iterations[0]) else 2
            assert text == f"damaged: the checksum of iteration {k} of 2 does not match (a byte was changed)"


def test_damage_in_a_real_file(files):
    data = files["alpha"][0]
    e = unpack(data)
    ends = prefix_ends(e)
    for k in range(ITERATIONS):  # a byte changed inside each complete iteration
        raw = bytearray(data)
        raw[ends[k] - 2] ^= 0x40
        assert refused(bytes(raw)) == (f"damaged: the checksum of iteration {k + 1} of {ITERATIONS} does not match "
                                       "(a byte was changed)")
        # ... even when the file is also cut after it
        if k + 1 < ITERATIONS:
            assert "damaged: the checksum of iteration" in refused(bytes(raw[:ends[k + 1] - 1]))
    for extra in (b"\0", b"more bytes" * 10):
        assert refused(data + extra) == (f"damaged: the file has {len(extra):,} bytes more than the {len(data):,} "
                                         "its header declares (something was appended to it)")
    bomb = pack_progressive(dataclasses.replace(e, width=20_000, height=20_000, declared=0, size=0))
    with pytest.raises(ContainerTooLargeError, match=r"declares 20000x20000 pixels \(400 MP\), above the limit"):
        unpack(bomb, max_pixels=10_000_000)
    with pytest.raises(ContainerTooLargeError):
        unpack(bomb[:PROGRESSIVE_HEADER_SIZE], max_pixels=10_000_000)  # from the fixed header alone
    raw = bytearray(data)
    raw[4] = PROGRESSIVE_VERSION + 1
    assert refused(bytes(raw)).startswith("written by a newer aetool (format version 3")
    assert refused(b"") == "the file is empty (0 bytes)"


def fuzz_cases(rng: random.Random, files: list[bytes], n: int):
    """(kind, bytes): cuts, flips, random bytes behind a version-2 magic, crafted headers and tables
    with valid checksums, insertions and appended bytes. Only cuts and crafted files may be valid."""
    kinds = ("cut", "flip", "junk", "crafted header", "crafted table", "insert", "append")
    for i in range(n):
        data = rng.choice(files)
        kind = kinds[i % len(kinds)]
        e = unpack(data)
        raw = bytearray(data)
        if kind == "cut":
            cut = rng.choice([rng.randrange(len(data)), rng.randrange(min(80, len(data))), len(data) - 1,
                              table_end(e) + rng.randrange(-3, 4)])
            yield kind, data[:max(0, cut)]
        elif kind == "flip":
            for pos in rng.sample(range(len(raw)), rng.randrange(1, 4)):
                raw[pos] ^= rng.randrange(1, 256)
            yield kind, bytes(raw)
        elif kind == "junk":
            yield kind, MAGIC + bytes([PROGRESSIVE_VERSION]) + rng.randbytes(rng.randrange(0, 300))
        elif kind == "crafted header":  # random fixed fields with a valid header checksum
            for _ in range(rng.randrange(1, 4)):
                raw[rng.randrange(5, 40)] = rng.randrange(256)
            raw[40:44] = struct.pack("<I", zlib.crc32(raw[:40]))
            yield kind, bytes(raw)
        elif kind == "crafted table":  # random table entries with a valid table checksum
            start = table_end(e) - 4 - 10 * len(e.iterations)
            for _ in range(rng.randrange(1, 3)):
                raw[rng.randrange(start, start + 10 * len(e.iterations))] = rng.randrange(256)
            raw[table_end(e) - 4:table_end(e)] = struct.pack("<I", zlib.crc32(raw[start:table_end(e) - 4]))
            yield kind, bytes(raw)
        elif kind == "insert":
            cut = rng.randrange(len(data))
            yield kind, data[:cut] + rng.randbytes(rng.randrange(1, 20)) + data[cut:]
        else:
            yield kind, data + rng.randbytes(rng.randrange(1, 20))


def test_fuzz(codec, files):
    originals = [data for data, _, _ in files.values()] + [GOLDEN_BYTES]
    rng = random.Random(20261204)
    refusals: dict[str, int] = {}
    decoded = 0
    start = time.perf_counter()
    with deadline(60):
        for kind, case in fuzz_cases(rng, originals, 700):
            try:
                e = unpack(case, max_pixels=100_000)
            except ContainerError as exc:
                assert "\n" not in str(exc) and str(exc)
                refusals[kind] = refusals.get(kind, 0) + 1
                continue
            assert kind in ("cut", "crafted header", "crafted table"), (kind, case)
            if kind == "cut":  # what a cut file holds is what the whole one starts with
                assert any(o.startswith(case) and unpack(o).iterations[:len(e.iterations)] == e.iterations
                           for o in originals)
            try:
                pic, info = codec.decode(e)
            except ImageError as exc:
                assert "\n" not in str(exc) and str(exc)
            else:
                decoded += 1
                assert pic.pixels.shape == (e.height, e.width, e.channels) and np.isfinite(pic.pixels).all()
    elapsed = time.perf_counter() - start
    assert all(refusals[k] == 100 for k in ("flip", "junk", "insert", "append")), refusals
    assert refusals["crafted header"] > 50 and 0 < refusals["cut"] < 100, refusals
    assert decoded > 10 and elapsed < 30, (decoded, elapsed)


def test_crafted_iterations_with_valid_checksums_fail_in_one_line_or_decode(codec, files):
    """Streams that the range coder did not write (random bytes, lengths that are not whole words,
    empty) behind valid checksums: an ImageError in one line, or a picture; never anything else."""
    e = unpack(files["rgb"][0])
    rng = random.Random(7)
    outcomes = {"refused": 0, "decoded": 0}
    with deadline(30):
        for n in range(60):
            its = list(e.iterations)
            k = rng.randrange(ITERATIONS)
            its[k] = rng.randbytes(rng.choice([0, 1, 3, 4, 8, 12, len(its[k]), 64, rng.randrange(1, 200)]))
            data = pack_progressive(dataclasses.replace(e, iterations=tuple(its), declared=0, size=0))
            try:
                pic, _ = codec.decode(unpack(data))
                outcomes["decoded"] += 1
                assert np.isfinite(pic.pixels).all()
            except ImageError as exc:
                assert "\n" not in str(exc) and str(exc)
                outcomes["refused"] += 1
    assert outcomes["refused"] > 0, outcomes
    for fields, says in (({"bits": BITS + 1}, "bits per position"),
                         ({"model_name": "another-model"}, "needs the model 'another-model'"),
                         ({"model_sha256_prefix": b"\1" * 8}, "needs the model 'tiny-progressive'")):
        data = pack_progressive(dataclasses.replace(e, declared=0, size=0, **fields))
        with pytest.raises(ImageError, match=says):
            codec.decode(unpack(data))
    many = dataclasses.replace(e, iterations=e.iterations * 2, psnr=e.psnr * 2, declared=0, size=0)
    with pytest.raises(ImageError, match="damaged: the file has .* 8 iterations, but model"):
        codec.decode(unpack(pack_progressive(many)))


def test_load_reads_a_cut_file_and_refuses_an_appended_one(files, tmp_path):
    data = files["rgb"][0]
    e = unpack(data)
    ends = prefix_ends(e)
    path = tmp_path / "a.aei"
    for cut in (ends[0], ends[1] + 1, len(data)):
        path.write_bytes(data[:cut])
        assert load(path) == unpack(data[:cut])
    path.write_bytes(data + b"\0" * 1000)
    with pytest.raises(ContainerError, match="bytes more than"):
        load(path)


def test_load_a_file_whose_table_ends_inside_the_first_64_bytes(tmp_path):
    e = ProgressiveImage(model_name="m", model_sha256_prefix=b"\0" * 8, width=16, height=16, channels=3,
                         bit_depth=8, bits=4, iterations=(b"\1\2\3\4",))
    data = pack_progressive(e)
    assert table_end(e) < 64 and not unpack(data).cut
    (tmp_path / "m.aei").write_bytes(data)
    assert load(tmp_path / "m.aei") == unpack(data)


# ---------------------------------------------------------------------------------------------------
# 6. info and decompress limits


def test_info_shows_the_iteration_table(files, tmp_path):
    data = files["alpha"][0]
    e = unpack(data)
    sizes = progressive_sizes(e)
    (tmp_path / "a.aei").write_bytes(data)
    r = run("info", tmp_path / "a.aei", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["format_version"] == PROGRESSIVE_VERSION and d["model"] == "tiny-progressive" and not d["cut"]
    assert (d["width"], d["height"], d["bits"], d["iterations"], d["alpha"]) == (45, 33, BITS, ITERATIONS, True)
    assert d["bytes"] == len(data)
    table = d["iteration_table"]
    assert [row["iteration"] for row in table] == [1, 2, 3, 4]
    assert [row["file_bytes"] for row in table] == sizes
    assert [row["bytes"] for row in table] == [len(it) for it in e.iterations]
    assert [row["psnr"] for row in table] == list(e.psnr)
    assert table[-1]["bits_per_pixel"] == round(len(data) * 8 / (45 * 33), 4)
    r = run("info", tmp_path / "a.aei")
    assert r.exit_code == 0, r.output
    assert f"progressive, {ITERATIONS} iterations of {BITS} bits" in r.stdout and "format version 2" in r.stdout
    assert "iteration" in r.stdout and "PSNR" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines()[3:]]
    assert [int(row[0]) for row in rows] == [1, 2, 3, 4]
    assert [int(row[2].replace(",", "")) for row in rows] == sizes
    assert [float(row[4]) for row in rows] == list(e.psnr)


def test_decompress_limits_choose_the_iterations(codec, tiny_progressive, tiny_codec, files, tmp_path):
    data, pixels, _ = files["grey"]
    h, w, _ = pixels.shape
    e = unpack(data)
    sizes = prefix_ends(e)  # decompress counts the first bytes of the file, as a stream delivers them
    (tmp_path / "a.aei").write_bytes(data)
    cases = [(("--iterations", 2), 2, None), (("--bpp", sizes[1] * 8 / (w * h) + 1e-6), 2, None),
             (("--bpp", (sizes[1] - 1) * 8 / (w * h)), 1, None), (("--max-bytes", sizes[2]), 3, None),
             (("--max-bytes", f"{sizes[2] - 1}B"), 2, None),
             (("--max-bytes", sizes[0] - 1), 1, "below the first iteration"),
             (("--iterations", 99), 4, "the file holds 4 iterations; decoded all of them"), ((), 4, None)]
    for n, (option, k, says) in enumerate(cases):
        out = tmp_path / f"out{n}.png"
        r = run("decompress", tmp_path / "a.aei", "-o", out, "--model", tiny_progressive, *option, "--json")
        assert r.exit_code == 0, (option, r.output)
        rec = json_lines(r.stdout)[0]
        assert rec["iterations"] == k and rec["bytes_used"] == sizes[k - 1], (option, rec)
        assert (says in rec["warning"]) if says else "warning" not in rec, (option, rec)
        if says:
            assert says in r.stderr
        np.testing.assert_array_equal(png_pixels(out), as_8bit(codec.decode(e, iterations=k)[0].pixels))
    assert Image.open(tmp_path / "out0.png").mode == "L"
    r = run("decompress", tmp_path / "a.aei", "-o", tmp_path / "x.png", "--model", tiny_progressive,
            "--iterations", 1, "--bpp", 1)
    assert r.exit_code == 2
    # a hyperprior (version-1) file is decoded whole, and the record says why the limit did nothing
    from aetool import compress

    (tmp_path / "v1.aei").write_bytes(compress(Image.fromarray(structured_image(32, 32)), model=str(tiny_codec)))
    r = run("decompress", tmp_path / "v1.aei", "-o", tmp_path / "v1.png", "--model", tiny_codec, "--iterations", 2,
            "--json")
    assert r.exit_code == 0, r.output
    assert "not a progressive file: decoded whole" in json_lines(r.stdout)[0]["note"]
    # and a progressive file with the hyperprior codec as --model fails in one line
    r = run("decompress", tmp_path / "a.aei", "-o", tmp_path / "wrong.png", "--model", tiny_codec)
    assert r.exit_code == 1 and "needs a progressive codec" in r.stderr and "Traceback" not in r.output


def test_compress_command_and_api_keep_the_asked_iterations(codec, tiny_progressive, tmp_path):
    from aetool import compress, decompress

    img = structured_image(40, 56, seed=4)
    Image.fromarray(img).save(tmp_path / "a.png")
    r = run("compress", tmp_path / "a.png", "-o", tmp_path / "a.aei", "--model", tiny_progressive, "--quality", 2,
            "--json")
    assert r.exit_code == 0, r.output
    rec = json_lines(r.stdout)[0]
    e = unpack((tmp_path / "a.aei").read_bytes())
    assert rec["iterations"] == len(e.iterations) == e.declared == 2 and rec["model"] == "tiny-progressive"
    whole = unpack(codec.encode_to_target(img.astype(np.float32) / 255)[0])
    assert e.iterations == whole.iterations[:2]  # fewer iterations: the first ones, the same bits
    sizes = progressive_sizes(whole)
    r = run("compress", tmp_path / "a.png", "-o", tmp_path / "s.aei", "--model", tiny_progressive, "--size",
            sizes[2], "-q")
    assert r.exit_code == 0 and (tmp_path / "s.aei").read_bytes() == truncate(whole, 3)
    for bad in ("5", "1.5"):
        r = run("compress", tmp_path / "a.png", "-o", tmp_path / "b.aei", "--model", tiny_progressive, "--quality",
                bad)
        assert r.exit_code == 2 and "number of iterations" in r.output
    data = compress(Image.fromarray(img), quality=3, model=str(tiny_progressive))
    assert unpack(data).iterations == whole.iterations[:3]
    back = decompress(data, model=str(tiny_progressive), iterations=1)
    assert back.size == (56, 40) and back.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(back), as_8bit(codec.decode(whole, iterations=1)[0].pixels))


def test_decompress_max_bytes_decodes_what_the_first_bytes_of_the_file_hold(codec, files):
    data = files["rgb"][0]
    e = unpack(data)
    for k, end in enumerate(prefix_ends(e)[:-1], 1):
        assert len(unpack(data[:end]).iterations) == k
        assert codec.decode(e, max_bytes=end)[1]["iterations"] == k


def test_a_psnr_target_that_is_reached_gives_no_warning(codec):
    pixels = photo(40, 48, seed=10)
    _, psnrs = codec.encode_all(pixels)
    assert psnrs[0] > psnrs[-1] + 1  # the tiny random model gets worse with each iteration
    target = (psnrs[0] + psnrs[-1]) / 2
    data, info = codec.encode_to_target(pixels, psnr=target)
    assert info["iterations"] == len(unpack(data).iterations) == 1 and info["psnr_estimate"] >= target
    assert "warning" not in info, info["warning"]


# ---------------------------------------------------------------------------------------------------
# 7. the layout of version 2, pinned

# If this changes, the layout changed: that needs a new format version (docs/format.md) and a reader
# that still reads this one. tests/test_container.py pins version 1 the same way.
GOLDEN = ProgressiveImage(model_name="gold", model_sha256_prefix=hashlib.sha256(b"weights").digest()[:8], width=17,
                          height=33, channels=3, bit_depth=8, bits=32,
                          iterations=(b"\x01\x02\x03\x04", b"\x05\x06\x07\x08\x09\x0a\x0b\x0c"), psnr=(25.5, None),
                          icc=b"I", exif=b"E")
GOLDEN_HEX = (
    "8b414549" "02"  # magic, version 2
    "00" "01" "03" "08" "04"  # flags, coder, channels, bit depth, name length
    "02" "20"  # 2 iterations, 32 bits per 16x16 pixels
    "11000000" "21000000"  # width 17, height 33
    "9a129038d9a00aed"  # sha256(b"weights")[:8]
    "00000000" "01000000" "01000000"  # alpha, icc, exif lengths
    "2aee7b28"  # header CRC32
    "676f6c64" "49" "45"  # "gold", icc, exif
    "c91472a6"  # CRC32 of the name and metadata
    "04000000" "cdfb3cb6" "f609"  # iteration 1: 4 bytes, its CRC32, PSNR 25.50 dB
    "08000000" "f2c0baf9" "0000"  # iteration 2: 8 bytes, its CRC32, no PSNR
    "fbe4b490"  # CRC32 of the table
    "01020304" "05060708090a0b0c"  # the iterations
)
GOLDEN_BYTES = bytes.fromhex(GOLDEN_HEX)


def test_golden_layout_version_2():
    data = pack_progressive(GOLDEN)
    assert data.hex() == GOLDEN_HEX
    assert data[40:44] == struct.pack("<I", zlib.crc32(data[:40]))  # the header
    assert data[50:54] == struct.pack("<I", zlib.crc32(data[44:50]))  # the name and metadata
    assert data[74:78] == struct.pack("<I", zlib.crc32(data[54:74]))  # the table
    assert data[58:62] == struct.pack("<I", zlib.crc32(b"\x01\x02\x03\x04"))  # iteration 1
    assert unpack(GOLDEN_BYTES) == dataclasses.replace(GOLDEN, declared=2, size=len(GOLDEN_BYTES))
    assert progressive_sizes(GOLDEN) == [len(GOLDEN_BYTES) - 18, len(GOLDEN_BYTES)]
    assert truncate(GOLDEN, 1) == bytes.fromhex(
        "8b414549020001030804012011000000210000009a129038d9a00aed000000000100000001000000"
        + struct.pack("<I", zlib.crc32(bytes.fromhex(
            "8b414549020001030804012011000000210000009a129038d9a00aed000000000100000001000000"))).hex()
        + "676f6c644945c91472a6" "04000000cdfb3cb6f609"
        + struct.pack("<I", zlib.crc32(bytes.fromhex("04000000cdfb3cb6f609"))).hex() + "01020304")


def test_golden_layout_version_1_still_reads():
    import test_container

    test_container.test_golden_layout()


# ---------------------------------------------------------------------------------------------------
# 8. the shipped model


SHIPPED = REPO / "weights" / "compress-progressive.safetensors"


def test_shipped_model_psnr_rises_with_each_iteration():
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED.relative_to(REPO)} is not shipped yet")
    from aetool.tasks.progressive import ProgressiveCodec

    codec = ProgressiveCodec("compress-progressive")
    pixels = photo(96, 96, seed=8)
    data, info = codec.encode_to_target(pixels)
    e = unpack(data)
    n = len(e.iterations)
    assert n == codec.model.iterations == info["iterations"] and n >= 2
    values = []
    for k in range(1, n + 1):
        pic, dinfo = codec.decode(e, iterations=k)
        values.append(psnr(pic.pixels, pixels))
        assert abs(dinfo["psnr_estimate"] - values[-1]) < 0.011
    # The shipped model's last iterations add almost nothing (27.07 dB on its validation crops after
    # 13-16 iterations, docs/training.md): strictly rising is required where they still add.
    assert all(b > a for a, b in zip(values[:12], values[1:12])), values
    assert all(b > a - 0.01 for a, b in zip(values, values[1:])), values


@pytest.mark.xfail(strict=True, reason="the shipped compress-progressive (95 CPU minutes) saturates: its 16th "
                   "iteration gives 0.001 dB less than its 15th on this image; a longer training is the fix "
                   "(issue #13, blocked)")
def test_shipped_model_psnr_rises_with_every_iteration():
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED.relative_to(REPO)} is not shipped yet")
    from aetool.tasks.progressive import ProgressiveCodec

    codec = ProgressiveCodec("compress-progressive")
    pixels = photo(96, 96, seed=8)
    values = [psnr(pic.pixels, pixels) for pic in codec.decode_each(unpack(codec.encode_to_target(pixels)[0]))]
    assert all(b > a for a, b in zip(values, values[1:])), values


@pytest.mark.parametrize("command", ["truncate", "compress", "decompress"])
def test_a_read_only_file_system_stops_the_progressive_commands(tiny_progressive, files, tmp_path, monkeypatch,
                                                                  command):
    """Writing into a read-only file system (EROFS) stops truncate, progressive compress and its
    decompress as it stops the other commands (the engine's writer): exit 1, the reason in the JSON
    summary, the files not yet started left alone, nothing written, no traceback."""
    src = tmp_path / "in"
    src.mkdir()
    for k in range(5):
        if command == "compress":
            Image.fromarray(structured_image(40, 48, seed=k)).save(src / f"a{k}.png")
        else:
            (src / f"a{k}.aei").write_bytes(files["rgb"][0])
    args = {"truncate": ("--iterations", 2)}.get(command, ("--model", tiny_progressive))
    assert_read_only_file_system_stops(monkeypatch, run, command, src, "-o", tmp_path / "out", *args, "--json")


def test_a_tile_out_of_gpu_memory_runs_on_the_cpu(tiny_progressive, monkeypatch):
    """The tile size is part of the format, so a tile that does not fit in a GPU's memory cannot be
    halved: it runs on a CPU copy of the model instead. Simulated: the codec's own model (on a
    device other than "cpu") raises CUDA out-of-memory errors; the file and every decode equal
    those of a plain CPU run. Out of memory on the CPU itself is not retried."""
    import torch

    from aetool.models.recurrent import RecurrentCodec
    from aetool.tasks.progressive import ProgressiveCodec

    pixels = photo(37, 53, seed=13)
    plain = ProgressiveCodec(str(tiny_progressive))
    plain.tile = 32
    want = plain.encode_to_target(pixels)[0]
    want_each = [p.pixels for p in plain.decode_each(unpack(want))]

    codec = ProgressiveCodec(str(tiny_progressive))
    codec.tile = 32
    primary = codec.model
    codec.device = "cpu:0"  # stands for a GPU: not the CPU fallback's device
    failed = []
    for name in ("code", "reconstructions"):
        real = getattr(RecurrentCodec, name)

        def out_of_memory(self, *args, _real=real, _name=name, **kwargs):
            if self is primary:
                failed.append(_name)
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(RecurrentCodec, name, out_of_memory)
    got = codec.encode_to_target(pixels)[0]
    assert got == want and "code" in failed
    e = unpack(got)
    for k, pic in enumerate(codec.decode_each(e), 1):
        np.testing.assert_array_equal(pic.pixels, want_each[k - 1])
        np.testing.assert_array_equal(codec.decode(e, iterations=k)[0].pixels, want_each[k - 1])
    assert "reconstructions" in failed
    codec.device = "cpu"
    with pytest.raises(torch.cuda.OutOfMemoryError):
        codec.encode_to_target(pixels)
