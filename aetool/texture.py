"""Exemplar-based texture synthesis for large holes, guided by a smooth fill.

The inpainting network fills a hole with the structure and colours that its surroundings imply,
but a large hole comes out smooth: the PSNR-optimal fill of an unknown texture is its blurred
mean. This module puts texture back by copying it from the known pixels of the same image, with
the network's fill as the guide that decides which texture goes where.

Papers:
- Y. Wexler, E. Shechtman, M. Irani, "Space-Time Completion of Video", IEEE TPAMI 2007: the hole
  is filled by alternating a nearest-patch search for every patch that overlaps it and a vote of
  the matched patches for each pixel, coarse to fine.
- C. Barnes, E. Shechtman, A. Finkelstein, D. B. Goldman, "PatchMatch: A Randomized
  Correspondence Algorithm for Structural Image Editing", SIGGRAPH 2009: the search by
  propagation of good matches to neighbours and random search around them.
- M. Bertalmio, L. Vese, G. Sapiro, S. Osher, "Simultaneous Structure and Texture Image
  Inpainting", IEEE TIP 2003: structure and texture filled by different means; here the network
  gives the structure (a blurred guide in the patch distance) and the exemplars the texture.

Everything runs on the CPU with torch gathers over the hole's patches; the random search draws
from a numpy generator seeded by the caller, so a seed gives the same pixels on every run.
"""
from __future__ import annotations

import numpy as np

PATCH = 7  # patch side; 7 is the usual size for photographic texture (Wexler, PatchMatch)
GUIDE_WEIGHT = 2.0  # weight of the blurred guide against the pixels in the patch distance
# (benchmarks/texture_params.py, training photos: 2 kept 0.87 of the gradient energy at -0.08 dB
# against 1, which kept 0.69)
GUIDE_SIGMA = 2.0  # blur of the guide (pixels at each level): structure, not texture
FINAL_RADIUS = 0  # the last vote: only patches centred this close (0: each pixel its own match; 1 halved
# the gradient energy on training photos: the matches of neighbours disagree, and a mean blurs)
CHUNK = 1 << 20  # patch pixels gathered at once by a distance computation (~25 MB of features)
STRUCTURE_SIGMA = 2.0  # below this scale (pixels) the fill is the exemplars', above it the guide's
FEATHER = 1  # hole pixels this close to the border blend from the guide into the copy (1: the
# border ring is half each). benchmarks/texture_params.py, training photos: +0.09 dB and 0.82 of the
# gradient energy kept against 0.87 without; 2 kept 0.76. On the generated seam test picture
# (tests/test_models.py) the step across the border of 6-px strokes fell from 1.84x the original's to 1.11x.


def hole_depth(mask: np.ndarray) -> int:
    """The largest distance (chessboard, pixels) from a hole pixel to the nearest known pixel:
    half the width of the widest part of the hole."""
    from scipy import ndimage

    if not mask.any():
        return 0
    if mask.all():
        return max(mask.shape)
    return int(ndimage.distance_transform_cdt(mask, metric="chessboard").max())


def _half(x: np.ndarray) -> np.ndarray:
    """2x2 box average (edge pixels repeated for odd sizes)."""
    h, w = x.shape[:2]
    x = np.pad(x, ((0, h % 2), (0, w % 2)) + ((0, 0),) * (x.ndim - 2), mode="edge")
    return x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2, *x.shape[2:]).mean(axis=(1, 3))


def _half_mask(m: np.ndarray) -> np.ndarray:
    """A coarse pixel is a hole when any of its 2x2 fine pixels is."""
    h, w = m.shape
    m = np.pad(m, ((0, h % 2), (0, w % 2)), mode="edge")
    return m.reshape(m.shape[0] // 2, 2, m.shape[1] // 2, 2).any(axis=(1, 3))


class _Level:
    """One pyramid level, padded by the patch radius so that every pixel is a patch centre."""

    def __init__(self, image: np.ndarray, hole: np.ndarray, unknown: np.ndarray, guide: np.ndarray,
                 fill: np.ndarray, r: int):
        import torch
        from scipy import ndimage

        self.h, self.w = hole.shape
        self.r = r
        self.hp, self.wp = self.h + 2 * r, self.w + 2 * r
        self.image = image  # (h, w, 3): known pixels; the estimate in the holes
        self.hole = hole  # pixels this synthesis fills
        self.fill = fill  # pixels that take part (hole of the region)
        ys, xs = np.nonzero(fill)
        self.fill_flat = torch.from_numpy((ys + r) * self.wp + xs + r)
        # Targets: every patch that overlaps a pixel to fill (so the border band votes too).
        targets = ndimage.maximum_filter(fill, size=2 * r + 1, mode="constant")
        ys, xs = np.nonzero(targets)
        self.targets = torch.from_numpy((ys + r) * self.wp + xs + r)
        # Sources: patches entirely inside the image and entirely known.
        known = np.zeros((self.h + 2 * r, self.wp), bool)
        known[r:-r, r:-r] = ~unknown
        valid = ~ndimage.maximum_filter(~known, size=2 * r + 1, mode="constant", cval=True)
        self.valid = torch.from_numpy(valid.reshape(-1))
        self.valid_yx = np.argwhere(valid)
        blurred = ndimage.gaussian_filter(guide, sigma=(GUIDE_SIGMA, GUIDE_SIGMA, 0), mode="reflect")
        self.guide = torch.from_numpy(self._pad(blurred)).reshape(-1, 3)
        oy, ox = np.mgrid[-r:r + 1, -r:r + 1]
        self.offsets = torch.from_numpy((oy * self.wp + ox).reshape(-1))
        self.update(image)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        r = self.r
        return np.pad(x, ((r, r), (r, r), (0, 0)), mode="reflect" if min(self.h, self.w) > r else "edge")

    def update(self, image: np.ndarray) -> None:
        import torch

        self.image = image
        self.pixels = torch.from_numpy(np.ascontiguousarray(self._pad(image), dtype=np.float32)).reshape(-1, 3)
        self.features = torch.cat([self.pixels, GUIDE_WEIGHT * self.guide], dim=1)

    def distance(self, sources) -> "torch.Tensor":
        """Sum of squared feature differences between each target patch and candidate source
        patches; sources: (N,) or (N, K) flat padded indices. Whole patches are gathered in
        chunks of targets: few large operations, not one per patch offset (thousands of small
        parallel operations stall when another process holds a core)."""
        import torch

        flat = sources.reshape(len(self.targets), -1)
        n, k = flat.shape
        d = torch.empty((n, k), dtype=torch.float32)
        step = max(1, CHUNK // (k * len(self.offsets)))
        for i in range(0, n, step):
            t = self.features[self.targets[i:i + step, None] + self.offsets]  # (n, P, C)
            s = self.features[flat[i:i + step, :, None] + self.offsets]  # (n, K, P, C)
            d[i:i + step] = ((s - t[:, None]) ** 2).sum(dim=(2, 3))
        return d.reshape(sources.shape)

    def dense(self, sources) -> "torch.Tensor":
        """The match of every padded pixel that is a target, -1 elsewhere."""
        import torch

        out = torch.full((self.hp * self.wp,), -1, dtype=torch.int64)
        out[self.targets] = sources
        return out

    def random_sources(self, n: int, rng: np.random.Generator):
        import torch

        pick = self.valid_yx[rng.integers(0, len(self.valid_yx), n)]
        return torch.from_numpy(pick[:, 0] * self.wp + pick[:, 1])


def _search(level: _Level, sources, rng: np.random.Generator, passes: int, radius: int,
            jumps: tuple[int, ...]):
    """PatchMatch: propagation from the four neighbours at growing jumps, then random search
    around the current match at halving radii; each candidate kept where it is closer."""
    import torch

    n = len(level.targets)
    best = level.distance(sources)
    hp = level.hp
    for _ in range(passes):
        cands = []
        dense = level.dense(sources)
        for jump in jumps:
            for step in (jump, -jump, jump * level.wp, -jump * level.wp):
                neighbour = dense[(level.targets + step).clamp(0, len(dense) - 1)]
                cand = neighbour - step
                ok = (neighbour >= 0) & level.valid[cand.clamp(0, len(dense) - 1)]
                cands.append(torch.where(ok, cand, sources))
        sy, sx = sources // level.wp, sources % level.wp
        r = radius
        while r >= 1:
            dy = torch.from_numpy(rng.integers(-r, r + 1, n))
            dx = torch.from_numpy(rng.integers(-r, r + 1, n))
            cand = (sy + dy).clamp(0, hp - 1) * level.wp + (sx + dx).clamp(0, level.wp - 1)
            cands.append(torch.where(level.valid[cand], cand, sources))
            r //= 2
        if radius >= max(level.h, level.w):
            cands.append(level.random_sources(n, rng))
        cands = torch.stack(cands, dim=1)
        d = level.distance(cands)
        k = d.argmin(dim=1)
        d_best = d.gather(1, k[:, None])[:, 0]
        better = d_best < best
        sources = torch.where(better, cands.gather(1, k[:, None])[:, 0], sources)
        best = torch.where(better, d_best, best)
    return sources, best


def _vote(level: _Level, sources, values, radius: int | None = None) -> np.ndarray:
    """Each pixel to fill: the mean of what the patches that overlap it say about it (only the
    patches whose centre lies within `radius` of it, when given)."""
    import torch

    dense = level.dense(sources)
    acc = torch.zeros((len(level.fill_flat), values.shape[1]), dtype=torch.float32)
    count = torch.zeros(len(level.fill_flat), dtype=torch.float32)
    offsets = level.offsets
    if radius is not None:
        r = level.r
        keep = [(i // (2 * r + 1) - r, i % (2 * r + 1) - r) for i in range(len(offsets))]
        offsets = offsets[[max(abs(a), abs(b)) <= radius for a, b in keep]]
    for o in offsets:
        src = dense[level.fill_flat - o]
        ok = src >= 0
        acc += torch.where(ok[:, None], values[(src + o).clamp(min=0)], 0.0)
        count += ok.float()
    return (acc / count[:, None]).numpy()


def _upsample_sources(coarse: _Level, sources, fine: _Level, rng: np.random.Generator):
    """A fine target takes its coarse parent's match, doubled, plus its own parity."""
    import torch

    ty, tx = fine.targets // fine.wp - fine.r, fine.targets % fine.wp - fine.r
    cy, cx = (ty // 2).clamp(max=coarse.h - 1), (tx // 2).clamp(max=coarse.w - 1)
    parent = coarse.dense(sources)[(cy + coarse.r) * coarse.wp + cx + coarse.r]
    py, px = parent // coarse.wp - coarse.r, parent % coarse.wp - coarse.r
    fy, fx = 2 * py + ty % 2 + fine.r, 2 * px + tx % 2 + fine.r
    cand = fy.clamp(0, fine.hp - 1) * fine.wp + fx.clamp(0, fine.wp - 1)
    ok = (parent >= 0) & fine.valid[cand]
    return torch.where(ok, cand, fine.random_sources(len(fine.targets), rng))


def synthesize(image: np.ndarray, hole: np.ndarray, guide: np.ndarray, seed: int | list[int] = 0,
               unknown: np.ndarray | None = None, em_passes: tuple[int, int] = (4, 1),
               search_passes: tuple[int, int] = (2, 1), fine_radius: int = 4,
               structure_sigma: float | None = STRUCTURE_SIGMA, final_radius: int = FINAL_RADIUS,
               feather: int = FEATHER) -> np.ndarray:
    """Fill `hole` of `image` ((H, W, 3) float32 in [0, 1]) with patches of its known pixels.

    guide: the same image with its holes filled smoothly (the network's fill); its blur is part
    of every patch, so the copied texture follows the guide's structure and colours. unknown:
    pixels that are no source of texture (default: the hole); other holes of the same crop. Only
    pixels of `hole` change; the result is deterministic for a given seed (an int or a list of
    ints, as numpy.random.default_rng takes).
    em_passes, search_passes: rounds of search and vote, and PatchMatch passes per round, at the
    coarsest level and at the others; fine_radius: the random search radius below the coarsest
    level; structure_sigma: the scale (Gaussian sigma, pixels) above which the guide's structure
    replaces the exemplars' (None: the pure copy)."""
    import torch

    unknown = hole if unknown is None else (unknown | hole)
    out = image.astype(np.float32, copy=True)
    if not hole.any() or unknown.all():
        return out
    r = PATCH // 2
    # Levels: halve until the hole is at most a patch deep, keeping enough image for patches.
    depth, levels = hole_depth(hole), 1
    while depth > PATCH // 2 + 1 and min(hole.shape) >> levels >= 4 * PATCH:
        depth, levels = (depth + 1) // 2, levels + 1
    pyramid = [(np.where(hole[..., None], guide, image).astype(np.float32), hole, unknown,
                guide.astype(np.float32))]
    for _ in range(levels - 1):
        img, h, u, g = pyramid[-1]
        pyramid.append((_half(img), _half_mask(h), _half_mask(u), _half(g)))
    rng = np.random.default_rng(seed)
    with torch.inference_mode():
        coarse = sources = None
        for depth_index in reversed(range(levels)):
            img, h, u, g = pyramid[depth_index]
            level = _Level(img, h, u, g, h, r)
            if not level.valid.any():
                return out  # no whole known patch anywhere: keep the smooth fill
            if coarse is None:
                sources = level.random_sources(len(level.targets), rng)
                rounds, passes, radius, jumps = em_passes[0], search_passes[0], max(h.shape), (1, 2, 4, 8)
            else:
                sources = _upsample_sources(coarse, sources, level, rng)
                filled = img.copy()
                filled[h] = _vote(level, sources, level.pixels)
                level.update(filled)
                rounds, passes, radius, jumps = em_passes[1], search_passes[1], fine_radius, (1, 2)
            for _ in range(rounds):
                sources, _ = _search(level, sources, rng, passes, radius, jumps)
                filled = level.image.copy()
                filled[h] = _vote(level, sources, level.pixels)
                level.update(filled)
            coarse = level
        # Each pixel takes the centre of its own patch's match (no averaging, which would blur the
        # texture again), and the low frequencies come back from the guide: the network's
        # structure with the exemplars' detail (Bertalmio et al.). Measured on training photos
        # (a scan like benchmarks/texture_params.py's),
        # box and thick holes: 0.6 dB of hole PSNR back against the pure copy, at 90 % of its
        # gradient energy.
        copied = level.image.copy()
        copied[hole] = _vote(level, sources, level.pixels, final_radius)
        if structure_sigma:
            from scipy import ndimage

            sigma = (structure_sigma, structure_sigma, 0)
            low = ndimage.gaussian_filter(np.where(hole[..., None], guide, image), sigma, mode="reflect")
            copied[hole] = (low + copied - ndimage.gaussian_filter(copied, sigma, mode="reflect"))[hole]
        if feather:
            from scipy import ndimage

            # The copy fades in over the first `feather` pixels inside the hole: the guide meets
            # the known pixels without a step, the copied detail does not.
            weight = np.minimum(1.0, ndimage.distance_transform_cdt(hole, metric="chessboard") / (feather + 1))
            copied = guide + weight[..., None] * (copied - guide)
        out[hole] = np.clip(copied[hole], 0.0, 1.0)
    return out
