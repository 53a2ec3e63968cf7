"""Model families, one per file. Importing this package registers them."""
from . import gated_unet_inpaint, hyperprior, subpixel_sr, unet_denoiser  # noqa: F401
