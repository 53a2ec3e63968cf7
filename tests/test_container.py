"""The .aei container (aetool/container.py, docs/format.md): round trips, every refusal and its
message, a pinned golden file, and a fuzz of truncations, flips and crafted headers."""
from __future__ import annotations

import dataclasses
import hashlib
import random
import struct
import time
import tracemalloc
import zlib

import pytest

from aetool.container import (EXTENSION, FIXED_HEADER_SIZE, FORMAT_VERSION, HYPERPRIOR_VERSION, MAGIC, MAX_SIDE,
                              SECTIONS, ContainerError, ContainerTooLargeError, EncodedImage, describe,
                              latent_shapes, load, pack, packed_size, quantize_quality, unpack)
from aetool.errors import EXIT_SOME_FAILED, ImageError, ImageTooLargeError, exit_code_for

PNG = b"\x89PNG\r\n\x1a\n"


def make(width=17, height=33, channels=3, y_channels=8, z_channels=4, seed=0, **kw) -> EncodedImage:
    rng = random.Random(seed)
    y_shape, z_shape = latent_shapes(height, width, y_channels, z_channels)
    fields = dict(model_name="codec-rgb", model_sha256_prefix=hashlib.sha256(b"weights").digest()[:8],
                  width=width, height=height, channels=channels, bit_depth=8, quality=4.25,
                  y_shape=y_shape, z_shape=z_shape,
                  hyper_gain=tuple(rng.randrange(65536) for _ in range(z_channels)),
                  z_stream=rng.randbytes(rng.randrange(1, 40)), y_stream=rng.randbytes(rng.randrange(1, 400)))
    fields.update(kw)
    return EncodedImage(**fields)


def with_alpha(e: EncodedImage, n: int = 50) -> EncodedImage:
    return dataclasses.replace(e, has_alpha=True, alpha=PNG + bytes(range(n)))


def crc_fixed(raw: bytearray) -> bytearray:
    """Recompute both checksums after an edit, as a crafted (not damaged) file would have them."""
    raw[60:64] = struct.pack("<I", zlib.crc32(raw[:60]))
    raw[-4:] = struct.pack("<I", zlib.crc32(raw[:-4]))
    return raw


VARIANTS = [
    make(1, 1, z_channels=1),
    make(17, 33),
    make(64, 64, channels=1, bit_depth=16, quality=1.0),
    make(65, 129, quality=8.0, icc=b"icc-profile" * 40),
    make(640, 480, exif=b"Exif\x00\x00II*\x00" + bytes(30), icc=b"x" * 3000),
    with_alpha(make(33, 17)),
    with_alpha(make(5, 7, channels=1), 3),
    make(3, 3, model_name="ü" * 127 + "x"),  # 255 bytes of UTF-8
    make(2, 9, z_stream=b"", y_stream=b""),
    make(1000, 1, quality=0.001, y_channels=320, z_channels=192),
]


@pytest.mark.parametrize("e", VARIANTS)
def test_round_trip(e):
    data = pack(e)
    assert data[:4] == MAGIC and data[4] == HYPERPRIOR_VERSION  # version-1 files (the hyperprior codec)
    assert len(data) == packed_size(e)
    assert unpack(data) == e
    assert unpack(bytearray(data)) == e and unpack(memoryview(data)) == e
    assert pack(unpack(data)) == data


def test_latent_shapes_rule():
    assert latent_shapes(1, 1, 192, 128) == ((192, 4, 4), (128, 1, 1))
    assert latent_shapes(64, 64, 8, 4) == ((8, 4, 4), (4, 1, 1))
    assert latent_shapes(65, 128, 8, 4) == ((8, 8, 8), (4, 2, 2))
    assert latent_shapes(480, 640, 96, 64) == ((96, 32, 40), (64, 8, 10))
    assert latent_shapes(MAX_SIDE, 1, 1, 1)[0][1] <= 65535
    assert latent_shapes(MAX_SIDE + 1, 1, 1, 1)[0][1] > 65535


def test_quality_is_thousandths():
    assert quantize_quality(3.14159) == 3.142
    e = make(quality=quantize_quality(6.66666))
    assert unpack(pack(e)).quality == 6.667
    with pytest.raises(ValueError, match="quantize_quality"):
        pack(make(quality=2.0004))
    with pytest.raises(ValueError, match="quality"):
        pack(make(quality=-1.0))


# A pinned file: if this changes, the layout changed, and that needs a new FORMAT_VERSION
# (docs/format.md, "Version policy") and a reader that still reads this one.
GOLDEN = make(17, 33, y_channels=2, z_channels=2, seed=7, model_name="gold", quality=2.5,
              z_stream=b"ZZ", y_stream=b"YYYY", icc=b"I", exif=b"E",
              hyper_gain=(1, 65535))
GOLDEN_HEX = (
    "8b414549" "01"  # magic, version
    "00" "01" "03" "08" "04" "c409"  # flags, coder, channels, bit depth, name length, quality 2500
    "11000000" "21000000"  # width 17, height 33
    "020004000400" "020001000100"  # y (2, 4, 4), z (2, 1, 1)
    "9a129038d9a00aed"  # sha256(b"weights")[:8]
    "02000000" "04000000" "00000000" "01000000" "01000000"  # z, y, alpha, icc, exif lengths
    "6c2e967b"  # header CRC32
    "676f6c64" "0100ffff"  # "gold", hyper gains 1, 65535
    "5a5a" "59595959" "49" "45"  # sections
    "cbe8b029"  # CRC32 of everything before
)


def test_golden_layout():
    data = pack(GOLDEN)
    assert data.hex() == GOLDEN_HEX
    assert data[60:64] == struct.pack("<I", zlib.crc32(data[:60]))
    assert data[-4:] == struct.pack("<I", zlib.crc32(data[:-4]))
    assert unpack(bytes.fromhex(GOLDEN_HEX)) == GOLDEN


def message(data, **kw) -> str:
    with pytest.raises(ContainerError) as info:
        unpack(data, **kw)
    text = str(info.value)
    assert "\n" not in text and text
    return text


def test_errors_are_image_errors_with_exit_1():
    err = ContainerError("x")
    assert isinstance(err, ImageError) and exit_code_for(err) == EXIT_SOME_FAILED
    big = ContainerTooLargeError("x")
    assert isinstance(big, ImageTooLargeError) and isinstance(big, ContainerError)


def test_wrong_magic_other_formats():
    png = PNG + b"\x00\x00\x00\rIHDR" + bytes(100)
    assert message(png) == "not an aetool compressed file (wrong magic bytes)"
    assert message(b"hello, this is a text file\n" * 5).startswith("not an aetool compressed file")
    assert message(b"\xff\xd8\xff\xe0" + bytes(100)).startswith("not an aetool compressed file")  # JPEG
    assert message(b"h").startswith("not an aetool compressed file")
    assert message(b"") == "the file is empty (0 bytes)"


def test_newer_and_unknown_versions():
    data = bytearray(pack(make()))
    data[4] = FORMAT_VERSION + 1
    assert message(data) == (f"written by a newer aetool (format version {FORMAT_VERSION + 1}; this aetool reads up "
                             f"to version {FORMAT_VERSION}): upgrade aetool")
    assert message(bytes(data[:5])).startswith("written by a newer aetool")  # refused even when cut short
    data[4] = 0
    assert message(data).startswith("unknown format version 0")


def test_truncated():
    data = pack(make())
    for n in (1, 3, 4, 5, 30, 63):
        assert message(data[:n]) == f"truncated: the file ends at byte {n}, inside its 64-byte header"
    n = len(data) - 1
    assert message(data[:n]) == f"truncated: the file ends at byte {n} but its header declares {len(data)} bytes"
    big = pack(make(y_stream=bytes(20_000)))
    assert message(big[:812]) == f"truncated: the file ends at byte 812 but its header declares {len(big):,} bytes"


def test_appended_bytes():
    data = pack(make())
    assert message(data + b"\x00" * 12).startswith("damaged: the file has 12 bytes more than the")


def test_flipped_bytes_each_position():
    """Every single-byte change anywhere is caught, and named by where it is."""
    data = pack(with_alpha(make(9, 9, icc=b"icc", exif=b"exif")))
    rng = random.Random(1)
    for i in range(len(data)):
        raw = bytearray(data)
        raw[i] ^= rng.randrange(1, 256)
        text = message(raw)
        if i < 4:
            assert text.startswith("not an aetool compressed file")
        elif i == 4:
            assert "format version" in text
        elif i < 64:
            assert text == "damaged: the header checksum does not match (a byte was changed)"
        else:
            assert text == "damaged: the checksum does not match (a byte was changed)"


def test_decompression_bomb():
    e = make(200_000, 200_000, y_stream=b"y", z_stream=b"z")
    data = pack(e)
    assert message(data, max_pixels=250_000_000) == (
        "declares 200000x200000 pixels (40,000 MP), above the limit of 250 MP (raise --max-pixels if you "
        "trust the file)")
    with pytest.raises(ContainerTooLargeError):
        unpack(data, max_pixels=250_000_000)
    assert unpack(data).width == 200_000  # no limit given: the caller's choice
    # The limit is checked from the fixed header alone, before the size: a bare 64-byte header is enough.
    assert message(data[:64], max_pixels=250_000_000).startswith("declares 200000x200000 pixels")


def test_huge_declared_sections_allocate_nothing():
    raw = bytearray(pack(make()))
    struct.pack_into("<5I", raw, 40, *(0xFFFFFFFF, 0xFFFFFFFF, 0, 0xFFFFFFFF, 0xFFFFFFFF))
    crc_fixed(raw)
    tracemalloc.start()
    try:
        text = message(bytes(raw))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text.startswith("truncated: the file ends at byte") and "17,179,869," in text
    assert peak < 200_000


def edited(offset: int, fmt: str, *values, e: EncodedImage | None = None) -> bytes:
    raw = bytearray(pack(e or make()))
    struct.pack_into(fmt, raw, offset, *values)
    return bytes(crc_fixed(raw))


@pytest.mark.parametrize("offset,fmt,values,expected", [
    (12, "<I", (0,), "invalid header: the image is 0x33 pixels (each side must be at least 1)"),
    (16, "<I", (0,), "invalid header: the image is 17x0 pixels (each side must be at least 1)"),
    (7, "<B", (2,), "invalid header: 2 channels (must be 1 or 3)"),
    (8, "<B", (12,), "invalid header: bit depth 12 (must be 8 or 16)"),
    (6, "<B", (9,), "coded with coder 9, which this aetool does not know: upgrade aetool"),
    (5, "<B", (0x80,), "unknown flags 0x80 in the header (written by a newer aetool?): upgrade aetool"),
    (5, "<B", (1,), "invalid header: the alpha flag is set but the alpha section is empty"),
    (12, "<I", (1000,), "invalid header: latent shapes y (8, 4, 4), z (4, 1, 1) (channels, height, width) do not "
                        "fit a 1000x33 image (y must be (8, 4, 64), z (4, 1, 16))"),
    (22, "<H", (13,), "invalid header: latent shapes y (8, 13, 4), z (4, 1, 1) (channels, height, width) do not "
                      "fit a 17x33 image (y must be (8, 4, 4), z (4, 1, 1))"),
    (26, "<H", (0,), "invalid header: latent channels 8 and 0 (each must be 1 to 65535)"),
])
def test_impossible_fields(offset, fmt, values, expected):
    assert message(edited(offset, fmt, *values)) == expected


def test_impossible_fields_after_checksum():
    e = make(model_name="abcd")
    raw = bytearray(pack(e))
    raw[64:68] = b"\xff\xfe\x00a"
    assert message(bytes(crc_fixed(raw))) == "invalid header: the model name is not valid UTF-8"
    raw[64:68] = b"a\nbc"
    assert message(bytes(crc_fixed(raw))) == "invalid header: the model name has control characters"
    raw = bytearray(pack(with_alpha(e)))
    alpha_at = 64 + 4 + 2 * 4 + len(e.z_stream) + len(e.y_stream)
    raw[alpha_at:alpha_at + 8] = b"GIF89a!!"
    assert message(bytes(crc_fixed(raw))) == "invalid alpha section: not a PNG file"
    raw = bytearray(pack(e))
    raw[9] = 0  # empty model name: the rest of the file no longer adds up
    raw = crc_fixed(raw)
    assert message(bytes(raw)) == "invalid header: the model name is empty"


def test_pack_refuses_bad_values():
    with pytest.raises(ValueError, match="8 bytes"):
        pack(make(model_sha256_prefix=b"abc"))
    with pytest.raises(ValueError, match="255"):
        pack(make(model_name="x" * 256))
    with pytest.raises(ValueError, match="empty"):
        pack(dataclasses.replace(make(), has_alpha=True))
    with pytest.raises(ValueError, match="PNG"):
        pack(dataclasses.replace(make(), has_alpha=True, alpha=b"raw"))
    with pytest.raises(ValueError, match="hyper_gain"):
        pack(make(hyper_gain=(1, 2)))
    with pytest.raises(ValueError, match="hyper_gain"):
        pack(make(hyper_gain=(1, 2, 3, 70000)))
    with pytest.raises(ValueError, match="do not fit"):
        pack(make(y_shape=(8, 1, 1)))
    with pytest.raises(ValueError, match="channels"):
        pack(make(channels=4))
    with pytest.raises(ContainerError, match="at most 1,048,512 pixels a side"):
        pack(make(MAX_SIDE + 1, 1))


def test_describe():
    e = with_alpha(make(640, 480, icc=b"p" * 100), 20)
    d = describe(e)
    total = len(pack(e))
    assert d["format_version"] == HYPERPRIOR_VERSION
    assert d["model"] == "codec-rgb" and d["model_sha256_prefix"] == hashlib.sha256(b"weights").hexdigest()[:16]
    assert d["coder"] == "constriction range coder, 24-bit precision" and d["coder_id"] == 1
    assert (d["width"], d["height"], d["channels"], d["bit_depth"]) == (640, 480, 3, 8)
    assert d["alpha"] is True and d["icc"] is True and d["exif"] is False and d["quality"] == 4.25
    assert d["bytes"] == total == sum(d["sections"].values())
    assert d["sections"]["icc"] == 100 and d["sections"]["alpha"] == 28 and d["sections"]["exif"] == 0
    assert d["bits_per_pixel"] == pytest.approx(total * 8 / (640 * 480))
    import json

    json.dumps(d)


def test_load(tmp_path):
    e = make()
    path = tmp_path / f"a{EXTENSION}"
    path.write_bytes(pack(e))
    assert load(path) == e
    (tmp_path / "short.aei").write_bytes(pack(e)[:100])
    with pytest.raises(ContainerError, match="truncated: the file ends at byte 100 but"):
        load(tmp_path / "short.aei")
    (tmp_path / "empty.aei").write_bytes(b"")
    with pytest.raises(ContainerError, match="empty"):
        load(tmp_path / "empty.aei")
    with pytest.raises(ContainerError, match="is a folder"):
        load(tmp_path)
    with pytest.raises(ContainerError, match="cannot read the file"):
        load(tmp_path / "missing.aei")
    bomb = tmp_path / "bomb.aei"
    bomb.write_bytes(pack(make(100_000, 100_000)))
    with pytest.raises(ContainerTooLargeError):
        load(bomb, max_pixels=1_000_000)


def test_load_reads_only_the_header_of_a_foreign_file(tmp_path):
    path = tmp_path / "big.aei"
    path.write_bytes(b"\x00" * 8_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(ContainerError, match="wrong magic"):
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000


def fuzz_cases(rng: random.Random, files: list[bytes], n: int):
    """(kind, bytes): truncations, flips, random bytes, cut-and-append, and crafted files whose
    checksums are right. Only the crafted kinds may still be valid files."""
    for i in range(n):
        data = rng.choice(files)
        kind = ("cut", "flip", "junk", "crafted header", "crafted body", "insert")[i % 6]
        if kind == "cut":  # anywhere, weighted to the header and the boundaries
            cut = rng.choice([rng.randrange(len(data)), rng.randrange(min(80, len(data))), len(data) - 4,
                              len(data) - 1])
            yield kind, data[:cut]
        elif kind == "flip":  # one to three bytes changed (at distinct places, so never undone)
            raw = bytearray(data)
            for pos in rng.sample(range(len(raw)), rng.randrange(1, 4)):
                raw[pos] ^= rng.randrange(1, 256)
            yield kind, bytes(raw)
        elif kind == "junk":  # random bytes, half of them behind a valid magic and version
            junk = rng.randbytes(rng.randrange(0, 300))
            yield kind, (MAGIC + bytes([HYPERPRIOR_VERSION]) + junk) if rng.random() < 0.5 else junk
        elif kind == "crafted header":  # random fixed fields, with a valid header checksum
            raw = bytearray(data)
            for _ in range(rng.randrange(1, 6)):
                raw[rng.randrange(5, 60)] = rng.randrange(256)
            raw[60:64] = struct.pack("<I", zlib.crc32(raw[:60]))
            yield kind, bytes(raw)
        elif kind == "crafted body":  # anything after the fixed header, with both checksums valid
            raw = bytearray(data)
            for _ in range(rng.randrange(1, 4)):
                raw[rng.randrange(64, len(raw) - 4)] = rng.randrange(256)
            yield kind, bytes(crc_fixed(raw))
        else:  # bytes inserted somewhere
            cut = rng.randrange(len(data))
            yield kind, data[:cut] + rng.randbytes(rng.randrange(1, 20)) + data[cut:]


def test_fuzz():
    files = [pack(e) for e in VARIANTS[:7]]
    rng = random.Random(20240610)
    refused: dict[str, int] = {}
    start = time.perf_counter()
    for kind, case in fuzz_cases(rng, files, 600):
        try:
            e = unpack(case, max_pixels=10_000_000)
        except ContainerError as exc:
            assert "\n" not in str(exc) and str(exc)
            refused[kind] = refused.get(kind, 0) + 1
        else:  # a crafted file that is still valid (a changed stream byte): then a consistent one
            assert kind.startswith("crafted"), (kind, case)
            assert pack(e) == case
    elapsed = time.perf_counter() - start
    assert all(refused[k] == 100 for k in ("cut", "flip", "junk", "insert")), refused
    assert refused["crafted header"] > 50, refused  # most random header values are impossible
    assert elapsed < 2.0, f"600 fuzz cases took {elapsed:.2f} s"


def test_sections_constant_matches_docs():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "format.md").read_text()
    assert "`.aei`" in doc and "8B 41 45 49" in doc
    for s in SECTIONS:
        assert f"`{s}`" in doc
    assert FIXED_HEADER_SIZE == 64
