"""Size and memory checks made from an image's header, before a single pixel is decoded, so that
a crafted file (a 14 KB PNG that declares 100,000 x 100,000 pixels) is refused with a reason
instead of waking the kernel's out-of-memory killer."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .errors import ImageTooLargeError

# (height, width) of the input -> (height, width) of the output; None: same size.
OutputSize = Callable[[int, int], "tuple[int, int]"]


def format_megapixels(pixels: float) -> str:
    """'4,096 pixels', '0.31 MP', '12.3 MP', '10,000 MP': readable at every size, never '1e+04'."""
    mp = pixels / 1e6
    if mp >= 100:
        return f"{mp:,.0f} MP"
    if mp < 0.01:
        return f"{pixels:,.0f} pixels"
    return f"{mp:.3g} MP"


def format_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 1e3:,.0f} kB"


def available_memory() -> int | None:
    """Bytes this process can still allocate: the kernel's MemAvailable, capped by the cgroup limit
    of a container (Docker, Kubernetes) when there is one. None where neither can be read."""
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < 1 << 60:
                limits.append(int(limit) - int(Path(usage_file).read_text().strip()))
            break
        except (OSError, ValueError):
            continue
    override = os.environ.get("AETOOL_MEMORY_LIMIT")  # bytes; for tests and for sharing a machine
    if override:
        limits.append(int(float(override)))
    return max(0, min(limits)) if limits else None


def memory_needed(h: int, w: int, bands: int, sample_bytes: int, out_h: int, out_w: int,
                  integer: bool = False) -> int:
    """A lower bound of the bytes one image needs on the host: the decoded samples, the float32
    input, the float32 output with the engine's blend weights, and the integer output to encode.
    `integer`: a command that keeps the pixels as integers and assembles its output so (upscale,
    denoise): the decoder's copy and the integer input, or the input and the integer output,
    whichever is more. Tiles on the device are small beside these."""
    colour = max(1, min(bands, 4))
    if integer:
        pixels = h * w * colour * sample_bytes
        return pixels + max(h * w * bands * sample_bytes, out_h * out_w * colour * sample_bytes)
    return (h * w * bands * sample_bytes + h * w * colour * 4
            + out_h * out_w * (colour * 4 + 4) + out_h * out_w * colour * sample_bytes)


def check_image_size(w: int, h: int, bands: int, sample_bytes: int, max_pixels: int,
                     output_size: OutputSize | None = None, integer: bool = False) -> None:
    """Refuse an image whose declared size is above --max-pixels (input or output) or above the
    memory available (memory_needed; `integer` as there); raises ImageTooLargeError with the
    reason and what to do."""
    if w * h > max_pixels:
        raise ImageTooLargeError(f"the image is {w}x{h} = {format_megapixels(w * h)}, above the limit of "
                                 f"{format_megapixels(max_pixels)} (raise it with --max-pixels if you trust the file)")
    out_h, out_w = output_size(h, w) if output_size else (h, w)
    if out_w * out_h > max_pixels:
        raise ImageTooLargeError(f"the output would be {out_w}x{out_h} = {format_megapixels(out_w * out_h)}, above "
                                 f"the limit of {format_megapixels(max_pixels)} (raise it with --max-pixels, or "
                                 "ask for a smaller size)")
    need = memory_needed(h, w, bands, sample_bytes, out_h, out_w, integer)
    free = available_memory()
    if free is not None and need > free:
        raise ImageTooLargeError(f"the image is {w}x{h} = {format_megapixels(w * h)}; processing it needs at least "
                                 f"{format_bytes(need)} of memory but {format_bytes(free)} is available")
