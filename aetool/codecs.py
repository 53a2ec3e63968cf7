"""Classical codecs (JPEG, WebP, AVIF, and JPEG XL where a Pillow plugin provides it), through Pillow:
encode and decode 8-bit pixels, tell a file's codec from its bytes, and estimate a JPEG's quality.

The learned post-filters (`aetool denoise --kind jpeg|webp|avif`, `aetool decompress` of a standard
file) are denoising autoencoders trained on these codecs' own output, and they are told how strong
the artefacts are through their condition map: for JPEG, a value made from the quality, which a
JPEG file states in its quantisation tables (`jpeg_quality_from_tables`, exact for files written by
libjpeg's scaling of the standard tables: Pillow, most software) and which decoded pixels still show
when they keep the JPEG grid (`jpeg_quality_from_pixels`, the "JPEG ghost" of

    H. Farid, "Exposing Digital Forgeries from JPEG Ghosts", IEEE Transactions on Information
    Forensics and Security 4(1), 2009:

re-compressing a decoded JPEG at its own quality changes it least, a dip in the error curve);
for WebP and AVIF, whose files state no quality, a constant per codec (the filter is blind).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from .errors import UsageError


@dataclass(frozen=True)
class ClassicalCodec:
    name: str
    pil_format: str
    suffix: str
    quality_range: tuple[int, int]  # the range training draws from: where the codec is useful
    default_quality: int


CODECS = {
    "jpeg": ClassicalCodec("jpeg", "JPEG", ".jpg", (5, 95), 75),
    "webp": ClassicalCodec("webp", "WEBP", ".webp", (5, 90), 75),
    "avif": ClassicalCodec("avif", "AVIF", ".avif", (10, 80), 60),
    "jxl": ClassicalCodec("jxl", "JXL", ".jxl", (10, 95), 75),
}

# libjpeg's standard luminance table (ITU-T T.81 Annex K), row-major, at quality 50.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)


def register_jxl() -> bool:
    """Register pillow-jxl-plugin's JPEG XL reader and writer with Pillow, where it is installed."""
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL format on import)
    except ImportError:
        return False
    return True


def available_codecs() -> list[str]:
    """The codecs this installation's Pillow can write (JPEG XL needs pillow-jxl-plugin)."""
    from PIL import Image, features

    register_jxl()
    out = []
    for name, codec in CODECS.items():
        if name == "jpeg" or (name in ("webp", "avif") and features.check(name)) or \
                codec.suffix in Image.registered_extensions():
            out.append(name)
    return out


def get_codec(name: str) -> ClassicalCodec:
    name = name.lower()
    if name == "jpg":
        name = "jpeg"
    if name not in CODECS:
        raise UsageError(f"unknown codec '{name}'; choose one of {', '.join(CODECS)}")
    if name not in available_codecs():
        hint = " (pip install pillow-jxl-plugin)" if name == "jxl" else ""
        raise UsageError(f"this Pillow cannot write {name.upper()}{hint}; available: {', '.join(available_codecs())}")
    return CODECS[name]


def encode(pixels: np.ndarray, codec: str, quality: int, subsampling: str | None = None, **options) -> bytes:
    """uint8 (H, W, 1|3) pixels to the bytes of a standard file. subsampling: "4:2:0" (Pillow's
    default for JPEG and AVIF; WebP is always 4:2:0), "4:2:2" or "4:4:4"."""
    from PIL import Image

    c = get_codec(codec)
    img = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    kw = dict(options, quality=int(quality))
    if subsampling is not None and c.name in ("jpeg", "avif"):
        kw["subsampling"] = subsampling
    buf = io.BytesIO()
    img.save(buf, c.pil_format, **kw)
    return buf.getvalue()


def decode(data: bytes, channels: int | None = None) -> np.ndarray:
    """Bytes of a standard file to uint8 (H, W, C) pixels (C = channels, or the file's own 1 or 3)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    if channels is None:
        channels = 1 if img.mode in ("L", "I;16", "I", "1") else 3
    a = np.asarray(img.convert("L" if channels == 1 else "RGB"))
    return a[..., None] if a.ndim == 2 else a


def codec_of(head: bytes) -> str | None:
    """The classical codec of a file, from its first bytes (None for anything else)."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "avif"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "jxl"
    return None


def _ijg_table(quality: int) -> np.ndarray:
    """libjpeg's luminance table at a quality (jpeg_quality_scaling, baseline clamp to 1..255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_IJG_LUMA * scale + 50) // 100, 1, 255)


_IJG_TABLES = np.stack([_ijg_table(q) for q in range(1, 101)])


def jpeg_quality_from_tables(tables: dict) -> float:
    """The libjpeg quality (1-100) whose luminance table is closest to the file's first table
    (Pillow's `Image.quantization`, row-major). Exact for libjpeg-scaled tables; for an encoder
    with its own tables (some cameras), the nearest libjpeg quality in log step size."""
    luma = np.asarray(tables[min(tables)], dtype=np.float64)[:64]
    err = np.abs(np.log(_IJG_TABLES) - np.log(np.maximum(luma, 1))).sum(axis=1)
    return float(np.argmin(err) + 1)


def jpeg_quality_of_file(data: bytes) -> float | None:
    """The quality of a JPEG file from its quantisation tables; None if it is not a JPEG."""
    from PIL import Image

    if codec_of(data[:16]) != "jpeg":
        return None
    tables = getattr(Image.open(io.BytesIO(data)), "quantization", None)
    return jpeg_quality_from_tables(tables) if tables else None


def jpeg_quality_from_pixels(pixels: np.ndarray, crop: int = 256) -> float | None:
    """The quality that decoded JPEG pixels (uint8 or float in [0, 1], (H, W, C)) were compressed
    at, from the dip of the re-compression error (a JPEG ghost), measured on the luma of a central
    crop aligned to the 8x8 grid. None when no quality stands out: the pixels were never a JPEG,
    or were resized or cropped off the grid since, or were compressed at a quality above 97."""
    a = np.asarray(pixels)
    h, w = a.shape[:2]
    if h < 32 or w < 32:
        return None
    ch, cw = min(crop, h) // 8 * 8, min(crop, w) // 8 * 8
    y0, x0 = (h - ch) // 16 * 8, (w - cw) // 16 * 8  # keep the crop on the 8x8 grid of the whole image
    a = a[y0:y0 + ch, x0:x0 + cw]  # only the crop is converted (not a float64 copy of a whole photo)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    if a.shape[2] == 3:
        from PIL import Image

        luma = np.asarray(Image.fromarray(np.ascontiguousarray(a)).convert("L"))
    else:
        luma = a[..., 0]
    luma = np.ascontiguousarray(luma)
    ref = luma.astype(np.float64)
    qualities = np.arange(2, 100)
    err = np.array([np.mean((decode(encode(luma[..., None], "jpeg", q))[..., 0] - ref) ** 2) for q in qualities])
    # The dip: the error at q against the smaller of its neighbours' (the curve otherwise falls smoothly).
    ratio = err[1:-1] / np.maximum(np.minimum(err[:-2], err[2:]), 1e-12)
    i = int(np.argmin(ratio))
    if ratio[i] > 0.6 or qualities[i + 1] > 97:
        return None
    return float(qualities[i + 1])


def jpeg_condition(quality: float) -> float:
    """The condition map of the JPEG post-filter: roughly the RMS error a JPEG of this quality
    leaves in a photo (0-1 units), so that a Gaussian denoiser's noise-level map is a fair start."""
    q = float(np.clip(quality, 1, 100))
    return (1.5 + 100.0 / q) / 255.0
