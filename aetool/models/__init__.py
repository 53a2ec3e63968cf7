"""Model families, one per file. Importing this package registers them."""
from . import (conv_autoencoder, dense_autoencoder, gated_unet_inpaint, hyperprior, repair_autoencoder,  # noqa: F401
               subpixel_sr, unet_denoiser, vae, vector_conv_autoencoder)
