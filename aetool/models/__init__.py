"""Model families, one per file. Importing this package registers them."""
from . import subpixel_sr, unet_denoiser  # noqa: F401
