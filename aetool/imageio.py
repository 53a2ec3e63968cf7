"""Reading and writing image files with their metadata.

Every image becomes float32 pixels in [0, 1] of shape (H, W, C), C = 1 (grey) or 3 (colour), plus
an untouched alpha plane and the metadata to write back: EXIF (orientation applied to the pixels
and reset to 1), ICC profile, DPI, bit depth. 16-bit PNG and TIFF are read and written with pypng
and tifffile because Pillow handles 16-bit colour only as 8-bit.
"""
from __future__ import annotations

import io
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import ImageError, ImageTooLargeError

DEFAULT_MAX_PIXELS = 250_000_000  # a 250 MP photo passes; a decompression bomb does not

FORMAT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif",
                     "tif": ".tif", "bmp": ".bmp", "avif": ".avif"}
PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
               ".tiff": "TIFF", ".bmp": "BMP", ".avif": "AVIF"}
SIXTEEN_BIT_SUFFIXES = {".png", ".tif", ".tiff"}
_ORIENTATION_TAG = 0x0112


@dataclass
class Picture:
    pixels: np.ndarray  # float32 (H, W, C) in [0, 1], C in {1, 3}
    alpha: np.ndarray | None = None  # float32 (H, W) in [0, 1], passed through untouched
    bit_depth: int = 8
    exif: bytes | None = None  # raw EXIF block (TIFF header first), orientation already reset
    icc: bytes | None = None
    dpi: tuple[float, float] | None = None
    source_format: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]

    def with_pixels(self, pixels: np.ndarray) -> "Picture":
        return replace(self, pixels=pixels)


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, ...) array, as ImageOps.exif_transpose does."""
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: np.swapaxes(x, 0, 1), 6: lambda x: np.rot90(x, -1),
           7: lambda x: np.swapaxes(x[::-1, ::-1], 0, 1), 8: lambda x: np.rot90(x, 1)}
    return np.ascontiguousarray(ops[orientation](a)) if orientation in ops else a


def _png_bit_depth(head: bytes) -> int:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return 8


def read_image(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode a file (or its bytes). Raises ImageError with a readable reason."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # our own limit below, with a clearer message
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except IsADirectoryError:
        raise ImageError("is a folder (use -r to go into folders)") from None
    except OSError as exc:
        raise ImageError(f"cannot read the file: {exc.strerror or exc}") from None
    if not data:
        raise ImageError("the file is empty (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("not an image file that can be read (or its format is not installed)") from None
    except Exception as exc:  # Pillow raises many types for corrupt headers
        raise ImageError(f"cannot decode the image: {exc}") from None
    w, h = im.size
    if w * h > max_pixels:
        raise ImageTooLargeError(f"the image is {w}x{h} = {w * h / 1e6:.3g} MP, above the limit of "
                                 f"{max_pixels / 1e6:.3g} MP (raise it with --max-pixels if you trust the file)")
    try:
        return _decode(im, data)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"cannot decode the image (truncated or damaged?): {exc}") from None


def _decode(im, data: bytes) -> Picture:
    from PIL import Image

    own_exif = im.getexif()
    orientation = int(own_exif.get(_ORIENTATION_TAG, 1) or 1)
    exif_obj = Image.Exif()  # a copy: editing the image's own EXIF breaks some TIFF decoders
    raw_exif = own_exif.tobytes()
    if len(own_exif) and len(raw_exif) > 6:
        exif_obj.load(raw_exif)
    if orientation != 1:
        exif_obj[_ORIENTATION_TAG] = 1
    exif = exif_obj.tobytes()[6:] if len(exif_obj) else None  # drop the "Exif\0\0" prefix
    icc = im.info.get("icc_profile") or None
    dpi = im.info.get("dpi")
    dpi = (float(dpi[0]), float(dpi[1])) if dpi else None
    fmt = im.format
    bits = 8
    alpha = None

    if fmt == "PNG" and _png_bit_depth(data[:32]) == 16:
        arr, has_alpha = _read_png16(data)
        bits = 16
        colour = arr[..., : arr.shape[2] - 1] if has_alpha else arr
        alpha = arr[..., -1] if has_alpha else None
        pixels = colour.astype(np.float32) / 65535.0
        alpha = alpha.astype(np.float32) / 65535.0 if alpha is not None else None
    elif fmt == "TIFF" and max(_tiff_bits(im)) == 16 and im.mode not in ("I;16", "I;16B", "I;16L", "I;16N"):
        import tifffile

        arr = tifffile.imread(io.BytesIO(data))
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
            arr = np.moveaxis(arr, 0, -1)
        arr = arr[..., None] if arr.ndim == 2 else arr
        bits = 16
        alpha = arr[..., 3].astype(np.float32) / 65535.0 if arr.shape[2] == 4 else None
        pixels = arr[..., :3 if arr.shape[2] >= 3 else 1].astype(np.float32) / 65535.0
    else:
        im.load()
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            arr = np.asarray(im).astype(np.float32)
            bits = 16 if mode != "I" or arr.max(initial=0) > 255 else 8
            pixels = (arr / (65535.0 if bits == 16 else 255.0)).clip(0, 1)[..., None]
        elif mode == "F":
            pixels = (np.asarray(im, np.float32) / 255.0).clip(0, 1)[..., None]
        else:
            if mode == "CMYK":
                im, icc = im.convert("RGB"), None  # a CMYK profile does not describe RGB data
            elif mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode == "1":
                im = im.convert("L")
            elif mode in ("PA", "La"):
                im = im.convert("RGBA" if mode == "PA" else "LA")
            elif mode in ("RGBa",):
                im = im.convert("RGBA")
            elif mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("RGB")
            arr = np.asarray(im)
            arr = arr[..., None] if arr.ndim == 2 else arr
            if im.mode in ("LA", "RGBA"):
                alpha = arr[..., -1].astype(np.float32) / 255.0
                arr = arr[..., :-1]
            pixels = arr.astype(np.float32) / 255.0
    if fmt == "TIFF" and bits == 8:
        orientation = 1  # Pillow's TIFF decoder has already applied it
    pixels = _orient(pixels, orientation)
    if alpha is not None:
        alpha = _orient(alpha, orientation)
    return Picture(pixels=np.ascontiguousarray(pixels, np.float32), alpha=alpha, bit_depth=bits, exif=exif,
                   icc=icc, dpi=dpi, source_format=fmt)


def _tiff_bits(im) -> tuple:
    bits = getattr(im, "tag_v2", {}).get(258, (8,))
    return bits if isinstance(bits, tuple) else (bits,)


def _read_png16(data: bytes) -> tuple[np.ndarray, bool]:
    import png

    w, h, rows, info = png.Reader(bytes=data).asDirect()
    planes = info["planes"]
    arr = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, planes)
    return arr, bool(info["alpha"])


# ----------------------------------------------------------------------------------------------
# Writing


def output_suffix(path: Path) -> str:
    return path.suffix.lower()


def to_integer(a: np.ndarray, bits: int) -> np.ndarray:
    top = 65535 if bits == 16 else 255
    return np.round(np.clip(a, 0.0, 1.0) * top).astype(np.uint16 if bits == 16 else np.uint8)


def encode_image(pic: Picture, suffix: str, quality: int | None = None) -> bytes:
    """Encode to the format of `suffix` (".png", ".jpg", ...) with metadata where it fits."""
    from PIL import Image

    suffix = suffix.lower()
    fmt = PIL_FORMATS.get(suffix)
    if fmt is None:
        raise ImageError(f"cannot write '{suffix}' files; use png, jpg, webp, tiff or bmp")
    bits = 16 if pic.bit_depth == 16 and suffix in SIXTEEN_BIT_SUFFIXES else 8
    alpha = pic.alpha
    pixels = pic.pixels
    if alpha is not None and fmt in ("JPEG", "BMP"):
        # JPEG holds no alpha, and few readers honour BMP's: flatten onto white, as viewers show it.
        pixels = pixels * alpha[..., None] + (1.0 - alpha[..., None])
        alpha = None
    planes = [pixels] + ([alpha[..., None]] if alpha is not None else [])
    arr = to_integer(np.concatenate(planes, axis=2), bits)
    if bits == 16:
        return _encode_png16(arr, pic) if fmt == "PNG" else _encode_tiff16(arr, pic)
    c = arr.shape[2]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    im = Image.fromarray(arr[..., 0] if c == 1 else arr, mode)
    kwargs: dict = {}
    if pic.icc:
        kwargs["icc_profile"] = pic.icc
    if pic.exif and fmt in ("PNG", "JPEG", "WEBP", "TIFF", "AVIF"):
        kwargs["exif"] = b"Exif\x00\x00" + pic.exif
    if pic.dpi and fmt in ("PNG", "JPEG", "TIFF", "BMP"):
        kwargs["dpi"] = tuple(round(d) for d in pic.dpi)
    if fmt == "JPEG":
        kwargs.update(quality=quality or 95, subsampling=0 if (quality or 95) >= 90 else 2, optimize=True)
    elif fmt == "WEBP":
        kwargs.update(quality=quality or 95, method=4) if quality != 100 else kwargs.update(lossless=True)
    elif fmt == "AVIF":
        kwargs.update(quality=quality or 90)
    elif fmt == "PNG":
        kwargs.update(compress_level=6)
    elif fmt == "TIFF":
        kwargs.update(compression="tiff_deflate")
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _encode_png16(arr: np.ndarray, pic: Picture) -> bytes:
    import png

    h, w, c = arr.shape
    writer = png.Writer(width=w, height=h, greyscale=c in (1, 2), alpha=c in (2, 4), bitdepth=16,
                        compression=6)
    buf = io.BytesIO()
    writer.write(buf, arr.reshape(h, w * c))
    chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
    extra = []
    if pic.icc:
        extra.append((b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(pic.icc)))
    if pic.dpi:
        extra.append((b"pHYs", struct.pack(">IIB", round(pic.dpi[0] / 0.0254), round(pic.dpi[1] / 0.0254), 1)))
    if pic.exif:
        extra.append((b"eXIf", pic.exif))
    # Ancillary chunks go before the first IDAT (iCCP must).
    chunks = chunks[:1] + extra + chunks[1:]
    out = io.BytesIO()
    png.write_chunks(out, chunks)
    return out.getvalue()


def _encode_tiff16(arr: np.ndarray, pic: Picture) -> bytes:
    import tifffile

    c = arr.shape[2]
    kwargs: dict = {"photometric": "rgb" if c >= 3 else "minisblack", "compression": "zlib"}
    if c in (2, 4):
        kwargs["extrasamples"] = ["unassalpha"]
    if pic.dpi:
        kwargs["resolution"] = (pic.dpi[0], pic.dpi[1])
        kwargs["resolutionunit"] = "INCH"
    if pic.icc:
        kwargs["extratags"] = [(34675, 7, len(pic.icc), pic.icc, True)]
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr[..., 0] if c == 1 else arr, **kwargs)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the target folder, then rename: no reader ever sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".aetool-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
