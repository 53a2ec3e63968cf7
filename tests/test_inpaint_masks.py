"""The masks of `aetool inpaint`: the fast paths (dilation in the holes' box, the key colour channel
by channel, the channel maximum, a shared mask dilated once) give exactly what the whole-array
formulas gave."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from aetool import masks
from aetool.imageio import Picture
from aetool.masks import MaskOptions, MaskSource, channel_max, grow, read_mask, shrink


def _random_masks(rng, count):
    for _ in range(count):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        m = np.zeros((h, w), bool)
        for _ in range(int(rng.integers(0, 4))):  # a few blobs, some at the borders
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            m[y:y + int(rng.integers(1, 6)), x:x + int(rng.integers(1, 6))] = True
        yield m
    yield rng.random((30, 40)) < 0.3  # scattered: the whole-image path
    yield np.ones((5, 7), bool)


def test_grow_and_shrink_equal_the_whole_image_filter():
    rng = np.random.default_rng(0)
    for m in _random_masks(rng, 150):
        for pixels in (1, 2, 5, 17):
            want = ndimage.maximum_filter(m, size=2 * pixels + 1, mode="nearest") if m.any() else m
            assert np.array_equal(grow(m, pixels), want)
            inverse = ~m
            want = ~ndimage.maximum_filter(inverse, size=2 * pixels + 1, mode="nearest") if inverse.any() else m
            assert np.array_equal(shrink(m, pixels), want)
    m = np.zeros((9, 9), bool)
    assert grow(m, 3) is m and grow(m, 0) is m  # nothing to grow: no copy


def test_channel_max_is_the_max_over_channels():
    rng = np.random.default_rng(1)
    for c in (1, 2, 3, 4):
        a = rng.random((6, 5, c)).astype(np.float32)
        assert np.array_equal(channel_max(a), a.max(axis=2))
        b = rng.integers(0, 256, (6, 5, c)).astype(np.uint8)
        assert np.array_equal(channel_max(b), b.max(axis=2))


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("channels", [1, 3])
def test_key_colour_equals_the_whole_array_formula(bits, channels):
    top = 65535 if bits == 16 else 255
    rng = np.random.default_rng(bits + channels)
    for colour in ((255, 0, 255), (10, 200, 30)):
        target = np.array(colour) * top / 255
        if channels == 1:
            target = target @ np.array([0.299, 0.587, 0.114])
        codes = rng.integers(0, top + 1, (24, 30, channels))
        codes[:8, :8] = np.round(target)  # the key itself, and pixels a few levels off it
        codes[8:16, :8] = np.clip(np.round(target) + rng.integers(-6, 7, (8, 8, channels)) * (top // 255), 0, top)
        pic = Picture((codes / top).astype(np.float32), bit_depth=bits)
        for tolerance in (0, 3, 40):
            # The formula before the channel-by-channel loop, on the whole (H, W, C) array.
            key = np.array(colour, np.float32)
            if channels == 1:
                key = np.array([key @ np.array([0.299, 0.587, 0.114], np.float32)])
            values = np.round(pic.pixels * float(top)) * (255.0 / top)
            want = (np.abs(values - key) <= tolerance + 0.5).all(axis=2)
            got = MaskSource(MaskOptions(color=colour, tolerance=tolerance)).mask_for(None, pic)
            assert np.array_equal(got, want)
            assert got[:8, :8].all()


def test_a_shared_mask_is_dilated_once_not_per_image(tmp_path, monkeypatch):
    m = np.zeros((20, 30), np.uint8)
    m[5:8, 10:12] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    source = MaskSource(MaskOptions(file=tmp_path / "m.png", dilate=2))
    calls = []
    monkeypatch.setattr(masks, "grow", lambda mask, pixels: calls.append(pixels) or mask)
    pic = Picture(np.zeros((20, 30, 3), np.float32))
    first, second = source.mask_for(None, pic), source.mask_for(None, pic)
    assert calls == [] and first is second
    assert np.array_equal(first, ndimage.maximum_filter(m > 0, size=5, mode="nearest"))


def test_a_colour_mask_image_is_a_hole_wherever_any_channel_is_set(tmp_path):
    m = np.zeros((6, 9, 3), np.uint8)
    m[1, 1, 0], m[2, 4, 1], m[4, 7, 2] = 1, 200, 255
    Image.fromarray(m).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), m.max(axis=2) > 0)
