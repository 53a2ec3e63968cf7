"""Fuzz benchmark of the learned codec's decoder (issue #10: "random truncations and byte flips of
real files ... no crash, no hang, no memory blow-up").

Protocol:

1. Real files. Four small crops of kodak24 photos (DATA/test/denoise/kodak24, `--data`), each coded
   by the shipped default codec at every quality of `--qualities` (default 1, 4, 8: twelve files):
   kodim01 128x128 RGB, kodim03 200x136 grey, kodim05 256x192 RGBA (an alpha plane made from a
   radial ramp), all with `aetool.compress()`, and kodim07 150x230 RGB with an sRGB ICC profile
   and an EXIF block (Make, Model, DateTime, resolution, PixelX/YDimension), written as a PNG and
   coded by the command line's own step (`imageio.read_image`, `Codec.picture`), since
   `compress()` keeps no metadata. Every unmutated file must decode (else the run stops).
2. Cases. `--cases` (default 3000) mutated files; case i is made by `random.Random(f"{seed}:{i}")`
   alone (`--seed`, default 20241210), so any case can be rebuilt on its own (`--only I,J`), from a
   source file chosen by that generator. The kinds take turns (case i is kind i mod 7), as in
   tests/test_container.py::fuzz_cases, plus one kind of its own:
   - cut: the file truncated anywhere, at a byte of its first 80, or 1 or 4 bytes short;
   - flip: one to three bytes changed at distinct places;
   - junk: 0-299 random bytes, half of them behind a valid magic and version;
   - insert: 1-19 random bytes inserted somewhere;
   - crafted header: 1-5 random bytes of the fixed header (5-59), the header CRC made valid again
     (which makes the file's CRC valid too: the CRC-32 of a block followed by its own CRC is a
     constant, so the file CRC does not depend on the header's content);
   - crafted body: 1-3 random bytes after the fixed header, both CRCs made valid (`crc_fixed`);
   - crafted fields: a hostile but well-formed file: the source parsed, 1-3 of its fields given
     values a writer could store (image size, a tenth of them above the 250 MP pixel limit, half
     of those just above; channels; bit depth; quality 0-65.535; hyper gains; the coded streams
     emptied, cut, lengthened, replaced or swapped; the model name (another shipped model, a
     path, random characters) or sha256; the latent channel counts; an alpha section added,
     removed, of the wrong size, damaged or a PNG bomb; random ICC or EXIF bytes, or a damaged
     EXIF block), and packed again with `container.pack` (so every length and both CRCs are
     right).
3. Decoding. Each case runs in a worker process through two paths, one after the other:
   - the command line's (`aetool decompress`): the bytes written to a file, then
     `probe_encoded(path, max_pixels)`, `read_encoded(path, max_pixels)`,
     `Decoders(None, EngineOptions(device="cpu")).picture(e, max_pixels)` (one Decoders for the
     run, as one batch has) and `imageio.encode_image(picture, ".png")`, the writer's step, with the
     default pixel limit of 250 MP;
   - the Python API: `aetool.decompress(bytes)`.
   Outcome of a path: *refused* = an exception of aetool's own classes (aetool.errors.AetoolError:
   ContainerError, ImageError, ModelError ...) with a non-empty one-line message; *decoded* = an
   image, checked: the declared width x height, channels and alpha, float pixels finite in [0, 1],
   the PNG (CLI) and the PIL image (API) of the declared size and mode with uint8 samples, and the
   two paths' pixels equal; *crash* = any other exception (IndexError, ValueError, struct.error, a
   RuntimeError of torch or constriction...), a message that is empty or not one line, a decoded
   image that fails a check, or the worker process dying (a signal); *memory* = MemoryError, a
   refusal raised from a MemoryError or whose message says an allocation failed (the worker's
   address space is capped at its size after warm-up + the limit + 1 GiB, so that a blow-up fails
   fast instead of swapping), or the worker's peak RSS (ru_maxrss) rising more than
   `--memory-limit-mb` (default 1024) above its RSS after warm-up; *hang* = no answer within
   `--case-timeout` seconds (default 10; the worker is killed). A case's outcome is the worst of
   its two paths (crash, memory, hang, then the command line's refused or decoded). After a hang,
   a crash that killed the worker, or a memory case, a fresh worker is started (model loaded,
   every source decoded once) so that each case starts from the same state.
4. Report. Per kind: cases, refused, decoded, crash, hang, memory, time per case (both paths;
   mean, max); the worker's baseline RSS, the largest rise of its peak RSS and the largest traced
   (tracemalloc: Python and numpy) peak of one case; where the two paths disagree (one refused,
   the other decoded); the most common refusal reasons; the first failures. The markdown goes
   between <!-- compress-fuzz:begin --> and <!-- compress-fuzz:end --> of --out-md, and a JSON
   file (--out-json) has every failure with its traceback and bytes (base64). Exit code 1 if any
   case is a crash, hang or memory case, else 0.

Run from the project root (about 5 minutes on two busy cores):

    python benchmarks/compress_fuzz.py
    python benchmarks/compress_fuzz.py --cases 200 --out-md /tmp/f.md --out-json /tmp/f.json  # quick
    python benchmarks/compress_fuzz.py --only 123,456 --out-md /tmp/f.md --out-json /tmp/f.json  # replay
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import io
import json
import multiprocessing as mp
import os
import random
import re
import shlex
import shutil
import statistics
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, machine_line, md_table, write_section  # noqa: E402

KINDS = ("cut", "flip", "junk", "crafted header", "crafted body", "insert", "crafted fields")
OUTCOMES = ("refused", "decoded", "crash", "hang", "memory")
FAILURES = ("crash", "hang", "memory")
QUALITIES = (1.0, 4.0, 8.0)
DEFAULT_SEED = 20241210
CLI_MAX_PIXELS = 250_000_000  # aetool's default --max-pixels (imageio.DEFAULT_MAX_PIXELS)
ADDRESS_SLACK = 1 << 30  # address space above the worker's size after warm-up + the memory limit
SHOW_FAILURES = 10  # failures written out in the markdown section (all are in the JSON)


@dataclass(frozen=True)
class Source:
    file: str  # in DATA/test/denoise/kodak24
    box: tuple[int, int, int, int]  # left, top, width, height
    mode: str  # "RGB", "L" or "RGBA"
    metadata: bool = False  # ICC profile and EXIF, coded through the command line's step

    def label(self) -> str:
        left, top, w, h = self.box
        extra = " + ICC + EXIF" if self.metadata else ""
        return f"{self.file} {w}x{h} at ({left}, {top}), {self.mode}{extra}"


SOURCES = (
    Source("kodim01.png", (64, 96, 128, 128), "RGB"),
    Source("kodim03.png", (200, 120, 200, 136), "L"),
    Source("kodim05.png", (200, 250, 256, 192), "RGBA"),
    Source("kodim07.png", (100, 150, 150, 230), "RGB", metadata=True),
)


# ================================================================= the cases (standard library only)
def crc_fixed(raw: bytearray) -> bytearray:
    """Recompute both checksums after an edit, as a crafted (not damaged) file would have them."""
    raw[60:64] = struct.pack("<I", zlib.crc32(raw[:60]))
    raw[-4:] = struct.pack("<I", zlib.crc32(raw[:-4]))
    return raw


@dataclass
class Case:
    index: int
    kind: str
    source: int | None  # index into the source files; None for junk
    detail: str  # what was done, for the report
    data: bytes


def make_case(seed: int, index: int, files: list[bytes], kinds: tuple[str, ...]) -> Case:
    """Case `index` of `seed`: the same bytes every time, whatever other cases were made."""
    from aetool.container import FORMAT_VERSION, MAGIC

    rng = random.Random(f"{seed}:{index}")
    kind = kinds[index % len(kinds)]
    src = rng.randrange(len(files))
    data = files[src]
    if kind == "cut":  # anywhere, weighted to the header and the end
        cut = rng.choice([rng.randrange(len(data)), rng.randrange(min(80, len(data))), len(data) - 4,
                          len(data) - 1])
        return Case(index, kind, src, f"cut at byte {cut} of {len(data)}", data[:cut])
    if kind == "flip":  # one to three bytes changed, at distinct places (so never undone)
        raw = bytearray(data)
        places = sorted(rng.sample(range(len(raw)), rng.randrange(1, 4)))
        for pos in places:
            raw[pos] ^= rng.randrange(1, 256)
        return Case(index, kind, src, f"bytes {','.join(map(str, places))} changed", bytes(raw))
    if kind == "junk":  # random bytes, half of them behind a valid magic and version
        junk = rng.randbytes(rng.randrange(0, 300))
        if rng.random() < 0.5:
            return Case(index, kind, None, f"magic, version and {len(junk)} random bytes",
                        MAGIC + bytes([FORMAT_VERSION]) + junk)
        return Case(index, kind, None, f"{len(junk)} random bytes", junk)
    if kind == "crafted header":  # random fixed fields, with a valid header checksum
        raw = bytearray(data)
        places = [rng.randrange(5, 60) for _ in range(rng.randrange(1, 6))]
        for pos in places:
            raw[pos] = rng.randrange(256)
        raw[60:64] = struct.pack("<I", zlib.crc32(raw[:60]))
        return Case(index, kind, src, f"header bytes {','.join(map(str, places))} set, header CRC fixed", bytes(raw))
    if kind == "crafted body":  # anything after the fixed header, with both checksums valid
        raw = bytearray(data)
        places = [rng.randrange(64, len(raw) - 4) for _ in range(rng.randrange(1, 4))]
        for pos in places:
            raw[pos] = rng.randrange(256)
        return Case(index, kind, src, f"bytes {','.join(map(str, places))} set, both CRCs fixed",
                    bytes(crc_fixed(raw)))
    if kind == "insert":  # bytes inserted somewhere
        cut = rng.randrange(len(data))
        extra = rng.randbytes(rng.randrange(1, 20))
        return Case(index, kind, src, f"{len(extra)} bytes inserted at {cut}", data[:cut] + extra + data[cut:])
    if kind == "crafted fields":
        new, detail = crafted_fields(rng, data)
        return Case(index, kind, src, detail, new)
    raise ValueError(f"unknown kind {kind}")


# --- crafted fields: a hostile writer's well-formed files -----------------------------------------
def _png(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A grey 8-bit PNG of that size: real pixels (a ramp) when small, else a bomb (a tiny IDAT
    that does not hold the declared rows)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    if idat is None and width * height > 1 << 20:
        idat = zlib.compress(b"\0" * 1000)  # a real one would be too big to make here
    if idat is None:
        rows = b"".join(b"\0" + bytes((x + y) % 256 for x in range(width)) for y in range(height))
        idat = zlib.compress(rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _words(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(4 * n)


def _mutate_size(rng, e):
    from aetool.container import MAX_SIDE, latent_shapes

    if rng.random() < 0.1:  # above the command line's pixel limit (a decompression bomb): just above, or far
        w = rng.randrange(16_000, 40_000) if rng.random() < 0.5 else rng.randrange(16_000, MAX_SIDE + 1)
        h = CLI_MAX_PIXELS // w + 1 + (rng.randrange(2_000) if w < 40_000 else rng.randrange(MAX_SIDE // 2))
    else:
        w, h = rng.randint(1, 2 * e.width), rng.randint(1, 2 * e.height)
    y, z = latent_shapes(h, w, e.y_shape[0], e.z_shape[0])
    return dataclasses.replace(e, width=w, height=h, y_shape=y, z_shape=z), f"size {w}x{h}"


def _mutate_channels(rng, e):
    return dataclasses.replace(e, channels=4 - e.channels), f"channels {4 - e.channels}"


def _mutate_bit_depth(rng, e):
    return dataclasses.replace(e, bit_depth=24 - e.bit_depth), f"bit depth {24 - e.bit_depth}"


def _mutate_quality(rng, e):
    q = rng.choice([0, 1, rng.randrange(65536), 65535]) / 1000
    return dataclasses.replace(e, quality=q), f"quality {q:g}"


def _mutate_gains(rng, e):
    n = len(e.hyper_gain)
    how = rng.choice(["zero", "max", "random", "one"])
    if how == "zero":
        g = (0,) * n
    elif how == "max":
        g = (65535,) * n
    elif how == "random":
        g = tuple(rng.randrange(65536) for _ in range(n))
    else:
        g = list(e.hyper_gain)
        g[rng.randrange(n)] = rng.randrange(65536)
        g = tuple(g)
    return dataclasses.replace(e, hyper_gain=g), f"hyper gains {how}"


def _mutate_streams(rng, e):
    name = rng.choice(["z_stream", "y_stream"])
    s = getattr(e, name)
    how = rng.choice(["empty", "cut", "longer", "random", "odd length", "swap"])
    if how == "swap":
        return dataclasses.replace(e, z_stream=e.y_stream, y_stream=e.z_stream), "z and y streams swapped"
    if how == "empty":
        s = b""
    elif how == "cut":
        s = s[:4 * rng.randrange(len(s) // 4 + 1)]
    elif how == "longer":
        s = s + _words(rng, rng.randrange(1, 2000))
    elif how == "random":
        s = _words(rng, max(1, len(s) // 4))
    else:
        s = s + rng.randbytes(rng.randrange(1, 4))
    return dataclasses.replace(e, **{name: s}), f"{name.replace('_', ' ')} {how} ({len(s)} bytes)"


def _mutate_model(rng, e):
    how = rng.choice(["other model", "path", "random name", "sha256"])
    if how in ("other model", "path"):  # paths: the decoder must not load what a file points at
        name = rng.choice(["denoise-color", "upscale-x2", "inpaint-color", "compress-gray"] if how == "other model"
                          else ["weights/compress-color.safetensors", "weights/denoise-color", "/etc/passwd",
                                "/dev/zero", "/proc/self/environ", ".", "~"])
        return dataclasses.replace(e, model_name=name), f"model name {name}"
    if how == "random name":
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz-0123456789") for _ in range(rng.randint(1, 255)))
        return dataclasses.replace(e, model_name=name), f"model name of {len(name)} random characters"
    return dataclasses.replace(e, model_sha256_prefix=rng.randbytes(8)), "model sha256 random"


def _mutate_latent_channels(rng, e):
    from aetool.container import latent_shapes

    yc, zc = e.y_shape[0], e.z_shape[0]
    which = rng.choice(["y", "z", "both"])
    if which in ("y", "both"):
        yc = rng.choice([1, max(1, yc - 1), yc + 1, rng.randint(1, 400)])
    if which in ("z", "both"):
        zc = rng.choice([1, max(1, zc - 1), zc + 1, rng.randint(1, 400)])
    y, z = latent_shapes(e.height, e.width, yc, zc)
    gains = tuple(e.hyper_gain[i % len(e.hyper_gain)] for i in range(zc))
    return dataclasses.replace(e, y_shape=y, z_shape=z, hyper_gain=gains), f"latent channels y {yc}, z {zc}"


def _mutate_alpha(rng, e):
    how = rng.choice(["remove", "right size", "wrong size", "damaged", "bomb"] if e.has_alpha else
                     ["right size", "wrong size", "damaged", "bomb"])
    if how == "remove":
        return dataclasses.replace(e, has_alpha=False, alpha=b""), "alpha removed"
    if how == "right size":
        png = _png(e.width, e.height)
    elif how == "wrong size":
        png = _png(rng.randint(1, 300), rng.randint(1, 300))
    elif how == "damaged":
        good = _png(e.width, e.height)
        png = good[:8] + rng.randbytes(rng.randrange(0, len(good)))
    else:
        side = rng.choice([12_000, 30_000, 65_535])
        png = _png(side, side, zlib.compress(b"\0" * 1000))
    return dataclasses.replace(e, has_alpha=True, alpha=png), f"alpha {how} ({len(png)} bytes)"


def _mutate_icc(rng, e):
    icc = rng.randbytes(rng.randrange(0, 3000))
    if e.icc and rng.random() < 0.5:
        icc = bytearray(e.icc)
        for _ in range(rng.randrange(1, 6)):
            icc[rng.randrange(len(icc))] = rng.randrange(256)
        icc = bytes(icc)
        return dataclasses.replace(e, icc=icc), "ICC bytes changed"
    return dataclasses.replace(e, icc=icc), f"ICC of {len(icc)} random bytes"


def _mutate_exif(rng, e):
    how = rng.choice(["random", "tiff header + random", "changed", "cut"] if e.exif else
                     ["random", "tiff header + random"])
    if how == "random":
        exif = rng.randbytes(rng.randrange(1, 400))
    elif how == "tiff header + random":
        exif = rng.choice([b"II*\x00", b"MM\x00*"]) + struct.pack("<I", rng.choice([8, rng.randrange(1 << 32)])) \
            + rng.randbytes(rng.randrange(0, 400))
    elif how == "changed":
        raw = bytearray(e.exif)
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        exif = bytes(raw)
    else:
        exif = e.exif[:rng.randrange(1, len(e.exif))]
    return dataclasses.replace(e, exif=exif), f"EXIF {how} ({len(exif)} bytes)"


FIELD_MUTATIONS = {
    "size": _mutate_size, "channels": _mutate_channels, "bit depth": _mutate_bit_depth,
    "quality": _mutate_quality, "hyper gains": _mutate_gains, "streams": _mutate_streams,
    "model": _mutate_model, "latent channels": _mutate_latent_channels, "alpha": _mutate_alpha,
    "icc": _mutate_icc, "exif": _mutate_exif,
}


def crafted_fields(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """1-3 fields of the file given other values, packed again (valid lengths and checksums)."""
    from aetool.container import pack, unpack

    e = unpack(data)
    details = []
    for name in rng.sample(sorted(FIELD_MUTATIONS), rng.choice((1, 1, 2, 3))):
        e, detail = FIELD_MUTATIONS[name](rng, e)
        details.append(detail)
    return pack(e), "; ".join(details)


# ================================================================= the worker (aetool, torch)
_ALLOCATION = re.compile(r"unable to allocate|can't allocate memory|cannot allocate memory|out of memory|"
                         r"not enough memory|bad_alloc", re.IGNORECASE)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _max_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _checked(problems: list[str], arr) -> dict:
    """A decoded image's outcome: a crash when any check failed, else decoded."""
    if problems:
        return {"outcome": "crash", "why": "a decoded image that fails a check", "type": "BadImage",
                "message": _one_line("; ".join(problems))}
    return {"outcome": "decoded", "pixels": arr}


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Worker:
    """In the child process: makes the source files, then decodes cases."""

    def __init__(self, threads: int, memory_limit: int, tmp: str):
        import torch

        torch.set_num_threads(threads)
        self.memory_limit = memory_limit
        self.tmp = Path(tmp)
        self.path = self.tmp / f"case-{os.getpid()}.aei"
        self.decoders = None
        self.baseline = None

    # ---------------------------------------------------------------- sources
    def make(self, data_dir: str, sources: list[Source], qualities: list[float]) -> dict:
        import numpy as np
        from PIL import Image, ImageCms

        import aetool
        from aetool import compress
        from aetool.engine import EngineOptions
        from aetool.imageio import read_image
        from aetool.registry import default_model
        from aetool.tasks.compress import Codec

        card = default_model("compress", 3)
        files = []
        codec = None
        for s in sources:
            path = Path(data_dir) / s.file
            left, top, w, h = s.box
            with Image.open(path) as im:
                if left + w > im.width or top + h > im.height:
                    raise SystemExit(f"{path} is {im.width}x{im.height}: the crop {s.label()} does not fit")
                crop = im.convert("RGB").crop((left, top, left + w, top + h))
            if s.mode == "L":
                crop = crop.convert("L")
            elif s.mode == "RGBA":
                yy, xx = np.mgrid[0:h, 0:w]
                r = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
                alpha = np.clip(255 * (1.2 - r), 0, 255).astype(np.uint8)
                crop = crop.convert("RGBA")
                crop.putalpha(Image.fromarray(alpha, "L"))
            for q in qualities:
                if s.metadata:
                    if codec is None:
                        codec = Codec(None, EngineOptions(device="cpu"))
                    exif = Image.Exif()
                    exif[0x010F], exif[0x0110], exif[0x0132] = "FuzzCam", "Model 1", "2024:12:10 12:00:00"
                    exif[0x0128] = 2
                    exif.get_ifd(0x8769).update({0xA002: w, 0xA003: h, 0x9003: "2024:12:10 12:00:00"})
                    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
                    png = self.tmp / "source.png"
                    crop.save(png, icc_profile=icc, exif=exif, dpi=(300, 300))
                    data, _ = codec.picture(read_image(png), quality=q)
                else:
                    data = compress(crop, quality=q)
                files.append({"label": s.label(), "quality": q, "bytes": len(data),
                              "sha256": hashlib.sha256(data).hexdigest(), "data": data})
        return {"files": files, "model": card.name, "model_sha256": card.sha256, "aetool": aetool.__version__}

    # ---------------------------------------------------------------- decoding
    def warm(self, files: list[bytes]) -> dict:
        """Load the model in both paths and decode every source once (each must decode); then the
        baseline RSS, the address-space cap and tracemalloc."""
        import resource
        import tracemalloc

        from aetool.engine import EngineOptions
        from aetool.tasks.compress import Decoders

        self.decoders = Decoders(None, EngineOptions(device="cpu"))
        for i, data in enumerate(files):
            r = self.run(data)
            if r["cli"]["outcome"] != "decoded" or r["api"]["outcome"] != "decoded":
                bad = r["cli"] if r["cli"]["outcome"] != "decoded" else r["api"]
                raise SystemExit(f"source file {i} does not decode: {bad.get('type')}: {bad.get('message')}")
        self.baseline = _rss()
        cap = _vm_size() + self.memory_limit + ADDRESS_SLACK
        resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
        tracemalloc.start()
        return {"baseline_rss": self.baseline, "max_rss": _max_rss(), "address_cap": cap}

    def classify(self, exc: BaseException) -> dict:
        import traceback

        from aetool.errors import AetoolError

        message = str(exc)
        out = {"type": f"{type(exc).__module__}.{type(exc).__qualname__}".replace("builtins.", ""),
               "message": _one_line(message),
               "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-6000:]}
        chain, seen = [], exc  # the exception and what it was raised from or during (even `from None`)
        while seen is not None and len(chain) < 10:
            chain.append(seen)
            seen = seen.__cause__ or seen.__context__
        if any(isinstance(x, MemoryError) or _ALLOCATION.search(str(x)) for x in chain):
            out["outcome"] = "memory"
            if len(chain) > 1:
                out["message"] = _one_line(f"{message} (raised from {type(chain[-1]).__name__}: {chain[-1]})")
        elif isinstance(exc, AetoolError):
            if message.strip() and "\n" not in message and "\r" not in message:
                out["outcome"] = "refused"
                del out["traceback"]
            else:
                out.update(outcome="crash", why="an aetool error whose message is empty or not one line")
        else:
            out.update(outcome="crash", why="an exception that is not one of aetool's")
        return out

    def cli_path(self, data: bytes) -> dict:
        """What `aetool decompress FILE -o OUT.png` does with the file, in-process."""
        import numpy as np
        from PIL import Image

        from aetool.imageio import encode_image
        from aetool.tasks.compress import probe_encoded, read_encoded

        self.path.write_bytes(data)
        try:
            probe_encoded(self.path, CLI_MAX_PIXELS)
            e = read_encoded(self.path, CLI_MAX_PIXELS)
            pic, _ = self.decoders.picture(e, CLI_MAX_PIXELS)
            png = encode_image(pic, ".png")
        except Exception as exc:  # noqa: BLE001 - classified
            return self.classify(exc)
        problems = []
        px = pic.pixels
        if px.shape != (e.height, e.width, e.channels) or px.dtype != np.float32:
            problems.append(f"pixels {px.shape} {px.dtype}, declared {e.height}x{e.width}x{e.channels}")
        elif not np.isfinite(px).all() or px.min() < 0 or px.max() > 1:
            problems.append("pixels not finite or outside [0, 1]")
        if (pic.alpha is not None) != e.has_alpha:
            problems.append(f"alpha {'present' if pic.alpha is not None else 'missing'}, declared {e.has_alpha}")
        elif pic.alpha is not None and (pic.alpha.shape != (e.height, e.width) or not np.isfinite(pic.alpha).all()):
            problems.append(f"alpha {pic.alpha.shape} or not finite")
        arr = None
        try:
            with Image.open(io.BytesIO(png)) as im:
                im.load()
                mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[e.channels + int(e.has_alpha)]
                if im.size != (e.width, e.height) or im.mode != mode:
                    problems.append(f"PNG {im.size[0]}x{im.size[1]} {im.mode}, declared {e.width}x{e.height} {mode}")
                arr = np.asarray(im)
                if arr.dtype != np.uint8:
                    problems.append(f"PNG samples {arr.dtype}")
        except Exception as exc:  # noqa: BLE001 - the written PNG must read back
            problems.append(f"the PNG written does not read back: {type(exc).__name__}: {exc}")
        return _checked(problems, arr)

    def api_path(self, data: bytes) -> dict:
        """`aetool.decompress(bytes)`, the Python API."""
        import numpy as np

        from aetool import decompress
        from aetool.container import unpack

        try:
            im = decompress(data)
        except Exception as exc:  # noqa: BLE001 - classified
            return self.classify(exc)
        e = unpack(data)
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[e.channels + int(e.has_alpha)]
        arr = np.asarray(im)
        problems = []
        if im.size != (e.width, e.height) or im.mode != mode:
            problems.append(f"image {im.size[0]}x{im.size[1]} {im.mode}, declared {e.width}x{e.height} {mode}")
        if arr.dtype != np.uint8:
            problems.append(f"samples {arr.dtype}")
        return _checked(problems, arr)

    def run(self, data: bytes) -> dict:
        import tracemalloc
        import warnings

        import numpy as np

        tracing = tracemalloc.is_tracing()
        if tracing:
            tracemalloc.reset_peak()
            traced0 = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cli = self.cli_path(data)
            t1 = time.perf_counter()
            api = self.api_path(data)
        t2 = time.perf_counter()
        result = {"cli": cli, "api": api, "seconds": t2 - t0, "cli_seconds": t1 - t0, "api_seconds": t2 - t1,
                  "warnings": sorted({_one_line(f"{w.category.__name__}: {w.message}", 160) for w in caught})}
        a, b = cli.pop("pixels", None), api.pop("pixels", None)
        if a is not None and b is not None and (a.shape != b.shape or not np.array_equal(a, b)):
            diff = "shapes differ" if a.shape != b.shape else f"{int((a != b).sum())} samples differ"
            api.update(outcome="crash", why="the API and the command line decode different pixels",
                       type="Mismatch", message=diff)
        if tracing:
            result["traced_peak"] = tracemalloc.get_traced_memory()[1] - traced0
        result["max_rss"] = _max_rss()
        result["rss"] = _rss()
        return result


def worker_main(conn, threads: int, memory_limit: int, tmp: str) -> None:
    worker = None
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        op = message[0]
        try:
            if op == "stop":
                return
            if worker is None:
                worker = _Worker(threads, memory_limit, tmp)
            if op == "make":
                conn.send(("ok", worker.make(*message[1:])))
            elif op == "warm":
                conn.send(("ok", worker.warm(message[1])))
            elif op == "case":
                conn.send(("ok", worker.run(message[1])))
        except BaseException as exc:  # noqa: BLE001 - the parent reports it
            import traceback

            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                return


# ================================================================= the parent: cases, watchdog, report
class Pool:
    """One worker process at a time; restarted after a hang, a death or a memory case."""

    def __init__(self, args, files: list[bytes] | None = None):
        self.args = args
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.conn = None
        self.files = files
        self.warm_info: list[dict] = []
        self.restarts = 0
        self.tmp = tempfile.mkdtemp(prefix="aetool-fuzz-")  # the workers' scratch files; removed by stop()

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=worker_main, args=(child, self.args.threads,
                                                               self.args.memory_limit_mb << 20, self.tmp),
                                     daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def call(self, message, timeout: float | None):
        """(status, value): ("ok", result), ("error", text), ("hang", None) or ("died", exit code)."""
        if self.proc is None:
            self.start()
        try:
            self.conn.send(message)
            if not self.conn.poll(timeout):
                self.kill()
                return "hang", None
            return self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.proc.join(5)
            code = self.proc.exitcode
            self.proc = None
            return "died", code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # our own child, by its process object
            self.proc.join(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            try:
                self.conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(10)
            if self.proc.is_alive():
                self.kill()
            self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def make(self, data_dir: Path, qualities: list[float]) -> dict:
        status, value = self.call(("make", str(data_dir), list(SOURCES), qualities), None)
        if status != "ok":
            raise SystemExit(f"making the source files failed: {status}: {value}")
        self.files = [f["data"] for f in value["files"]]
        return value

    def ready(self) -> dict:
        """A warm worker: started if needed, model loaded, every source decoded once."""
        if self.proc is not None and self.warm_info:
            return self.warm_info[-1]
        if self.warm_info:
            self.restarts += 1
        status, value = self.call(("warm", self.files), None)
        if status != "ok":
            raise SystemExit(f"warming up the worker failed: {status}: {value}")
        self.warm_info.append(value)
        return value

    def run(self, case: Case) -> dict:
        warm = self.ready()
        status, value = self.call(("case", case.data), self.args.case_timeout)
        if status == "ok":
            growth = value["max_rss"] - warm["baseline_rss"]
            value["peak_over_baseline"] = growth
            if growth > self.args.memory_limit_mb << 20:
                value["memory_exceeded"] = True
                self.kill()  # a fresh worker (and a fresh ru_maxrss) for the next case
            elif "memory" in (value["cli"]["outcome"], value["api"]["outcome"]):
                self.kill()
            return value
        if status == "hang":
            return {"hang": True, "seconds": self.args.case_timeout}
        if status == "died":
            return {"died": value, "seconds": None}
        raise SystemExit(f"the worker failed outside a case: {value}")


def outcome_of(result: dict) -> tuple[str, dict | None]:
    """The case's outcome and the record that explains a failure (None when it is not one)."""
    if result.get("hang"):
        return "hang", {"path": "both", "type": "Timeout", "message": "no answer within the time limit"}
    if "died" in result:
        code = result["died"]
        what = f"killed by signal {-code}" if isinstance(code, int) and code < 0 else f"exit code {code}"
        return "crash", {"path": "both", "type": "WorkerDied", "message": f"the worker process died ({what})"}
    cli, api = result["cli"], result["api"]
    for outcome in ("crash", "memory"):
        for path, r in (("cli", cli), ("api", api)):
            if r["outcome"] == outcome:
                return outcome, {"path": path, **{k: v for k, v in r.items() if k != "outcome"}}
    if result.get("memory_exceeded"):
        return "memory", {"path": "both", "type": "PeakRSS",
                          "message": f"the peak RSS rose {result['peak_over_baseline'] / 2 ** 20:.0f} MiB above "
                                     "the worker's baseline"}
    return cli["outcome"], None


_NUMBERS = re.compile(r"\d[\d,._]*")


def reason_key(message: str) -> str:
    """A refusal message with its numbers replaced, so that messages group by reason."""
    key = re.sub(r"\b[0-9a-f]{8,}\b", "H", message)  # hashes
    key = _NUMBERS.sub("N", key)
    key = re.sub(r"(?<![A-Za-z])'[^']*'", "'X'", key)  # names
    return key[:160]


def parse_args(argv=None):
    csv = lambda s: [x.strip() for x in s.split(",") if x.strip()]  # noqa: E731
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="data folder (default: ../shared/data from the project root); the photos are read "
                         "from DATA/test/denoise/kodak24")
    ap.add_argument("--cases", type=int, default=3000, help="number of mutated files (default 3000)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"default {DEFAULT_SEED}")
    ap.add_argument("--only", type=lambda s: [int(x) for x in csv(s)], default=None,
                    help="run only these case indices (a replay; the report says so)")
    ap.add_argument("--kinds", type=csv, default=list(KINDS),
                    help=f"the kinds that take turns (default all: {','.join(KINDS)})")
    ap.add_argument("--qualities", type=lambda s: [float(x) for x in csv(s)], default=list(QUALITIES),
                    help="qualities of the source files (default 1,4,8)")
    ap.add_argument("--case-timeout", type=float, default=10.0, help="seconds before a case is a hang (default 10)")
    ap.add_argument("--memory-limit-mb", type=int, default=1024,
                    help="MiB of peak RSS over the worker's baseline before a case is a memory case (default 1024)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the worker (default 1)")
    ap.add_argument("--out-md", type=Path, default=ROOT / "docs" / "benchmarks.md",
                    help="markdown file whose compress-fuzz section is replaced (created if missing)")
    ap.add_argument("--out-json", type=Path, default=ROOT / "benchmarks" / "results" / "compress-fuzz.json")
    ap.add_argument("--section", default="compress-fuzz", help="name of the marked section of --out-md")
    args = ap.parse_args(argv)
    bad = set(args.kinds) - set(KINDS)
    if bad:
        ap.error(f"unknown kind(s) {', '.join(sorted(bad))}; choose from {', '.join(KINDS)}")
    args.kinds = tuple(k for k in KINDS if k in args.kinds)
    if args.cases < 1 or not args.qualities:
        ap.error("--cases must be at least 1 and --qualities not empty")
    return args


def mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2 ** 20:,.0f} MiB"


def report(args, info: dict) -> str:
    lines = ["## Compression: fuzz of the decoder" + ("" if args.section == "compress-fuzz" else f" ({args.section})"),
             "",
             f"Measured {info['date']} on {machine_line(info['machine'])}.  ",
             f"Command: `{info['command']}`  ",
             f"aetool {info['aetool']}, model shipped default `{info['model']}` (sha256 "
             f"{(info['model_sha256'] or '')[:16]}...); {info['n_cases']:,} cases"
             + (f" (**a replay of cases {','.join(map(str, args.only))}, --only**)" if args.only else "")
             + f", seed {args.seed}; {info['wall_seconds']:.0f} s of wall time.",
             "",
             "Protocol: benchmarks/compress_fuzz.py (its docstring). Each case is a real `.aei` file, cut, changed or "
             "rewritten; it is decoded in a worker process by the command line's path (`probe_encoded`, "
             "`read_encoded`, `Decoders.picture` with the default 250 MP limit, `encode_image` to PNG) and by the "
             "Python API (`aetool.decompress(bytes)`). Refused = one of aetool's exceptions with a one-line message; "
             "decoded = an image of the declared size, channels and alpha, finite, uint8 when written, the same from "
             "both paths; crash = any other exception, a bad message or image, or the worker dying; hang = no answer "
             f"within {args.case_timeout:g} s; memory = MemoryError, a failed allocation (the worker's address space "
             f"is capped at its size after warm-up + {args.memory_limit_mb} MiB + 1 GiB), or the peak RSS more than "
             f"{args.memory_limit_mb} MiB above the worker's after warm-up. A case counts as its worst path; "
             "refused/decoded are the command line's. Time per case = both paths, in the worker.",
             "",
             "Source files (the shipped default codec; each mutated case starts from one of them):",
             "",
             md_table(["photo crop", "quality", "bytes"],
                      [[f["label"], f"{f['quality']:g}", f"{f['bytes']:,}"] for f in info["sources"]]),
             ""]
    rows = []
    counts, timing = info["counts"], info["timing"]
    for kind in list(args.kinds) + ["all"]:
        c = counts.get(kind, {})
        t = timing.get(kind) or {}
        label = "**all**" if kind == "all" else kind
        rows.append([label, f"{sum(c.values()):,}"] + [f"{c.get(o, 0):,}" for o in OUTCOMES]
                    + [f"{t['mean'] * 1000:.1f}" if t else "n/a", f"{t['max'] * 1000:.0f}" if t else "n/a"])
    lines += [md_table(["kind", "cases"] + list(OUTCOMES) + ["ms/case mean", "ms/case max"], rows), ""]
    m = info["memory"]
    lines += [f"Memory: the worker's RSS after warm-up {mib(m['baseline_rss'])} (largest of {m['workers']} "
              f"worker{'s' if m['workers'] != 1 else ''}); the largest rise of its peak RSS during a case "
              f"{mib(m['max_peak_over_baseline'])} (limit {args.memory_limit_mb:,} MiB); the largest traced "
              f"(tracemalloc: Python and numpy) peak of one case that is not a memory case "
              f"{mib(m['max_traced_peak'])}; RSS at the end of "
              f"the last worker {mib(m['final_rss'])}. Worker restarts: {info['restarts']}.",
              ""]
    dis = info["disagreements"]
    lines += ["Command line against API: " + (
        "they agree on every case (both refused, or both decoded the same pixels)." if not dis else
        f"{len(dis)} case{'s' if len(dis) != 1 else ''} where one path refused and the other decoded ("
        + ", ".join(f"{k}: {n}" for k, n in Counter(f"{d['cli']} by the command line, {d['api']} by the API"
                                                    for d in dis).most_common()) + ")."), ""]
    if info["refusals"]:
        lines += ["The most common refusal reasons (command line path; numbers replaced by N):", "",
                  md_table(["reason", "cases"], [[f"`{k}`", f"{n:,}"] for k, n in info["refusals"][:12]]), ""]
    fails = info["failures"]
    if fails:
        lines += [f"**{len(fails)} failure{'s' if len(fails) != 1 else ''}** (first {min(len(fails), SHOW_FAILURES)}; "
                  f"all, with tracebacks and bytes, in `{info['json_rel']}`; replay with `--only`):", "",
                  md_table(["case", "kind", "outcome", "path", "exception", "message", "mutation"],
                           [[str(f["case"]), f["kind"], f["outcome"], f["path"], f"`{f['type']}`",
                             _one_line(f["message"], 120).replace("|", "\\|"), _one_line(f["detail"], 80)]
                            for f in fails[:SHOW_FAILURES]]), ""]
    lines.append("Result: " + ("**FAIL**: " + ", ".join(f"{n} {o}" for o, n in
                                                         Counter(f["outcome"] for f in fails).most_common())
                               if fails else "**PASS**: no crash, no hang, no memory case."))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    prog = sys.argv[0] if argv is None else __file__
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    started = time.perf_counter()
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "command": shlex.join([sys.executable, prog] + argv), "seed": args.seed, "kinds": list(args.kinds),
            "case_timeout": args.case_timeout, "memory_limit_mb": args.memory_limit_mb, "threads": args.threads,
            "data": str(args.data.resolve())}
    data_dir = args.data / "test" / "denoise" / "kodak24"
    if not data_dir.is_dir():
        raise SystemExit(f"no folder {data_dir} (give --data)")
    pool = Pool(args)
    try:
        made = pool.make(data_dir, args.qualities)
        info.update(model=made["model"], model_sha256=made["model_sha256"], aetool=made["aetool"])
        info["sources"] = [{k: v for k, v in f.items() if k != "data"} for f in made["files"]]
        files = pool.files
        print(f"{len(files)} source files made ({', '.join(str(f['bytes']) for f in made['files'])} bytes)",
              file=sys.stderr, flush=True)
        pool.ready()
        indices = args.only if args.only else range(args.cases)
        counts: dict[str, Counter] = {}
        seconds: dict[str, list[float]] = {}
        failures, disagreements = [], []
        refusals: Counter = Counter()
        warnings_seen: Counter = Counter()
        max_peak, max_traced, final_rss = 0, 0, None
        for n, i in enumerate(indices, 1):
            case = make_case(args.seed, i, files, args.kinds)
            result = pool.run(case)
            outcome, why = outcome_of(result)
            for kind in (case.kind, "all"):
                counts.setdefault(kind, Counter())[outcome] += 1
                if result.get("seconds") is not None:
                    seconds.setdefault(kind, []).append(result["seconds"])
            if "cli" in result:
                max_peak = max(max_peak, result.get("peak_over_baseline", 0))
                if outcome != "memory":  # a failed allocation may be traced at its full size
                    max_traced = max(max_traced, result.get("traced_peak", 0))
                final_rss = result.get("rss")
                for w in result["warnings"]:
                    warnings_seen[w] += 1
                cli, api = result["cli"]["outcome"], result["api"]["outcome"]
                if cli == "refused":
                    refusals[reason_key(result["cli"]["message"])] += 1
                if {cli, api} == {"refused", "decoded"}:
                    disagreements.append({"case": i, "kind": case.kind, "cli": cli, "api": api,
                                          "message": result["cli" if cli == "refused" else "api"]["message"],
                                          "detail": case.detail})
            if why is not None:
                record = {"case": i, "kind": case.kind, "outcome": outcome, "source": case.source,
                          "detail": case.detail, **why, "seconds": result.get("seconds"),
                          "bytes": len(case.data), "data_base64": base64.b64encode(case.data).decode()}
                failures.append(record)
                print(f"case {i} ({case.kind}: {case.detail}): {outcome.upper()} in {why['path']}: "
                      f"{why.get('type')}: {why.get('message')}", file=sys.stderr, flush=True)
            if n % 250 == 0:
                c = counts["all"]
                print(f"{n} cases: " + ", ".join(f"{o} {c.get(o, 0)}" for o in OUTCOMES)
                      + f" ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    finally:
        pool.stop()
    info["wall_seconds"] = time.perf_counter() - started
    info["n_cases"] = sum(counts.get("all", Counter()).values())
    info["counts"] = {k: {o: c.get(o, 0) for o in OUTCOMES} for k, c in counts.items()}
    info["timing"] = {k: {"mean": statistics.fmean(v), "max": max(v)} for k, v in seconds.items() if v}
    info["memory"] = {"baseline_rss": max(w["baseline_rss"] for w in pool.warm_info),
                      "workers": len(pool.warm_info), "max_peak_over_baseline": max_peak,
                      "max_traced_peak": max_traced, "final_rss": final_rss}
    info["restarts"] = pool.restarts
    info["refusals"] = refusals.most_common()
    info["warnings"] = warnings_seen.most_common()
    info["disagreements"] = disagreements
    info["failures"] = failures
    try:
        info["json_rel"] = os.path.relpath(args.out_json.resolve(), ROOT)
    except ValueError:
        info["json_rel"] = str(args.out_json)
    text = report(args, info)
    write_section(args.out_md, args.section, text)
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(info, indent=1) + "\n")
    print(text)
    print(f"wrote {args.out_md} and {args.out_json}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
