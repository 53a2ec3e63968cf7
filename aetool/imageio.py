"""Reading and writing image files with their metadata.

Every image becomes float32 pixels in [0, 1] of shape (H, W, C), C = 1 (grey) or 3 (colour), plus
an untouched alpha plane and the metadata to write back: EXIF (orientation applied to the pixels
and reset to 1; pixel size and resolution updated to what is written), ICC profile, DPI, XMP, PNG
text chunks, bit depth. Pillow handles 16-bit colour only as 8-bit: 16-bit PNG is read with pypng,
16-bit TIFF read and written with tifffile. Every PNG is written by aetool.pngstream, strip by
strip, without a copy of the image.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .atomic import write_atomic  # noqa: F401 - re-exported: batch.py writes outputs with it
from .errors import ImageError
from .limits import OutputSize, check_image_size

DEFAULT_MAX_PIXELS = 250_000_000  # a 250 MP photo passes; a decompression bomb does not
_READ_WHOLE_BELOW = 16 << 20  # files smaller than this are read at once; larger ones decoded from the disk

FORMAT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif",
                     "tif": ".tif", "bmp": ".bmp", "avif": ".avif"}
PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
               ".tiff": "TIFF", ".bmp": "BMP", ".avif": "AVIF", ".jxl": "JXL"}  # JXL: with pillow-jxl-plugin
SIXTEEN_BIT_SUFFIXES = {".png", ".tif", ".tiff"}
_ORIENTATION_TAG = 0x0112
_X_RESOLUTION, _Y_RESOLUTION, _RESOLUTION_UNIT = 0x011A, 0x011B, 0x0128  # IFD0
_EXIF_IFD, _GPS_IFD, _PIXEL_X_DIMENSION, _PIXEL_Y_DIMENSION = 0x8769, 0x8825, 0xA002, 0xA003
_TIFF_XMP_TAG = 700
# The first IFD of a TIFF is also its EXIF: these tags are its pixel layout (size, bits, strips,
# tiles, compression), plus ICC and XMP, which Picture carries apart. Not metadata to write back.
_TIFF_LAYOUT_TAGS = {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324,
                     325, 338, 339, 340, 341, 530, 532, 34675, _TIFF_XMP_TAG}
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_PNG_XMP_KEYWORD = b"XML:com.adobe.xmp"  # the iTXt chunk that holds XMP in PNG
_JPEG_MAX_XMP = 65504  # one APP1 segment; Pillow does not write extended XMP
# A HEIF container (ISO BMFF 'ftyp' box) with one of these major brands; AVIF Pillow reads itself.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}


@dataclass
class Picture:
    # float32 (H, W, C) in [0, 1], C in {1, 3}. A task's output may instead be uint8 or uint16 (of
    # the picture's bit depth), assembled so by the engine for outputs too large to hold as floats,
    # and so may the input of a task that asked read_image for integers (upscale, denoise).
    pixels: np.ndarray
    alpha: np.ndarray | None = None  # float32 (H, W) in [0, 1], passed through untouched
    bit_depth: int = 8
    exif: bytes | None = None  # raw EXIF block (TIFF header first), orientation already reset
    icc: bytes | None = None
    dpi: tuple[float, float] | None = None
    source_format: str | None = None
    xmp: bytes | None = None  # the XMP packet, written to JPEG, PNG, WebP, TIFF and AVIF outputs
    png_text: list = field(default_factory=list)  # (type, body) of a PNG input's tEXt/zTXt/iTXt chunks
    jpeg_quality: float | None = None  # a JPEG input's quality, from its quantisation tables
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


def read_image(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               output_size: OutputSize | None = None, integer: bool = False) -> Picture:
    """Decode a file (or its bytes). Raises ImageError with a readable reason. The declared size is
    checked against `max_pixels` and the memory available before any pixel is decoded;
    `output_size` ((h, w) -> (h, w)) lets a command that enlarges images check its output too.
    `integer`: 8-bit and 16-bit PNG/TIFF pixels stay uint8/uint16 as decoded (a quarter or half of
    float32's memory) for a task that converts them tile by tile (upscale, denoise); alpha is
    float32 either way."""
    with contextlib.ExitStack() as stack:
        try:
            if isinstance(source, bytes):
                data = source
            elif os.path.getsize(source) < _READ_WHOLE_BELOW:
                data = Path(source).read_bytes()
            else:  # a large file is decoded from the disk as Pillow reads it, not also held as bytes
                data = stack.enter_context(open(source, "rb"))
        except IsADirectoryError:
            raise ImageError("is a folder (use -r to go into folders)") from None
        except OSError as exc:
            raise ImageError(f"cannot read the file: {exc.strerror or exc}") from None
        im = _open_image(data)
        _check_declared_size(im, max_pixels, output_size, integer)
        try:
            return _decode(im, data, integer)
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(f"cannot decode the image (truncated or damaged?): {exc}") from None


def probe_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, output_size: OutputSize | None = None,
                verify: bool = False, integer: bool = False) -> tuple[int, int]:
    """(width, height) from the header alone, with the checks read_image makes before decoding
    (empty, not an image, damaged header, above the pixel or memory limit; `integer` as in
    read_image); `verify` also walks the file's structure (Pillow's verify: PNG chunk checksums,
    truncation). Raises ImageError."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            f.seek(0)
            im = _open_image(head if len(head) < (1 << 16) else f)
            _check_declared_size(im, max_pixels, output_size, integer)
            if verify:
                try:
                    im.verify()
                except Exception as exc:  # Pillow raises many types for damaged files
                    raise ImageError(f"cannot decode the image (truncated or damaged?): {exc}") from None
            return im.size
    except IsADirectoryError:
        raise ImageError("is a folder (use -r to go into folders)") from None
    except OSError as exc:
        raise ImageError(f"cannot read the file: {exc.strerror or exc}") from None


def _open_image(data):
    """Pillow's lazy open (header only) of bytes or a binary file object."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # our own limit (limits.check_image_size), with a clearer message
    if isinstance(data, bytes):
        if not data:
            raise ImageError("the file is empty (0 bytes)")
        data = io.BytesIO(data)
    try:
        im = Image.open(data)
    except UnidentifiedImageError:
        if not _register_heif_opener(data):
            raise ImageError("not an image file that can be read (or its format is not installed)") from None
        data.seek(0)
        return _open_image(data)
    except Exception as exc:  # Pillow raises many types for corrupt headers
        raise ImageError(f"cannot decode the image: {exc}") from None
    return im


def _register_heif_opener(data) -> bool:
    """For a HEIC/HEIF file (seekable `data`), teach Pillow to read it with pillow-heif, imported only
    now: True if that was needed and done; raises ImageError when pillow-heif is not installed."""
    from PIL import Image

    data.seek(0)
    head = data.read(12)
    if head[4:8] != b"ftyp" or head[8:12] not in _HEIF_BRANDS or "HEIF" in Image.OPEN:
        return False  # not HEIF, or pillow-heif is registered and still cannot read it
    try:
        import pillow_heif
    except ImportError:
        raise ImageError('a HEIC/HEIF image; install the HEIC extra: pip install "aetool[heic]"') from None
    pillow_heif.register_heif_opener()
    return True


def _check_declared_size(im, max_pixels: int, output_size: OutputSize | None, integer: bool = False) -> None:
    w, h = im.size
    bands = len(im.getbands())
    sample_bytes = 2 if ("16" in im.mode or im.mode in ("I", "F") or _png_bit_depth_of(im) == 16) else 1
    check_image_size(w, h, bands, sample_bytes, max_pixels, output_size, integer)


def _png_bit_depth_of(im) -> int:
    # Pillow opens 16-bit RGB PNGs as 8-bit "RGB"; its raw mode ("RGB;16B") tells what we decode.
    tile = getattr(im, "tile", None) or []
    return 16 if im.format == "PNG" and tile and "16" in str(tile[0][3]) else 8


def _writable_array(im) -> np.ndarray:
    """The 8-bit pixels of a loaded Pillow image as a writable array (a task may write its output
    over them), copied a strip at a time: np.asarray gives a read-only view of a bytes copy, and
    np.array a second copy on top of that one."""
    w, h = im.size
    bands = len(im.getbands())
    arr = np.empty((h, w, bands) if bands > 1 else (h, w), np.uint8)
    step = max(1, (8 << 20) // max(1, w * bands))
    for y in range(0, h, step):
        arr[y:y + step] = np.asarray(im.crop((0, y, w, min(h, y + step))))
    return arr


def _all_bytes(data) -> bytes:
    """The whole file, from its bytes or its (open, binary) file."""
    if isinstance(data, bytes):
        return data
    data.seek(0)
    return data.read()


def _decode(im, data, integer: bool = False) -> Picture:
    """`data`: the file's bytes, or the open file itself (a large one)."""
    from PIL import Image

    source, quantization = im, getattr(im, "quantization", None) if im.format == "JPEG" else None
    png16 = _png_bit_depth_of(im) == 16  # from the tile Pillow plans: asked before getexif(), which may load

    own_exif = im.getexif()
    orientation = int(own_exif.get(_ORIENTATION_TAG, 1) or 1)
    exif_obj = Image.Exif()  # a copy: editing the image's own EXIF breaks some TIFF decoders
    raw_exif = own_exif.tobytes()
    if len(own_exif) and len(raw_exif) > 6:
        exif_obj.load(raw_exif)
    if orientation != 1:
        exif_obj[_ORIENTATION_TAG] = 1
    for tag in _TIFF_LAYOUT_TAGS & set(exif_obj):  # a TIFF's own layout: stale in any other file
        del exif_obj[tag]
    exif = exif_obj.tobytes()[6:] if len(exif_obj) else None  # drop the "Exif\0\0" prefix
    icc = im.info.get("icc_profile") or None
    dpi = im.info.get("dpi")
    dpi = (float(dpi[0]), float(dpi[1])) if dpi else None
    fmt = im.format
    png_text, xmp = _png_text_chunks(data) if fmt == "PNG" else ([], im.info.get("xmp"))
    xmp = xmp.encode() if isinstance(xmp, str) else (xmp or None)
    if xmp and orientation != 1:  # the pixels are turned now: an XMP orientation would turn them again
        xmp = _xmp_with(xmp, {"tiff:Orientation": 1})
    bits = 8
    alpha = None

    if png16:
        arr, has_alpha = _read_png16(_all_bytes(data))
        bits = 16
        colour = arr[..., : arr.shape[2] - 1] if has_alpha else arr
        alpha = arr[..., -1] if has_alpha else None
        pixels = colour if integer else colour.astype(np.float32) / 65535.0
        alpha = alpha.astype(np.float32) / 65535.0 if alpha is not None else None
    elif fmt == "TIFF" and max(_tiff_bits(im)) == 16 and im.mode not in ("I;16", "I;16B", "I;16L", "I;16N"):
        import tifffile

        arr = tifffile.imread(io.BytesIO(_all_bytes(data)))
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
            arr = np.moveaxis(arr, 0, -1)
        arr = arr[..., None] if arr.ndim == 2 else arr
        bits = 16
        alpha = arr[..., 3].astype(np.float32) / 65535.0 if arr.shape[2] == 4 else None
        pixels = arr[..., :3 if arr.shape[2] >= 3 else 1]
        pixels = pixels if integer else pixels.astype(np.float32) / 65535.0
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
            arr = _writable_array(im) if integer else np.asarray(im)
            arr = arr[..., None] if arr.ndim == 2 else arr
            if im.mode in ("LA", "RGBA"):
                alpha = arr[..., -1].astype(np.float32) / 255.0
                arr = arr[..., :-1]
            # Pillow's copy (4 bytes a pixel) is not needed any more: freed before the floats are
            # made, and those divided in place (a 100 MP photo: 2.4 GB less at the peak).
            im.close()
            source.close()
            if integer:
                pixels = arr
            else:
                pixels = arr.astype(np.float32)
                np.divide(pixels, 255.0, out=pixels)
            del arr
    if fmt == "TIFF" and bits == 8:
        orientation = 1  # Pillow's TIFF decoder has already applied it
    pixels = _orient(pixels, orientation)
    if alpha is not None:
        alpha = _orient(alpha, orientation)
    jpeg_quality = None
    if fmt == "JPEG" and quantization:
        from .codecs import jpeg_quality_from_tables

        jpeg_quality = jpeg_quality_from_tables(quantization)
    pixels = np.ascontiguousarray(pixels) if pixels.dtype.kind == "u" else np.ascontiguousarray(pixels, np.float32)
    return Picture(pixels=pixels, alpha=alpha, bit_depth=bits, exif=exif,
                   icc=icc, dpi=dpi, source_format=fmt, xmp=xmp, png_text=png_text, jpeg_quality=jpeg_quality)


def _png_text_chunks(data) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    """A PNG's tEXt/zTXt/iTXt chunks as they are (wherever they stand, also after the pixels),
    and its XMP packet, which is one of them. `data`: the file's bytes or the open file (whose
    image data is skipped over, not read)."""
    if not isinstance(data, bytes):
        position = data.tell()
        try:
            return _png_text_chunks_of_file(data)
        finally:
            data.seek(position)
    chunks, xmp, pos = [], None, 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IEND":
            break
        if kind in _PNG_TEXT_CHUNKS:
            if kind == b"iTXt" and body.split(b"\0", 1)[0] == _PNG_XMP_KEYWORD:
                xmp = _itxt_text(body)
            else:
                chunks.append((kind, body))
        pos += 12 + length
    return chunks, xmp


def _png_text_chunks_of_file(f) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    """_png_text_chunks of an open file: each chunk's header read, and the bodies of text chunks."""
    found = []
    f.seek(8)
    while len(head := f.read(8)) == 8:
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            break
        if kind in _PNG_TEXT_CHUNKS:
            found.append(head + f.read(length + 4))
        else:
            f.seek(length + 4, os.SEEK_CUR)
    return _png_text_chunks(b"\x89PNG\r\n\x1a\n" + b"".join(found))


def _itxt_text(body: bytes) -> bytes | None:
    """The text of an iTXt chunk: keyword, 0, compressed flag, method, language, 0, translated
    keyword, 0, UTF-8 text (zlib-compressed when the flag is set)."""
    try:
        rest = body.split(b"\0", 1)[1]
        compressed, text = rest[0], rest[2:].split(b"\0", 2)[2]
        return zlib.decompressobj().decompress(text, 1 << 24) if compressed else text  # 16 MB cap
    except (IndexError, zlib.error):
        return None


def _xmp_with(xmp: bytes, values: dict[str, int]) -> bytes:
    """XMP with the given properties (`tiff:Orientation`, `exif:PixelXDimension`...) set where they
    are present, as attributes (name="6") or elements (<name>6</name>); others are not added."""
    for name, value in values.items():
        key, new = re.escape(name.encode()), rb"\g<1>" + str(value).encode() + rb"\g<2>"
        xmp = re.sub(rb"(\b" + key + rb"\s*=\s*[\"'])[^\"']*([\"'])", new, xmp)
        xmp = re.sub(rb"(<" + key + rb">)[^<]*(</" + key + rb">)", new, xmp)
    return xmp


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
    """Floats in [0, 1] (clipped) as uint8/uint16, rounded half to even; one temporary, worked in
    place (a third of the time of clip, multiply and round each making a copy)."""
    top = 65535 if bits == 16 else 255
    t = a * np.float32(top) if a.dtype == np.float32 else a * top
    return _clip_round(t, top).astype(np.uint16 if bits == 16 else np.uint8)


def levels_in_place(a: np.ndarray, bits: int) -> np.ndarray:
    """to_integer's values, left in the float array `a` itself (scaled, clipped and rounded in place):
    for a caller that assigns them into an integer array it already has (the engine's assembly)."""
    top = 65535 if bits == 16 else 255
    a *= top
    return _clip_round(a, top)


def _clip_round(t: np.ndarray, top: int) -> np.ndarray:
    np.clip(t, 0, top, out=t)
    np.rint(t, out=t)
    return t


def as_float(a: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1]: float arrays as they are, uint8/uint16 scaled."""
    if a.dtype.kind == "f":
        return a
    return a.astype(np.float32) / np.float32(np.iinfo(a.dtype).max)


def _as_integer(a: np.ndarray, bits: int) -> np.ndarray:
    """Pixels (float in [0, 1], or integers as a task assembled them) as integers of `bits`."""
    if a.dtype == (np.uint16 if bits == 16 else np.uint8):
        return a
    return to_integer(as_float(a), bits)


def encode_image(pic: Picture, suffix: str, quality: int | None = None) -> bytes:
    """The bytes of `pic` in the format of `suffix` (".png", ".jpg", ...) with metadata where it
    fits. To a file, `write_image` holds less memory: the encoded bytes go out as they come."""
    buf = io.BytesIO()
    write_image(pic, buf, suffix, quality)
    return buf.getvalue()


def write_image(pic: Picture, f, suffix: str, quality: int | None = None) -> None:
    """Encode to the binary file `f` in the format of `suffix` with metadata where it fits. PNG
    (8 and 16 bits) is written strip by strip from the pixels (aetool.pngstream), without Pillow's
    copy of the image; the other formats go through Pillow (JPEG, WebP, TIFF, ...) or tifffile."""
    from PIL import Image

    suffix = suffix.lower()
    fmt = PIL_FORMATS.get(suffix)
    if fmt is None:
        raise ImageError(f"cannot write '{suffix}' files; use png, jpg, webp, tiff, bmp or avif")
    pic = _metadata_as_written(pic)
    bits = 16 if pic.bit_depth == 16 and suffix in SIXTEEN_BIT_SUFFIXES else 8
    alpha = pic.alpha
    pixels = pic.pixels
    if alpha is not None and fmt in ("JPEG", "BMP"):
        # JPEG holds no alpha, and few readers honour BMP's: flatten onto white, as viewers show it.
        pixels = as_float(pixels) * alpha[..., None] + (1.0 - alpha[..., None])
        alpha = None
    arr = _as_integer(pixels, bits)  # no copy when a task already gave integers of that depth
    if alpha is not None:
        arr = np.concatenate([arr, _as_integer(alpha[..., None], bits)], axis=2)
    if fmt == "PNG":
        from .pngstream import write_png

        # (deflated by ISA-L, fast beside the model: the choice is pngstream's, see there)
        write_png(f, arr, icc=pic.icc, dpi=pic.dpi, exif=pic.exif, text=_png_text_for(pic))
        return
    if bits == 16:
        _write_tiff16(f, arr, pic)
        return
    c = arr.shape[2]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    im = Image.fromarray(arr[..., 0] if c == 1 else arr, mode)
    kwargs: dict = {}
    if pic.icc:
        kwargs["icc_profile"] = pic.icc
    if pic.exif and fmt in ("JPEG", "WEBP", "AVIF"):
        kwargs["exif"] = b"Exif\x00\x00" + pic.exif
    elif (pic.exif or pic.xmp) and fmt == "TIFF":
        kwargs["exif"] = _tiff_tags(pic)
    if pic.dpi and fmt in ("JPEG", "TIFF", "BMP"):
        kwargs["dpi"] = tuple(round(d) for d in pic.dpi)
    if pic.xmp and (fmt in ("WEBP", "AVIF") or (fmt == "JPEG" and len(pic.xmp) <= _JPEG_MAX_XMP)):
        kwargs["xmp"] = pic.xmp
    if fmt == "JPEG":
        kwargs.update(quality=quality or 95, subsampling=0 if (quality or 95) >= 90 else 2, optimize=True)
    elif fmt == "WEBP":
        kwargs.update(quality=quality or 95, method=4) if quality != 100 else kwargs.update(lossless=True)
    elif fmt == "AVIF":
        kwargs.update(quality=quality or 90)
    elif fmt == "JXL":
        from .codecs import register_jxl

        if not register_jxl():
            raise ImageError("cannot write JPEG XL: pip install pillow-jxl-plugin")
        kwargs.update(quality=quality or 90)
    elif fmt == "TIFF":
        kwargs.update(compression="tiff_deflate")
    im.save(f, format=fmt, **kwargs)


def _metadata_as_written(pic: Picture) -> Picture:
    """EXIF and XMP that describe the image about to be written: its pixel size (EXIF
    PixelX/YDimension, XMP exif:PixelX/YDimension and tiff:ImageWidth/Length) and, where EXIF stores
    a resolution, the DPI written beside it. Only fields already there change; without this an
    upscaled photo would claim its old size."""
    h, w = pic.height, pic.width
    exif = _exif_as_written(pic.exif, w, h, pic.dpi) if pic.exif else pic.exif
    xmp = pic.xmp and _xmp_with(pic.xmp, {"exif:PixelXDimension": w, "exif:PixelYDimension": h,
                                          "tiff:ImageWidth": w, "tiff:ImageLength": h})
    return pic if (exif, xmp) == (pic.exif, pic.xmp) else replace(pic, exif=exif, xmp=xmp)


def _exif_as_written(exif: bytes, width: int, height: int, dpi: tuple[float, float] | None) -> bytes:
    from PIL import Image, TiffImagePlugin

    tags = Image.Exif()
    try:
        tags.load(b"Exif\x00\x00" + exif)
    except Exception:  # EXIF that Pillow cannot parse (Pillow raises many types): kept as it came
        return exif
    changed = False
    size_tags = tags.get_ifd(_EXIF_IFD) if _EXIF_IFD in tags else {}  # get_ifd would add an empty one
    for tag, value in ((_PIXEL_X_DIMENSION, width), (_PIXEL_Y_DIMENSION, height)):
        if tag in size_tags and size_tags[tag] != value:
            size_tags[tag] = value
            changed = True
    unit = tags.get(_RESOLUTION_UNIT, 2)  # 2: inches (the default), 3: centimetres, 1: no unit
    if dpi and unit in (2, 3):
        for tag, d in ((_X_RESOLUTION, dpi[0]), (_Y_RESOLUTION, dpi[1])):
            value = round(d) if unit == 2 else round(d / 2.54, 2)  # as the DPI field is written
            if tag in tags and float(tags[tag]) != value:
                tags[tag] = TiffImagePlugin.IFDRational(value)
                changed = True
    return tags.tobytes()[6:] if changed else exif


def _tiff_tags(pic: Picture):
    """The EXIF tags and XMP of a TIFF output, all in its first IFD. Pillow cannot write EXIF's
    sub-IFDs (exposure, GPS) to a compressed TIFF ("Error setting from dictionary"): they are left
    out rather than fail the file."""
    from PIL import Image

    tags = Image.Exif()
    if pic.exif:
        try:
            tags.load(b"Exif\x00\x00" + pic.exif)
        except Exception:  # unparsable EXIF cannot become TIFF tags: left out rather than fail the file
            tags = Image.Exif()
        for sub_ifd in (_EXIF_IFD, _GPS_IFD):
            tags.pop(sub_ifd, None)
    if pic.xmp:
        tags[_TIFF_XMP_TAG] = pic.xmp
    return tags


def _png_text_for(pic: Picture) -> list[tuple[bytes, bytes]]:
    """PNG chunks for the text of a PNG input and for XMP (an uncompressed iTXt chunk, as XMP's
    specification asks)."""
    chunks = list(pic.png_text)
    if pic.xmp:
        chunks.append((b"iTXt", _PNG_XMP_KEYWORD + b"\0\0\0\0\0" + pic.xmp))
    return chunks


def _write_tiff16(f, arr: np.ndarray, pic: Picture) -> None:
    import tifffile

    c = arr.shape[2]
    kwargs: dict = {"photometric": "rgb" if c >= 3 else "minisblack", "compression": "zlib"}
    if c in (2, 4):
        kwargs["extrasamples"] = ["unassalpha"]
    if pic.dpi:
        kwargs["resolution"] = (pic.dpi[0], pic.dpi[1])
        kwargs["resolutionunit"] = "INCH"
    kwargs["extratags"] = []
    if pic.icc:
        kwargs["extratags"].append((34675, 7, len(pic.icc), pic.icc, True))
    if pic.xmp:
        kwargs["extratags"].append((_TIFF_XMP_TAG, 1, len(pic.xmp), pic.xmp, True))
    buf = io.BytesIO()  # tifffile takes a file object by its name, which os.fdopen's is not
    tifffile.imwrite(buf, arr[..., 0] if c == 1 else arr, **kwargs)
    f.write(buf.getbuffer())
