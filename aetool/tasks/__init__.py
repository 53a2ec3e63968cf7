"""One module per task, each holding everything about it: the runtime class that loads the models
and processes float arrays (the command line runs it for every file) and the Python API function.

    denoise.py   Denoiser, denoise()
    upscale.py   Upscaler, upscale()
    inpaint.py   Inpainter, hole_boxes(), inpaint()

and what the tasks share:

    convert.py   PIL image / numpy array / torch tensor to and from float arrays (_apply)
    cache.py     one runner per task and settings for the API functions (_cached)

`from aetool import denoise, upscale, inpaint` finds the functions here; `aetool.api` re-exports
the public names for code written before this layout. Importing these modules does not import
torch: it is imported when a model runs.
"""
