"""aetool: image restoration and compression with autoencoders.

    from aetool import denoise, upscale
    clean = denoise(pil_image)            # blind: the noise level is estimated
    clean = denoise(array, sigma=25)      # told the noise level (0-255 units)
    big = upscale(pil_image, scale=2)     # super-resolution x2, x3, x4 or any outscale
    fixed = inpaint(pil_image, mask=pil_mask)  # fill the mask's white pixels
    data = compress(pil_image, quality=4)  # the bytes of an .aei file (learned codec)
    image = decompress(data)              # a PIL image
    data = compress(pil_image, model="compress-progressive")  # progressive: any prefix decodes
    preview = decompress(data, iterations=4)  # or bpp=0.25, max_bytes=20_000
    small = truncate(data, bpp=0.5)       # a smaller valid file, same bits, no re-encoding
    det = AnomalyDetector.load("parts.safetensors")  # from `aetool train anomaly`
    r = det(pil_image)                    # r.score, r.label, r.map (the anomaly map)
    vectors = embed(paths, model="photo-embed")  # (N, latent) numpy array of autoencoder codes
    ae = Autoencoder.load("fashion-vae")  # ae.generate(16, seed=0), ae.interpolate(a, b), ae.reconstruct(ims)
    speed = run_bench(["denoise"], [1.0])  # this machine's speed per task, as `aetool bench` prints it

torch is imported only when a model runs, so `import aetool` and `aetool --help` stay fast.
"""
__version__ = "0.1.0"

__all__ = ["denoise", "upscale", "inpaint", "compress", "decompress", "truncate", "AnomalyDetector", "embed", "Autoencoder",
           "estimate_noise",
           "run_bench", "load_model", "__version__"]


def __getattr__(name):
    if name == "denoise":
        from .tasks.denoise import denoise

        return denoise
    if name == "inpaint":
        from .tasks.inpaint import inpaint

        return inpaint
    if name == "upscale":
        from .tasks.upscale import upscale

        return upscale
    if name in ("compress", "decompress"):
        from .tasks import compress as task

        return getattr(task, name)
    if name == "truncate":
        from .tasks.progressive import truncate_bytes

        return truncate_bytes
    if name in ("AnomalyDetector", "AnomalyResult"):
        from .tasks import anomaly as task

        return getattr(task, name)
    if name in ("embed", "Autoencoder"):
        from .tasks import autoencoder as task

        return getattr(task, name)
    if name == "estimate_noise":
        from .noise import estimate_noise

        return estimate_noise
    if name == "run_bench":
        from .bench import run_bench

        return run_bench
    if name == "load_model":
        from .registry import load_model

        return load_model
    raise AttributeError(f"module 'aetool' has no attribute '{name}'")
