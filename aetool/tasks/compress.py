"""Learned image compression: `compress(image, quality)` gives the bytes of an .aei file,
`decompress(data)` the image back. The model is a variational autoencoder with a scale hyperprior
(aetool/models/hyperprior.py); its latents are entropy-coded with constriction's range coder using
the integer tables stored in the model's weights file, and the file format is aetool/container.py
(docs/format.md).

What decodes bit-exactly on every machine: the hyper-latent (fixed tables), the latent's table
indices (the hyper-synthesis in integer arithmetic, from the hyper-latent and the integer hyper
gain stored in the file) and so every decoded symbol. Only the last float step, the synthesis
transform, may differ by a rounding step between CPUs and GPUs.

Grey images are coded with the colour model (the grey plane in all three channels) and decoded
back to one channel; 16-bit images are coded at 8 bits (the record says so); alpha is kept
losslessly in its own section.
"""
from __future__ import annotations

import functools
import io

import numpy as np

from ..container import EXTENSION, EncodedImage, load, pack, packed_size, unpack
from ..engine import EngineOptions
from ..errors import ImageError, ModelError, UsageError
from ..imageio import Picture
from ..registry import default_model, find_card, load_model, verify_model

QUALITY_MIN, QUALITY_MAX = 1.0, 8.0
DEFAULT_QUALITY = 4.0
CODER_RANGE = 1  # the container's coder id: constriction's range coder, integer tables of 2^16
LATENT_STRIDE = 16  # the analysis divides height and width by this
TILE_PIXELS = 1024  # large images are transformed in tiles of this many pixels a side (a multiple of 64)
ANALYSIS_MARGIN = 64  # pixels of context per side: the analysis sees 61 (4 stride-2 5x5 convolutions)
PSNR_SLACK = 0.05  # --psnr stops once a file is this close above the target (the tolerance is 0.1 dB)
SYNTHESIS_MARGIN = 4  # latent pixels of context per side, 64 output pixels: more than the synthesis sees

__all__ = ["Codec", "compress", "decompress", "make_codec", "EXTENSION"]


def _check_quality(quality: float) -> float:
    if not QUALITY_MIN <= quality <= QUALITY_MAX:
        raise UsageError(f"quality must be between {QUALITY_MIN:g} and {QUALITY_MAX:g}, got {quality:g}")
    return round(float(quality) * 1000) / 1000  # what the file stores: encoder and decoder use the same value


class Codec:
    """Encodes (H, W, C) float32 pixels in [0, 1] to container bytes and back with one model."""

    def __init__(self, model: str | None = None, options: EngineOptions | None = None):
        self.options = options or EngineOptions()
        self.card = find_card(model) if model is not None else default_model("compress", 3)
        if self.card.task != "compress":
            raise UsageError(f"model '{self.card.name}' is for the {self.card.task} task, not for compression")
        verify_model(self.card)
        self._model = None
        self.device = "cpu"  # set from options.device when the model loads
        self.tile = TILE_PIXELS  # image pixels per tile side of the float transforms

    @property
    def model(self):
        if self._model is None:
            from ..device import resolve_device

            model = load_model(self.card, "cpu")
            if not model.tables_ready:
                raise ModelError(f"{self.card.path} has no coding tables (written by an older trainer); add "
                                 "them with aetool.training.compress.add_coding_tables(FILE)")
            # The float transforms run on the chosen device (fp32); the integer parts, which must
            # agree bit for bit everywhere, run on the CPU in float64 (scale_indices).
            self.device = resolve_device(self.options.device)
            # channels_last: oneDNN's fast path for these convolutions (faster on CPU, same output)
            import torch

            self._model = model.to(self.device, memory_format=torch.channels_last)
        return self._model

    def _sha_prefix(self) -> bytes:
        return bytes.fromhex(self.card.sha256[:16]) if self.card.sha256 else b"\0" * 8

    # ------------------------------------------------------------------ encoding
    def encode(self, pixels: np.ndarray, quality: float = DEFAULT_QUALITY, alpha: np.ndarray | None = None,
               bit_depth: int = 8, icc: bytes | None = None, exif: bytes | None = None) -> bytes:
        """The .aei bytes of (H, W, C) float32 pixels in [0, 1] at a quality in [1, 8]."""
        features = self._analyse(pixels)
        return self._code(features, _check_quality(quality), pixels.shape, alpha, bit_depth, icc, exif)[0]

    def encode_to_target(self, pixels: np.ndarray, *, quality: float | None = None, bpp: float | None = None,
                         size: int | None = None, psnr: float | None = None, alpha: np.ndarray | None = None,
                         bit_depth: int = 8, icc: bytes | None = None, exif: bytes | None = None
                         ) -> tuple[bytes, dict]:
        """Rate control. Exactly one of: `quality`; `size` (bytes) or `bpp`: the largest quality whose
        file is at most that big; `psnr` (dB, RGB or grey, 8-bit): the smallest quality that reaches
        it. The analysis transform, the costly part, runs once; each step of the search
        re-quantises and re-codes the real bytes. Size and bpp bisect the quality, 12 steps: within
        0.002 of the quality scale. PSNR interpolates and stops within PSNR_SLACK dB above the
        target (each of its steps also runs the synthesis). Returns the bytes and a record
        (quality, and a warning where the target cannot be met)."""
        given = [v is not None for v in (quality, bpp, size, psnr)]
        if sum(given) > 1:
            raise UsageError("give one of --quality, --bpp, --size or --psnr")
        h, w, _ = pixels.shape
        features = self._analyse(pixels)
        extras = (pixels.shape, alpha, bit_depth, icc, exif)
        if bpp is not None or size is not None:
            limit = size if size is not None else bpp * h * w / 8
            data, _ = self._code(features, QUALITY_MIN, *extras)
            if len(data) > limit:
                return data, {"quality": QUALITY_MIN, "warning": f"the target of {limit:,.0f} bytes is below the "
                              f"smallest file ({len(data):,} bytes at quality {QUALITY_MIN:g}); wrote that"}
            low, high, best = QUALITY_MIN, QUALITY_MAX, data
            top, _ = self._code(features, QUALITY_MAX, *extras)
            if len(top) <= limit:
                return top, {"quality": QUALITY_MAX}
            for _ in range(12):
                mid = _check_quality((low + high) / 2)
                data, _ = self._code(features, mid, *extras)
                if len(data) <= limit:
                    low, best = mid, data
                else:
                    high = mid
            return best, {"quality": low}
        if psnr is not None:
            # Each step runs the synthesis, so the search interpolates PSNR against quality inside
            # the bracket (regula falsi, halving when it stalls) and stops once a file lands within
            # PSNR_SLACK above the target: about 4 steps instead of 12 on photos.
            reference = np.round(np.clip(pixels, 0, 1) * 255)
            data, out = self._code(features, QUALITY_MAX, *extras, reconstruct=True)
            high_psnr = _psnr(out, reference)
            if high_psnr < psnr:
                return data, {"quality": QUALITY_MAX, "warning": f"{psnr:g} dB is above what the model reaches "
                              f"({high_psnr:.2f} dB at quality {QUALITY_MAX:g}); wrote that"}
            low, high, best = QUALITY_MIN, QUALITY_MAX, data
            low_data, out = self._code(features, QUALITY_MIN, *extras, reconstruct=True)
            low_psnr = _psnr(out, reference)
            if low_psnr >= psnr:
                return low_data, {"quality": QUALITY_MIN}
            for step in range(16):
                if high_psnr - psnr <= PSNR_SLACK or high - low <= 0.002:
                    break
                t = (psnr + PSNR_SLACK / 2 - low_psnr) / (high_psnr - low_psnr)
                t = min(0.9, max(0.1, t)) if step % 3 < 2 else 0.5  # every third step a plain halving
                mid = _check_quality(low + t * (high - low))
                if not low < mid < high:
                    break
                data, out = self._code(features, mid, *extras, reconstruct=True)
                value = _psnr(out, reference)
                if value >= psnr:
                    high, high_psnr, best = mid, value, data
                else:
                    low, low_psnr = mid, value
            return best, {"quality": high}
        q = _check_quality(DEFAULT_QUALITY if quality is None else quality)
        return self._code(features, q, *extras)[0], {"quality": q}

    def _analyse(self, pixels: np.ndarray):
        """The analysis transform's output before any gain (the costly part of encoding), over
        tiles for large images (see _tiled)."""
        model = self.model
        x = self._padded(pixels if pixels.shape[2] == 3 else np.repeat(pixels, 3, axis=2), model.multiple)
        return self._tiled(model.analysis, x, self.tile, ANALYSIS_MARGIN, LATENT_STRIDE, shrink=True)

    def _synthesise(self, y_scaled):
        """The synthesis transform of the (gain-scaled) latent, over tiles for large images."""
        return self._tiled(self.model.synthesis, y_scaled, self.tile, SYNTHESIS_MARGIN, LATENT_STRIDE, shrink=False)

    def _tiled(self, fn, x, tile: int, margin: int, stride: int, shrink: bool):
        """Run `fn` (a transform that divides (shrink) or multiplies the size by `stride`) over tiles
        of `tile` image pixels (tile / stride latent pixels for the synthesis) with `margin` input
        pixels of context on each side, keeping each tile's core: memory stays bounded by the tile,
        and since the margin covers the transform's receptive field, the result equals the untiled
        one up to float rounding (tested). Tile corners stay on the stride grid, so every tile's
        output lines up exactly. Out of memory (a GPU's), the tile is halved and the transform run
        again, down to MIN_TILE pixels, as the engine does for the other commands: the same result
        up to float rounding, so the same file but for a latent value at a rounding boundary."""
        import torch

        from ..engine import MIN_TILE, is_out_of_memory

        while True:
            try:
                return self._tiled_once(fn, x, tile, margin, stride, shrink)
            except Exception as exc:  # noqa: BLE001 - only memory errors are retried
                if not is_out_of_memory(exc):
                    raise
                if self.device.startswith("cuda"):
                    torch.cuda.empty_cache()
                if tile // 2 < MIN_TILE:
                    raise MemoryError(f"out of memory even with {MIN_TILE}-pixel tiles") from exc
                tile //= 2

    def _tiled_once(self, fn, x, tile: int, margin: int, stride: int, shrink: bool):
        import torch

        tile = tile if shrink else tile // stride
        _, _, h, w = x.shape

        def run(part):
            return fn(part.to(self.device).contiguous(memory_format=torch.channels_last)).float().cpu().contiguous()

        with torch.inference_mode():
            if h <= tile + 2 * margin and w <= tile + 2 * margin:
                return run(x)
            scale = (lambda n: n // stride) if shrink else (lambda n: n * stride)
            out = None
            for y0 in range(0, h, tile):
                for x0 in range(0, w, tile):
                    y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
                    ya, xa = max(0, y0 - margin), max(0, x0 - margin)
                    yb, xb = min(h, y1 + margin), min(w, x1 + margin)
                    part = run(x[:, :, ya:yb, xa:xb])
                    if out is None:
                        out = torch.empty(x.shape[0], part.shape[1], scale(h), scale(w))
                    out[:, :, scale(y0):scale(y1), scale(x0):scale(x1)] = \
                        part[:, :, scale(y0 - ya):scale(y1 - ya), scale(x0 - xa):scale(x1 - xa)]
            return out

    def _code(self, features, quality: float, shape, alpha, bit_depth, icc, exif, reconstruct: bool = False):
        """Quantise at `quality`, entropy-code, pack: (bytes, the decoder's reconstruction or None)."""
        import torch
        from constriction import stream

        from ..entropy import HYPER_RANGE, LATENT_RANGE, encode_symbols
        from ..models.hyperprior import FIXED_BITS

        model = self.model
        h, w, c = shape
        with torch.inference_mode():
            gain, inverse_gain, hyper_gain, hyper_inverse_gain = (
                g.cpu() for g in model.gains(torch.tensor([quality], device=self.device)))
            y = torch.round(features * gain)
            z = torch.round(model.hyper_analysis(y.abs().to(self.device)).float().cpu() * hyper_gain)
            hyper_gain_int = torch.round(hyper_inverse_gain.view(-1).double() * 2 ** FIXED_BITS).clamp(0, 65535)
            indices = model.scale_indices(z, hyper_gain_int)
            out = None
            if reconstruct:
                x_hat = self._synthesise(y * inverse_gain).clamp(0, 1)[0, :, :h, :w].permute(1, 2, 0).numpy()
                out = np.round((x_hat if c == 3 else x_hat.mean(axis=2, keepdims=True)) * 255)
        z_np, y_np = z[0].long().numpy(), y[0].long().numpy()
        z_coder, y_coder = stream.queue.RangeEncoder(), stream.queue.RangeEncoder()
        channel_ids = np.broadcast_to(np.arange(z_np.shape[0])[:, None, None], z_np.shape)
        encode_symbols(z_coder, z_np, channel_ids, model.hyper_table.cpu().numpy(), HYPER_RANGE)
        encode_symbols(y_coder, y_np, indices[0].numpy(), model.latent_table.cpu().numpy(), LATENT_RANGE)
        data = pack(EncodedImage(
            model_name=self.card.name, model_sha256_prefix=self._sha_prefix(), coder=CODER_RANGE,
            width=w, height=h, channels=c, bit_depth=bit_depth, has_alpha=alpha is not None, quality=quality,
            y_shape=tuple(y_np.shape), z_shape=tuple(z_np.shape),
            hyper_gain=tuple(int(v) for v in hyper_gain_int.long().tolist()),
            z_stream=z_coder.get_compressed().tobytes(), y_stream=y_coder.get_compressed().tobytes(),
            alpha=_alpha_png(alpha) if alpha is not None else b"", icc=icc or b"", exif=exif or b""))
        return data, out

    def picture(self, pic: Picture, strip: bool = False, **target) -> tuple[bytes, dict]:
        """The command line's per-file step: a decoded input file to .aei bytes and its record."""
        return encode_picture(self, pic, strip, target)

    @staticmethod
    def _padded(pixels: np.ndarray, multiple: int):
        import torch

        h, w, _ = pixels.shape
        ph, pw = -h % multiple, -w % multiple
        padded = np.pad(pixels, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else pixels
        return torch.from_numpy(np.ascontiguousarray(padded, np.float32)).permute(2, 0, 1)[None]

    # ------------------------------------------------------------------ decoding
    def decode_symbols(self, e: EncodedImage) -> tuple[np.ndarray, np.ndarray]:
        """The integer hyper-latent and latent (z, y) of a parsed file: the part of decoding that
        is exact on every machine and device (the entropy decoder and the integer hyper-synthesis
        run on the CPU)."""
        import torch
        from constriction import stream

        from ..entropy import HYPER_RANGE, LATENT_RANGE, decode_symbols

        if e.model_name != self.card.name or e.model_sha256_prefix != self._sha_prefix():
            raise ImageError(f"this file needs the model '{e.model_name}' (sha256 {e.model_sha256_prefix.hex()}...), "
                             f"not '{self.card.name}'; pass it with --model")
        if e.coder != CODER_RANGE:
            raise ImageError(f"unknown coder id {e.coder}: written by a newer aetool")
        model = self.model
        if (e.y_shape[0], e.z_shape[0]) != (model.m, model.n):  # the container takes any channel counts
            raise ImageError(f"damaged: the file's latents have {e.y_shape[0]} and {e.z_shape[0]} channels (y, z) but "
                             f"model '{self.card.name}' codes {model.m} and {model.n}")
        try:
            z_decoder = stream.queue.RangeDecoder(np.frombuffer(_whole_words(e.z_stream), np.uint32).copy())
            channel_ids = np.broadcast_to(np.arange(e.z_shape[0])[:, None, None], e.z_shape)
            z = decode_symbols(z_decoder, channel_ids, model.hyper_table.cpu().numpy(), HYPER_RANGE, e.z_shape)
            indices = model.scale_indices(torch.from_numpy(z)[None], torch.tensor(e.hyper_gain, dtype=torch.float64))
            y_decoder = stream.queue.RangeDecoder(np.frombuffer(_whole_words(e.y_stream), np.uint32).copy())
            y = decode_symbols(y_decoder, indices[0].numpy(), model.latent_table.cpu().numpy(), LATENT_RANGE, e.y_shape)
        except ImageError:
            raise
        except Exception as exc:  # the range decoder's own errors on a stream that is not ours
            raise ImageError(f"the coded data cannot be decoded ({exc})") from None
        return z, y

    def decode(self, data: bytes | EncodedImage, max_pixels: int | None = None) -> tuple[Picture, dict]:
        """The picture of .aei bytes (or of a file already parsed by the container) and its record."""
        import torch

        e = data if isinstance(data, EncodedImage) else unpack(data, max_pixels=max_pixels)
        _, y = self.decode_symbols(e)
        model = self.model
        with torch.inference_mode():
            inverse_gain = model.gains(torch.tensor([e.quality], device=self.device))[1].cpu()
            x_hat = self._synthesise(torch.from_numpy(y).float()[None] * inverse_gain).clamp(0, 1)
        out = x_hat[0, :, :e.height, :e.width].permute(1, 2, 0).numpy()
        if e.channels == 1:
            out = out.mean(axis=2, keepdims=True)
        alpha = _alpha_from_png(e.alpha, e.width, e.height) if e.has_alpha else None
        pic = Picture(pixels=np.ascontiguousarray(out, np.float32), alpha=alpha, bit_depth=8,
                      icc=e.icc or None, exif=e.exif or None)
        info = {"model": e.model_name, "quality": e.quality,
                "bpp": round(packed_size(e) * 8 / (e.width * e.height), 4)}
        if e.bit_depth == 16:
            info["note"] = "the source was 16-bit; it was coded at 8 bits"
        return pic, info


def encode_picture(codec, pic: Picture, strip: bool, target: dict) -> tuple[bytes, dict]:
    """A codec's (Codec, ProgressiveCodec) per-file step: the picture's pixels, alpha and metadata
    through its encode_to_target, and the record the command line prints."""
    data, info = codec.encode_to_target(pic.pixels, alpha=pic.alpha, bit_depth=pic.bit_depth,
                                        icc=None if strip else pic.icc, exif=None if strip else pic.exif, **target)
    info.update(model=codec.card.name, bytes=len(data), bpp=round(len(data) * 8 / (pic.width * pic.height), 4))
    if pic.bit_depth == 16:
        info["note"] = "16-bit input coded at 8 bits"
    return data, info


def codec_card(model: str | None = None):
    """The card of the codec `model` names (a name, a .safetensors file, or "progressive" for the
    installed progressive codec); the default codec without one. A usage error for a model of
    another task."""
    from .progressive import ALIAS, progressive_card

    if model == ALIAS:
        return progressive_card(model)
    card = find_card(model) if model is not None else default_model("compress", 3)
    if card.task != "compress":
        raise UsageError(f"model '{card.name}' is for `aetool {card.task}`, not a codec; see `aetool models`")
    return card


def make_codec(model: str | None = None, options: EngineOptions | None = None):
    """The codec for `model` (see codec_card): a Codec (hyperprior, version-1 files) or a
    ProgressiveCodec (recurrent, version-2 files)."""
    from .progressive import ProgressiveCodec, is_progressive_card

    card = codec_card(model)
    if is_progressive_card(card):
        return ProgressiveCodec(model or card.name, options)
    return Codec(model, options)


class Decoders:
    """Decodes files that may name different models: one codec per model, made when first needed.
    `model` (a name or .safetensors path) overrides where the named model is found. `limits`
    (iterations, bpp or max_bytes) say how much of a progressive file to decode; a file of the
    other codec is decoded whole, with a note."""

    def __init__(self, model: str | None = None, options: EngineOptions | None = None, **limits):
        self.override = model
        self.options = options
        self.limits = {k: v for k, v in limits.items() if v is not None}
        self._codecs: dict[str, object] = {}

    def codec_for(self, e):
        # A name already decoded with is known to be installed: no need to scan the cards per file.
        name = self.override or (e.model_name if e.model_name in self._codecs else named_model(e, "--model"))
        if name not in self._codecs:
            self._codecs[name] = make_codec(name, self.options)
        return self._codecs[name]

    def picture(self, e, max_pixels: int | None = None) -> tuple[Picture, dict]:
        from ..container import ProgressiveImage

        codec = self.codec_for(e)
        if isinstance(e, ProgressiveImage):
            if not hasattr(codec, "decode_bits"):
                raise ImageError(f"this progressive file needs a progressive codec, not '{codec.card.name}'")
            return codec.decode(e, **self.limits)
        if not isinstance(codec, Codec):
            raise ImageError(f"this file needs a hyperprior codec, not the progressive '{codec.card.name}'")
        pic, info = codec.decode(e, max_pixels)
        if self.limits:
            info["note"] = "not a progressive file: decoded whole (--iterations, --bpp and --max-bytes apply to files " \
                           "of the progressive codec)"
        return pic, info


def named_model(e: EncodedImage, option: str) -> str:
    """The installed model a file names (by name only: a file never points the decoder at a path);
    an ImageError that names the model, its hash and `option` when it is not installed. Not a usage
    error: other files of a batch may name a model that is here."""
    from ..registry import pretrained_cards

    if not any(card.name == e.model_name and card.task == "compress" for card in pretrained_cards()):
        raise ImageError(f"this file needs the model '{e.model_name}' (sha256 {e.model_sha256_prefix.hex()}...), "
                         f"which is not installed; pass its .safetensors file with {option}")
    return e.model_name


def _is_classical(source) -> bool:
    """A JPEG, WebP or AVIF file (path or bytes), by its first bytes, not its name."""
    from ..codecs import codec_of

    if isinstance(source, bytes):
        codec = codec_of(source[:16])
    else:
        try:
            with open(source, "rb") as f:
                codec = codec_of(f.read(16))
        except OSError:
            return False  # the .aei reader says what is wrong
    if codec == "jxl":
        from ..codecs import register_jxl

        register_jxl()  # Pillow reads JPEG XL only with the plugin; without it the file fails alone
    return codec is not None


def read_encoded(source, max_pixels: int | None = None, output_size=None):
    """The engine's reader for decompress: a parsed, checksum-verified .aei file (path or bytes),
    or a JPEG/WebP/AVIF file read as a Picture (the classical decoder's output)."""
    if _is_classical(source):
        from ..imageio import DEFAULT_MAX_PIXELS
        from .classical import read_standard

        return read_standard(source, max_pixels or DEFAULT_MAX_PIXELS, output_size)
    return unpack(source, max_pixels=max_pixels) if isinstance(source, bytes) else load(source, max_pixels)


def probe_encoded(path, max_pixels: int | None = None, output_size=None, verify: bool = False) -> tuple[int, int]:
    """The engine's header check for decompress: (width, height), refusing what decoding would refuse."""
    if _is_classical(path):
        from ..imageio import DEFAULT_MAX_PIXELS, probe_image

        return probe_image(path, max_pixels or DEFAULT_MAX_PIXELS, output_size, verify)
    e = load(path, max_pixels)
    from ..limits import check_image_size

    check_image_size(e.width, e.height, e.channels + int(e.has_alpha), 1, max_pixels or 10 ** 12)
    return e.width, e.height


def _psnr(out: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean((out.astype(np.float64) - reference) ** 2))
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


def _whole_words(stream_bytes: bytes) -> bytes:
    if len(stream_bytes) % 4:
        raise ImageError("damaged: a coded stream is not a whole number of 32-bit words")
    return stream_bytes


def _alpha_png(alpha: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(alpha, 0, 1) * 255).astype(np.uint8), "L").save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _alpha_from_png(data: bytes, width: int, height: int) -> np.ndarray:
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(data))  # reads the header only
        if im.size != (width, height):  # before load(): a 100-byte PNG can declare 65535x65535 pixels
            raise ImageError("damaged: the alpha section's size does not match the image")
        im.load()
    except ImageError:
        raise
    except Exception as exc:  # Pillow raises many types for damaged data
        raise ImageError(f"damaged alpha section ({exc})") from None
    return np.asarray(im.convert("L"), np.float32) / 255.0


# ---------------------------------------------------------------------- the Python API


def compress(image, quality: float | None = None, model: str | None = None, codec: str | None = None) -> bytes:
    """Compress one image to the bytes of an .aei file, or with `codec` ("jpeg", "webp", "avif") to
    a standard file of that codec. image: a PIL image, a numpy array (H, W) or (H, W, 3|4) of uint8 /
    uint16 / float in [0, 1], or a torch tensor (C, H, W) in [0, 1]. quality: 1 (smallest) to 8
    (best), fractions allowed, default 4; with a codec, its 1-100 (default: the codec's).

        from aetool import compress, decompress
        data = compress(pil_image, quality=4)
        image = decompress(data)
        avif = compress(pil_image, codec="avif", quality=50)  # decompress(avif): with the post-filter
    """
    from .cache import _cached
    from .convert import to_float_planes

    pixels, alpha, bit_depth = to_float_planes(image)
    if codec is not None:
        from .classical import encode_classical

        pic = Picture(pixels=pixels, alpha=alpha, bit_depth=bit_depth)
        return encode_classical(pic, codec, quality=None if quality is None else int(quality))[0]
    if model is not None and _is_progressive_model(model):
        from .progressive import ProgressiveCodec

        coder = _cached(ProgressiveCodec, model, "cpu", None, "fp32")
        return coder.encode_to_target(pixels, quality=quality, alpha=alpha, bit_depth=bit_depth)[0]
    coder = _cached(Codec, model, "cpu", None, "fp32")
    return coder.encode(pixels, DEFAULT_QUALITY if quality is None else quality, alpha=alpha, bit_depth=bit_depth)


@functools.lru_cache(maxsize=32)  # compress() in a loop: the cards are read once per model name
def _is_progressive_model(model: str) -> bool:
    from .progressive import is_progressive_card

    return is_progressive_card(codec_card(model))


def decompress(data: bytes, model: str | None = None, max_pixels: int | None = None, filter: bool = True,
               iterations: int | None = None, bpp: float | None = None, max_bytes: int | None = None):
    """The image of .aei bytes, or of a JPEG, WebP or AVIF file (decoded by Pillow, then the learned
    post-filter of its codec unless filter=False), as a PIL image (RGB, RGBA, L or LA). An .aei file
    names the model it needs; `model` overrides where that model is found (a name or a .safetensors
    path), or names the post-filter for a standard file. A file that declares more than `max_pixels`
    (default: the command line's --max-pixels default) is refused before anything is allocated.
    A progressive file (compress(..., model="compress-progressive")) decodes its first `iterations`,
    or as many as fit in `bpp` or `max_bytes`, or all it holds whole (a cut file: with a warning)."""
    from PIL import Image

    from ..imageio import DEFAULT_MAX_PIXELS
    from .cache import _cached

    if _is_classical(data):
        from .classical import ClassicalDecoder, read_standard

        decoder = _cached(ClassicalDecoder, model, "auto", None, "auto", filter=filter)
        pic, _ = decoder.picture(read_standard(data, max_pixels or DEFAULT_MAX_PIXELS))
    else:
        from ..container import ProgressiveImage

        header = unpack(data, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
        if isinstance(header, ProgressiveImage):
            import warnings

            from .progressive import ProgressiveCodec

            codec = _cached(ProgressiveCodec, model or named_model(header, "model="), "cpu", None, "fp32")
            pic, info = codec.decode(header, iterations=iterations, bpp=bpp, max_bytes=max_bytes)
            if "warning" in info:
                warnings.warn(info["warning"], stacklevel=2)
        else:
            codec = _cached(Codec, model or named_model(header, "model="), "cpu", None, "fp32")
            pic, _ = codec.decode(header)
    from ..imageio import as_float, to_integer

    # A post-filter may have assembled its output as integers already (Denoiser with bits).
    planes = [as_float(pic.pixels)] + ([pic.alpha[..., None]] if pic.alpha is not None else [])
    arr = to_integer(np.concatenate(planes, axis=2), 8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode)
