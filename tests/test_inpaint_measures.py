"""The texture measures of benchmarks/inpaint.py (`gradient_energy_ratio`, `patch_realism_ratio`) on
synthetic textures made here: no data, no model, no OpenCV."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from conftest import load_benchmark

bench = load_benchmark("inpaint")
gradient_energy_ratio = bench.gradient_energy_ratio
patch_realism_ratio = bench.patch_realism_ratio

N = 128
HOLE = (slice(44, 84), slice(40, 88))  # a 40x48 box


def stripes(seed: int = 0) -> np.ndarray:
    """A stationary colour texture: diagonal stripes (period 16 in x, 32 in y, so N = 128 holds whole
    periods and np.roll by 64 rows moves it onto itself) plus seeded per-pixel noise, which does not
    repeat."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:N, :N]
    base = 128 + 60 * np.sin(2 * np.pi * (x / 16 + y / 32)) + rng.normal(0, 15, (N, N))
    rgb = np.stack([base, 0.8 * base + 20, 255 - base], axis=-1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def filtered_noise(seed: int = 1) -> np.ndarray:
    """A stochastic texture: seeded white noise, Gaussian-filtered (sigma 1.5, wrapped), std 40."""
    x = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(N, N, 3)), (1.5, 1.5, 0), mode="wrap")
    return np.clip(np.round((x - x.mean()) / x.std() * 40 + 128), 0, 255).astype(np.uint8)


def box_mask() -> np.ndarray:
    mask = np.zeros((N, N), bool)
    mask[HOLE] = True
    return mask


def fill(img: np.ndarray, mask: np.ndarray, source: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[mask] = source[mask]
    return out


def blurred(img: np.ndarray, sigma: float = 6.0) -> np.ndarray:
    x = ndimage.gaussian_filter(img.astype(np.float64), (sigma, sigma, 0))
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("texture", [stripes, filtered_noise])
def test_the_original_scores_exactly_one(texture):
    img, mask = texture(), box_mask()
    assert gradient_energy_ratio(img, img, mask) == 1.0
    assert patch_realism_ratio(img, img, mask) == 1.0


def test_a_blur_scores_low_detail_and_unlike_the_photo():
    """A heavy blur (sigma 6) in the hole of the striped texture: far less detail (gradient-energy
    ratio < 0.3) and patches far from every known patch (patch-realism ratio > 1.5)."""
    img, mask = stripes(), box_mask()
    out = fill(img, mask, blurred(img))
    assert gradient_energy_ratio(img, out, mask) < 0.3
    assert patch_realism_ratio(img, out, mask) > 1.5


def test_texture_copied_from_elsewhere_scores_near_one():
    """The hole filled with the texture 64 rows away (two periods of the stripes, other noise): as
    much detail as the photo (0.8-1.25) and patches as photo-like as its own or more (< 1.2)."""
    img, mask = stripes(), box_mask()
    out = fill(img, mask, np.roll(img, 64, axis=0))  # out[y] = img[y - 64]: rows 108-127 and 0-19
    assert 0.8 <= gradient_energy_ratio(img, out, mask) <= 1.25
    assert patch_realism_ratio(img, out, mask) < 1.2


def test_noise_in_the_hole_scores_too_much_detail_and_unlike_the_photo():
    """Uniform noise in the hole: more detail than the photo and patches unlike it (what the patch
    measure is there to catch, since the gradient measure alone would take noise for detail)."""
    img, mask = stripes(), box_mask()
    out = fill(img, mask, np.random.default_rng(5).integers(0, 256, img.shape, dtype=np.uint8))
    assert gradient_energy_ratio(img, out, mask) > 2.0
    assert patch_realism_ratio(img, out, mask) > 1.5


def test_a_blur_of_a_stochastic_texture_is_caught_by_the_gradient_energy():
    """On filtered noise a flat fill lies close to many known patches, so the patch measure does not
    flag it (docs/protocol.md says so); the gradient-energy ratio does."""
    img, mask = filtered_noise(), box_mask()
    out = fill(img, mask, blurred(img))
    assert gradient_energy_ratio(img, out, mask) < 0.3


def test_gradient_energy_counts_forward_differences_at_hole_pixels():
    """One grey level step per column; hole = one pixel (1, 1): its x difference to (1, 2) counts,
    the difference (1, 0) -> (1, 1) does not (it belongs to pixel (1, 0))."""
    clean = np.zeros((4, 4, 3), np.uint8)
    clean[:, :, :] = (np.arange(4) * 10)[None, :, None]  # x differences 10 in each channel, y differences 0
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = True
    out = clean.copy()
    out[1, 1] = 0  # now x difference at (1, 1) is 20 - 0 = 20; y difference at (1, 1) is 10 - 0 = 10
    # output: 3 * (20^2 + 10^2) = 1500; clean: 3 * 10^2 = 300
    assert gradient_energy_ratio(clean, out, mask) == pytest.approx(5.0)
    # a hole on the last column and row: no forward difference leaves the image
    edge = np.zeros((4, 4), bool)
    edge[3, 3] = True
    assert gradient_energy_ratio(clean, clean, edge) == 1.0


def test_patch_realism_uses_fixed_centres_and_a_bounded_reference_grid():
    img, mask = stripes(), box_mask()
    out = fill(img, mask, blurred(img, 2.0))
    assert patch_realism_ratio(img, out, mask) == patch_realism_ratio(img, out, mask)
    # the reference grid: step 2 while at most max_refs patches lie on it, else the next coarser step
    hole_free = np.ones((500, 500), bool)
    assert bench.reference_stride(hole_free, 8192) == 6  # 84^2 = 7056 on step 6; 100^2 = 10000 on step 5
    assert bench.reference_stride(hole_free[:100, :100], 8192) == 2
    # fewer queries and references give a result too, and no hole at all gives NaN
    assert np.isfinite(patch_realism_ratio(img, out, mask, max_queries=50, max_refs=500))
    assert np.isnan(patch_realism_ratio(img, img, np.zeros((N, N), bool)))
