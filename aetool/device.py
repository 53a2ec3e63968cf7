"""Choosing the device and the mixed-precision dtype, shared by inference and training."""
from __future__ import annotations

import re

from .errors import UsageError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def check_names(device: str, precision: str) -> None:
    """Validate --device and --precision spellings without importing torch."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise UsageError(f"--device must be auto, cpu, cuda, cuda:N or mps, got '{device}'")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")


def parse_devices(spec: str, device: str) -> list[str]:
    """The devices of --devices: 'all' (every visible GPU when --device is cuda or auto finds CUDA;
    else the one device), or a comma list of device names ('cuda:0,cuda:1'; 'cpu,cpu' runs two CPU
    replicas, for tests). One model replica and one model thread per entry."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names == ["all"]:
        import torch

        resolved = resolve_device(device)
        if resolved.split(":")[0] == "cuda" and ":" not in device:
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return [resolved]
    if not names or "all" in names:
        raise UsageError(f"--devices must be all or a comma list of devices (cuda:0,cuda:1), got '{spec}'")
    for n in names:
        if n == "auto":
            raise UsageError("--devices lists devices by name (cpu, cuda:N, mps), not auto")
        check_names(n, "auto")
    return [resolve_device(n) for n in names]


def resolve_device(name: str) -> str:
    import torch

    check_names(name, "auto")
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: Apple MPS is not available on this machine")
    return name


def autocast_dtype(precision: str, device: str):
    """The dtype for torch.autocast, or None for plain fp32."""
    import torch

    kind = device.split(":")[0]
    if precision == "auto":
        if kind == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if kind == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 dot-product instructions (AVX512-BF16 or AMX), where oneDNN's bf16
    convolutions are much faster than fp32 at a negligible PSNR cost (benchmarks/denoise.py
    compares both); elsewhere bf16 is emulated and slower than fp32. torch exposes this check only
    as private helpers, so a missing helper means "no"."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(check() for check in checks if check is not None)
    except Exception:  # a private helper that changed shape: stay on fp32
        return False
