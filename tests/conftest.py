"""Shared fixtures: small generated images and a tiny randomly initialised model, so that the
engine tests run in seconds and never read ../shared."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module. benchmarks/ is not a package and not on sys.path under
    pytest (only tests/ is, for conftest): the script is loaded by its path; it puts benchmarks/
    on sys.path itself for its `common` import."""
    module = f"aetool_bench_{name}"
    if module not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(module, path)
        sys.modules[module] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[module])
    return sys.modules[module]


def assert_read_only_file_system_stops(monkeypatch, run, *args):
    """Run a command (`run`: the test module's CliRunner helper; args end with "-o", OUT, options and
    "--json") with every atomic write failing as on a read-only file system (EROFS), and check that it
    stops as the engine's writer makes every command stop: exit 1, the reason in the JSON summary, the
    files not yet started left alone, nothing written to OUT, no traceback."""
    import errno
    import json

    def read_only(path, data, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("aetool.atomic.write_atomic", read_only)
    r = run(*args)
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    summary = lines[-1]["summary"]
    assert r.exit_code == 1 and "Read-only" in summary["stopped"], r.output
    assert summary["not_started"] >= 1 and "Traceback" not in r.output
    out = Path(args[list(map(str, args)).index("-o") + 1])
    assert not out.exists() or not any(out.iterdir())


def structured_image(h: int = 96, w: int = 128, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A uint8 test picture with smooth gradients, hard edges, thin strokes and mild texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([120 + 80 * np.sin(xx / 17 + c) * np.cos(yy / 23 - c) for c in range(3)], axis=-1)
    base[(yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 5) ** 2] = [230, 60, 40]
    base[h // 5:h // 5 + h // 4, w // 2:w // 2 + w // 4] = [30, 90, 200]
    for k in range(0, w, 11):  # text-like strokes
        base[(3 * h) // 4:(3 * h) // 4 + 8, k:k + 2] = 15
    base += rng.normal(0, 3, base.shape)  # a little texture
    img = np.clip(np.round(base), 0, 255).astype(np.uint8)
    if channels == 1:
        img = np.round(img @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    return img


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny denoiser (random weights) saved like `aetool train` does, with its card."""
    import torch

    from aetool.models.unet_denoiser import UNetDenoiser
    from aetool.registry import Card, count_parameters, save_weights, sha256_of

    torch.manual_seed(0)
    model = UNetDenoiser(in_channels=3, channels=(8, 16, 16), blocks=1)
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_weights(model, path, "denoise")
    Card(name="tiny", task="denoise", arch=model.arch_name, config=model.config, file=path.name,
         sha256=sha256_of(path), channels=3, parameters=count_parameters(model)).save(path.with_suffix(".json"))
    return path


@pytest.fixture
def photo_dir(tmp_path):
    from PIL import Image

    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(structured_image(seed=1)).save(d / "a.png")
    Image.fromarray(structured_image(seed=2)).save(d / "b.jpg", quality=90)
    Image.fromarray(structured_image(seed=3)).save(d / "sub" / "c.png")
    (d / ".DS_Store").write_bytes(b"\0\1")
    (d / "Thumbs.db").write_bytes(b"\0\1")
    (d / ".hidden.png").write_bytes(b"not really")
    return d


@pytest.fixture(scope="session")
def make_upscaler(tmp_path_factory):
    """Saves small random super-resolution models like `aetool train upscale` does. bicubic=True
    zeroes the detail branch, so the model is exactly its bicubic enlargement (for tests of the
    plumbing around the network: alpha, sizes, tiling)."""
    import torch

    from aetool.models.subpixel_sr import SubpixelSR
    from aetool.registry import Card, count_parameters, save_weights, sha256_of

    folder = tmp_path_factory.mktemp("upscalers")
    made: dict = {}

    def make(scale: int = 2, width: int = 8, blocks: int = 1, bicubic: bool = False):
        key = (scale, width, blocks, bicubic)
        if key not in made:
            torch.manual_seed(scale)
            model = SubpixelSR(in_channels=3, scale=scale, width=width, blocks=blocks)
            if bicubic:
                torch.nn.init.zeros_(model.to_subpixels.weight)
                torch.nn.init.zeros_(model.to_subpixels.bias)
            name = f"sr-x{scale}-w{width}-b{blocks}" + ("-bicubic" if bicubic else "")
            path = folder / f"{name}.safetensors"
            save_weights(model, path, "upscale")
            Card(name=name, task="upscale", arch=model.arch_name, config=model.config, file=path.name,
                 sha256=sha256_of(path), channels=3, parameters=count_parameters(model)).save(path.with_suffix(".json"))
            made[key] = path
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_inpainter(tmp_path_factory):
    """A small random inpainting model saved like `aetool train inpaint` does."""
    import torch

    from aetool.models.gated_unet_inpaint import GatedUNetInpaint
    from aetool.registry import Card, count_parameters, save_weights, sha256_of

    torch.manual_seed(0)
    model = GatedUNetInpaint(in_channels=3, channels=(8, 16, 16), dilations=(1, 2))
    path = tmp_path_factory.mktemp("inpainters") / "tiny-inpaint.safetensors"
    save_weights(model, path, "inpaint")
    Card(name="tiny-inpaint", task="inpaint", arch=model.arch_name, config=model.config, file=path.name,
         sha256=sha256_of(path), channels=3, parameters=count_parameters(model)).save(path.with_suffix(".json"))
    return path


@pytest.fixture(scope="session")
def tiny_codec(tmp_path_factory):
    """A small random codec saved like `aetool train compress` does (with its integer coding
    tables). Its analysis is scaled up so that the latents are not all zero and the file size
    grows with the quality, as a trained model's does."""
    import torch

    from aetool.models.hyperprior import ScaleHyperprior
    from aetool.registry import Card, count_parameters, save_weights, sha256_of

    torch.manual_seed(0)
    model = ScaleHyperprior(in_channels=3, n=8, m=12)
    with torch.no_grad():
        model.analysis[-1].weight.mul_(40)
        model.log_gain.copy_(torch.linspace(-1.5, 1.5, model.levels)[:, None].repeat(1, model.m))
        model.log_inverse_gain.copy_(-model.log_gain)
    model.update_tables()
    path = tmp_path_factory.mktemp("codecs") / "tiny-codec.safetensors"
    save_weights(model, path, "compress")
    Card(name="tiny-codec", task="compress", arch=model.arch_name, config=model.config, file=path.name,
         sha256=sha256_of(path), channels=3, parameters=count_parameters(model)).save(path.with_suffix(".json"))
    return path
