"""Model families, one per file. Importing this package registers them."""
from . import unet_denoiser  # noqa: F401
