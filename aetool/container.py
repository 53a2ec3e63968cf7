"""The `.aei` file format of `aetool compress`: a small binary container around the coded streams
of the learned codec, documented byte by byte in docs/format.md (the two must agree; the tests pin
the layout with a golden file).

Standard library only; nothing here knows about models, tensors or entropy coding. The codec
fills an EncodedImage, `pack` makes the bytes; `unpack` (or `load`, which reads a file) checks
them and gives the EncodedImage back, or raises ContainerError with a one-line reason.

Parsing is defensive: every length and count comes from the file, so each is checked against the
bytes that are really there before it is used; nothing is allocated from a declared size (the
sections are slices of the input); the pixel limit is checked from the fixed header alone; no loop
runs on a count the file controls without a bound (the longest, the hyper gains, is at most
65,535 u16s and only after the checksums have passed).
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageError, ImageTooLargeError
from .limits import format_megapixels

EXTENSION = ".aei"
MAGIC = b"\x8bAEI"  # 0x8B: not ASCII, not a UTF-8 lead byte, not the start of a known format
FORMAT_VERSION = 2  # the newest version this aetool writes (1: the hyperprior codec, 2: the progressive one)
READABLE_VERSIONS = (1, 2)  # the versions this aetool reads (every one ever written, in time)
HYPERPRIOR_VERSION, PROGRESSIVE_VERSION = 1, 2

CODERS = {1: "constriction range coder, 24-bit precision"}
CODER_RANGE_24 = 1

QUALITY_SCALE = 1000  # quality is stored as round(quality * 1000) in a u16: 0.000 .. 65.535
LATENT_STRIDE = 16  # the analysis transform's downsampling (y); z is 4x smaller again
PADDING = 64  # the image is padded to a multiple of this before the analysis
MAX_SIDE = 65535 // (PADDING // LATENT_STRIDE) * PADDING  # 1,048,512: y's side must fit a u16
MAX_SECTION = 0xFFFFFFFF
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

SECTIONS = ("z_stream", "y_stream", "alpha", "icc", "exif")  # their order in the file

FLAG_ALPHA = 0x01
KNOWN_FLAGS = FLAG_ALPHA

# Little-endian throughout. Bytes 0-4 (magic, version) are the same in every version; the rest of
# this struct is version 1's fixed header. See docs/format.md for the table.
_FIXED = struct.Struct("<4sB" "BBBBB" "H" "II" "3H3H" "8s" "5I")
_CRC = struct.Struct("<I")
FIXED_HEADER_SIZE = _FIXED.size + _CRC.size  # 64: the fixed fields and the header checksum
TRAILER_SIZE = _CRC.size
assert FIXED_HEADER_SIZE == 64


class ContainerError(ImageError):
    """A `.aei` file (or bytes) that cannot be read: wrong magic, unknown version, truncated,
    damaged, impossible fields. One-line message; fails that file only (exit 1)."""


class ContainerTooLargeError(ContainerError, ImageTooLargeError):
    """A `.aei` file that declares more pixels than the caller's limit (decompression bomb guard)."""


@dataclass(frozen=True)
class EncodedImage:
    """Everything an `.aei` file holds. Shapes are (channels, height, width) of the latents."""

    model_name: str  # the model that wrote the streams and alone can decode them (utf-8, 1..255 bytes)
    model_sha256_prefix: bytes  # the first 8 bytes of the sha256 of that model's weights file
    width: int
    height: int
    channels: int  # of the coded image: 1 (grey) or 3 (colour); alpha is apart
    bit_depth: int  # of the source image, 8 or 16, so that decoding can restore it
    quality: float  # a multiple of 1/QUALITY_SCALE in [0, 65.535] (see quantize_quality)
    y_shape: tuple[int, int, int]
    z_shape: tuple[int, int, int]
    hyper_gain: tuple[int, ...]  # integer side information of the codec, one u16 per z channel
    z_stream: bytes
    y_stream: bytes
    coder: int = CODER_RANGE_24
    has_alpha: bool = False
    alpha: bytes = b""  # a lossless PNG of the alpha plane when has_alpha, else empty
    icc: bytes = b""  # the source's ICC profile, or empty
    exif: bytes = b""  # the source's EXIF block, or empty


def latent_shapes(height: int, width: int, y_channels: int, z_channels: int
                  ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The (c, h, w) shapes of the latent y and hyper-latent z of an image of height x width: the
    image is padded up to a multiple of 64, y is 16 times smaller, z 64 times smaller."""
    ph, pw = -(-height // PADDING), -(-width // PADDING)  # ceil
    per = PADDING // LATENT_STRIDE
    return (y_channels, ph * per, pw * per), (z_channels, ph, pw)


def quantize_quality(quality: float) -> float:
    """The quality as the file stores it (thousandths). A codec that derives anything from the
    quality must use this value when encoding, as the decoder will only see this one."""
    return round(quality * QUALITY_SCALE) / QUALITY_SCALE


def packed_size(e: EncodedImage) -> int:
    """The size in bytes of pack(e), without packing."""
    return (FIXED_HEADER_SIZE + len(e.model_name.encode("utf-8")) + 2 * len(e.hyper_gain)
            + sum(len(getattr(e, s)) for s in SECTIONS) + TRAILER_SIZE)


# --- writing --------------------------------------------------------------------------------------

def pack(e: EncodedImage) -> bytes:
    """The bytes of the `.aei` file for `e`. Raises ContainerError when the image cannot be stored
    in this format (a side above MAX_SIDE, a section of 4 GiB or more), ValueError or TypeError for
    fields that are wrong (a bug of the caller: the message says which)."""
    for s in SECTIONS:
        if not isinstance(getattr(e, s), (bytes, bytearray, memoryview)):
            raise TypeError(f"{s} must be bytes, not {type(getattr(e, s)).__name__}")
    if isinstance(e.width, int) and isinstance(e.height, int) and max(e.width, e.height) > MAX_SIDE:
        raise ContainerError(f"the image is {e.width}x{e.height}; the .aei format stores at most "
                             f"{MAX_SIDE:,} pixels a side")
    for s in SECTIONS:
        if len(getattr(e, s)) > MAX_SECTION:
            raise ContainerError(f"the {s.replace('_', ' ')} is {len(getattr(e, s)):,} bytes; the .aei "
                                 f"format stores at most {MAX_SECTION:,} bytes a section")
    if not isinstance(e.model_name, str):
        raise TypeError("model_name must be a str")
    name = e.model_name.encode("utf-8")
    problem = (_name_problem(name) or _prefix_problem(e.model_sha256_prefix) or _quality_problem(e.quality)
               or _shape_type_problem(e))
    if problem is None:
        flags = FLAG_ALPHA if e.has_alpha else 0
        problem = _field_problem(flags, e.coder, e.channels, e.bit_depth, len(name), e.width, e.height,
                                 tuple(e.y_shape), tuple(e.z_shape), len(e.alpha))
    if problem is None and len(e.hyper_gain) != e.z_shape[0]:
        problem = f"hyper_gain has {len(e.hyper_gain)} values for {e.z_shape[0]} z channels"
    if problem is None and not all(isinstance(g, int) and 0 <= g <= 0xFFFF for g in e.hyper_gain):
        problem = "hyper_gain values must be ints in 0..65535"
    if problem is None and e.has_alpha and bytes(e.alpha[:8]) != PNG_SIGNATURE:
        problem = "the alpha section must be a PNG file"
    if problem is not None:
        raise ValueError(f"cannot pack: {problem}")
    fixed = _FIXED.pack(MAGIC, HYPERPRIOR_VERSION, FLAG_ALPHA if e.has_alpha else 0, e.coder, e.channels,
                        e.bit_depth, len(name), round(e.quality * QUALITY_SCALE), e.width, e.height,
                        *e.y_shape, *e.z_shape, bytes(e.model_sha256_prefix),
                        *(len(getattr(e, s)) for s in SECTIONS))
    parts = [fixed, _CRC.pack(zlib.crc32(fixed)), name, struct.pack(f"<{len(e.hyper_gain)}H", *e.hyper_gain)]
    parts += [bytes(getattr(e, s)) for s in SECTIONS]
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


# --- reading --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Header:
    flags: int
    coder: int
    channels: int
    bit_depth: int
    name_len: int
    quality: int
    width: int
    height: int
    y_shape: tuple[int, int, int]
    z_shape: tuple[int, int, int]
    sha_prefix: bytes
    section_lengths: tuple[int, ...]

    @property
    def total_size(self) -> int:
        return (FIXED_HEADER_SIZE + self.name_len + 2 * self.z_shape[0] + sum(self.section_lengths)
                + TRAILER_SIZE)


def _check_version(head, size: int) -> int:
    """Checks 1-2 of docs/format.md (magic, version) on the first bytes of a file: its version."""
    n = len(head)
    if size == 0:
        raise ContainerError("the file is empty (0 bytes)")
    if bytes(head[:4]) != MAGIC[:min(n, 4)]:
        raise ContainerError("not an aetool compressed file (wrong magic bytes)")
    if n < 5:
        raise ContainerError(f"truncated: the file ends at byte {size:,}, inside its {FIXED_HEADER_SIZE}-byte header")
    version = head[4]
    if version > FORMAT_VERSION:
        raise ContainerError(f"written by a newer aetool (format version {version}; this aetool reads up to version "
                             f"{FORMAT_VERSION}): upgrade aetool")
    if version not in READABLE_VERSIONS:
        raise ContainerError(f"unknown format version {version} (this aetool reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))}); the file is damaged")
    return version


def _check_fixed_header(head, fixed_size: int, coder: int, flags: int) -> None:
    """The checks every version makes of its fixed header, in order: its CRC (stored right after
    it), then a coder and flags this aetool knows."""
    (header_crc,) = _CRC.unpack_from(head, fixed_size)
    if zlib.crc32(head[:fixed_size]) != header_crc:
        raise ContainerError("damaged: the header checksum does not match (a byte was changed)")
    if coder not in CODERS:
        raise ContainerError(f"coded with coder {coder}, which this aetool does not know: upgrade aetool")
    if flags & ~KNOWN_FLAGS:
        raise ContainerError(f"unknown flags 0x{flags:02x} in the header (written by a newer aetool?): upgrade aetool")


def _check_pixel_limit(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ContainerTooLargeError(f"declares {width}x{height} pixels ({format_megapixels(width * height)}), "
                                     f"above the limit of {format_megapixels(max_pixels)} (raise --max-pixels "
                                     "if you trust the file)")


def _parse_header(head, size: int, max_pixels: int | None) -> _Header:
    """Checks 1-5 of docs/format.md on the first bytes of a file (`head`, a memoryview of up to
    FIXED_HEADER_SIZE bytes or more) whose full size is `size`."""
    n = len(head)
    _check_version(head, size)
    if n < FIXED_HEADER_SIZE:
        raise ContainerError(f"truncated: the file ends at byte {size:,}, inside its {FIXED_HEADER_SIZE}-byte header")
    (_, _, flags, coder, channels, bit_depth, name_len, quality, width, height, y0, y1, y2, z0, z1, z2,
     sha_prefix, *lengths) = _FIXED.unpack_from(head, 0)
    _check_fixed_header(head, _FIXED.size, coder, flags)
    problem = _field_problem(flags, coder, channels, bit_depth, name_len, width, height, (y0, y1, y2),
                             (z0, z1, z2), lengths[SECTIONS.index("alpha")])
    if problem is not None:
        raise ContainerError(f"invalid header: {problem}")
    _check_pixel_limit(width, height, max_pixels)
    return _Header(flags, coder, channels, bit_depth, name_len, quality, width, height, (y0, y1, y2),
                   (z0, z1, z2), sha_prefix, tuple(lengths))


def _check_size(h: _Header, size: int) -> None:
    total = h.total_size
    if size < total:
        raise ContainerError(f"truncated: the file ends at byte {size:,} but its header declares {total:,} bytes")
    if size > total:
        raise ContainerError(f"damaged: the file has {size - total:,} bytes more than the {total:,} its header "
                             "declares (something was appended to it)")


def unpack(data: bytes | bytearray | memoryview, max_pixels: int | None = None) -> EncodedImage:
    """The EncodedImage in the bytes of an `.aei` file, after every check of docs/format.md, in its
    order; raises ContainerError (ContainerTooLargeError above `max_pixels`) with a one-line reason."""
    mv = memoryview(data)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    size = len(mv)
    if _check_version(mv[:5], size) == PROGRESSIVE_VERSION:
        return unpack_progressive(mv, max_pixels)
    h = _parse_header(mv[:FIXED_HEADER_SIZE], size, max_pixels)
    _check_size(h, size)
    (crc,) = _CRC.unpack_from(mv, size - TRAILER_SIZE)
    if zlib.crc32(mv[:size - TRAILER_SIZE]) != crc:
        raise ContainerError("damaged: the checksum does not match (a byte was changed)")
    # From here every byte is as the writer wrote it; what remains are checks of a writer's bugs.
    pos = FIXED_HEADER_SIZE
    name_bytes = bytes(mv[pos:pos + h.name_len])
    pos += h.name_len
    problem = _name_problem(name_bytes)
    if problem is not None:
        raise ContainerError(f"invalid header: {problem}")
    zc = h.z_shape[0]
    gains = struct.unpack_from(f"<{zc}H", mv, pos)
    pos += 2 * zc
    sections = {}
    for s, length in zip(SECTIONS, h.section_lengths):
        sections[s] = bytes(mv[pos:pos + length])
        pos += length
    if sections["alpha"] and sections["alpha"][:8] != PNG_SIGNATURE:
        raise ContainerError("invalid alpha section: not a PNG file")
    return EncodedImage(model_name=name_bytes.decode("utf-8"), model_sha256_prefix=h.sha_prefix,
                        width=h.width, height=h.height, channels=h.channels, bit_depth=h.bit_depth,
                        quality=h.quality / QUALITY_SCALE, y_shape=h.y_shape, z_shape=h.z_shape,
                        hyper_gain=tuple(gains), coder=h.coder, has_alpha=bool(h.flags & FLAG_ALPHA),
                        **sections)


def load(path: str | Path, max_pixels: int | None = None) -> EncodedImage:
    """unpack() of a file, reading its fixed header first: a file that is not ours, too large for
    `max_pixels`, or whose size differs from its header's, is refused before the rest is read (a
    50 GB file of something else costs 64 bytes of reading, not 50 GB of memory)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(FIXED_HEADER_SIZE)
            if _check_version(memoryview(head), max(size, len(head))) == PROGRESSIVE_VERSION:
                # A cut file is still read (it decodes its complete iterations); never more than
                # the header declares, plus one byte that tells "something was appended".
                h = _parse_progressive_header(memoryview(head), max(size, len(head)), max_pixels)
                head += f.read(max(0, min(size, h.table_end) - len(head)))
                declared = h.table_end
                if len(head) >= h.table_end:  # the table's lengths (checked by unpack) give the rest
                    start = h.table_end - _CRC.size - ITERATION_ENTRY_SIZE * h.count
                    declared += sum(_ENTRY.unpack_from(head, start + ITERATION_ENTRY_SIZE * k)[0]
                                    for k in range(h.count))
                head += f.read(max(0, min(size, declared + 1) - len(head)))
                return unpack_progressive(head, max_pixels)
            _check_size(_parse_header(memoryview(head), max(size, len(head)), max_pixels), size)
            data = head + f.read(size - len(head) + 1)  # +1: notices a file that grew meanwhile
    except IsADirectoryError:
        raise ContainerError("is a folder (use -r to go into folders)") from None
    except OSError as exc:
        raise ContainerError(f"cannot read the file: {exc.strerror or exc}") from None
    return unpack(data, max_pixels)


# --- field checks (shared by pack and unpack) -----------------------------------------------------

def _image_problem(coder: int, channels: int, bit_depth: int, name_len: int, width: int, height: int
                   ) -> str | None:
    """The checks of the fields every version has."""
    if coder not in CODERS:
        return f"unknown coder id {coder}"
    if width < 1 or height < 1:
        return f"the image is {width}x{height} pixels (each side must be at least 1)"
    if max(width, height) > MAX_SIDE:
        return f"the image is {width}x{height} pixels (at most {MAX_SIDE:,} a side)"
    if channels not in (1, 3):
        return f"{channels} channels (must be 1 or 3)"
    if bit_depth not in (8, 16):
        return f"bit depth {bit_depth} (must be 8 or 16)"
    if name_len < 1:
        return "the model name is empty"
    return None


def _field_problem(flags: int, coder: int, channels: int, bit_depth: int, name_len: int, width: int,
                   height: int, y_shape: tuple, z_shape: tuple, alpha_len: int) -> str | None:
    problem = _image_problem(coder, channels, bit_depth, name_len, width, height)
    if problem is not None:
        return problem
    if len(y_shape) != 3 or len(z_shape) != 3:
        return "latent shapes must be (channels, height, width)"
    if not 1 <= y_shape[0] <= 0xFFFF or not 1 <= z_shape[0] <= 0xFFFF:
        return f"latent channels {y_shape[0]} and {z_shape[0]} (each must be 1 to 65535)"
    want_y, want_z = latent_shapes(height, width, y_shape[0], z_shape[0])
    if tuple(y_shape) != want_y or tuple(z_shape) != want_z:
        return (f"latent shapes y {tuple(y_shape)}, z {tuple(z_shape)} (channels, height, width) do not fit a "
                f"{width}x{height} image (y must be {want_y}, z {want_z})")
    if bool(flags & FLAG_ALPHA) != (alpha_len > 0):
        return ("the alpha flag is set but the alpha section is empty" if flags & FLAG_ALPHA else
                f"an alpha section of {alpha_len:,} bytes without the alpha flag")
    return None


def _name_problem(name: bytes) -> str | None:
    if not 1 <= len(name) <= 255:
        return f"the model name is {len(name)} bytes (must be 1 to 255)"
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return "the model name is not valid UTF-8"
    if not text.isprintable():
        return "the model name has control characters"
    return None


def _prefix_problem(prefix) -> str | None:
    if not isinstance(prefix, (bytes, bytearray)) or len(prefix) != 8:
        return "model_sha256_prefix must be 8 bytes (the first 8 of the weights' sha256 digest)"
    return None


def _quality_problem(quality) -> str | None:
    if not isinstance(quality, (int, float)) or not 0 <= quality <= 0xFFFF / QUALITY_SCALE:
        return f"quality {quality!r} (must be a number in 0..{0xFFFF / QUALITY_SCALE})"
    if abs(quality * QUALITY_SCALE - round(quality * QUALITY_SCALE)) > 1e-6:
        return (f"quality {quality!r} is not a multiple of 1/{QUALITY_SCALE}: encode with quantize_quality(q), "
                "the value the decoder will see")
    return None


def _shape_type_problem(e: EncodedImage) -> str | None:
    ints = (e.width, e.height, e.channels, e.bit_depth, e.coder, *e.y_shape, *e.z_shape)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        return "width, height, channels, bit_depth, coder and the latent shapes must be ints"
    if not isinstance(e.has_alpha, bool):
        return "has_alpha must be a bool"
    return None


# --- aetool info ----------------------------------------------------------------------------------

def describe(e: EncodedImage) -> dict:
    """What `aetool info --json` shows of a `.aei` file: JSON-ready values only."""
    header = FIXED_HEADER_SIZE + len(e.model_name.encode("utf-8")) + 2 * len(e.hyper_gain)
    total = packed_size(e)
    return {
        "format": "aetool compressed image",
        "format_version": HYPERPRIOR_VERSION,
        **_described_image(e),
        "quality": e.quality,
        "y_shape": list(e.y_shape),
        "z_shape": list(e.z_shape),
        "sections": {"header": header, **{s: len(getattr(e, s)) for s in SECTIONS}, "checksum": TRAILER_SIZE},
        "bytes": total,
        "bits_per_pixel": total * 8 / (e.width * e.height),
        "icc": len(e.icc) > 0,
        "exif": len(e.exif) > 0,
    }


def _described_image(e) -> dict:
    """The fields of `aetool info --json` that every version has."""
    return {"model": e.model_name, "model_sha256_prefix": bytes(e.model_sha256_prefix).hex(),
            "coder": CODERS.get(e.coder, f"unknown ({e.coder})"), "coder_id": e.coder, "width": e.width,
            "height": e.height, "channels": e.channels, "bit_depth": e.bit_depth, "alpha": e.has_alpha}


# --- version 2: the progressive codec ---------------------------------------------------------------
#
# A file of refinements: the header, the model name, the metadata sections (alpha, ICC, EXIF) with
# a checksum of their own, then the iteration table (per iteration: its length, its CRC32 and the
# encoder's PSNR after it) with its checksum, then the iterations' coded bits in order. There is
# no whole-file checksum: each iteration has its own, so that a file cut anywhere after the table
# still yields every iteration that arrived whole (a cut is not damage), and `truncate` keeps
# every checksum valid without re-encoding.

_FIXED_V2 = struct.Struct("<4sB" "BBBBB" "BB" "II" "8s" "3I")
PROGRESSIVE_HEADER_SIZE = _FIXED_V2.size + _CRC.size  # 44
_ENTRY = struct.Struct("<IIH")  # iteration length, its CRC32, PSNR after it in 1/100 dB (0: unknown)
ITERATION_ENTRY_SIZE = _ENTRY.size  # 10
PSNR_SCALE = 100
PROGRESSIVE_STRIDE = 16  # the recurrent codec codes `bits` bits per 16x16 pixels per iteration
PROGRESSIVE_METADATA = ("alpha", "icc", "exif")
assert PROGRESSIVE_HEADER_SIZE == 44


@dataclass(frozen=True)
class ProgressiveImage:
    """Everything a version-2 `.aei` file holds. `iterations` are the coded bits of each iteration
    that is there whole, in order; `declared` is how many the header's table lists (more than
    len(iterations) when the file was cut)."""

    model_name: str
    model_sha256_prefix: bytes
    width: int
    height: int
    channels: int
    bit_depth: int
    bits: int  # code channels: bits per 16x16 pixels per iteration, 1..255
    iterations: tuple[bytes, ...]
    psnr: tuple[float | None, ...] = ()  # the encoder's PSNR after each iteration (dB), None when not stored
    coder: int = CODER_RANGE_24
    has_alpha: bool = False
    alpha: bytes = b""
    icc: bytes = b""
    exif: bytes = b""
    declared: int = 0  # iterations in the file's table (0: as many as `iterations`)
    size: int = 0  # bytes the reader had (0: a packed, whole file)

    @property
    def cut(self) -> bool:
        """The file ended before its last iteration did."""
        return self.declared > len(self.iterations)

    @property
    def code_shape(self) -> tuple[int, int, int]:
        return progressive_code_shape(self.height, self.width, self.bits)


def progressive_code_shape(height: int, width: int, bits: int) -> tuple[int, int, int]:
    """(bits, rows, columns) of one iteration's code: the image padded up to a multiple of 16."""
    return bits, -(-height // PROGRESSIVE_STRIDE), -(-width // PROGRESSIVE_STRIDE)


@dataclass(frozen=True)
class _HeaderV2:
    flags: int
    coder: int
    channels: int
    bit_depth: int
    name_len: int
    count: int
    bits: int
    width: int
    height: int
    sha_prefix: bytes
    metadata_lengths: tuple[int, int, int]

    @property
    def table_end(self) -> int:
        """Where the iterations start: header, name, metadata and its CRC, table and its CRC."""
        return (PROGRESSIVE_HEADER_SIZE + self.name_len + sum(self.metadata_lengths) + _CRC.size
                + ITERATION_ENTRY_SIZE * self.count + _CRC.size)


def _progressive_head(e: ProgressiveImage, count: int) -> bytes:
    name = e.model_name.encode("utf-8")
    fixed = _FIXED_V2.pack(MAGIC, PROGRESSIVE_VERSION, FLAG_ALPHA if e.has_alpha else 0, e.coder, e.channels,
                           e.bit_depth, len(name), count, e.bits, e.width, e.height, bytes(e.model_sha256_prefix),
                           *(len(getattr(e, s)) for s in PROGRESSIVE_METADATA))
    metadata = name + b"".join(bytes(getattr(e, s)) for s in PROGRESSIVE_METADATA)
    return fixed + _CRC.pack(zlib.crc32(fixed)) + metadata + _CRC.pack(zlib.crc32(metadata))


def pack_progressive(e: ProgressiveImage) -> bytes:
    """The bytes of a version-2 `.aei` file for `e` (every iteration it holds). ValueError or
    TypeError for fields that are wrong (a bug of the caller), ContainerError for an image this
    format cannot hold."""
    for s in PROGRESSIVE_METADATA:
        if not isinstance(getattr(e, s), (bytes, bytearray, memoryview)):
            raise TypeError(f"{s} must be bytes, not {type(getattr(e, s)).__name__}")
    if not all(isinstance(it, (bytes, bytearray)) for it in e.iterations):
        raise TypeError("iterations must be bytes")
    if not isinstance(e.model_name, str):
        raise TypeError("model_name must be a str")
    if isinstance(e.width, int) and isinstance(e.height, int) and max(e.width, e.height) > MAX_SIDE:
        raise ContainerError(f"the image is {e.width}x{e.height}; the .aei format stores at most "
                             f"{MAX_SIDE:,} pixels a side")
    name = e.model_name.encode("utf-8")
    problem = _name_problem(name) or _prefix_problem(e.model_sha256_prefix)
    if problem is None:
        problem = _progressive_field_problem(FLAG_ALPHA if e.has_alpha else 0, e.coder, e.channels, e.bit_depth,
                                             len(name), len(e.iterations), e.bits, e.width, e.height, len(e.alpha))
    if problem is None and e.psnr and len(e.psnr) != len(e.iterations):
        problem = f"{len(e.psnr)} PSNR values for {len(e.iterations)} iterations"
    if problem is None and e.has_alpha and bytes(e.alpha[:8]) != PNG_SIGNATURE:
        problem = "the alpha section must be a PNG file"
    if problem is None and any(len(it) > MAX_SECTION for it in e.iterations):
        problem = "an iteration of 4 GiB or more"
    if problem is not None:
        raise ValueError(f"cannot pack: {problem}")
    psnr = e.psnr or (None,) * len(e.iterations)
    table = b"".join(_ENTRY.pack(len(it), zlib.crc32(it), _psnr_field(p)) for it, p in zip(e.iterations, psnr))
    return b"".join([_progressive_head(e, len(e.iterations)), table, _CRC.pack(zlib.crc32(table)),
                     *map(bytes, e.iterations)])


def _psnr_field(p: float | None) -> int:
    return 0 if p is None else max(1, min(0xFFFF, round(p * PSNR_SCALE)))


def truncate(e: ProgressiveImage, iterations: int) -> bytes:
    """A whole version-2 file holding the first `iterations` of `e` (no re-encoding: the same
    bits, a shorter table, checksums made anew)."""
    if not 1 <= iterations <= len(e.iterations):
        raise ValueError(f"cannot keep {iterations} iterations of {len(e.iterations)}")
    return pack_progressive(ProgressiveImage(**{**e.__dict__, "iterations": e.iterations[:iterations],
                                                "psnr": e.psnr[:iterations], "declared": 0, "size": 0}))


def progressive_sizes(e: ProgressiveImage) -> list[int]:
    """The size in bytes of the whole file that keeps the first k iterations, for k = 1..len."""
    name = len(e.model_name.encode("utf-8"))
    base = PROGRESSIVE_HEADER_SIZE + name + sum(len(getattr(e, s)) for s in PROGRESSIVE_METADATA) + 2 * _CRC.size
    sizes, total = [], 0
    for k, it in enumerate(e.iterations, 1):
        total += len(it)
        sizes.append(base + ITERATION_ENTRY_SIZE * k + total)
    return sizes


def progressive_ends(e: ProgressiveImage) -> list[int]:
    """Where iteration k ends in the file `e` was read from (its table lists `declared`
    iterations): the first progressive_ends(e)[k - 1] bytes of that file hold iterations 1..k."""
    name = len(e.model_name.encode("utf-8"))
    count = max(e.declared, len(e.iterations))
    pos = (PROGRESSIVE_HEADER_SIZE + name + sum(len(getattr(e, s)) for s in PROGRESSIVE_METADATA) + 2 * _CRC.size
           + ITERATION_ENTRY_SIZE * count)
    ends = []
    for it in e.iterations:
        pos += len(it)
        ends.append(pos)
    return ends


def _parse_progressive_header(head, size: int, max_pixels: int | None) -> _HeaderV2:
    """Checks 3-6 of a version-2 file on its first bytes."""
    if len(head) < PROGRESSIVE_HEADER_SIZE:
        raise ContainerError(f"truncated: the file ends at byte {size:,}, inside its {PROGRESSIVE_HEADER_SIZE}-byte "
                             "header")
    (_, _, flags, coder, channels, bit_depth, name_len, count, bits, width, height, sha_prefix,
     *lengths) = _FIXED_V2.unpack_from(head, 0)
    _check_fixed_header(head, _FIXED_V2.size, coder, flags)
    problem = _progressive_field_problem(flags, coder, channels, bit_depth, name_len, count, bits, width, height,
                                         lengths[0])
    if problem is not None:
        raise ContainerError(f"invalid header: {problem}")
    _check_pixel_limit(width, height, max_pixels)
    return _HeaderV2(flags, coder, channels, bit_depth, name_len, count, bits, width, height, sha_prefix,
                     tuple(lengths))


def unpack_progressive(data, max_pixels: int | None = None) -> ProgressiveImage:
    """The ProgressiveImage in the bytes of a version-2 file, or ContainerError. A file that ends
    inside an iteration (cut by a network or a disk) is not an error: the result holds the
    iterations that are there whole, and `cut` says so."""
    mv = memoryview(data)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    size = len(mv)
    h = _parse_progressive_header(mv[:PROGRESSIVE_HEADER_SIZE], size, max_pixels)
    if size < h.table_end:
        raise ContainerError(f"truncated: the file ends at byte {size:,}, before the end of its iteration table "
                             f"(byte {h.table_end:,}): nothing can be decoded")
    pos = PROGRESSIVE_HEADER_SIZE
    metadata_end = pos + h.name_len + sum(h.metadata_lengths)
    (metadata_crc,) = _CRC.unpack_from(mv, metadata_end)
    if zlib.crc32(mv[pos:metadata_end]) != metadata_crc:
        raise ContainerError("damaged: the checksum of the name and metadata does not match (a byte was changed)")
    name_bytes = bytes(mv[pos:pos + h.name_len])
    problem = _name_problem(name_bytes)
    if problem is not None:
        raise ContainerError(f"invalid header: {problem}")
    pos += h.name_len
    sections = {}
    for s, length in zip(PROGRESSIVE_METADATA, h.metadata_lengths):
        sections[s] = bytes(mv[pos:pos + length])
        pos += length
    if sections["alpha"] and sections["alpha"][:8] != PNG_SIGNATURE:
        raise ContainerError("invalid alpha section: not a PNG file")
    pos += _CRC.size
    table = mv[pos:pos + ITERATION_ENTRY_SIZE * h.count]
    (table_crc,) = _CRC.unpack_from(mv, pos + len(table))
    if zlib.crc32(table) != table_crc:
        raise ContainerError("damaged: the iteration table's checksum does not match (a byte was changed)")
    entries = [_ENTRY.unpack_from(table, ITERATION_ENTRY_SIZE * k) for k in range(h.count)]
    declared = h.table_end + sum(length for length, _, _ in entries)
    if size > declared:
        raise ContainerError(f"damaged: the file has {size - declared:,} bytes more than the {declared:,} its header "
                             "declares (something was appended to it)")
    pos = h.table_end
    iterations, psnr = [], []
    for k, (length, crc, p) in enumerate(entries):
        if pos + length > size:
            break  # cut inside this iteration: the ones before it are whole
        chunk = bytes(mv[pos:pos + length])
        if zlib.crc32(chunk) != crc:
            raise ContainerError(f"damaged: the checksum of iteration {k + 1} of {h.count} does not match "
                                 "(a byte was changed)")
        iterations.append(chunk)
        psnr.append(p / PSNR_SCALE if p else None)
        pos += length
    return ProgressiveImage(model_name=name_bytes.decode("utf-8"), model_sha256_prefix=h.sha_prefix,
                            width=h.width, height=h.height, channels=h.channels, bit_depth=h.bit_depth,
                            bits=h.bits, iterations=tuple(iterations), psnr=tuple(psnr), coder=h.coder,
                            has_alpha=bool(h.flags & FLAG_ALPHA), declared=h.count, size=size, **sections)


def _progressive_field_problem(flags: int, coder: int, channels: int, bit_depth: int, name_len: int, count: int,
                               bits: int, width: int, height: int, alpha_len: int) -> str | None:
    ints = (flags, coder, channels, bit_depth, name_len, count, bits, width, height)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        return "width, height, channels, bit_depth, bits and coder must be ints"
    problem = _image_problem(coder, channels, bit_depth, name_len, width, height)
    if problem is not None:
        return problem
    if not 1 <= count <= 255:
        return f"{count} iterations (must be 1 to 255)"
    if not 1 <= bits <= 255:
        return f"{bits} bits per position (must be 1 to 255)"
    if bool(flags & FLAG_ALPHA) != (alpha_len > 0):
        return ("the alpha flag is set but the alpha section is empty" if flags & FLAG_ALPHA else
                f"an alpha section of {alpha_len:,} bytes without the alpha flag")
    return None


def describe_progressive(e: ProgressiveImage) -> dict:
    """What `aetool info --json` shows of a version-2 file, the iteration table included."""
    sizes = progressive_sizes(e)
    pixels = e.width * e.height
    ends = progressive_ends(e)
    table = [{"iteration": k + 1, "bytes": len(it), "file_bytes": sizes[k], "ends_at": ends[k],
              "bits_per_pixel": round(sizes[k] * 8 / pixels, 4),
              "psnr": e.psnr[k] if k < len(e.psnr) else None} for k, it in enumerate(e.iterations)]
    total = sizes[-1] if sizes else PROGRESSIVE_HEADER_SIZE
    d = {
        "format": "aetool compressed image (progressive)",
        "format_version": PROGRESSIVE_VERSION,
        **_described_image(e),
        "bits": e.bits,
        "iterations": len(e.iterations),
        "iterations_declared": max(e.declared, len(e.iterations)),
        "cut": e.cut,
        "iteration_table": table,
        "bytes": e.size or total,
        "bits_per_pixel": (e.size or total) * 8 / pixels,
        "icc": len(e.icc) > 0,
        "exif": len(e.exif) > 0,
    }
    return d
