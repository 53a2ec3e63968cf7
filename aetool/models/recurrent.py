"""Recurrent autoencoder for progressive image compression: the image is coded as a sequence of
refinements, each a fixed number of bits, and any prefix of them decodes to a complete image.

Paper: G. Toderici, D. Vincent, N. Johnston, S. J. Hwang, D. Minnen, J. Shor, M. Covell, "Full
Resolution Image Compression with Recurrent Neural Networks", CVPR 2017 (and its predecessor,
"Variable Rate Image Compression with Recurrent Neural Networks", ICLR 2016): a convolutional
recurrent encoder (a strided convolution, then strided ConvGRU cells) reads the residual of the
reconstruction so far, a binariser turns its output into +-1 bits (stochastic while training,
the sign at inference), and a convolutional recurrent decoder (ConvGRU cells and depth-to-space
upsampling) turns each iteration's bits into a correction that is added to the reconstruction.
Their GRU models with additive or scaled-additive reconstruction are what this follows, smaller
(for CPU training) and with one learned gain per iteration (the "scaled-additive" variant with a
fixed per-iteration scale in place of their content-dependent one): the encoder sees the residual
times the gain, the decoder's output is divided by it, so each iteration works on residuals of
about the same magnitude.

With stride 16 and `bits` code channels, each iteration costs bits / 256 bits per pixel before
entropy coding (32 bits: 1/8 bpp). Entropy coding is apart (aetool/entropy.py, BitContextTable):
the model only keeps the integer probability tables in its weights file.

The network reads (B, C, H, W) in [0, 1]; H and W must be multiples of `multiple` (16).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvGRUCell
from ..registry import register


class RecurrentCodec(nn.Module):
    arch_name = "recurrent_codec"
    multiple = 16  # four stride-2 stages

    def __init__(self, in_channels: int = 3, bits: int = 32, iterations: int = 16,
                 encoder: tuple[int, ...] = (32, 64, 128, 128), decoder: tuple[int, ...] = (128, 128, 64, 32),
                 contexts: int = 3):
        super().__init__()
        self.config = {"in_channels": in_channels, "bits": bits, "iterations": iterations,
                       "encoder": list(encoder), "decoder": list(decoder), "contexts": contexts}
        self.in_channels, self.bits, self.iterations, self.contexts = in_channels, bits, iterations, contexts
        e0, e1, e2, e3 = encoder
        d0, d1, d2, d3 = decoder
        self.encoder_in = nn.Conv2d(in_channels, e0, 3, stride=2, padding=1)
        self.encoder_cells = nn.ModuleList([ConvGRUCell(e0, e1, stride=2), ConvGRUCell(e1, e2, stride=2),
                                            ConvGRUCell(e2, e3, stride=2)])
        self.binarizer = nn.Conv2d(e3, bits, 1)
        self.decoder_in = nn.Conv2d(bits, d0, 1)
        # Each decoder cell works at one scale; depth-to-space (x2) after it halves the channels
        # by four on the way to the next, as in the paper.
        self.decoder_cells = nn.ModuleList([ConvGRUCell(d0, d0, hidden_kernel=1),
                                            ConvGRUCell(d0 // 4, d1, hidden_kernel=1),
                                            ConvGRUCell(d1 // 4, d2, hidden_kernel=3),
                                            ConvGRUCell(d2 // 4, d3, hidden_kernel=3)])
        self.decoder_out = nn.Conv2d(d3 // 4, in_channels, 3, padding=1)
        # log of the per-iteration gain (residuals shrink as iterations go: start at x1.25 each)
        self.log_gain = nn.Parameter(torch.arange(iterations, dtype=torch.float32) * 0.22)
        # The entropy coder's tables: P(bit = +1) in 1/65536 per iteration, code channel and context
        # (aetool/entropy.py), integers so that every machine codes with the same probabilities;
        # bit_counts gathers the statistics they are made from (update_tables).
        self.register_buffer("bit_table", torch.full((iterations, bits, contexts), 32768, dtype=torch.int32))
        self.register_buffer("bit_counts", torch.zeros(iterations, bits, contexts, 2, dtype=torch.int64))
        self.tables_ready = True

    # ------------------------------------------------------------------ one iteration each
    def initial_states(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Zero encoder and decoder states for images x (B, C, H, W)."""
        b, _, h, w = x.shape
        enc, size = [], (h // 2, w // 2)
        for cell in self.encoder_cells:
            size = (size[0] // 2, size[1] // 2)
            enc.append(x.new_zeros(b, cell.hidden, *size))
        dec = []
        for k, cell in enumerate(self.decoder_cells):
            dec.append(x.new_zeros(b, cell.hidden, h // 16 * 2 ** k, w // 16 * 2 ** k))
        return enc, dec

    def gain(self, k: int) -> torch.Tensor:
        return torch.exp(self.log_gain[k])

    def encode_step(self, residual: torch.Tensor, states: list[torch.Tensor], k: int, stochastic: bool = False
                    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Iteration k's bits (B, bits, H/16, W/16) of +-1 from the residual so far."""
        t = F.leaky_relu(self.encoder_in(residual * self.gain(k)), 0.2)
        new = []
        for cell, state in zip(self.encoder_cells, states):
            t = cell(t, state)
            new.append(t)
        code = torch.tanh(self.binarizer(t).float())
        if stochastic:
            # +1 with probability (1 + code) / 2: unbiased, and the gradient passes straight through
            sample = torch.where(torch.rand_like(code) < (1 + code) / 2, 1.0, -1.0)
            return code + (sample - code).detach(), new
        return torch.where(code >= 0, 1.0, -1.0), new

    def decode_step(self, bits: torch.Tensor, states: list[torch.Tensor], k: int
                    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Iteration k's correction to the reconstruction, from its bits."""
        t = self.decoder_in(bits.to(self.decoder_in.weight.dtype))
        new = []
        for cell, state in zip(self.decoder_cells, states):
            t = cell(t, state)
            new.append(t)
            t = F.pixel_shuffle(t, 2)
        return self.decoder_out(t).float() / self.gain(k), new

    # ------------------------------------------------------------------ training
    def forward(self, x: torch.Tensor, iterations: int | None = None) -> torch.Tensor:
        """Training pass: x (B, C, H, W) in [0, 1]; returns the mean squared error of the
        reconstruction after each iteration, (iterations, B)."""
        iterations = iterations or self.iterations
        enc, dec = self.initial_states(x)
        x = x.float()
        reconstruction = torch.full_like(x, 0.5)
        errors = []
        for k in range(iterations):
            bits, enc = self.encode_step(x - reconstruction, enc, k, stochastic=True)
            correction, dec = self.decode_step(bits, dec, k)
            reconstruction = reconstruction + correction
            errors.append((reconstruction - x).square().flatten(1).mean(1))
        return torch.stack(errors)

    @torch.no_grad()
    def code(self, x: torch.Tensor, iterations: int | None = None, decode: bool = True
             ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Inference: the bits of every iteration (each (B, bits, H/16, W/16) of +-1) and, with
        `decode`, the clamped reconstruction after each."""
        iterations = iterations or self.iterations
        enc, dec = self.initial_states(x)
        x = x.float()
        reconstruction = torch.full_like(x, 0.5)
        codes, images = [], []
        for k in range(iterations):
            bits, enc = self.encode_step(x - reconstruction, enc, k)
            correction, dec = self.decode_step(bits, dec, k)
            reconstruction = reconstruction + correction
            codes.append(bits)
            if decode:
                images.append(reconstruction.clamp(0, 1))
        return codes, images

    @torch.no_grad()
    def reconstruct(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """The image (B, C, H, W) in [0, 1] decoded from the first len(codes) iterations' bits."""
        for image in self.reconstructions(codes):
            pass
        return image

    @torch.no_grad()
    def reconstructions(self, codes: list[torch.Tensor]):
        """The image (B, C, H, W) in [0, 1] after each iteration in turn (a generator): every
        prefix's picture in one pass of the decoder."""
        b, _, h, w = codes[0].shape
        probe = codes[0].new_zeros(b, self.in_channels, h * 16, w * 16)
        _, dec = self.initial_states(probe)
        reconstruction = torch.full_like(probe, 0.5)
        for k, bits in enumerate(codes):
            correction, dec = self.decode_step(bits.float(), dec, k)
            reconstruction = reconstruction + correction
            yield reconstruction.clamp(0, 1)

    # ------------------------------------------------------------------ coding tables
    @torch.no_grad()
    def count_bits(self, codes: list[torch.Tensor]) -> None:
        """Add one image's codes to the statistics the coding tables are made from."""
        from ..entropy import bit_contexts

        for k, bits in enumerate(codes):
            ctx = bit_contexts(codes[k - 1] if k else None, bits, self.contexts)  # (B, bits, h, w)
            ones = (bits > 0).long()
            for c in range(self.contexts):
                where = ctx == c
                n1 = (ones * where).sum(dim=(0, 2, 3))
                n = where.sum(dim=(0, 2, 3))
                self.bit_counts[k, :, c, 1] += n1.to(self.bit_counts.device)
                self.bit_counts[k, :, c, 0] += (n - n1).to(self.bit_counts.device)

    @torch.no_grad()
    def update_tables(self) -> None:
        """The integer tables from the gathered counts (nothing to do where none were gathered)."""
        from ..entropy import bit_probability_table

        if int(self.bit_counts.sum()) > 0:
            self.bit_table.copy_(bit_probability_table(self.bit_counts))


@register("recurrent_codec")
def recurrent_codec(**config) -> RecurrentCodec:
    return RecurrentCodec(**config)
