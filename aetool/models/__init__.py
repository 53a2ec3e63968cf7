"""Model families, one per file. Importing this package registers them."""
from . import (conv_autoencoder, gated_unet_inpaint, hyperprior, repair_autoencoder, subpixel_sr,  # noqa: F401
               unet_denoiser)
