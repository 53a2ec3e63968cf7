"""Progressive compression: the recurrent autoencoder (aetool/models/recurrent.py) codes an image as
a sequence of refinements, and every prefix of the file that ends on an iteration decodes to a
complete image. `ProgressiveCodec` encodes to and decodes from the version-2 `.aei` container
(aetool/container.py, docs/format.md), whose iteration table makes truncation and partial decoding
exact; `aetool compress --model compress-progressive`, `aetool decompress --iterations/--bpp/
--max-bytes` and `aetool truncate` are this module on the engine.

What is exact on every machine: each iteration's bits, coded with constriction's range coder with
the integer probability tables stored in the model's weights file (per iteration, code channel and
context, the context being the same bit of the previous iteration), so a decoder rebuilds exactly
the probabilities the encoder used. The float decoder network that turns bits into pixels may
differ by a rounding step between CPUs and GPUs, as for any learned codec.

Large images are coded in independent tiles of TILE pixels (the bits of one iteration of every
tile together form that iteration's code), so memory stays bounded; images up to TILE pixels a
side are one tile.
"""
from __future__ import annotations

import math

import numpy as np

from ..container import (CODER_RANGE_24, ProgressiveImage, pack_progressive, progressive_code_shape,
                         progressive_ends, progressive_sizes, truncate)
from ..engine import EngineOptions
from ..errors import ImageError, UsageError
from ..imageio import Picture
from ..registry import Card, find_card, load_model, pretrained_cards, verify_model
from .compress import _alpha_from_png, _alpha_png, encode_picture  # the alpha section is the same PNG in both versions

TILE = 1024  # pixels a side of the independently coded tiles (a multiple of 16); part of the format
ALIAS = "progressive"  # `--model progressive`: the installed progressive codec

__all__ = ["ProgressiveCodec", "is_progressive_card", "progressive_card", "iterations_for", "truncate_file",
           "truncate_bytes"]


def is_progressive_card(card: Card) -> bool:
    return card.task == "compress" and card.arch == "recurrent_codec"


def progressive_card(model: str | None = None) -> Card:
    """The card of a progressive codec: `model` (a name, a .safetensors path, or "progressive" for
    the installed one)."""
    if model is None or model == ALIAS:
        cards = [c for c in pretrained_cards("compress") if is_progressive_card(c)]
        if not cards:
            raise UsageError("no progressive codec is installed (see `aetool models`); train one with "
                             "`aetool train compress --arch recurrent` and pass it with --model")
        return next((c for c in cards if c.default), cards[0])
    card = find_card(model)
    if not is_progressive_card(card):
        raise UsageError(f"model '{card.name}' is not a progressive codec")
    return card


def iterations_for(e: ProgressiveImage, *, iterations: int | None = None, bpp: float | None = None,
                   max_bytes: int | None = None, prefix: bool = True) -> tuple[int, str | None]:
    """How many of the file's complete iterations to decode (or keep) for one of the limits:
    `iterations`, `bpp` or `max_bytes`; all without a limit. With `prefix` (decoding), a byte
    limit counts the first bytes of this file, as a stream would deliver them; without
    (truncating), the size of the smaller file that keeps them (its table is shorter). Returns
    (k, a note when the limit asks for more than there is or less than one iteration)."""
    given = [v is not None for v in (iterations, bpp, max_bytes)]
    if sum(given) > 1:
        raise UsageError("give one of --iterations, --bpp or --max-bytes")
    have = len(e.iterations)
    if iterations is not None:
        if iterations < 1:
            raise UsageError(f"--iterations must be at least 1, got {iterations}")
        if iterations > have:
            return have, f"the file holds {have} iterations; decoded all of them"
        return iterations, None
    if bpp is None and max_bytes is None:
        return have, None
    limit = max_bytes if max_bytes is not None else bpp * e.width * e.height / 8
    sizes = progressive_ends(e) if prefix else progressive_sizes(e)
    k = sum(1 for s in sizes if s <= limit)
    if k == 0:
        return 1, (f"the limit of {limit:,.0f} bytes is below the first iteration ({sizes[0]:,} bytes in all); "
                   "used that")
    return k, None


def truncate_file(e, *, iterations: int | None = None, bpp: float | None = None, max_bytes: int | None = None
                  ) -> tuple[bytes, dict]:
    """`aetool truncate`'s per-file step: the bytes of a whole file keeping the first iterations
    that the limit allows (no model needed: the same bits, a shorter table) and its record. A cut
    file gives a whole one of its complete iterations."""
    from ..container import pack_progressive

    if not isinstance(e, ProgressiveImage):
        raise ImageError("not a progressive file (only files of the progressive codec can be truncated)")
    if not e.iterations:
        raise ImageError(f"truncated: the file ends at byte {e.size:,}, inside its first iteration: nothing to keep")
    k, note = iterations_for(e, iterations=iterations, bpp=bpp, max_bytes=max_bytes, prefix=False)
    data = truncate(e, k) if k < len(e.iterations) else pack_progressive(e)
    info = {"model": e.model_name, "iterations": k, "iterations_in_file": max(e.declared, len(e.iterations)),
            "bytes": len(data), "bpp": round(len(data) * 8 / (e.width * e.height), 4)}
    if k - 1 < len(e.psnr) and e.psnr[k - 1] is not None:
        info["psnr_estimate"] = e.psnr[k - 1]
    notes = [note] if note else []
    if e.cut:
        notes.append(f"the input is cut ({e.size:,} bytes): kept its {len(e.iterations)} complete iterations")
    elif k == len(e.iterations):
        notes.append("already within the limit: kept every iteration")
    if notes:
        info["note"] = "; ".join(notes)
    return data, info


def truncate_bytes(data: bytes, iterations: int | None = None, bpp: float | None = None,
                   max_bytes: int | None = None) -> bytes:
    """The bytes of a smaller valid progressive .aei file: the first `iterations` of `data`, or as
    many as fit in `bpp` or `max_bytes` (at least one). No model is needed; nothing is re-encoded.

        from aetool import compress, truncate
        data = compress(image, model="compress-progressive")
        preview = truncate(data, max_bytes=20_000)
    """
    from ..container import unpack

    if all(v is None for v in (iterations, bpp, max_bytes)):
        raise UsageError("give one of iterations, bpp or max_bytes")
    return truncate_file(unpack(data), iterations=iterations, bpp=bpp, max_bytes=max_bytes)[0]


class ProgressiveCodec:
    """Encodes (H, W, C) float32 pixels in [0, 1] to version-2 `.aei` bytes and back."""

    def __init__(self, model: str | None = None, options: EngineOptions | None = None):
        self.options = options or EngineOptions()
        self.card = progressive_card(model)
        verify_model(self.card)
        self._model = None
        self._cpu_model = None  # a CPU copy for tiles that do not fit in a GPU's memory (see _run_tile)
        self.device = "cpu"
        self.tile = TILE

    @property
    def model(self):
        if self._model is None:
            from ..device import resolve_device

            self.device = resolve_device(self.options.device)
            model = load_model(self.card, "cpu").float().eval()
            self._model = model.to(self.device)  # measured: channels_last is no faster for these small convolutions
        return self._model

    def _sha_prefix(self) -> bytes:
        return bytes.fromhex(self.card.sha256[:16]) if self.card.sha256 else b"\0" * 8

    def _run_tile(self, run, *tensors):
        """run(model, *tensors on the model's device) for one tile. The tile size is part of the format,
        so a tile that does not fit in a GPU's memory cannot be halved as the engine's tiles are: it
        runs on the CPU instead (slower; the same code up to float rounding, which can flip a bit the
        encoder writes, never what a decoder reads). Another error, or out of memory on the CPU,
        fails the file."""
        import torch

        from ..engine import is_out_of_memory

        model = self.model
        try:
            return run(model, *(t.to(self.device) for t in tensors))
        except Exception as exc:  # noqa: BLE001 - only memory errors are retried
            if self.device == "cpu" or not is_out_of_memory(exc):
                raise
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        if self._cpu_model is None:
            self._cpu_model = load_model(self.card, "cpu").float().eval()
        return run(self._cpu_model, *(t.to("cpu") for t in tensors))

    def _tiles(self, height: int, width: int):
        """(y0, y1, x0, x1) of each tile of the padded image, in raster order."""
        for y0 in range(0, height, self.tile):
            for x0 in range(0, width, self.tile):
                yield y0, min(height, y0 + self.tile), x0, min(width, x0 + self.tile)

    # ------------------------------------------------------------------ encoding
    def encode_all(self, pixels: np.ndarray, iterations: int | None = None
                   ) -> tuple[list[np.ndarray], list[float]]:
        """Every iteration's bits ((bits, H/16, W/16) of 0/1, uint8) and the PSNR (8-bit, on the
        image's own channels) after each, for (H, W, C) pixels in [0, 1]."""
        import torch

        model = self.model
        k_max = min(iterations or model.iterations, model.iterations)
        h, w, c = pixels.shape
        x = _padded(pixels if c == model.in_channels else np.repeat(pixels, model.in_channels // c, axis=2))
        _, ph, pw = progressive_code_shape(h, w, model.bits)
        codes = [np.zeros((model.bits, ph, pw), np.uint8) for _ in range(k_max)]
        squared = np.zeros(k_max)
        reference = np.round(np.clip(pixels, 0, 1) * 255).astype(np.float64)
        with torch.inference_mode():
            for y0, y1, x0, x1 in self._tiles(x.shape[2], x.shape[3]):
                bits, images = self._run_tile(lambda m, part: m.code(part.contiguous(), k_max),
                                              x[:, :, y0:y1, x0:x1])
                for k, (b, image) in enumerate(zip(bits, images)):
                    codes[k][:, y0 // 16:y1 // 16, x0 // 16:x1 // 16] = (b[0] > 0).cpu().numpy()
                    cy, cx = min(y1, h), min(x1, w)
                    if cy <= y0 or cx <= x0:
                        continue
                    out = image[0, :, :cy - y0, :cx - x0].float().cpu().permute(1, 2, 0).numpy()
                    out = out if c == out.shape[2] else out.mean(axis=2, keepdims=True)
                    squared[k] += float(np.sum((np.round(out * 255) - reference[y0:cy, x0:cx]) ** 2))
        mse = squared / (h * w * c)
        return codes, [10 * math.log10(255 ** 2 / max(m, 1e-10)) for m in mse]

    def code_iterations(self, codes: list[np.ndarray]) -> list[bytes]:
        """The range-coded bytes of each iteration's bits (each iteration its own stream)."""
        from constriction import stream

        from ..entropy import bit_contexts, encode_bits

        model = self.model
        table = model.bit_table.cpu().numpy()
        out = []
        for k, ones in enumerate(codes):
            contexts = bit_contexts(codes[k - 1] if k else None, ones, model.contexts)
            encoder = stream.queue.RangeEncoder()
            encode_bits(encoder, ones, contexts, table[k])
            out.append(encoder.get_compressed().tobytes())
        return out

    def encode_to_target(self, pixels: np.ndarray, *, quality: float | None = None, bpp: float | None = None,
                         size: int | None = None, psnr: float | None = None, alpha: np.ndarray | None = None,
                         bit_depth: int = 8, icc: bytes | None = None, exif: bytes | None = None
                         ) -> tuple[bytes, dict]:
        """Rate control by the number of iterations kept. `quality`: that many iterations (1 to
        the model's); `size` or `bpp`: the most iterations whose file is at most that big; `psnr`:
        the fewest that reach it; none: every iteration the model has (the file can be cut
        later). The image is coded once; the search only counts bytes."""
        if sum(v is not None for v in (quality, bpp, size, psnr)) > 1:
            raise UsageError("give one of --quality, --bpp, --size or --psnr")
        model = self.model
        if quality is not None and (quality != int(quality) or not 1 <= quality <= model.iterations):
            raise UsageError(f"--quality of the progressive codec is the number of iterations to keep, a whole "
                             f"number from 1 to {model.iterations}, got {quality:g}")
        k_max = int(quality) if quality is not None else model.iterations
        h, w, c = pixels.shape
        codes, psnrs = self.encode_all(pixels, k_max)
        e = ProgressiveImage(model_name=self.card.name, model_sha256_prefix=self._sha_prefix(), width=w, height=h,
                             channels=c, bit_depth=bit_depth, bits=model.bits,
                             iterations=tuple(self.code_iterations(codes)), psnr=tuple(round(p, 2) for p in psnrs),
                             coder=CODER_RANGE_24, has_alpha=alpha is not None,
                             alpha=_alpha_png(alpha) if alpha is not None else b"", icc=icc or b"", exif=exif or b"")
        sizes = progressive_sizes(e)
        k, warning = k_max, None
        if bpp is not None or size is not None:
            limit = size if size is not None else bpp * h * w / 8
            k = sum(1 for s in sizes if s <= limit)
            if k == 0:
                k, warning = 1, (f"the target of {limit:,.0f} bytes is below the smallest file ({sizes[0]:,} bytes, "
                                 "one iteration); wrote that")
        elif psnr is not None:
            k = next((j + 1 for j, p in enumerate(psnrs) if p >= psnr), k_max)
            if psnrs[k - 1] < psnr:
                warning = (f"{psnr:g} dB is above what the model reaches ({psnrs[-1]:.2f} dB after {k_max} "
                           "iterations); wrote that")
        data = truncate(e, k) if k < len(e.iterations) else pack_progressive(e)
        info = {"iterations": k, "psnr_estimate": round(psnrs[k - 1], 2)}
        if warning:
            info["warning"] = warning
        return data, info

    def picture(self, pic: Picture, strip: bool = False, **target) -> tuple[bytes, dict]:
        """The command line's per-file step: a decoded input file to .aei bytes and its record."""
        return encode_picture(self, pic, strip, target)

    # ------------------------------------------------------------------ decoding
    def _pictures(self, e: ProgressiveImage, codes: list[np.ndarray], every: bool) -> list[Picture]:
        """The picture after the last of `codes` ([it]), or after each of them (`every`)."""
        import torch

        model = self.model
        h, w = e.height, e.width
        ph, pw = codes[0].shape[1] * 16, codes[0].shape[2] * 16
        outs = [np.empty((ph, pw, model.in_channels), np.float32) for _ in (codes if every else codes[:1])]
        with torch.inference_mode():
            for y0, y1, x0, x1 in self._tiles(ph, pw):
                bits = [torch.from_numpy(b[None, :, y0 // 16:y1 // 16, x0 // 16:x1 // 16].astype(np.float32) * 2 - 1)
                        for b in codes]
                if every:
                    def put_each(m, *b, y0=y0, y1=y1, x0=x0, x1=x1):
                        for out, image in zip(outs, m.reconstructions(list(b))):
                            out[y0:y1, x0:x1] = image[0].float().cpu().permute(1, 2, 0).numpy()

                    self._run_tile(put_each, *bits)
                else:
                    image = self._run_tile(lambda m, *b: m.reconstruct(list(b)).float().cpu(), *bits)
                    outs[0][y0:y1, x0:x1] = image[0].permute(1, 2, 0).numpy()
        alpha = _alpha_from_png(e.alpha, w, h) if e.has_alpha else None
        pictures = []
        for out in outs:
            out = out[:h, :w]
            if e.channels == 1 and out.shape[2] != 1:
                out = out.mean(axis=2, keepdims=True)
            pictures.append(Picture(pixels=np.ascontiguousarray(out, np.float32), alpha=alpha, bit_depth=8,
                                    icc=e.icc or None, exif=e.exif or None))
        return pictures

    def decode_each(self, e: ProgressiveImage) -> list[Picture]:
        """The picture after every iteration the file holds whole, in one pass of the decoder (what a
        viewer that refines as the bytes arrive shows; each equals decode(e, iterations=k))."""
        if not e.iterations:
            raise ImageError("truncated: the file ends inside its first iteration: nothing can be decoded")
        return self._pictures(e, self.decode_bits(e, len(e.iterations)), every=True)

    def decode_bits(self, e: ProgressiveImage, iterations: int) -> list[np.ndarray]:
        """The bits of the first `iterations` iterations: the exact part of decoding (CPU)."""
        from constriction import stream

        from ..entropy import bit_contexts, decode_bits

        if e.model_name != self.card.name or e.model_sha256_prefix != self._sha_prefix():
            raise ImageError(f"this file needs the model '{e.model_name}' (sha256 {e.model_sha256_prefix.hex()}...), "
                             f"not '{self.card.name}'; pass it with --model")
        model = self.model
        if e.bits != model.bits or len(e.iterations) > model.iterations:
            raise ImageError(f"damaged: the file has {e.bits} bits per position and {len(e.iterations)} iterations, "
                             f"but model '{self.card.name}' codes {model.bits} and at most {model.iterations}")
        table = model.bit_table.cpu().numpy()
        shape = e.code_shape
        codes: list[np.ndarray] = []
        for k in range(iterations):
            data = e.iterations[k]
            if len(data) % 4:
                raise ImageError(f"damaged: iteration {k + 1} is not a whole number of 32-bit words")
            contexts = bit_contexts(codes[k - 1] if k else None, np.zeros(shape, np.uint8), model.contexts)
            try:
                decoder = stream.queue.RangeDecoder(np.frombuffer(data, np.uint32).copy())
                codes.append(decode_bits(decoder, contexts, table[k]))
            except Exception as exc:  # the range decoder's own errors on a stream that is not ours
                raise ImageError(f"iteration {k + 1} cannot be decoded ({exc})") from None
        return codes

    def decode(self, e: ProgressiveImage, iterations: int | None = None, bpp: float | None = None,
               max_bytes: int | None = None) -> tuple[Picture, dict]:
        """The picture after the first iterations a limit allows (all complete ones by default)."""
        if not e.iterations:
            raise ImageError(f"truncated: the file ends at byte {e.size:,}, inside its first iteration: nothing "
                             "can be decoded")
        k, note = iterations_for(e, iterations=iterations, bpp=bpp, max_bytes=max_bytes)
        pic = self._pictures(e, self.decode_bits(e, k), every=False)[-1]
        h, w = e.height, e.width
        used = progressive_ends(e)[k - 1]  # the first bytes of the file that were read
        info = {"model": e.model_name, "iterations": k, "iterations_in_file": max(e.declared, len(e.iterations)),
                "bytes_used": used, "bpp": round(used * 8 / (w * h), 4)}
        if k - 1 < len(e.psnr) and e.psnr[k - 1] is not None:
            info["psnr_estimate"] = e.psnr[k - 1]
        warnings = []
        if e.cut:
            warnings.append(f"the file is cut ({e.size:,} bytes): decoded {len(e.iterations)} complete iterations of "
                            f"{e.declared}")
        if note:
            warnings.append(note)
        if warnings:
            info["warning"] = "; ".join(warnings)
        if e.bit_depth == 16:
            info["note"] = "the source was 16-bit; it was coded at 8 bits"
        return pic, info


def _padded(pixels: np.ndarray):
    import torch

    h, w, _ = pixels.shape
    ph, pw = -h % 16, -w % 16
    padded = np.pad(pixels, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else pixels
    return torch.from_numpy(np.ascontiguousarray(padded, np.float32)).permute(2, 0, 1)[None]
