"""The Bjontegaard delta rate of benchmarks/compress.py (`bd_rate`): pure numpy, no data, no model."""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import load_benchmark

bench = load_benchmark("compress")
bd_rate = bench.bd_rate

# A JPEG-like rate-distortion curve: bpp and PSNR (dB) of 9 points.
RATES = np.array([0.19, 0.37, 0.62, 0.89, 1.26, 1.92, 2.4, 3.23, 4.41])
PSNRS = np.array([21.9, 24.6, 26.5, 27.9, 29.5, 32.1, 33.9, 36.8, 40.5])


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_identical_curves_give_zero(method):
    assert bd_rate(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_half_the_rate_gives_minus_50_percent(method):
    assert bd_rate(RATES / 2, PSNRS, RATES, PSNRS, method) == pytest.approx(-50.0, abs=1.0)
    assert bd_rate(RATES, PSNRS, RATES / 2, PSNRS, method) == pytest.approx(100.0, abs=1.0)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_curves_sampled_at_different_psnrs(method):
    """The anchor and the test curve need not share PSNR values: ln R linear in PSNR, the test
    curve 20 % cheaper everywhere, sampled at other points over a narrower range."""
    psnr_b = np.linspace(24, 40, 9)
    psnr_a = np.array([25.3, 27.1, 29.8, 31.0, 33.7, 36.2])
    rate = lambda p: 0.05 * np.exp(0.17 * p)  # noqa: E731
    value = bd_rate(0.8 * rate(psnr_a), psnr_a, rate(psnr_b), psnr_b, method)
    tol = 1e-6 if method == "cubic" else 0.3  # a cubic fits an exponential's log exactly; pchip nearly
    assert value == pytest.approx(-20.0, abs=tol)


def test_unsorted_points_and_lossless_points_are_handled():
    order = np.array([4, 0, 8, 2, 6, 1, 7, 3, 5])
    rates = np.append(RATES[order], 12.0)
    psnrs = np.append(PSNRS[order], np.inf)  # a lossless point: infinite PSNR, left out
    assert bd_rate(rates * 0.5, psnrs, RATES, PSNRS) == pytest.approx(-50.0, abs=1e-6)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_ranges_that_do_not_overlap_raise_with_the_reason(method):
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(RATES, PSNRS, RATES, PSNRS + 30, method)


def test_too_few_points_for_a_cubic_fit():
    with pytest.raises(ValueError, match="needs 4"):
        bd_rate(RATES[:3], PSNRS[:3], RATES, PSNRS, "cubic")
    assert math.isfinite(bd_rate(RATES[:3], PSNRS[:3], RATES, PSNRS, "pchip"))


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        bd_rate(RATES, PSNRS, RATES, PSNRS, "akima")


def test_pchip_integral_matches_scipy():
    scipy_interpolate = pytest.importorskip("scipy.interpolate")
    x, y = PSNRS, np.log(RATES)
    # a curve with a flat part and a turn, to exercise the zero-slope and end rules as well
    y2 = np.array([0.0, 0.5, 0.5, 1.2, 1.0, 2.0, 2.2, 3.5, 3.6])
    for yy in (y, y2):
        ref = scipy_interpolate.PchipInterpolator(x, yy)
        for lo, hi in ((x[0], x[-1]), (23.0, 35.5), (26.5, 26.9)):
            assert bench._pchip_integral(x, yy, lo, hi) == pytest.approx(float(ref.integrate(lo, hi)), rel=1e-10)


def test_cubic_matches_the_classic_formula():
    """Against a direct transcription of Bjontegaard's VCEG-M33 procedure (log10 rate, polyfit of
    order 3, integration over the common PSNR interval, 10^mean - 1)."""
    rng = np.random.default_rng(0)
    psnr_b = np.array([28.0, 31.5, 34.2, 37.0])
    rate_b = np.array([0.3, 0.6, 1.1, 2.0])
    psnr_a = np.array([29.1, 32.0, 35.5, 38.2])
    rate_a = rate_b * rng.uniform(0.5, 0.8, 4)
    pa, pb = np.polyfit(psnr_a, np.log10(rate_a), 3), np.polyfit(psnr_b, np.log10(rate_b), 3)
    lo, hi = max(psnr_a.min(), psnr_b.min()), min(psnr_a.max(), psnr_b.max())
    ia, ib = np.polyint(pa), np.polyint(pb)
    diff = ((np.polyval(ia, hi) - np.polyval(ia, lo)) - (np.polyval(ib, hi) - np.polyval(ib, lo))) / (hi - lo)
    assert bd_rate(rate_a, psnr_a, rate_b, psnr_b) == pytest.approx((10 ** diff - 1) * 100, abs=1e-9)


def test_parse_size():
    assert bench.parse_size("150KB") == 150_000
    assert bench.parse_size("150KiB") == 150 * 1024
    assert bench.parse_size("2MB") == 2_000_000
    assert bench.parse_size("20000") == 20000
    with pytest.raises(ValueError):
        bench.parse_size("big")
