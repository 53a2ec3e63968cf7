"""Variational autoencoder: a Gaussian code with the reparameterisation trick and a KL term to a
standard normal prior, so that decoding draws from the prior makes new images like the training
ones, and the encoder's mean is a smooth embedding.

Papers:
- D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (the VAE).
- I. Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
  Framework", ICLR 2017 (the beta weight of the KL term).
- S. R. Bowman et al., "Generating Sentences from a Continuous Space", CoNLL 2016 (KL warm-up).
- T. Salimans, A. Karpathy, X. Chen, D. P. Kingma, "PixelCNN++", ICLR 2017 (the discretized
  logistic likelihood of 8-bit pixels).
- Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016 (the
  log-likelihood estimate by importance sampling).

The decoder gives, per pixel, the mean and log-scale of a logistic distribution discretised to
the 256 levels of an 8-bit image: the likelihood is a true probability of the file's pixel values,
so -log p(x) is in nats and comparable across models. The encoder and decoder are those of the
convolutional autoencoder with a vector code (layers.ConvToVector / VectorToConv).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvToVector, VectorToConv, image_size_pair
from ..registry import register

LOG_SCALE_MIN = -7.0  # a floor on the logistic's log-scale: sharper than a level apart adds nothing
LEVELS = 256


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) in nats, per pixel, of 8-bit values x (in [0, 1], multiples of 1/255) under a
    logistic of `mean` and exp(`log_scale`) integrated over each level's bin; the bins of 0 and
    255 take the tails."""
    half = 0.5 / (LEVELS - 1)
    inv_scale = torch.exp(-log_scale)
    plus, minus = (x + half - mean) * inv_scale, (x - half - mean) * inv_scale
    log_below = F.logsigmoid(plus)  # the bin of level 0 takes everything below it
    log_above = -F.softplus(minus)  # the bin of level 255 everything above
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = (x - mean) * inv_scale
    # Where the bin's mass is too small to subtract in floating point: the density at the centre.
    log_mid = mid - log_scale - 2 * F.softplus(mid) + math.log(2 * half)
    log_bin = torch.where(delta > 1e-5, torch.log(delta.clamp_min(1e-12)), log_mid)
    return torch.where(x < half, log_below, torch.where(x > 1 - half, log_above, log_bin))


class ConvVAE(nn.Module):
    arch_name = "conv_vae"
    kind = "vae"

    def __init__(self, in_channels: int = 1, image_size=28, latent: int = 16, channels: tuple[int, ...] = (32, 64)):
        super().__init__()
        size = image_size_pair(image_size)
        self.config = {"in_channels": in_channels, "image_size": list(size), "latent": latent,
                       "channels": list(channels)}
        self.in_channels, self.latent = in_channels, latent
        self.encoder = ConvToVector(in_channels, channels, size, 2 * latent)
        self.decoder = VectorToConv(latent, channels, size, 2 * in_channels)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's Gaussian q(z|x): mean and log-variance, (B, latent) each."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def likelihood(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(x|z): per-pixel mean in [0, 1] and log-scale (soft floor at LOG_SCALE_MIN)."""
        y = self.decoder(z)
        c = self.in_channels
        return torch.sigmoid(y[:, :c]), LOG_SCALE_MIN + F.softplus(y[:, c:] - LOG_SCALE_MIN)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding: the posterior mean."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The image of a code: the likelihood's mean (no pixel noise)."""
        return self.likelihood(z)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss_terms(self, x: torch.Tensor, eps: torch.Tensor, inputs: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image: the reconstruction's -log p(x|z) and KL(q(z|x) || N(0, I)), both in nats,
        with z = mu + sigma * eps (the reparameterisation; eps drawn by the caller, seeded).
        `inputs`: what the encoder sees when it is not x (a corrupted x, for a denoising VAE)."""
        mu, logvar = self.posterior(x if inputs is None else inputs)
        z = mu + torch.exp(0.5 * logvar) * eps
        mean, log_scale = self.likelihood(z)
        nll = -discretized_logistic_log_prob(x.float(), mean.float(), log_scale.float()).flatten(1).sum(1)
        kl = 0.5 * (mu.float() ** 2 + logvar.float().exp() - 1 - logvar.float()).sum(1)
        return nll, kl

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, samples: int = 100, generator: torch.Generator | None = None,
                       chunk: int = 50) -> torch.Tensor:
        """log p(x) in nats per image, estimated by importance sampling with q(z|x) as the proposal
        (`samples` draws; the estimate is a lower bound that tightens as they grow)."""
        mu, logvar = self.posterior(x)
        std = torch.exp(0.5 * logvar)
        terms = []
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device)
            z = mu + std * eps  # (k, B, latent)
            mean, log_scale = self.likelihood(z.flatten(0, 1))
            xs = x.unsqueeze(0).expand(k, *x.shape).flatten(0, 1)
            log_px = discretized_logistic_log_prob(xs, mean, log_scale).flatten(1).sum(1).view(k, -1)
            log_pz = (-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_qz = (-0.5 * eps ** 2 - 0.5 * math.log(2 * math.pi) - 0.5 * logvar).sum(-1)
            terms.append(log_px + log_pz - log_qz)
        return torch.logsumexp(torch.cat(terms), dim=0) - math.log(samples)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """n new images: codes drawn from N(0, temperature^2 I), decoded to their mean."""
        device = next(self.parameters()).device
        z = torch.randn((n, self.latent), generator=generator).to(device) * temperature
        return self.decode(z)


@register("conv_vae")
def conv_vae(**config) -> ConvVAE:
    return ConvVAE(**config)
