"""Variational autoencoder with a scale hyperprior for learned image compression, one model for
every rate through gain units.

Papers:
- J. Ballé, V. Laparra, E. P. Simoncelli, "End-to-end Optimized Image Compression", ICLR 2017:
  analysis and synthesis transforms of strided convolutions with GDN / inverse GDN, uniform noise
  in place of quantisation while training, rate + lambda * distortion as the loss (the ELBO of a
  VAE with a fixed-variance decoder).
- J. Ballé, D. Minnen, S. Singh, S. J. Hwang, N. Johnston, "Variational image compression with a
  scale hyperprior", ICLR 2018: a second, smaller autoencoder codes the scales of the latent's
  zero-mean Gaussian prior as side information (its own prior: a factorized learned density).
- Z. Cui, J. Wang, S. Gao, T. Guo, Y. Feng, B. Bai, "Asymmetric Gained Deep Image Compression With
  Continuous Rate Adaptation", CVPR 2021: per-channel gain vectors (and their inverses) for a set
  of rate points learned jointly, and exponential interpolation between neighbours for any rate in
  between, so one trained model serves a continuous quality scale.

No serial autoregressive context: every latent's probability comes from the decoded hyper-latent
alone, so decoding is a few convolutions, not a pixel-by-pixel loop.

The network reads (B, C, H, W) in [0, 1]; H and W must be multiples of `multiple` (64): the
caller pads.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..entropy import (HYPER_RANGE, LATENT_RANGE, SCALE_LEVELS, FactorizedDensity, density_table, gaussian_likelihood,
                       gaussian_tables, scale_table)
from ..layers import GDN, conv3x3, conv_down, conv_up
from ..registry import register

# Fixed-point scale of the integer hyper-synthesis: activations and weights carry 12 fractional bits.
FIXED_BITS = 12
ACTIVATION_MAX = 2 ** 24 - 1  # saturation bounds that keep the integer hyper-synthesis exact in float64
WEIGHT_MAX = 2 ** 16 - 1

# The rate-distortion trade-off of each quality level 1..8: loss = rate (bpp) + lambda * 255^2 * MSE.
# The same geometric ladder (about x1.9 per level) as CompressAI's MSE-trained model zoo.
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)


class ScaleHyperprior(nn.Module):
    arch_name = "scale_hyperprior"
    multiple = 64  # 4 stride-2 stages in the analysis, 2 more in the hyper-analysis

    def __init__(self, in_channels: int = 3, n: int = 64, m: int = 96, levels: int = len(LAMBDAS)):
        super().__init__()
        if n > 163:
            raise ValueError("n above 163 would break the exactness bound of the integer hyper-synthesis")
        self.config = {"in_channels": in_channels, "n": n, "m": m, "levels": levels}
        self.in_channels, self.n, self.m, self.levels = in_channels, n, m, levels
        self.analysis = nn.Sequential(conv_down(in_channels, n), GDN(n), conv_down(n, n), GDN(n),
                                      conv_down(n, n), GDN(n), conv_down(n, m))
        self.synthesis = nn.Sequential(conv_up(m, n), GDN(n, inverse=True), conv_up(n, n), GDN(n, inverse=True),
                                       conv_up(n, n), GDN(n, inverse=True), conv_up(n, in_channels))
        self.hyper_analysis = nn.Sequential(conv3x3(m, n), nn.ReLU(inplace=True), conv_down(n, n),
                                            nn.ReLU(inplace=True), conv_down(n, n))
        self.hyper_synthesis = nn.Sequential(conv_up(n, n), nn.ReLU(inplace=True), conv_up(n, n),
                                             nn.ReLU(inplace=True), conv3x3(n, m), nn.ReLU(inplace=True))
        self.hyper_prior = FactorizedDensity(n)
        # Gain units in the log domain (a gain is exp of it, always positive): latent and hyper-latent
        # gains and their inverses, one row per quality level; higher quality, larger gain.
        ramp = torch.linspace(-1.0, 1.0, levels)[:, None]
        self.log_gain = nn.Parameter(ramp.repeat(1, m).clone())
        self.log_inverse_gain = nn.Parameter(-ramp.repeat(1, m).clone())
        self.log_hyper_gain = nn.Parameter(torch.zeros(levels, n))
        self.log_hyper_inverse_gain = nn.Parameter(torch.zeros(levels, n))
        self.register_buffer("lambdas", torch.tensor(LAMBDAS[:levels] if levels <= len(LAMBDAS) else
                                                     torch.logspace(math.log10(LAMBDAS[0]), math.log10(LAMBDAS[-1]),
                                                                    levels).tolist()))
        # The coding tables, integers stored in the weights file so that every machine codes with
        # exactly the same probabilities (update_tables fills them when a model is exported):
        # the hyper-latent's frequencies per channel, the latent's per entry of the scale table, the
        # hyper-synthesis in fixed point, and the thresholds that map its output to a table entry.
        self.register_buffer("hyper_table", torch.zeros(n, 2 * HYPER_RANGE + 1, dtype=torch.int32))
        self.register_buffer("latent_table", torch.zeros(SCALE_LEVELS, 2 * LATENT_RANGE + 1, dtype=torch.int32))
        self.register_buffer("scale_thresholds", torch.zeros(SCALE_LEVELS - 1, dtype=torch.int64))
        for k, layer in enumerate(self._hyper_synthesis_layers()):
            self.register_buffer(f"hs_weight_{k}", torch.zeros(layer.weight.shape, dtype=torch.int32))
            self.register_buffer(f"hs_bias_{k}", torch.zeros(layer.bias.shape, dtype=torch.int64))
        self.tables_ready = False

    def _hyper_synthesis_layers(self) -> list[nn.Module]:
        return [layer for layer in self.hyper_synthesis if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # A file without tables (an older trainer's) still loads; tables_ready says whether it has them.
        tables = [n for n, _ in self.named_buffers(recurse=False) if n != "lambdas"]
        self.tables_ready = all(prefix + n in state_dict for n in tables)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        for n in tables:
            if prefix + n in missing_keys:
                missing_keys.remove(prefix + n)

    @torch.no_grad()
    def update_tables(self) -> None:
        """Compute the integer coding tables from the float parameters (once, when the model is
        exported; never at decode time, where a libm's last bit could differ between machines)."""
        self.hyper_table.copy_(torch.stack([density_table(self.hyper_prior, c) for c in range(self.n)]))
        self.latent_table.copy_(gaussian_tables())
        scales = scale_table().double()
        middles = torch.sqrt(scales[:-1] * scales[1:])  # geometric midpoints between table scales
        self.scale_thresholds.copy_(torch.ceil(middles * 2 ** FIXED_BITS).long())
        for k, layer in enumerate(self._hyper_synthesis_layers()):
            weight = torch.round(layer.weight.double() * 2 ** FIXED_BITS).clamp(-WEIGHT_MAX, WEIGHT_MAX)
            getattr(self, f"hs_weight_{k}").copy_(weight.int())
            # A bias adds to an accumulator with 2 * FIXED_BITS fractional bits.
            getattr(self, f"hs_bias_{k}").copy_(torch.round(layer.bias.double() * 2 ** (2 * FIXED_BITS)).long())
        self.tables_ready = True

    def scale_indices(self, z: torch.Tensor, hyper_inverse_gain: torch.Tensor) -> torch.Tensor:
        """The latent's table entry per element, from the decoded hyper-latent z (B, N, h, w) of
        integers and the hyper inverse gain as integers with FIXED_BITS fractional bits (N,): the
        hyper-synthesis in exact integer arithmetic, held in float64, so that encoder and decoder
        agree on every machine. Exact because every partial sum stays below 2^53: activations are
        saturated below 2^24, weights below 2^16 (update_tables), and no output sums more than
        2^12 products (fan-in 25 x N for N <= 163)."""
        a = (z.double().cpu() * hyper_inverse_gain.double().cpu().view(1, -1, 1, 1)).clamp(-ACTIVATION_MAX, ACTIVATION_MAX)
        layers = self._hyper_synthesis_layers()
        for k, layer in enumerate(layers):
            w = getattr(self, f"hs_weight_{k}").cpu().double()
            b = getattr(self, f"hs_bias_{k}").cpu().double()
            if isinstance(layer, nn.ConvTranspose2d):
                acc = torch.nn.functional.conv_transpose2d(a, w, b, stride=layer.stride, padding=layer.padding,
                                                           output_padding=layer.output_padding)
            else:
                acc = torch.nn.functional.conv2d(a, w, b, padding=layer.padding)
            # Back to FIXED_BITS fractional bits (a power-of-two division and floor: exact), ReLU,
            # and a saturation bound that keeps the next layer's partial sums exact.
            a = torch.floor(acc / 2 ** FIXED_BITS).clamp(0, ACTIVATION_MAX)
        return torch.bucketize(a.long().contiguous(), self.scale_thresholds.cpu(), right=True)

    def gains(self, quality: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The four gain vectors at a continuous quality in [1, levels] (one per sample, (B,)):
        exponential interpolation between the two neighbouring levels, i.e. linear in the log domain."""
        q = (quality.float() - 1).clamp(0, self.levels - 1)
        low = q.floor().long().clamp(max=self.levels - 2) if self.levels > 1 else q.long()
        t = (q - low.float())[:, None]
        high = (low + 1).clamp(max=self.levels - 1)

        def mix(table: torch.Tensor) -> torch.Tensor:
            return torch.exp((1 - t) * table[low] + t * table[high])[:, :, None, None]

        return (mix(self.log_gain), mix(self.log_inverse_gain), mix(self.log_hyper_gain),
                mix(self.log_hyper_inverse_gain))

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict:
        """Training pass: x (B, C, H, W) in [0, 1], quality (B,) in [1, levels]. Uniform noise stands
        in for rounding in the rate terms; the synthesis sees the rounded latent (straight-through),
        as the decoder will."""
        gain, inverse_gain, hyper_gain, hyper_inverse_gain = self.gains(quality)
        y = self.analysis(x).float() * gain
        z = self.hyper_analysis(y.abs()).float() * hyper_gain
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        z_likelihood = self.hyper_prior.likelihood(z_noisy)
        scales = self.hyper_synthesis(z_noisy * hyper_inverse_gain).float()
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        y_likelihood = gaussian_likelihood(y_noisy, scales)
        y_hat = y + (torch.round(y) - y).detach()
        x_hat = self.synthesis(y_hat * inverse_gain)
        return {"x_hat": x_hat, "y_likelihood": y_likelihood, "z_likelihood": z_likelihood}

    @torch.no_grad()
    def estimate(self, x: torch.Tensor, quality: float) -> tuple[torch.Tensor, float]:
        """What coding at `quality` would give, from the model's own probabilities (the real file
        adds a header and the coder's few bytes of overhead): (reconstruction, bits)."""
        q = torch.full((x.shape[0],), float(quality), device=x.device)
        gain, inverse_gain, hyper_gain, hyper_inverse_gain = self.gains(q)
        y = torch.round(self.analysis(x).float() * gain)
        z = torch.round(self.hyper_analysis(y.abs()).float() * hyper_gain)
        scales = self.hyper_synthesis(z * hyper_inverse_gain).float()
        bits = (-torch.log2(self.hyper_prior.likelihood(z)).sum()
                - torch.log2(gaussian_likelihood(y, scales)).sum())
        return self.synthesis(y * inverse_gain).float().clamp(0, 1), float(bits)


@register("scale_hyperprior")
def scale_hyperprior(**config) -> ScaleHyperprior:
    return ScaleHyperprior(**config)
