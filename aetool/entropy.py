"""Entropy models of the learned codec (kept apart from layers and models, as in CompressAI): the
probability each quantised latent gets, hence its cost in bits.

- FactorizedDensity: the hyper-latent's prior, one learned univariate density per channel
  (Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression with a scale
  hyperprior", ICLR 2018, appendix 6.1), convolved with a unit-width box so that the probability
  of an integer is the density's mass over [z - 1/2, z + 1/2].
- gaussian_likelihood: the main latent's prior, a zero-mean Gaussian whose scale the hyper-synthesis
  predicts per element, convolved with the same box.

Training uses these as differentiable rate estimates (additive uniform noise in place of
rounding). For coding, both are turned into fixed integer tables stored with the model: the hyper
prior per channel, the Gaussian per entry of SCALE_TABLE, so that encoder and decoder agree bit for
bit on every machine.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HYPER_RANGE = 64  # hyper-latent symbols -64..64 have table entries; the end ones also mean "or beyond"
LATENT_RANGE = 256  # latent symbols -256..256 likewise (6 sigma of every scale up to 43)
FREQUENCY_TOTAL = 1 << 16  # integer frequencies of a table sum to this; every symbol gets at least 1
OVERFLOW_LIMIT = 1 << 16  # how far beyond the table an escaped value may go (coded uniformly)
SCALE_MIN = 0.11  # below this a Gaussian over unit bins is a single certain symbol anyway
SCALE_MAX = 256.0
SCALE_LEVELS = 64
LIKELIHOOD_MIN = 1e-9  # rate of a symbol is at most ~30 bits; keeps log2 finite


def scale_table(levels: int = SCALE_LEVELS) -> torch.Tensor:
    """The scales the coder has tables for, log-spaced from SCALE_MIN to SCALE_MAX."""
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), levels))


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2 ** -0.5))


def gaussian_likelihood(y: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """P(y) for integer-quantised (or noisy) y under N(0, scale^2) integrated over [y - 1/2, y + 1/2].
    Computed on |y| (the Gaussian is symmetric), where the upper tail is accurate in float."""
    scales = scales.float().clamp_min(SCALE_MIN)
    v = y.float().abs()
    upper = _std_normal_cdf((0.5 - v) / scales)
    lower = _std_normal_cdf((-0.5 - v) / scales)
    return (upper - lower).clamp_min(LIKELIHOOD_MIN)


class FactorizedDensity(nn.Module):
    """A learned univariate cumulative distribution per channel: c(x) = sigmoid(f_K(...f_1(x))),
    each f_k an affine map with non-negative weights (softplus) followed, except the last, by
    x + tanh(a) * tanh(x); the composition is monotone, so c is a valid CDF."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[k + 1], 1).uniform_(-0.5, 0.5)))
            if k < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

    def logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, 1, N) -> (C, 1, N) logits of the CDF at x, channel by channel."""
        for k, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if k < len(self.factors):
                x = x + torch.tanh(self.factors[k]) * torch.tanh(x)
        return x

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """P(z) for (B, C, H, W) integer (or noisy) z: the CDF's mass over [z - 1/2, z + 1/2]."""
        b, c, h, w = z.shape
        v = z.float().permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        # Subtract sigmoids on the side where both are small: the difference stays accurate.
        sign = -torch.sign(lower + upper).detach()
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        return p.clamp_min(LIKELIHOOD_MIN).reshape(c, b, h, w).permute(1, 0, 2, 3)


def bits(likelihoods: torch.Tensor) -> torch.Tensor:
    """Total information content in bits, per sample: (B, ...) -> (B,)."""
    return -torch.log2(likelihoods).flatten(1).sum(1)


# ---------------------------------------------------------------------------------------------
# Integer tables (computed once when a model is exported, stored in its weights file) and coding


def _frequencies(p: torch.Tensor) -> torch.Tensor:
    """Probabilities (float64, summing to about 1) as integer frequencies summing to FREQUENCY_TOTAL,
    each at least 1, the rounding remainder given to the most probable symbol."""
    n = p.numel()
    f = torch.floor(p.clamp_min(0) / p.sum() * (FREQUENCY_TOTAL - n)).long() + 1
    f[torch.argmax(f)] += FREQUENCY_TOTAL - int(f.sum())
    return f.int()


def gaussian_tables() -> torch.Tensor:
    """(SCALE_LEVELS, 2 * LATENT_RANGE + 1) frequencies of the zero-mean Gaussian of each scale
    over unit bins; the end entries hold the mass beyond them."""
    v = torch.arange(-LATENT_RANGE, LATENT_RANGE + 1, dtype=torch.float64).abs()
    rows = []
    for s in scale_table().double():
        p = _std_normal_cdf((0.5 - v) / s) - _std_normal_cdf((-0.5 - v) / s)
        tail = _std_normal_cdf((-LATENT_RANGE + 0.5) / s)
        p[0] = p[-1] = tail
        rows.append(_frequencies(p))
    return torch.stack(rows)


@torch.no_grad()
def density_table(prior: FactorizedDensity, channel: int) -> torch.Tensor:
    """(2 * HYPER_RANGE + 1,) frequencies of one channel of the factorized prior; the end entries
    hold the mass beyond them."""
    v = torch.arange(-HYPER_RANGE, HYPER_RANGE + 1, dtype=torch.float32)
    x = torch.stack([v - 0.5, v + 0.5])  # (2, K)
    c = prior.channels
    grid = torch.zeros(c, 1, 2 * x.shape[1])
    grid[channel, 0] = x.reshape(-1)
    cdf = torch.sigmoid(prior.logits_cdf(grid)[channel, 0].double()).reshape(2, -1)
    p = cdf[1] - cdf[0]
    p[0] = cdf[1, 0]  # everything up to -HYPER_RANGE + 1/2
    p[-1] = 1 - cdf[0, -1]  # everything from HYPER_RANGE - 1/2
    return _frequencies(p)


def encode_symbols(encoder, values, table_ids, tables, radius: int) -> None:
    """Append integer `values` (numpy int64, any shape) to a constriction range encoder, each with
    the integer frequency table tables[table_ids] (an int array of the values' shape, or an int for
    all). Values are grouped by table (in increasing table id, each group in array order), and
    those at or beyond +-radius are followed, after all groups, by how far beyond they are."""
    import numpy as np
    from constriction import stream

    Categorical, Uniform = stream.model.Categorical, stream.model.Uniform

    values = np.asarray(values, np.int64).reshape(-1)
    ids = np.broadcast_to(np.asarray(table_ids), values.shape if np.ndim(table_ids) == 0 else np.shape(table_ids)
                          ).reshape(-1)
    symbols = (np.clip(values, -radius, radius) + radius).astype(np.int32)
    tables = np.asarray(tables)
    for t in np.unique(ids):
        encoder.encode(symbols[ids == t], Categorical(tables[t].astype(np.float64), perfect=False))
    beyond = np.abs(values) >= radius
    if beyond.any():
        excess = np.minimum(np.abs(values[beyond]) - radius, OVERFLOW_LIMIT - 1).astype(np.int32)
        encoder.encode(excess, Uniform(OVERFLOW_LIMIT))


def decode_symbols(decoder, table_ids, tables, radius: int, shape) -> "np.ndarray":
    """The inverse of encode_symbols: int64 values of `shape`."""
    import numpy as np
    from constriction import stream

    Categorical, Uniform = stream.model.Categorical, stream.model.Uniform

    count = int(np.prod(shape))
    ids = np.broadcast_to(np.asarray(table_ids), (count,) if np.ndim(table_ids) == 0 else np.shape(table_ids)
                          ).reshape(-1)
    tables = np.asarray(tables)
    symbols = np.empty(count, np.int64)
    for t in np.unique(ids):
        where = np.flatnonzero(ids == t)
        symbols[where] = decoder.decode(Categorical(tables[t].astype(np.float64), perfect=False), where.size)
    values = symbols - radius
    beyond = np.abs(values) >= radius
    if beyond.any():
        excess = decoder.decode(Uniform(OVERFLOW_LIMIT), int(beyond.sum())).astype(np.int64)
        values[beyond] = np.sign(values[beyond]) * (radius + excess)
    return values.reshape(shape)


# ---------------------------------------------------------------------------------------------
# Binary codes of the recurrent codec (aetool/models/recurrent.py): each bit is coded with a fixed
# probability, stored as an integer in the model's weights file, chosen by its iteration, its code
# channel and a context taken from bits already decoded (the same bit of the previous iteration).

BIT_PROBABILITY_ONE = 1 << 16  # a bit table entry is P(bit = +1) in units of 1/65536
BIT_PROBABILITY_MIN = 1 << 6  # no bit costs more than 10 bits, whatever the statistics said


def bit_contexts(previous, current, contexts: int):
    """The context of every bit of an iteration whose bits are `current` (B, bits, h, w): ints in
    [0, contexts) of that shape. With 3 contexts, 0 in the first iteration (`previous` None) and
    1 + (the previous iteration's bit > 0) after it; with 1, always 0 (no context). Works on torch
    tensors and numpy arrays alike."""
    import numpy as np

    numpy = isinstance(current, np.ndarray)
    if contexts == 1 or previous is None:
        return np.zeros(current.shape, np.int64) if numpy else torch.zeros_like(current, dtype=torch.long)
    if contexts == 3:
        return 1 + (previous > 0).astype(np.int64) if numpy else 1 + (previous > 0).long()
    raise ValueError(f"{contexts} bit contexts: this aetool knows 1 and 3")


def bit_probability_table(counts: torch.Tensor) -> torch.Tensor:
    """Counts (..., 2) of zeros and ones as P(one) in 1/65536 (int32), with add-half smoothing,
    clamped so that neither value is ever impossible."""
    counts = counts.double()
    p = (counts[..., 1] + 0.5) / (counts.sum(-1) + 1.0)
    table = torch.round(p * BIT_PROBABILITY_ONE).clamp(BIT_PROBABILITY_MIN, BIT_PROBABILITY_ONE - BIT_PROBABILITY_MIN)
    return table.int()


def encode_bits(encoder, ones, contexts, table) -> None:
    """Append one iteration's bits to a constriction range encoder: `ones` (bits, h, w) of 0/1,
    `contexts` of the same shape, `table` (bits, contexts) of P(one) in 1/65536. Bits are grouped
    by (channel, context), each group in array order."""
    import numpy as np
    from constriction import stream

    ones = np.asarray(ones).reshape(ones.shape[0], -1).astype(np.int32)
    contexts = np.asarray(contexts).reshape(ones.shape[0], -1)
    table = np.asarray(table, np.int64)
    for c in range(ones.shape[0]):
        for t in np.unique(contexts[c]):
            p = int(table[c, t])
            model = stream.model.Categorical(np.array([BIT_PROBABILITY_ONE - p, p], np.float64), perfect=False)
            encoder.encode(ones[c][contexts[c] == t], model)


def decode_bits(decoder, contexts, table):
    """The inverse of encode_bits: (bits, h, w) of 0/1 (uint8) for `contexts` of that shape."""
    import numpy as np
    from constriction import stream

    shape = np.shape(contexts)
    contexts = np.asarray(contexts).reshape(shape[0], -1)
    table = np.asarray(table, np.int64)
    out = np.zeros(contexts.shape, np.uint8)
    for c in range(shape[0]):
        for t in np.unique(contexts[c]):
            where = np.flatnonzero(contexts[c] == t)
            p = int(table[c, t])
            model = stream.model.Categorical(np.array([BIT_PROBABILITY_ONE - p, p], np.float64), perfect=False)
            out[c, where] = decoder.decode(model, where.size)
    return out.reshape(shape)
