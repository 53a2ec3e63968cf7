"""Model families, one per file. Importing this package registers them."""
from . import (conv_autoencoder, dense_autoencoder, gated_unet_inpaint, hyperprior, recurrent,  # noqa: F401
               repair_autoencoder, subpixel_sr, unet_denoiser, vae, vector_conv_autoencoder)
