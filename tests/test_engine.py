"""Tiling, batching and the fallbacks (out of memory, half-precision overflow)."""
from __future__ import annotations

import numpy as np
import pytest

from aetool.engine import EngineOptions, Runner, tile_starts
from conftest import structured_image


def test_tile_starts_cover_the_image():
    for length, tile, overlap in [(1000, 256, 64), (256, 256, 64), (100, 256, 64), (257, 256, 64)]:
        starts = tile_starts(length, tile, overlap)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered.all() and starts[-1] + min(tile, length) == length


def test_tiled_equals_untiled_with_blended_seams():
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 5, padding=2))
    img = structured_image(150, 230).astype(np.float32) / 255
    full = Runner(EngineOptions(tile=0)).run(conv, img)
    tiled = Runner(EngineOptions(tile=64, overlap=32, batch_size=3)).run(conv, img)
    assert np.abs(full - tiled).max() < 1 / 255


@pytest.mark.parametrize("h, w, tile, overlap, scale", [
    (150, 230, 64, 32, 1),   # a grid of tiles, every kind of neighbour
    (150, 230, 64, 16, 2),   # an enlarging model: the blend on the output grid
    (130, 97, 64, 30, 2),    # the last tiles overlap their neighbours more than the others do
    (65, 200, 64, 32, 1),    # one tile row
])
def test_integer_output_assembled_by_strips_equals_the_float_blend(h, w, tile, overlap, scale):
    """The uint8 output built tile by tile (only the overlaps held as floats) is the float blend,
    clipped and rounded: what the encoder would have made of it."""
    import torch

    from aetool.imageio import to_integer

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3 * scale * scale, 5, padding=2)
    fn = lambda x: torch.nn.functional.pixel_shuffle(torch.sigmoid(conv(x)) * 1.2 - 0.1, scale)  # noqa: E731
    img = structured_image(h, w).astype(np.float32) / 255
    runner = Runner(EngineOptions(tile=tile, overlap=overlap, batch_size=3, precision="fp32"))
    fractions = []
    from aetool.engine import report_tiles

    with report_tiles(fractions.append):
        got = runner.run(fn, img, scale, out_dtype=np.uint8)
    assert got.dtype == np.uint8 and got.shape == (h * scale, w * scale, 3)
    np.testing.assert_array_equal(got, to_integer(runner.run(fn, img, scale), 8))
    assert fractions[-1] == 1.0
    wide = runner.run(fn, img, scale, out_dtype=np.uint16)
    assert wide.dtype == np.uint16 and np.abs(wide / 257.0 - got).max() <= 0.5 + 1e-6


def test_integer_input_is_converted_tile_by_tile():
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    img8 = structured_image(100, 140)
    runner = Runner(EngineOptions(tile=64, overlap=16, precision="fp32"))
    from_float = runner.run(conv, img8.astype(np.float32) / 255)
    np.testing.assert_allclose(runner.run(conv, img8), from_float, atol=1e-6)


def test_cpu_tiles_an_enlargement_in_smaller_tiles():
    runner = Runner(EngineOptions(device="cpu"))
    assert runner.default_tile(1000, 1000) == 0 and runner.default_tile(1500, 1000, scale=4) == 0  # whole
    assert runner.default_tile(3000, 2000) == 1024
    assert runner.default_tile(3000, 2000, scale=2) == 512  # the output's room: smaller tiles


def test_out_of_memory_halves_the_tile_and_retries():
    sizes = []

    def fn(x):
        sizes.append(x.shape[-1])
        if x.shape[-1] > 64:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x * 0.5

    img = structured_image(100, 200).astype(np.float32) / 255
    out = Runner(EngineOptions(tile=256, batch_size=4)).run(fn, img)
    np.testing.assert_allclose(out, img * 0.5, atol=1e-6)
    assert sizes[0] == 200 and max(sizes[-3:]) <= 64


def test_other_errors_are_not_retried():
    def fn(x):
        raise ValueError("boom")

    with pytest.raises(ValueError):
        Runner(EngineOptions(tile=0)).run(fn, np.zeros((8, 8, 3), np.float32))


def test_half_precision_overflow_is_redone_in_fp32():
    import torch

    def fn(x):
        if torch.is_autocast_enabled("cpu"):
            return x * float("nan")
        return x + 0.25

    img = np.full((16, 16, 3), 0.5, np.float32)
    out = Runner(EngineOptions(precision="bf16", tile=0)).run(fn, img)
    np.testing.assert_allclose(out, 0.75)


def test_scale_and_channel_change_are_supported():
    import torch

    def up2(x):
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest").mean(1, keepdim=True)

    img = structured_image(70, 90).astype(np.float32) / 255
    full = Runner(EngineOptions(tile=0)).run(up2, img, scale=2, out_channels=1)
    tiled = Runner(EngineOptions(tile=64, overlap=16)).run(up2, img, scale=2, out_channels=1)
    assert full.shape == (140, 180, 1)
    np.testing.assert_allclose(full, tiled, atol=1e-5)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_self_ensemble_averages_the_transformed_outputs(n):
    """An output that moves with the input's flips and transposes comes back unchanged; one that
    is biased to one side (a shift) comes back as the mean of the n shifts, tiled as untiled."""
    import torch

    img = structured_image(64, 96).astype(np.float32) / 255
    same = Runner(EngineOptions(tile=0, ensemble=n)).run(lambda x: x * 0.5, img)
    np.testing.assert_allclose(same, img * 0.5, atol=1e-6)

    def shift(x):  # to the right by one pixel: a left-right flip turns it into a shift to the left
        return torch.nn.functional.pad(x, (1, 0, 0, 0), mode="replicate")[..., :, :-1]

    out = Runner(EngineOptions(tile=0, ensemble=n)).run(shift, img)
    # ensemble order: identity, turn by 180 degrees, left-right flip, up-down flip, then the transposes
    inner = np.s_[2:-2, 2:-2]
    right, left = np.roll(img, 1, axis=1), np.roll(img, -1, axis=1)
    down, up = np.roll(img, 1, axis=0), np.roll(img, -1, axis=0)
    expected = {2: (right + left) / 2, 4: (right + left) / 2, 8: (right + left + down + up) / 4}[n]
    np.testing.assert_allclose(out[inner], expected[inner], atol=1e-6)
    tiled = Runner(EngineOptions(tile=64, overlap=32, ensemble=n)).run(shift, img)
    np.testing.assert_allclose(tiled[inner], out[inner], atol=1e-6)


def test_bad_engine_options():
    from aetool.engine import parse_tile
    from aetool.errors import UsageError

    with pytest.raises(UsageError):
        parse_tile("12")
    with pytest.raises(UsageError):
        Runner(EngineOptions(device="cuda:7"))
    with pytest.raises(UsageError):
        Runner(EngineOptions(device="gpu"))
    with pytest.raises(UsageError):
        Runner(EngineOptions(precision="fp8"))
    with pytest.raises(UsageError):
        Runner(EngineOptions(ensemble=3))


def test_tiles_are_spread_evenly():
    from aetool.engine import _fit_tile

    for length, tile, overlap in [(3000, 1024, 64), (2000, 1024, 64), (1025, 1024, 64), (5000, 512, 32)]:
        side = _fit_tile(length, tile, overlap)
        n = len(tile_starts(length, side, overlap))
        assert side <= tile and n * side <= 1.25 * length + n * overlap


def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch):
    import torch

    from aetool import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert device.autocast_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert device.autocast_dtype("auto", "cpu") is None
    assert device.autocast_dtype("fp32", "cpu") is None


def test_native_bf16_check_survives_missing_torch_helpers(monkeypatch):
    import torch

    from aetool import device

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert device.cpu_has_native_bf16() is False


def test_push_pull_fill_does_not_move_with_the_image_size():
    """One more column at the far edge of an image does not change the push-pull fill of a stroke
    far from it: before, an odd side was stretched by (2n + 1) / 2n at every level, which slid the
    fill by up to half a pixel (the inpainter filled 481x321 photos 1.2 dB worse than the same
    photos cut into even-sized tiles)."""
    import torch

    from aetool.layers import push_pull_fill

    x = torch.from_numpy(structured_image(96, 129).astype(np.float32) / 255).permute(2, 0, 1)[None]
    weight = torch.ones(1, 1, 96, 129)
    weight[..., 40:43, 20:100] = 0  # a 3-px stroke
    weight[..., 10:80, 60:62] = 0
    even = push_pull_fill(x[..., :128], weight[..., :128])
    odd = push_pull_fill(x, weight)
    hole = weight[0, 0, :, :100] == 0
    assert (even[..., :100] - odd[..., :100])[0, :, hole].abs().max() < 1e-4


def test_gpu_check_script_says_when_there_is_no_gpu(tmp_path):
    """benchmarks/gpu_check.sh is prepared for a GPU machine; here it must stop at once, exit 3."""
    import subprocess
    import sys
    from pathlib import Path

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the real checks")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    proc = subprocess.run(["bash", str(script), str(tmp_path / "out")], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHON": sys.executable})
    assert proc.returncode == 3 and "no CUDA device" in proc.stderr
    assert subprocess.run(["bash", str(script)], capture_output=True).returncode == 2


@pytest.mark.parametrize("h, w, tile, overlap, batch", [(150, 230, 64, 32, 3), (130, 97, 64, 30, 1), (60, 50, 64, 16, 1)])
def test_the_output_written_over_its_own_input_equals_a_separate_one(h, w, tile, overlap, batch):
    """into=image: each output pixel is written only after every tile that reads its input has run."""
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 9, padding=4)  # a wide receptive field: any early overwrite would show
    img8 = structured_image(h, w)
    runner = Runner(EngineOptions(tile=tile, overlap=overlap, batch_size=batch, precision="fp32"))
    separate = runner.run(conv, img8.copy(), out_dtype=np.uint8)
    shared = img8.copy()
    got = runner.run(conv, shared, out_dtype=np.uint8, into=shared)
    assert got is shared
    np.testing.assert_array_equal(got, separate)
    with pytest.raises(ValueError):
        runner.run(conv, img8.copy(), 2, out_dtype=np.uint8, into=img8)  # not the output's shape


def test_writing_over_the_input_still_retries_an_out_of_memory_before_any_output():
    """The first tiles fail (as a too-large first tile on a GPU does): nothing is written over the
    input yet, so the smaller tiles start from it intact; an OOM after writing is not retried."""
    def fn(x):
        if x.shape[-1] > 64:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x * 0.5

    img8 = structured_image(100, 200)
    shared = img8.copy()
    out = Runner(EngineOptions(tile=256, batch_size=4)).run(fn, shared, out_dtype=np.uint8, into=shared)
    separate = Runner(EngineOptions(tile=256, batch_size=4)).run(fn, img8.copy(), out_dtype=np.uint8)
    assert out is shared
    np.testing.assert_array_equal(out, separate)

    calls = []

    def late(x):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x * 0.5

    with pytest.raises(MemoryError):
        Runner(EngineOptions(tile=64, overlap=16, batch_size=1)).run(late, shared, out_dtype=np.uint8, into=shared)
