"""Running a network over images of any size: device and precision choice, tiling with overlap
and blended seams, batching of same-size tiles, fallbacks for out-of-memory and half-precision
overflow. The whole image stays in host memory; only tiles go to the device.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import NonFiniteOutputError, UsageError
from .imageio import DEFAULT_MAX_PIXELS, levels_in_place, to_integer

MIN_TILE = 64

# Called with the fraction of the current image's tiles done, so that a progress bar moves inside
# a 24 MP photo instead of sitting still for minutes. Set per image by the batch pipeline.
_tile_progress: contextvars.ContextVar[Callable[[float], None] | None] = contextvars.ContextVar(
    "aetool_tile_progress", default=None)


# The device of the model replica being built (--devices): set by the batch pipeline around each
# replica's make_processor(), so that every Runner that replica makes runs on its own device.
_replica_device: contextvars.ContextVar[str | None] = contextvars.ContextVar("aetool_replica_device", default=None)


@contextlib.contextmanager
def replica_on(device: str | None):
    token = _replica_device.set(device)
    try:
        yield
    finally:
        _replica_device.reset(token)


@contextlib.contextmanager
def report_tiles(callback: Callable[[float], None] | None):
    token = _tile_progress.set(callback)
    try:
        yield
    finally:
        _tile_progress.reset(token)


@dataclass
class EngineOptions:
    device: str = "auto"
    precision: str = "auto"
    tile: int | None = None  # None: auto; 0: never tile; N: tiles of N x N
    overlap: int = 64  # tiled output within 1/255 of untiled (tested); models may ask for more
    batch_size: int = 0  # 0: auto
    workers: int = 0  # decode/encode threads; 0: auto
    max_pixels: int = DEFAULT_MAX_PIXELS
    ensemble: int = 1  # 1, 2, 4 or 8 geometric transforms of each tile, outputs averaged (ENSEMBLES)


# Self-ensemble (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution",
# CVPRW 2017): the model also runs on flipped (2, 4) and transposed (8) copies of each tile, and
# the outputs, transformed back, are averaged. Only for models whose output is an image aligned
# with their input.
ENSEMBLES = (1, 2, 4, 8)
ORDER = (0, 3, 1, 2, 4, 7, 5, 6)  # bit 0: left-right flip, bit 1: up-down flip, bit 2: transpose


def check_ensemble(n: int) -> int:
    if n not in ENSEMBLES:
        raise UsageError(f"--ensemble must be one of {', '.join(map(str, ENSEMBLES))}, got {n}")
    return n


def ensembled(fn: Callable, x, n: int):
    """The mean of fn over the first n of: identity, left-right flip, up-down flip, both, and the
    same four transposed; each output transformed back."""
    if n == 1:
        return fn(x).float()
    import torch

    total = None
    for k in ORDER[:n]:
        t = x.flip(3) if k & 1 else x
        t = t.flip(2) if k & 2 else t
        t = t.transpose(2, 3) if k & 4 else t
        y = fn(t.contiguous(memory_format=torch.channels_last)).float()
        y = y.transpose(2, 3) if k & 4 else y
        y = y.flip(2) if k & 2 else y
        y = y.flip(3) if k & 1 else y
        total = y if total is None else total + y
    return total / n


def parse_tile(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"--tile must be auto, 0 or a size in pixels, got '{value}'") from None
    if n != 0 and n < MIN_TILE:
        raise UsageError(f"--tile must be 0 (off) or at least {MIN_TILE}")
    return n


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's out-of-memory error, of a GPU or (as a RuntimeError) of the host."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _fit_tile(length: int, tile: int, overlap: int) -> int:
    """The tile side that covers `length` with the fewest tiles of at most `tile`, spread evenly,
    so that the last tile does not redo most of its neighbour (a multiple of 8 where possible)."""
    if length <= tile:
        return length
    n = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (n - 1) * overlap) / n)
    return min(length, tile, -(-size // 8) * 8)


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """Blend weights along one axis of a tile: the outer quarter of the overlap is ignored
    (border effects), the next half ramps up linearly; image borders keep full weight."""
    w = np.ones(n, np.float32)
    if overlap <= 0:
        return w
    i = np.arange(n, dtype=np.float32) + 0.5
    ramp = np.clip((i - overlap / 4) / (overlap / 2), 0.0, 1.0)
    if not at_start:
        w = np.minimum(w, ramp)
    if not at_end:
        w = np.minimum(w, ramp[::-1])
    return np.maximum(w, 1e-6)


def _integer_top(dtype) -> int:
    """255 or 65535 for uint8 or uint16 pixels; 0 for floats (already in [0, 1])."""
    return {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(np.dtype(dtype), 0)


class Runner:
    """Runs `fn(batch) -> batch` (NCHW float tensors in [0, 1]) over (H, W, C) float32 arrays."""

    def __init__(self, options: EngineOptions | None = None):
        import torch

        from .device import autocast_dtype, check_names, resolve_device

        self.options = options or EngineOptions()
        check_names(self.options.device, self.options.precision)
        check_ensemble(self.options.ensemble)
        self.device = resolve_device(_replica_device.get() or self.options.device)
        self.kind = self.device.split(":")[0]
        self.amp_dtype = autocast_dtype(self.options.precision, self.device)
        if self.kind == "cpu" and self.amp_dtype == torch.float16:
            raise UsageError("--precision fp16 is not supported on CPU; use bf16 or fp32")
        self.torch = torch

    # Tile and batch defaults: large enough to keep the device busy, small enough for its memory.
    def default_tile(self, h: int, w: int, scale: int = 1) -> int:
        if self.kind == "cuda":
            free, _ = self.torch.cuda.mem_get_info(self.device)
            return 2048 if free > 16e9 else 1024 if free > 4e9 else 512
        if h * w <= 2_200_000:
            return 0  # whole: fastest, and at most ~2 GB of activations
        # An enlarging model holds about 1 kB per input pixel of activations (x4: 64 features, then
        # 48 sub-pixel channels and the float output): 512-pixel tiles keep that near 0.3 GB, where
        # the output (x4 of 24 MP: 1.2 GB as uint8) leaves the least room (benchmarks/peak_memory.py).
        return 1024 if scale == 1 else 512

    def default_batch(self) -> int:
        return 8 if self.kind == "cuda" else 1

    def prepare(self, model):
        return model.to(self.device).to(memory_format=self.torch.channels_last)

    def run(self, fn: Callable, image: np.ndarray, scale: int = 1, out_channels: int | None = None,
            context: int = 0, out_dtype=None, into: np.ndarray | None = None) -> np.ndarray:
        """`context`: input pixels that reach each output pixel on each side (the model's receptive
        radius); the tile overlap is made wide enough that its blended part never sees a tile edge.
        `image` may be float32 in [0, 1] or uint8/uint16 (converted tile by tile). `out_dtype`
        np.uint8 or np.uint16: the output is clipped, rounded and assembled in that type tile by tile
        (as imageio.to_integer would), so that no float copy of a large output is ever held; None:
        float32 as the model gave it. `into`: the integer array to assemble the output in (of its
        shape and out_dtype); it may be `image` itself (same size and type): each output pixel is
        written only once no later tile reads its input, so the input's memory is the output's."""
        h, w, _ = image.shape
        tile = self.options.tile if self.options.tile is not None else self.default_tile(h, w, scale)
        batch = self.options.batch_size or self.default_batch()
        wrote = [False]  # set by _run_into once output rows are in `into`
        while True:
            try:
                if out_dtype is not None:
                    return self._run_into(fn, image, tile, batch, scale, out_channels, context, np.dtype(out_dtype),
                                          into, wrote)
                return self._run_tiled(fn, image, tile, batch, scale, out_channels, context)
            except Exception as exc:  # noqa: BLE001 - only memory errors are retried
                if not is_out_of_memory(exc):
                    raise
                if into is image and wrote[0]:  # part of the input is output already: no second try from it
                    raise MemoryError("out of memory while writing the output over the input") from exc
                if self.kind == "cuda":
                    self.torch.cuda.empty_cache()
                if batch > 1:
                    batch //= 2
                    continue
                size = tile or max(h, w)
                if size // 2 < MIN_TILE:
                    raise MemoryError(f"out of memory even with {MIN_TILE}-pixel tiles") from exc
                tile = size // 2

    def _forward(self, fn: Callable, x):
        torch = self.torch
        n = self.options.ensemble
        with torch.inference_mode():
            if self.amp_dtype is not None:
                with torch.autocast(self.kind, dtype=self.amp_dtype):
                    y = ensembled(fn, x, n)
                if not torch.isfinite(y).all():
                    y = ensembled(fn, x.float(), n)  # half precision overflowed: redo in fp32
            else:
                y = ensembled(fn, x, n)
            if not torch.isfinite(y).all():  # clipped, NaN would be written as black: never an image
                raise NonFiniteOutputError("the model produced NaN or infinite values even in fp32: its weights "
                                           "are damaged or its training diverged; re-train or restore it")
            return y

    def _to_device(self, arr: np.ndarray):
        torch = self.torch
        top = _integer_top(arr.dtype)
        # torch warns of read-only arrays (decoded pixels can be views of Pillow's bytes): a copy of
        # the tile then, which the device transfer makes anyway.
        arr = np.ascontiguousarray(arr) if arr.flags.writeable else np.array(arr)
        t = torch.from_numpy(arr).permute(0, 3, 1, 2)
        if self.kind == "cuda":
            t = t.contiguous().pin_memory().to(self.device, non_blocking=True)
        t = t.contiguous(memory_format=torch.channels_last).to(self.device)
        # Integer pixels become floats tile by tile, on the device: the whole image never does.
        return t.float().div_(top) if top else t

    def _layout(self, h: int, w: int, tile: int, context: int):
        """Tile height and width, overlap and the tile origins along each axis."""
        # _ramp ignores the outer quarter of the overlap, so 4 x context keeps edges out of the blend.
        overlap = min(max(self.options.overlap, 4 * context), tile // 2)
        th, tw = _fit_tile(h, tile, overlap), _fit_tile(w, tile, overlap)
        overlap = min(overlap, th // 2, tw // 2)
        return th, tw, overlap, tile_starts(h, th, overlap), tile_starts(w, tw, overlap)

    def _tile_outputs(self, fn, image, th, tw, positions, batch):
        """(y0, x0, output tile as (H, W, C) float32) in raster order, a batch at a time."""
        progress = _tile_progress.get()
        for i in range(0, len(positions), batch):
            group = positions[i:i + batch]
            x = np.stack([image[y0:y0 + th, x0:x0 + tw] for y0, x0 in group])
            y = self._forward(fn, self._to_device(x)).permute(0, 2, 3, 1).cpu().numpy()
            del x
            yield from ((y0, x0, tile_out) for (y0, x0), tile_out in zip(group, y))
            # Not kept while the next batch runs: its activations and this output would add up
            # (callers drop their references to the tiles too).
            del y
            if progress is not None:
                progress(min(1.0, (i + len(group)) / len(positions)))

    def _run_into(self, fn, image, tile, batch, scale, out_channels, context, dtype, into=None, wrote=None):
        """The tiled run, assembled straight into an integer output. Blend weights are separable
        and the tiles form a grid, so the total weight at (y, x) is Sy(y) * Sx(x) and each tile's
        share is known before its neighbours run. Tiles come in raster order: a tile's columns
        left of the next tile's start are final for its tile row, and a tile row's rows above the
        next row's start are final for good. Only the strips still waiting for a neighbour (the
        overlaps) are held as floats: a band of rows across the width and a few columns."""
        h, w, c = image.shape
        oc = out_channels or c
        bits = 16 if dtype == np.uint16 else 8  # clipped and rounded as the encoder would (imageio.to_integer)
        if into is not None and (into.shape != (h * scale, w * scale, oc) or into.dtype != dtype):
            raise ValueError(f"cannot assemble a {dtype} output of {(h * scale, w * scale, oc)} in {into.dtype} "
                             f"{into.shape}")
        if not tile or (h <= tile and w <= tile):
            y = self._forward(fn, self._to_device(image[None]))[0].permute(1, 2, 0).cpu().numpy()
            if into is None:
                return to_integer(y, bits)
            into[...] = to_integer(y, bits)
            return into
        s = scale
        th, tw, overlap, ys, xs = self._layout(h, w, tile, context)
        sy = np.zeros(h * s, np.float32)
        sx = np.zeros(w * s, np.float32)
        wys = {y0: _ramp(th * s, overlap * s, y0 == 0, y0 + th == h) for y0 in ys}
        wxs = {x0: _ramp(tw * s, overlap * s, x0 == 0, x0 + tw == w) for x0 in xs}
        for y0, wy in wys.items():
            sy[y0 * s:(y0 + th) * s] += wy
        for x0, wx in wxs.items():
            sx[x0 * s:(x0 + tw) * s] += wx
        out = np.empty((h * s, w * s, oc), dtype) if into is None else into
        next_y = {y0: (ys[k + 1] if k + 1 < len(ys) else h) * s for k, y0 in enumerate(ys)}
        next_x = {x0: (xs[k + 1] if k + 1 < len(xs) else w) * s for k, x0 in enumerate(xs)}
        band = th * s
        # One float band across the width holds what each tile row leaves for the next (its rows
        # below the next row's start). A tile takes the columns of it that lie above it, then puts
        # its own leftovers in the same columns: a tile row reads and writes the band left to right.
        pending = np.zeros((max(band - (next_y[y0] - y0 * s) for y0 in ys), w * s, oc), np.float32)
        pending_in = 0  # rows of `pending` the tile row above left (0 for the first)
        cols = None  # this tile row's columns left by the tile to the left: (band, width, oc)
        for y0, x0, acc in self._tile_outputs(fn, image, th, tw, [(a, b) for a in ys for b in xs], batch):
            top_y, left_x = y0 * s, x0 * s
            final_rows = next_y[y0] - top_y  # rows of this band that no later tile row reaches
            if x0 == xs[0]:
                cols = None
            acc *= (wys[y0] / sy[top_y:top_y + band])[:, None, None]  # in place: the tile's share
            acc *= (wxs[x0] / sx[left_x:left_x + tw * s])[None, :, None]
            if cols is not None:
                acc[:, :cols.shape[1]] += cols
            done = next_x[x0] - left_x  # columns that no later tile of this row reaches
            block = acc[:, :done]
            block[:pending_in] += pending[:pending_in, left_x:left_x + done]
            pending[:band - final_rows, left_x:left_x + done] = block[final_rows:]
            # Rounded in place, as imageio.to_integer rounds, into the output.
            final = levels_in_place(block[:final_rows], bits)
            out[top_y:top_y + final_rows, left_x:left_x + done] = final
            if wrote is not None:
                wrote[0] = True
            cols = acc[:, done:].copy()
            if x0 == xs[-1]:
                pending_in = band - final_rows
            del acc, block, final  # before the next batch runs (see _tile_outputs)
        return out

    def _run_tiled(self, fn, image, tile, batch, scale, out_channels, context=0):
        h, w, c = image.shape
        oc = out_channels or c
        if not tile or (h <= tile and w <= tile):
            y = self._forward(fn, self._to_device(image[None]))
            return y[0].permute(1, 2, 0).cpu().numpy()
        th, tw, overlap, ys, xs = self._layout(h, w, tile, context)
        out = np.zeros((h * scale, w * scale, oc), np.float32)
        weight = np.zeros((h * scale, w * scale, 1), np.float32)
        for y0, x0, tile_out in self._tile_outputs(fn, image, th, tw, [(a, b) for a in ys for b in xs], batch):
            wy = _ramp(th * scale, overlap * scale, y0 == 0, y0 + th == h)
            wx = _ramp(tw * scale, overlap * scale, x0 == 0, x0 + tw == w)
            wt = (wy[:, None] * wx[None, :])[..., None]
            sl = np.s_[y0 * scale:(y0 + th) * scale, x0 * scale:(x0 + tw) * scale]
            out[sl] += tile_out * wt
            weight[sl] += wt
            del tile_out  # before the next batch runs (see _tile_outputs)
        return out / weight
