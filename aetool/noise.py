"""Synthetic noise for the benchmark protocol, and blind noise-level estimation.

`add_gaussian_noise` is the protocol's degradation: additive white Gaussian noise, then
rounding and clipping back to uint8.

`estimate_noise` measures the standard deviation of additive white Gaussian noise in one
image, without a clean reference, so that the denoiser can run blind. The core is the
patch-covariance (PCA) method of

    [1] G. Chen, F. Zhu, P. A. Heng, "An Efficient Statistical Method for Image Noise
        Level Estimation", IEEE International Conference on Computer Vision (ICCV), 2015.

Natural-image patches lie close to a low-dimensional subspace, while white noise of
variance sigma^2 adds sigma^2 to every eigenvalue of the patch covariance matrix. The
eigenvalues that belong to noise alone are therefore all about sigma^2, a set whose mean
equals its median, while the signal eigenvalues are larger and pull the mean above the
median. Dropping the largest eigenvalues until the mean of the rest is no longer above
their median isolates the noise-only tail, whose mean estimates sigma^2. The patches are
chosen among weakly textured ones, as in

    [2] X. Liu, M. Tanaka, M. Okutomi, "Single-Image Noise Level Estimation for Blind
        Denoising", IEEE Transactions on Image Processing 22(12), 2013,

because texture spreads over all patch dimensions and inflates the tail. Everything here
is written from the papers' descriptions, with numpy alone. Additions, each needed for
this project's images (tuned on training photos only):

* Texture is measured on a ring around each patch, never on the patch itself, so that
  choosing the least textured patches does not favour patches whose noise happens to be
  weak (that selection bias cost up to 20 % at first). The ring is scored by its sum of
  squared neighbour differences, the texture strength of [2]. Nested sets of the
  best-ranked patches (2 % to 40 % of them) are measured; texture can only add variance,
  so the smallest of their estimates is kept.
* Finite samples: with n patches of dimension p the noise eigenvalues spread over the
  Marchenko-Pastur interval sigma^2 (1 +- sqrt(p/n))^2 (V. A. Marchenko, L. A. Pastur,
  Math. USSR-Sbornik 1(4), 1967), which biases the tail mean of [1] low (by about 8 % in
  sigma^2 at n = 20 p). After the median test, the noise set is grown to every eigenvalue below
  that interval's upper edge and its mean taken, which removes the bias.
* Colour images use patches across channels (d x d x C vectors); the noise has the same
  sigma in every channel, so its eigenvalues are all equal. This measured better than
  averaging per-channel estimates, since colour channels share most of their texture.
* Clipping: protocol noise is clipped to [0, 255], which at large sigma shrinks the noise
  near black and white. Patches containing a 0 or 255 cannot simply be dropped: at sigma 50
  almost every colour patch has one, and dropping them truncates the noise of the rest (a
  selection bias of its own). Instead the clipped-Gaussian (censored) variance is modelled
  from each patch's mean: patches whose ring expects more than 20 % of the noise variance
  lost, or holds more clipped values than its mean explains (a hidden saturated area), are
  left out; the others are rescaled per channel by their expected noise std, and sigma is
  iterated to a fixed point.
* Rounding to integers adds a quantisation error of variance 1/12 (0-255 units), which is
  subtracted for integer input and for float input on the 8-bit grid (e.g. uint8 / 255).
* Speed: texture scores come from integral images, at most _MAX_CANDIDATES positions are
  scored and at most _MAX_PATCHES patches gathered, chosen with a fixed-seed local
  generator (deterministic; numpy's global random state is untouched). Images over
  _MAX_PIXELS pixels are measured on tiles spread over them, so cost is bounded. The main
  cost, the patch covariance products, runs in float32 on patches stored less the image's
  mean (summed in float64: estimates agree with all-float64 ones to about 1e-6), gathered
  in image order from a strided view; a set size shared by several fractions (small
  images) is measured once; box sums slice the whole grid where that beats indexing; the
  median test takes every tail at once. That halved the time of the first version at
  every size with the same estimates. For small images the clipping model then cost as much
  as the denoiser's model: it now starts from a cheap value (the middles of patches spread over
  the image, 5 x 5 of 7 x 7), stops at a step within 2 % or one after which the model would
  rescale the measured patches alike (see _estimate), stops a two-cycle, and builds its tables
  from two fixed one-bound curves (see _clip_tables); colour images under 256 x 256 use 5 x 5
  patches, as accurate there for half the cost. Each change kept the accuracy on training
  photos (estimates moved by a few per cent at most, mostly far less; benchmarks/noise_design.py).
  benchmarks/noise_speed.py measures the estimate against the denoiser's own time and against
  an older copy of this file.
* Small images use smaller patches and rings; images too small for any patch fall back to
  the median absolute neighbour difference. A flat noiseless image gives 0.0.

Limits: small images hold too few patches to separate noise from structure; below
`min_pixels_for_estimate` (1024 pixels for colour, e.g. 32x32; 3072 for grey, e.g. 56x56)
the estimate is unreliable, and the blind denoiser does not use it (aetool.tasks.denoise.Denoiser).
Measured on crops of a test scene and on dense structured pictures (tests/conftest.py) at
sigma 5-50, 30 of each per size: from those sizes up, 9 in 10 estimates are within 15 %
(the scene crops within 5 %); below them the worst tenth of the dense pictures errs by 30 %
at 48x48 grey, 80 % at 32x32 grey, 44 % at 8x8 colour and 250 % at 8x8 grey. The rule counts
pixel values (H x W x channels >= 3072): colour holds three noisy samples per pixel whose
noise is independent while their texture is shared.

Blind estimation also cannot tell noise from texture that looks like it. On grey photos
that are texture throughout (grass, hay) at low sigma the estimate reads high; images with
some smooth area, and colour images, fare much better (tests/test_noise.py holds the
synthetic cases within 15 %; benchmarks/denoise.py measures blind against told sigma).
"""

from __future__ import annotations

import bisect
import functools
import math

import numpy as np

__all__ = ["add_gaussian_noise", "estimate_noise", "min_pixels_for_estimate"]

# Patch side for grey and for colour images; smaller sides are used for small images.
_PATCH_GREY = 7
_PATCH_COLOUR = 7
# Colour images of fewer pixels than this use patches of at most this side (see _pick_patch_size).
_SMALL_COLOUR_PIXELS = 256 * 256
_PATCH_SMALL_COLOUR = 5
# Width of the ring around each patch on which its texture is measured.
_RING = 3
# Keep at least this many patches per patch dimension (within the image's supply).
_NMIN_RATIO = 10
# A patch size (or ring) is usable only with at least this many positions per dimension.
_MIN_PATCHES_PER_DIM = 4
# Patches used for one covariance matrix, and candidate positions scored for texture.
_MAX_PATCHES = 40_000
_MAX_CANDIDATES = 100_000
# Texture scores are computed at every position, then picked, up to this many times _MAX_CANDIDATES.
_SLICE_FACTOR = 4
# Larger images are measured on a grid of _TILE x _TILE tiles totalling about this many pixels.
_MAX_PIXELS = 1 << 21
_TILE = 512
# Patches whose expected noise variance is cut by clipping to below this fraction are left out.
_V_MIN = 0.8
# Fraction of values at 0 or 255 from which the clipping model is used.
_MIN_CLIPPED = 1e-3
# Iterations of the clipping correction.
_ITERS = 10
# The clipping model's starting value: measured on the middles of the patches (their side less
# twice this, at least 3) of this many patches per dimension of those middles, corrected for
# clipping this many times.
_SEED_INSET = 1
_SEED_PER_DIM = 20
_SEED_CORRECTIONS = 1
# A step of the clipping correction is final when it moves sigma by at most this fraction.
# See _estimate.
_STEP_TOL = 0.02
# A larger step is final too when the clipping model at the new sigma would rescale the measured
# patches so that sigma moves by at most this fraction. See _estimate.
_RESCALE_TOL = 0.005
# Nested sets of least textured patches measured, as fractions of the usable candidates.
_LEVELS = (0.02, 0.05, 0.1, 0.2, 0.4)
# Colour estimates below this (0-255 units) are checked against the green channel alone.
_CROSS_CHANNEL_FLOOR = 3.0
# Fixed seed of the local generator that picks positions (deterministic results).
_SEED = 0x5EED
# Pixel values (H x W x colour channels) below which the estimate is unreliable (see Limits).
_MIN_RELIABLE_VALUES = 3072


def add_gaussian_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The benchmark protocol's noise: add N(0, sigma^2), round, clip to [0, 255], uint8.

    ``clean`` is a uint8 image of shape (H, W) or (H, W, C); ``sigma`` is in 0-255 units.
    """
    clean = np.asarray(clean)
    noisy = clean.astype(np.float64) + rng.normal(0, sigma, clean.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def min_pixels_for_estimate(channels: int) -> int:
    """Pixels (H x W) an image needs for a reliable `estimate_noise`: 1024 for colour (RGB,
    RGBA), 3072 for grey (grey + alpha too; alpha is ignored). Smaller images still get a
    number from `estimate_noise`, but it may be off by a factor of two or more."""
    colour = 3 if channels >= 3 else 1
    return -(-_MIN_RELIABLE_VALUES // colour)


def estimate_noise(image: np.ndarray, data_range: float = 255.0) -> float:
    """Blind estimate of the white Gaussian noise standard deviation, in 0-255 units.

    ``image`` is (H, W) or (H, W, C): uint8 (or another integer type), or float with
    values in ``0..data_range`` (pass ``data_range=1.0`` for float images in [0, 1]).
    A fourth channel (RGBA) or a second one (grey + alpha) is taken to be alpha and
    ignored. Returns one number per image; for colour the noise is taken to have the same
    sigma in every channel. Deterministic, and leaves numpy's global random state alone.
    Images under `min_pixels_for_estimate` pixels get a number that is not reliable.
    """
    data_range = float(data_range)
    if not math.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim == 3:
        if arr.shape[2] in (2, 4):  # drop alpha
            arr = arr[:, :, : arr.shape[2] - 1]
    else:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {arr.shape}")
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"expected an integer or float image, got dtype {arr.dtype}")
    h, w, c = arr.shape
    if h * w * c == 0:
        return 0.0
    to_255 = 255.0 / data_range

    regions = _regions(arr)
    if np.issubdtype(arr.dtype, np.floating) and not all(np.isfinite(r).all() for r in regions):
        raise ValueError("image contains NaN or infinite values")
    d = _pick_patch_size(h, w, c)
    if d is None:
        return _difference_estimate(arr) * to_255

    # Quantisation step in 0-255 units: 1 for integer input, also for float input that
    # lies on the 8-bit grid (e.g. uint8 / 255, which is then snapped to it) and for 16-bit
    # input that does (8-bit pixels widened, x 257: the same estimate as the 8-bit ones);
    # else none, or the integers' own step.
    integer = np.issubdtype(arr.dtype, np.integer)
    snap = (not integer or to_255 < 1.0) and all(_on_grid(r, data_range / 255.0) for r in regions)
    q = 1.0 if snap else (to_255 if integer else 0.0)
    # The noise was clipped to the range if values sit at its ends and none lie beyond;
    # the clipping model is used when that affects more than a trace of the values.
    tol = 1e-6 * data_range
    clipped = False
    lo = min(float(r.min()) for r in regions)
    hi = max(float(r.max()) for r in regions)
    if lo >= -tol and hi <= data_range + tol:
        n_sat = sum(int(np.count_nonzero((r <= tol) | (r >= data_range - tol))) for r in regions)
        clipped = n_sat >= _MIN_CLIPPED * sum(r.size for r in regions)

    ring = _RING
    while ring and (h - d - 2 * ring + 1) * (w - d - 2 * ring + 1) < _MIN_PATCHES_PER_DIM * d * d * c:
        ring = ring - 1 if ring > 2 else 0
    rng = _LazyGenerator(_SEED)
    per_region = max(_MAX_CANDIDATES // len(regions), 1)
    # Patches are stored less the image's mean per channel, rounded so that it is the same for
    # every input type of the same pixels (and integer pixels stay exact in float32).
    centre = np.round(np.mean([r.mean(axis=(0, 1), dtype=np.float64) for r in regions], axis=0) * to_255)
    cands = [_candidates(r, to_255, d, ring, per_region, rng, clipped, snap, centre) for r in regions]
    sigma = float(_estimate(cands, d, c, ring, q, clipped, rng))
    if c > 1 and sigma < _CROSS_CHANNEL_FLOOR:
        # Chroma-subsampled JPEG (4:2:0, most camera and web JPEGs) smooths the colour-difference
        # noise, so the cross-channel eigenvalue tail reads near zero although the luminance is
        # noisy. Measure the green channel, which carries most of the luminance, on its own.
        green = estimate_noise(arr[:, :, 1], data_range)
        if green > 2 * sigma + 1:
            sigma = green
    return sigma


class _LazyGenerator:
    """np.random.default_rng(seed) for `choice`, made at the first call: small images never
    draw, and making one costs a tenth of a millisecond."""

    def __init__(self, seed: int):
        self._seed, self._gen = seed, None

    def choice(self, *args, **kwargs):
        if self._gen is None:
            self._gen = np.random.default_rng(self._seed)
        return self._gen.choice(*args, **kwargs)


def _regions(arr: np.ndarray) -> list[np.ndarray]:
    """The whole image, or for a large one a grid of tiles spread evenly over it (views)
    totalling about _MAX_PIXELS pixels, so that the cost does not grow with the image."""
    h, w, _ = arr.shape
    if h * w <= _MAX_PIXELS:
        return [arr]
    th, tw = min(h, _TILE), min(w, _TILE)
    n = max(_MAX_PIXELS // (th * tw), 1)
    rows = min(max(int(round(math.sqrt(n * h * tw / (w * th)))), 1), h // th)
    cols = min(max(n // rows, 1), w // tw)
    ys = np.linspace(0, h - th, rows).round().astype(int)
    xs = np.linspace(0, w - tw, cols).round().astype(int)
    return [arr[y : y + th, x : x + tw] for y in ys for x in xs]


def _on_grid(region: np.ndarray, step: float) -> bool:
    sample = region[:: max(region.shape[0] // 256, 1), :: max(region.shape[1] // 256, 1)]
    k = sample / step
    return bool(np.all(np.abs(k - np.round(k)) < 1e-3))


def _integral(x: np.ndarray) -> np.ndarray:
    """Integral image of x (H, W) or (H, W, C): a row and a column of zeros, then cumulative
    sums over rows and columns."""
    s = np.zeros((x.shape[0] + 1, x.shape[1] + 1, *x.shape[2:]))
    if x.size <= 1 << 17:  # small: np.cumsum(axis=0) (the same sums, in the same order)
        np.cumsum(x, axis=0, out=s[1:, 1:])
    else:  # row by row: np.cumsum(axis=0) walks down each column, slow on wide arrays
        s[1, 1:] = x[0]
        for i in range(1, x.shape[0]):
            np.add(s[i, 1:], x[i], out=s[i + 1, 1:])
    np.cumsum(s[1:, 1:], axis=1, out=s[1:, 1:])
    return s


def _channel_sum(x: np.ndarray, c: int) -> np.ndarray:
    """Sum over the channels of x (H, W * C), channel fastest: (H, W)."""
    out = x[:, 0::c].copy() if c > 1 else x
    for k in range(1, c):
        out += x[:, k::c]
    return out


def _box_at(s: np.ndarray, y: np.ndarray, x: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """Sums of the bh x bw boxes with top-left corners (y, x), from an integral image."""
    return s[y + bh, x + bw] - s[y, x + bw] - s[y + bh, x] + s[y, x]


def _box_grid(s: np.ndarray, y: int, x: int, bh: int, bw: int, ny: int, nx: int) -> np.ndarray:
    """`_box_at` for the corners of the ny x nx grid from (y, x), flattened row by row: the same
    sums, by slicing (much faster than indexing)."""
    y1, x1 = y + bh, x + bw
    box = s[y1:y1 + ny, x1:x1 + nx] - s[y:y + ny, x1:x1 + nx] - s[y1:y1 + ny, x:x + nx] + s[y:y + ny, x:x + nx]
    return box.reshape(ny * nx, *s.shape[2:])


class _Candidates:
    """Candidate patches of one region: their corners, texture and mean per channel."""

    def __init__(self, a, centre, py, px, xi, mu, mu_ring, sat_ring):
        # a: the region in 0-255 units less `centre` (the image's mean per channel), float32 so
        # that covariance products keep their precision, channel by channel (C, H, W). mu and
        # mu_ring: (C, N) means of each patch and of its ring, per channel.
        self.a, self.centre, self.py, self.px, self.xi = a, centre, py, px, xi
        self.mu, self.mu_ring, self.sat_ring = mu, mu_ring, sat_ring


def _candidates(region, to_255, d, ring, n_max, rng, need_mu, snap, centre) -> _Candidates:
    a = region.astype(np.float64) * to_255
    if snap:
        np.rint(a, out=a)
    h, w, c = a.shape
    big = d + 2 * ring
    ny, nx = h - big + 1, w - big + 1
    n = ny * nx
    idx = None if n <= n_max else np.sort(rng.choice(n, size=n_max, replace=False))
    if n <= _SLICE_FACTOR * n_max:  # box sums over the whole grid, then picked

        def box(s, oy, ox, bh, bw):
            v = _box_grid(s, oy, ox, bh, bw, ny, nx)
            return v if idx is None else v[idx]
    else:
        y, x = np.divmod(idx, nx)

        def box(s, oy, ox, bh, bw):
            return _box_at(s, y + oy, x + ox, bh, bw)

    # Texture strength: sum of squared neighbour differences over the window of side
    # d + 2*ring, minus those within the patch and its one-pixel margin, so that the
    # score does not depend on the noise inside the patch.
    flat = a.reshape(h, w * c)  # (the channel runs fastest: whole rows are contiguous)
    dh = flat[:, c:] - flat[:, :-c]
    dh *= dh
    sh = _integral(_channel_sum(dh, c))
    dv = flat[1:] - flat[:-1]
    dv *= dv
    sv = _integral(_channel_sum(dv, c))
    del dh, dv
    xi = box(sh, 0, 0, big, big - 1) + box(sv, 0, 0, big - 1, big)
    if ring:
        m, o = d + 2, ring - 1
        xi -= box(sh, o, o, m, m - 1) + box(sv, o, o, m - 1, m)
    del sh, sv
    mu = mu_ring = sat_ring = None
    if need_mu:
        s = _integral(a)  # all channels at once: (N, C) box sums, made (C, N)
        mu = np.ascontiguousarray(box(s, ring, ring, d, d).T)
        mu_ring = np.ascontiguousarray(box(s, 0, 0, big, big).T)
        mu_ring -= mu
        mu /= d * d
        n_ring = big * big - d * d
        if ring:
            mu_ring /= n_ring
            s = _integral(_channel_sum(((flat <= 1e-4) | (flat >= 255 - 1e-4)).astype(np.float64), c))
            sat_ring = (box(s, 0, 0, big, big) - box(s, ring, ring, d, d)) / (n_ring * c)
        else:
            mu_ring = mu
    if idx is None:  # the patch corners of every position
        py, px = np.repeat(np.arange(ny), nx), np.tile(np.arange(nx), ny)
    else:
        py, px = np.divmod(idx, nx)
    centred = np.empty((c, h, w), np.float32)
    np.subtract(a.transpose(2, 0, 1), centre[:, None, None], out=centred)
    return _Candidates(centred, centre.astype(np.float32), py + ring, px + ring, xi, mu, mu_ring, sat_ring)


def _gather(cands: list[_Candidates], which: np.ndarray, offsets: np.ndarray, d: int,
            inset: int = 0) -> np.ndarray:
    """Flattened C x d x d patches (float32, less the centre) of the candidates numbered
    `which`, in that order; with `inset`, the (d - 2 inset)-sided middles of them."""
    c = cands[0].a.shape[0]
    if len(cands) == 1:
        return _patches(cands[0], which, d, inset)
    e = d - 2 * inset
    out = np.empty((len(which), e * e * c), np.float32)
    for k, cand in enumerate(cands):
        mine = np.flatnonzero((which >= offsets[k]) & (which < offsets[k + 1]))
        if len(mine):
            out[mine] = _patches(cand, which[mine] - offsets[k], d, inset)
    return out


def _patches(cand: _Candidates, j: np.ndarray, d: int, inset: int = 0) -> np.ndarray:
    # A strided view of every C x e x e window (no copy), of which one indexing step copies
    # the chosen ones. A patch vector holds its channels one after the other.
    a = cand.a
    c, h, w = a.shape
    e = d - 2 * inset
    s_ch, s_row, s_col = a.strides
    windows = np.lib.stride_tricks.as_strided(
        a, shape=(h - e + 1, w - e + 1, c, e, e), strides=(s_row, s_col, s_ch, s_row, s_col), writeable=False)
    return windows[cand.py[j] + inset, cand.px[j] + inset].reshape(len(j), -1)


def _estimate(cands, d, c, ring, q, clipped, rng) -> float:
    offsets = np.cumsum([0] + [len(k.xi) for k in cands])
    xi = np.concatenate([k.xi for k in cands])
    n = len(xi)
    dim = d * d * c
    rounding = q * q / 12.0
    n_min = min(n, _NMIN_RATIO * dim)

    def subsample(m_total, m):
        """Sorted indices of a deterministic subsample of size m from range(m_total)."""
        if m_total <= m:
            return np.arange(m_total)
        return np.sort(rng.choice(m_total, size=m, replace=False))

    if not clipped:
        return _select_and_measure(cands, offsets, xi, None, np.arange(n), None,
                                   d, ring, n_min, rounding, subsample)[0]

    mu = np.concatenate([k.mu for k in cands], axis=1)
    mu_ring = np.concatenate([k.mu_ring for k in cands], axis=1)
    sat_ring = np.concatenate([k.sat_ring for k in cands]) if ring else None
    n_ring = ((d + 2 * ring) ** 2 - d * d) * c
    # Starting value for the clipping model: patches of every texture, corrected for clipping.
    # Only a start, so it is measured cheaply: on the middle e x e of patches spread evenly
    # over the candidates (which are in image order), one correction.
    inset = min(_SEED_INSET, max(d - 3, 0) // 2)
    e = d - 2 * inset
    m = min(n, _SEED_PER_DIM * e * e * c)
    sub = np.arange(m) * n // m
    lam = _noise_variance(_gather(cands, sub, offsets, d, inset)) - rounding
    if lam <= 0:
        return 0.0
    sigma = math.sqrt(lam)
    i_sub = _table_index(mu[:, sub])
    for _ in range(_SEED_CORRECTIONS):
        sigma = math.sqrt(lam / _clip_tables(sigma)[0][i_sub].mean())
    level = None
    i_mu, i_ring = _table_index(mu), _table_index(mu_ring)
    before = math.nan  # the iterate before sigma
    tables = None  # the clipping tables at sigma, when the last step's check made them already
    for it in range(1, _ITERS + 1):
        var_t, clip_t = tables if tables is not None else _clip_tables(sigma)
        v_patch = var_t[i_mu]  # (C, N): expected share of the noise variance left by clipping
        # Usable patches, judged by their ring (independent of the patch's own noise):
        # little clipping expected, and a count of clipped values in the ring that agrees
        # with it (no saturated area hidden in the window, as at an edge to black).
        v_ring = var_t[i_ring]
        ok = v_ring.min(axis=0) >= _V_MIN
        if sat_ring is not None:
            p = clip_t[i_ring].mean(axis=0)
            ok &= sat_ring <= p + 3 * np.sqrt(p * (1 - p) / n_ring) + 1 / n_ring
        pool = np.flatnonzero(ok)
        if len(pool) < n_min:
            pool = np.arange(n)
        score = xi / np.maximum(v_ring.mean(axis=0), 1e-12)
        new, level, chosen = _select_and_measure(cands, offsets, score, v_patch, pool, level, d, ring,
                                                 n_min, rounding, subsample)
        if new <= 0:
            return 0.0
        # The measurement depends weakly on the sigma of the clipping model (on training
        # photos a 1 % change in sigma moved it by under 0.5 %, most at sigma 50). So a first
        # step that moved sigma by at most _STEP_TOL is final: iterating on would change it
        # by a fraction of that, within the estimate's own error, for another full measurement
        # (half of a small image's estimate). The same holds for every later step (which
        # until 2026-12 had to agree to 1e-3: several more measurements, the same accuracy).
        if abs(new - sigma) <= _STEP_TOL * sigma:
            return new
        # A larger step is final as well when the model at the new sigma would leave these
        # patches' rescaling (its main effect on the measurement) nearly as it was: if they had
        # been rescaled by 1 / sqrt(v_next) instead of 1 / sqrt(v), the measured variance would
        # be about mean(v / v_next) times this one. Where few measured patches are near black
        # or white (a photo with a few saturated areas, or low sigma), that is about 1 whatever
        # the step, and the next measurement would repeat this one. benchmarks/noise_design.py
        # (training crops of 64-256 px, colour and grey, sigma 5-50): 17-25 % fewer measurements,
        # estimates moved by 0.1 % on average (at most 4.6 %), mean error the same within 0.04
        # points (slightly lower up to 128 px).
        tables = _clip_tables(new)  # (the next step's, if there is one)
        v_next = np.maximum(tables[0][i_mu[:, chosen]], 1e-3)
        if abs(float(np.mean(np.maximum(v_patch[:, chosen], 1e-3) / v_next)) - 1) <= 2 * _RESCALE_TOL:
            return new
        if abs(new - before) <= 1e-3 * new:
            # A two-cycle (the usable set flips between two states): the iterations would
            # alternate to the last one, so return the value that one would give.
            return new if (_ITERS - it) % 2 == 0 else sigma
        before, sigma = (sigma if it > 1 else math.nan), new  # (the start is not an iterate)
    return sigma


def _select_and_measure(cands, offsets, score, v, pool, level, d, ring, n_min, rounding, subsample):
    """Noise sigma from the least textured patches of `pool`.

    The candidates are ranked by texture (score); the covariance is measured on nested
    sets of the best-ranked ones (fractions _LEVELS of the pool). Texture only adds to the
    covariance, so each set over-estimates sigma^2 up to sampling error, and the smallest
    estimate is taken. Returns (sigma, fraction of the set used, the candidates of that set);
    `level` (such a fraction) fixes the set instead."""
    m = len(pool)
    if ring:
        fracs = _LEVELS if level is None else (level,)
        sizes = [int(min(max(f * m, n_min), m)) for f in fracs]
        # Small images give one size for several fractions: measure it once, under the
        # smallest of them (the sizes grow with the fraction).
        keep = [i for i in range(len(sizes)) if i == 0 or sizes[i] != sizes[i - 1]]
        fracs, sizes = [fracs[i] for i in keep], [sizes[i] for i in keep]
    else:  # the score depends on the patch's own noise: ranking by it would bias
        fracs, sizes = [None], [m]
    top = sizes[-1]
    if top < m:
        pool_score = score[pool]
        part = np.argpartition(pool_score, top - 1)[:top]
        ranked = pool[part[np.argsort(pool_score[part], kind="stable")]]
    elif len(sizes) > 1:
        ranked = pool[np.argsort(score[pool], kind="stable")]
    else:
        ranked = pool
    take = subsample(top, _MAX_PATCHES)
    ends = np.searchsorted(take, sizes)
    # Within each nested block the order of the patches does not matter: gather them in
    # image order, which reads memory far faster than in texture order.
    chosen = ranked[take]
    for start, end in zip([0, *ends[:-1]], ends):
        chosen[start:end].sort()
    x = _gather(cands, chosen, offsets, d)
    if v is not None:
        # Clipping leaves channel k of patch i with noise variance v[k, i] * sigma^2:
        # rescale so that the noise is white with variance sigma^2 again. (The patches are
        # stored less the image mean, which is put back for this.)
        scale = 1.0 / np.sqrt(np.maximum(v[:, chosen].T, 1e-3))
        shift = cands[0].centre * (scale - 1)  # (x + m) s - m = x s + m (s - 1)
        per_channel = x.reshape(len(x), -1, d * d)
        per_channel *= scale.astype(np.float32)[:, :, None]
        per_channel += shift.astype(np.float32)[:, :, None]
    best, best_level, best_end = math.inf, None, 0
    s1 = s2 = None
    start = 0
    for i, end in enumerate(ends):
        block = x[start:end]
        b1 = (np.ones(len(block), block.dtype) @ block).astype(np.float64)  # (a product: fast)
        b2 = (block.T @ block).astype(np.float64)  # float32 products of centred values, summed in float64
        s1, s2 = (b1, b2) if s1 is None else (s1 + b1, s2 + b2)
        start = end
        if end < 2:
            continue
        cov = (s2 - np.outer(s1, s1) / end) / (end - 1)
        lam = _noise_variance_cov(cov, end) - rounding
        est = math.sqrt(max(lam, 0.0))
        if est < best:
            best, best_level, best_end = est, fracs[i], end
    return best, best_level, chosen[:best_end]


_TABLE = 1024  # resolution of the clipping tables over the mean 0..255


def _clip_tables(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Clipping model for protocol noise N(0, sigma^2) clipped to [0, 255], tabulated
    against the mean m of the clipped value (what a local average measures), at
    m = 255 * i / (_TABLE - 1): Var(clipped) / sigma^2, and P(clipped to 0 or 255).

    Up to _SEPARATE_BOUNDS_MAX the two bounds act apart: each one's effect is a fixed curve
    of the distance from it, m / sigma or (255 - m) / sigma (_one_bound_tables, made once),
    and the effects add (within 1e-3 of the exact model there, 1.5e-4 up to sigma 50; below
    sigma 40 closer to it than `_clip_tables_exact`, whose grid of clean values is coarser: tested).
    That is a few interpolations instead of the exact model's normal CDF at 2049 clean values
    per call, which cost small images more than their covariance products."""
    if sigma <= 0:
        return np.ones(_TABLE), np.zeros(_TABLE)
    if sigma > _SEPARATE_BOUNDS_MAX:
        return _clip_tables_exact(sigma)
    dist, var1, clip1 = _one_bound_tables()
    m = _table_means()
    lo, hi = m / sigma, (255.0 - m) / sigma
    var = np.interp(lo, dist, var1)
    var += np.interp(hi, dist, var1)
    var -= 1.0
    clip = np.interp(lo, dist, clip1)
    clip += np.interp(hi, dist, clip1)
    return np.clip(var, 0.0, 1.0, out=var), clip


# Noise levels up to which the clipping tables treat the bounds 0 and 255 apart (see _clip_tables).
_SEPARATE_BOUNDS_MAX = 60.0


@functools.lru_cache(maxsize=1)
def _one_bound_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N(z, 1) clipped below at 0, for clean values z from -6 to 9 every 1/512: the mean of
    the clipped value (increasing in z), its variance, and P(clipped)."""
    z = np.linspace(-6.0, 9.0, 15 * 512 + 1)
    a = -z  # the bound, standardised
    (cdf,), (pdf,) = _norm_cdf_pdf(a[None])
    m1 = a * cdf + pdf  # E[max(Z, a)] (Z standard normal)
    m2 = (a * a - 1) * cdf + a * pdf + 1  # E[max(Z, a)^2]
    return z + m1, np.clip(m2 - m1 * m1, 0.0, 1.0), cdf


def _clip_tables_exact(sigma: float, points: int = 2049) -> tuple[np.ndarray, np.ndarray]:
    """`_clip_tables` from the moments of the normal clipped at both bounds at once, computed at
    `points` clean values."""
    c = np.linspace(-5 * sigma, 255 + 5 * sigma, points)  # underlying clean value
    ab = np.empty((2, len(c)))  # a and b: the clipping bounds 0 and 255, standardised
    np.subtract(0.0, c, out=ab[0])
    np.subtract(255.0, c, out=ab[1])
    ab /= sigma
    a, b = ab
    (pa, pb), (fa, fb) = _norm_cdf_pdf(ab)
    qb = 1 - pb
    m1 = a * pa + (fa - fb) + b * qb  # E[clip(Z, a, b)]
    m2 = a * a * pa + (pb - pa) + a * fa - b * fb + b * b * qb
    var = np.clip(m2 - m1 * m1, 0.0, 1.0)
    mean = c + sigma * m1  # increasing in c
    c_of_m = np.interp(_table_means(), mean, c)
    return np.interp(c_of_m, c, var), np.interp(c_of_m, c, pa + qb)


@functools.lru_cache(maxsize=1)
def _table_means() -> np.ndarray:
    return np.linspace(0.0, 255.0, _TABLE)


def _table_index(mu: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(mu * ((_TABLE - 1) / 255.0)), 0, _TABLE - 1).astype(np.intp)


def _norm_pdf(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


# The normal CDF is evaluated from nodes every _PHI_STEP on [_PHI_LO, _PHI_HI] (beyond them it
# is 0 or 1 to double precision), by its Taylor series about the nearest node to the fourth
# power: the error is below 1e-15 (|t| <= _PHI_STEP / 2, |fifth derivative| < 1.2). Calling
# math.erf per value cost a third of the estimate's time at small sizes.
_PHI_LO, _PHI_HI, _PHI_STEP = -40.0, 9.0, 1.0 / 256


@functools.lru_cache(maxsize=1)
def _phi_nodes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.linspace(_PHI_LO, _PHI_HI, int(round((_PHI_HI - _PHI_LO) / _PHI_STEP)) + 1)
    cdf = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    return x, cdf, _norm_pdf(x)


def _norm_cdf_pdf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The standard normal CDF and density at x."""
    nodes, cdf, pdf = _phi_nodes()
    x = np.clip(x, _PHI_LO, _PHI_HI)
    k = np.rint((x - _PHI_LO) * (1.0 / _PHI_STEP)).astype(np.intp)
    x0 = nodes[k]
    t = x - x0
    # The density's derivatives at x0 are pdf(x0) times 1, -x0, x0^2 - 1, 3 x0 - x0^3 and
    # x0^4 - 6 x0^2 + 3 (Hermite polynomials), the CDF's one order lower.
    x2 = x0 * x0
    h1, h2, h3, h4 = -x0, x2 - 1, x0 * (3 - x2), x2 * (x2 - 6) + 3
    p0 = pdf[k]
    dens = p0 * (1 + t * (h1 + t * (h2 / 2 + t * (h3 / 6 + t * (h4 / 24)))))
    cum = cdf[k] + p0 * t * (1 + t * (h1 / 2 + t * (h2 / 6 + t * (h3 / 24))))
    return cum, dens


def _pick_patch_size(h: int, w: int, c: int) -> int | None:
    top = _PATCH_COLOUR if c > 1 else _PATCH_GREY
    if c > 1 and h * w < _SMALL_COLOUR_PIXELS:
        # At 64 x 64 a 7 x 7 x 3 covariance needs (_NMIN_RATIO per dimension) 1470 of the 3364
        # patch positions, leaving the texture ranking little to choose from. 5 x 5 x 3 patches
        # measured at least as accurate from 64 x 64 to 256 x 256 (benchmarks/noise_design.py:
        # random crops of training photos, sigma 5-50) for half the cost or less. Larger images
        # keep 7 x 7, where the estimate is well within the model's time anyway.
        top = _PATCH_SMALL_COLOUR
    for d in range(top, 2, -1):
        positions = max(h - d + 1, 0) * max(w - d + 1, 0)
        if positions >= _MIN_PATCHES_PER_DIM * d * d * c:
            return d
    return None


def _noise_variance(x: np.ndarray) -> float:
    # Column means by a product (a float32 sum with a float64 dtype is slow); this only
    # gives the clipping model its starting value.
    mean = (np.ones(len(x), x.dtype) @ x).astype(np.float64) / len(x)
    cov = ((x.T @ x).astype(np.float64) - len(x) * np.outer(mean, mean)) / (len(x) - 1)
    return _noise_variance_cov(cov, len(x))


def _noise_variance_cov(cov: np.ndarray, n: int) -> float:
    """sigma^2 from the eigenvalues of a patch covariance matrix of n patches.

    Chen, Zhu & Heng (2015): drop the largest eigenvalues until the mean of the rest is
    no longer above their median; those are noise. With finitely many patches the noise
    eigenvalues spread over the Marchenko-Pastur interval sigma^2 (1 +- sqrt(p/n))^2,
    which biases that tail mean low, so the noise set is then grown to all eigenvalues
    below the upper edge of that interval, and its mean is taken."""
    eig = np.clip(np.linalg.eigvalsh(cov), 0.0, None)  # ascending
    r = len(eig)
    # Tail means from one cumulative sum, counts by bisection (eig is sorted): a few numpy calls
    # instead of two per step of the loop (small images ran it with the call overhead dominant).
    cum = np.cumsum(eig)
    p = _median_test(eig, cum)
    cum, eig = cum.tolist(), eig.tolist()
    tau = cum[p - 1] / p
    for _ in range(20):
        edge = tau * (1 + math.sqrt(p / n)) ** 2
        p_new = max(bisect.bisect_right(eig, edge), 1)
        tau = cum[p_new - 1] / p_new
        if p_new == p:
            break
        p = p_new
    # The r - p signal directions also take their share of the noise energy.
    return tau / max(1 - (r - p) / n, 0.5)


def _median_test(eig: np.ndarray, cum: np.ndarray | None = None) -> int:
    """The largest m for which the mean of eig[:m] (ascending; cum its cumulative sum) is not
    above its median: as many values above the mean as below it. Every m at once: the mean of
    eig[:m] is at most eig[m - 1], so counting over all of eig counts within eig[:m]."""
    m = np.arange(1, len(eig) + 1)
    tau = (np.cumsum(eig) if cum is None else cum) / m
    above = m - np.minimum(np.searchsorted(eig, tau, side="right"), m)
    below = np.minimum(np.searchsorted(eig, tau, side="left"), m)
    return int(np.flatnonzero(above >= below)[-1]) + 1  # m = 1 always passes


def _difference_estimate(arr: np.ndarray) -> float:
    """Fallback for images too small for patches: MAD of neighbour differences."""
    a = arr.astype(np.float64)
    diffs = np.concatenate([np.diff(a, axis=0).ravel(), np.diff(a, axis=1).ravel()])
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return 0.0
    # A difference of two noisy pixels has std sigma * sqrt(2); MAD / 0.6745 = std.
    return float(np.median(np.abs(diffs)) / 0.6745 / np.sqrt(2.0))
