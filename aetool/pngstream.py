"""PNG files written strip by strip from a numpy array, straight to a file.

Pillow encodes a PNG only from an image of its own: a copy of the pixels at 4 bytes a pixel (8-bit
RGB), with the encoded bytes then held in memory too. For the outputs aetool makes largest (x4 of a
24 MP photo: 384 MP) that copy alone is more memory than the output itself. Here each strip of rows
is filtered and handed to a deflate compressor (a zlib stream, as in every PNG encoder), and the
compressed bytes go to the file as they come: beside the array, only a strip is held.

Every row uses the "Up" filter (the difference to the row above): one vectorised subtraction,
independent of the sample size, so 8 and 16 bits share it. The deflate stream is ISA-L's (python-isal,
the same zlib format, written by Intel's SIMD deflate) at its level 2: about a quarter of the CPU of
zlib's fastest level 1 for files at most 3 % larger (benchmarks/png_level.py, bsd200 training photos);
on a 2-core machine the encoder's CPU is taken from the model that runs beside it (the folder
pipeline). `compressobj=` writes with another zlib-stream compressor (zlib's, for instance).
"""
from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: grey, grey+alpha, RGB, RGBA
_STRIP_BYTES = 4 << 20  # rows per strip: about 4 MB of samples
_UP = 2  # PNG filter type "Up"
# ISA-L's deflate level (0-3; 2 is its default): at 3 the files were within 0.5 % of these for
# 1.3-1.7x the CPU, at 0 21-30 % larger (benchmarks/png_level.py --compressors isal-0,isal-1,isal-3).
DEFLATE_LEVEL = 2


def _deflater():
    """The compressor of the image data unless write_png is told otherwise."""
    from isal import isal_zlib

    return isal_zlib.compressobj(DEFLATE_LEVEL)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_png(f: BinaryIO, arr: np.ndarray, *, icc: bytes | None = None,
              dpi: tuple[float, float] | None = None, exif: bytes | None = None,
              text: list[tuple[bytes, bytes]] = (), compressobj=None) -> None:
    """Write (H, W, C) uint8 or uint16 pixels (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) as a PNG to
    the binary file `f`, with an ICC profile, DPI (pHYs, rounded as Pillow writes it), an EXIF
    block (eXIf, without the "Exif" prefix) and text chunks (kind, body) where given.
    The image data is deflated by ISA-L at DEFLATE_LEVEL, or by `compressobj()` when given (any
    zlib-stream compressor with `compress` and `flush`: `lambda: zlib.compressobj(1)`)."""
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    if arr.dtype not in (np.uint8, np.uint16) or c not in _COLOUR_TYPES:
        raise ValueError(f"cannot write {arr.dtype} pixels with {c} channels as PNG")
    depth = 16 if arr.dtype == np.uint16 else 8
    f.write(SIGNATURE)
    f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, _COLOUR_TYPES[c], 0, 0, 0)))
    if icc:  # before pHYs and the image data, as the specification orders it
        f.write(chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if dpi:
        per_metre = [int(round(d) / 0.0254 + 0.5) for d in dpi]
        f.write(chunk(b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1)))
    if exif:
        f.write(chunk(b"eXIf", exif))
    for kind, body in text:
        f.write(chunk(kind, body))
    row_bytes = w * c * depth // 8
    rows = max(1, _STRIP_BYTES // max(1, row_bytes))
    compressor = (compressobj or _deflater)()
    previous = np.zeros((1, row_bytes), np.uint8)  # the row above the first is zeros
    strip = np.empty((rows, row_bytes + 1), np.uint8)
    strip[:, 0] = _UP
    for y in range(0, h, rows):
        part = arr[y:y + rows]
        n = part.shape[0]
        if depth == 16:
            part = part.astype(">u2")  # PNG samples are big-endian
        samples = np.ascontiguousarray(part).view(np.uint8).reshape(n, row_bytes)
        out = strip[:n]
        np.subtract(samples[:1], previous, out=out[:1, 1:])
        np.subtract(samples[1:], samples[:-1], out=out[1:, 1:])  # uint8: wraps modulo 256, as PNG asks
        previous = samples[-1:].copy()
        data = compressor.compress(out)
        if data:
            f.write(chunk(b"IDAT", data))
    f.write(chunk(b"IDAT", compressor.flush()))
    f.write(chunk(b"IEND", b""))
