"""Classical codecs with a learned decoder: `aetool compress --codec jpeg|webp|avif` writes a standard
file that every viewer opens; `aetool decompress` decodes such a file with the codec's own decoder
and then the learned post-filter for that codec (a denoising autoencoder trained on its artefacts,
aetool.tasks.denoise with kind=codec), so the same bytes give a better image. Nothing is added to
the file: the JPEG filter reads the quality from the file's quantisation tables, the WebP and AVIF
filters are blind."""
from __future__ import annotations

import numpy as np

from ..codecs import codec_of, get_codec
from ..engine import EngineOptions
from ..errors import ImageError, UsageError
from ..imageio import Picture, encode_image, read_image

# The Picture's source_format (Pillow's name) to the codec whose post-filter applies.
_FORMAT_CODECS = {"JPEG": "jpeg", "WEBP": "webp", "AVIF": "avif", "JXL": "jxl"}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


def encode_classical(pic: Picture, codec: str, *, quality: int | None = None, bpp: float | None = None,
                     size: int | None = None, psnr: float | None = None, strip: bool = False) -> tuple[bytes, dict]:
    """A standard file of `codec` (jpeg, webp, avif; jxl with a plugin) and its record. Exactly one
    target at most: `quality` (1-100; default the codec's), `size` (bytes) or `bpp`: the largest
    quality whose file is not bigger; `psnr` (dB, 8-bit): the smallest quality that reaches it.
    Each search bisects the integer quality (7 encodes). Metadata (ICC, EXIF, XMP) is kept unless
    `strip`."""
    c = get_codec(codec)
    if sum(v is not None for v in (quality, bpp, size, psnr)) > 1:
        raise UsageError("give one of --quality, --bpp, --size or --psnr")
    if quality is not None and not 1 <= quality <= 100:
        raise UsageError(f"--quality for {c.name.upper()} is 1 (smallest) to 100 (best), got {quality:g}")
    if strip:
        from dataclasses import replace

        pic = replace(pic, icc=None, exif=None, xmp=None)
    pixels = np.ascontiguousarray(pic.pixels)
    h, w = pic.height, pic.width

    def at(q: int) -> bytes:
        # WebP's quality 100 would be lossless in encode_image: here 100 is the top lossy quality.
        return encode_image(pic.with_pixels(pixels), c.suffix, quality=min(q, 99) if c.name == "webp" else q)

    if bpp is not None or size is not None:
        limit = size if size is not None else bpp * h * w / 8
        ok = lambda q: len(at(q)) <= limit  # noqa: E731
    elif psnr is not None:
        reference = np.round(np.clip(pixels, 0, 1) * 255)

        def ok(q: int) -> bool:
            out = read_image(at(q)).pixels
            return _psnr(np.round(out * 255), reference) >= psnr
    else:
        q = int(quality if quality is not None else c.default_quality)
        data = at(q)
        return data, {"codec": c.name, "quality": q}
    # Bigger quality, bigger file and higher PSNR (near enough for a bisection).
    want_small = psnr is None  # size: largest passing quality; psnr: smallest passing quality
    low, high = 1, 100
    if want_small:
        if not ok(1):
            data = at(1)
            return data, {"codec": c.name, "quality": 1, "warning": f"the target of {limit:,.0f} bytes is below the "
                          f"smallest {c.name.upper()} file ({len(data):,} bytes at quality 1); wrote that"}
        while low < high:  # invariant: ok(low)
            mid = (low + high + 1) // 2
            low, high = (mid, high) if ok(mid) else (low, mid - 1)
        return at(low), {"codec": c.name, "quality": low}
    if not ok(100):
        return at(100), {"codec": c.name, "quality": 100,
                         "warning": f"{psnr:g} dB is above what {c.name.upper()} reaches at quality 100; wrote that"}
    while low < high:  # invariant: ok(high)
        mid = (low + high) // 2
        low, high = (low, mid) if ok(mid) else (mid + 1, high)
    return at(high), {"codec": c.name, "quality": high}


def is_lossless_webp(data: bytes) -> bool:
    """A WebP whose image chunk is VP8L (lossless): there are no artefacts to filter."""
    pos = 12
    while pos + 8 <= len(data):
        tag, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if tag in (b"VP8 ", b"VP8L"):
            return tag == b"VP8L"
        pos += 8 + length + (length & 1)
    return False


class ClassicalDecoder:
    """Decodes standard files (already read into a Picture) and applies the learned post-filter of
    their codec, one Denoiser per codec, made when first needed; filter=False: the plain decode."""

    def __init__(self, model: str | None = None, options: EngineOptions | None = None, filter: bool = True):
        self.options = options
        self.filter = filter
        self.model = model
        self._filters: dict = {}

    def filter_for(self, codec: str):
        """The named model for the codecs it knows, the installed default for the others; None
        where no post-filter for the codec is installed (JPEG XL: none is shipped)."""
        from ..errors import ModelError
        from ..registry import find_card
        from .denoise import Denoiser, model_kinds

        if codec not in self._filters:
            model = self.model if self.model and codec in model_kinds(find_card(self.model)) else None
            try:
                self._filters[codec] = Denoiser(model, self.options, kind=codec)
            except ModelError:
                if model is not None:
                    raise  # the named model itself is broken
                self._filters[codec] = None
        return self._filters[codec]

    def picture(self, pic: Picture) -> tuple[Picture, dict]:
        codec = _FORMAT_CODECS.get(pic.source_format or "")
        if codec is None:
            raise ImageError(f"not a JPEG, WebP or AVIF file ({pic.source_format or 'unknown format'}); "
                             "decompress reads .aei files and those codecs' files")
        info = {"codec": codec}
        if pic.extra.get("lossless"):
            info["filter"] = None
            info["note"] = "lossless file: decoded as it is"
            return pic, info
        post_filter = self.filter_for(codec) if self.filter else None
        if post_filter is None:
            info["filter"] = None
            if self.filter:
                info["note"] = f"no post-filter for {codec.upper()} is installed: the codec's own decode"
            return pic, info
        out, record = post_filter.picture(pic)
        info["filter"] = record.pop("model", None)
        record.pop("kind", None)  # the codec says it
        info.update(record)
        return out, info


def read_standard(source, max_pixels: int, output_size=None) -> Picture:
    """A JPEG/WebP/AVIF file (path or bytes) read as a Picture, a lossless WebP marked as such."""
    from pathlib import Path

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    pic = read_image(data, max_pixels, output_size)
    if codec_of(data[:16]) == "webp" and is_lossless_webp(data):
        pic.extra["lossless"] = True
    return pic
