"""Tests of aetool.resize, the MATLAB-compatible bicubic imresize used to make LR training inputs.

All images are synthetic; the comparison with the real test sets' LR files is
benchmarks/sr_downscale_match.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aetool.resize import _contributions, downscale_uint8, imresize, output_size

from conftest import structured_image


@pytest.mark.parametrize("shape, scale, expected", [
    ((64, 48), 1 / 2, (32, 24)),
    ((63, 47), 1 / 2, (32, 24)),
    ((17, 23), 1 / 3, (6, 8)),
    ((510, 498), 1 / 3, (170, 166)),  # 510 * (1/3) must not round up to 171
    ((17, 23), 1 / 4, (5, 6)),
    ((5, 7), 1 / 4, (2, 2)),
    ((10, 7), 2.0, (20, 14)),
])
def test_output_size(shape, scale, expected):
    for channels in (None, 1, 3):
        img = np.zeros(shape if channels is None else shape + (channels,), dtype=np.uint8)
        out = imresize(img, scale)
        assert out.shape[:2] == expected
        assert out.shape[2:] == img.shape[2:]
    assert output_size(300, 0.1) == 30  # 300 * 0.1 is 30.000000000000004 in floats


def test_matlab_weights_at_half():
    """Antialiased Keys kernel (a = -0.5) stretched by 2: the weights of an interior output pixel,
    computed by hand from MATLAB's formula (u = 2x - 0.5, h(t) = 0.5 * cubic(0.5 t))."""
    w, ind = _contributions(40, 20, 0.5)
    row = 10  # output pixel 11 (1-based), u = 21.5: taps 18..25 (1-based) have non-zero weight
    nz = w[row] != 0
    expected = np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875,
                         0.8671875, 0.2265625, -0.0703125, -0.0234375]) / 2
    np.testing.assert_allclose(w[row][nz], expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(ind[row][nz], np.arange(17, 25))  # 0-based
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)


def test_border_taps_replicate_the_edge():
    _, ind = _contributions(12, 6, 0.5)
    assert ind.min() == 0 and ind.max() == 11  # clamped into the image, never mirrored past it
    assert np.sum(ind[0] == 0) > 1  # the first output pixel reuses the edge pixel for outside taps


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4])
def test_constant_image_stays_constant(scale):
    for img in (np.full((31, 26, 3), 173, np.uint8), np.full((20, 29), 0.37, np.float64)):
        out = imresize(img, scale)
        np.testing.assert_allclose(out, img.flat[0], rtol=0, atol=1e-9)
    assert np.all(downscale_uint8(np.full((24, 36, 3), 200, np.uint8), 3) == 200)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_linear_ramp_is_sampled_at_matlab_coordinates(scale):
    """The symmetric kernel with normalised weights reproduces a linear function away from the
    borders, so output column x (1-based) takes the ramp's value at u = x*s + 0.5*(1 - s)."""
    h, w = 24, 96
    cols = np.arange(1, w + 1, dtype=np.float64)
    img = np.tile(10.0 + 2.0 * cols, (h, 1))  # value 10 + 2u at input column u (1-based)
    out = imresize(img, 1 / scale)
    x = np.arange(1, out.shape[1] + 1)
    u = x * scale + 0.5 * (1 - scale)
    margin = 3  # the kernel spans 4*scale input pixels: the edge clamping reaches 2 output pixels in
    np.testing.assert_allclose(out[:, margin:-margin], np.tile(10.0 + 2.0 * u, (out.shape[0], 1))[:, margin:-margin],
                               rtol=0, atol=1e-9)
    # Rows are all equal, so the vertical pass changes nothing anywhere, borders included.
    np.testing.assert_allclose(out, np.tile(out[0], (out.shape[0], 1)), rtol=0, atol=1e-9)


def test_linear_ramp_upscaled():
    img = np.tile(np.arange(1, 21, dtype=np.float64) * 3.0, (8, 1))
    out = imresize(img, 2.0)
    u = np.arange(1, 41) / 2 + 0.25
    np.testing.assert_allclose(out[:, 4:-4], np.tile(3.0 * u, (16, 1))[:, 4:-4], rtol=0, atol=1e-9)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_agrees_with_pillow_away_from_borders(scale):
    """Pillow's BICUBIC is the same antialiased Keys kernel with the same pixel-centre mapping; it
    differs at the borders (it renormalises over the image instead of replicating the edge) and in
    its fixed-point rounding."""
    hr = structured_image(120, 144, 3, seed=4)
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    ours = downscale_uint8(hr, scale)
    pil = np.asarray(Image.fromarray(hr).resize((w, h), Image.BICUBIC, reducing_gap=None))
    assert ours.shape == pil.shape
    d = np.abs(ours.astype(int) - pil)
    assert d[3:-3, 3:-3].max() <= 1  # rounding only
    assert np.mean(d[3:-3, 3:-3] == 0) > 0.75
    assert d.max() > 1  # while the borders do differ


def test_float_output_is_not_rounded_nor_clipped():
    img = np.zeros((16, 16), np.uint8)
    img[:, 8:] = 255  # a hard edge: the cubic kernel over- and undershoots next to it
    out = imresize(img, 1 / 2)
    assert out.dtype == np.float64
    assert out.max() > 255 and out.min() < 0
    assert np.any(out != np.round(out))
    assert imresize(img.astype(np.float32) / 255, 1 / 2).dtype == np.float32
    lr = downscale_uint8(img, 2)
    assert lr.dtype == np.uint8 and lr.max() == 255 and lr.min() == 0


def test_uint8_rounds_half_away_from_zero():
    # A 2x2 image gives one output pixel, the mean of the four (weights 1/2 per dimension).
    assert downscale_uint8(np.array([[0, 1], [0, 1]], np.uint8), 2)[0, 0] == 1  # 0.5 -> 1 (numpy: 0)
    assert downscale_uint8(np.array([[2, 3], [2, 3]], np.uint8), 2)[0, 0] == 3  # 2.5 -> 3 (numpy: 2)
    # MATLAB keeps the intermediate image in the input's class: after the vertical pass the first
    # column holds 0.5, stored as 1, so the result is 0.5 -> 1 where exact arithmetic gives 0.25 -> 0.
    img = np.array([[0, 0], [1, 0]], np.uint8)
    assert downscale_uint8(img, 2)[0, 0] == 1
    assert downscale_uint8(img, 2, round_between=False)[0, 0] == 0


def test_rejects_bad_input():
    with pytest.raises(TypeError):
        downscale_uint8(np.zeros((8, 8)), 2)
    with pytest.raises(ValueError):
        downscale_uint8(np.zeros((8, 8), np.uint8), 1.5)
    with pytest.raises(ValueError):
        imresize(np.zeros((2, 3, 4, 5)), 0.5)
