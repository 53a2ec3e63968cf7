"""How fast this machine runs each task, and what the folder pipeline adds: `aetool bench`.

For each task and image size it times, on generated photo-like images (deterministic, seed 0):

- decode: reading one input file of that size (`read_image` of a PNG or JPEG; for decompress,
  parsing an .aei file);
- model: the task's processing of an already-decoded image (the shipped default model; denoise at a
  given sigma, so that the noise estimate of a blind run is its own column, `estimate`);
- encode: `encode_image` of the task's output to the format (none for compress: its output is the
  .aei bytes);
- end-to-end: a folder of FOLDER_IMAGES such files through the engine the command line uses
  (collect, plan, preflight, `batch.run_jobs`: decode-ahead threads, the model on the calling
  thread, encode and write threads; outputs written to a temporary folder), wall time per image;
- overhead: end-to-end / model - 1, what reading, decoding, encoding and writing add when they
  overlap with the model (0 % would be perfect overlap): the median over `repeat` pairs of a run of
  the model alone and the folder run right after it (each folder run against its own reference,
  since the machine's speed drifts).

The model is loaded and run once on a small image before any timing (`load_s`); each time is the
median of `repeat` runs (all runs are in the JSON, to show how noisy they are).

    from aetool.bench import run_bench
    result = run_bench(["denoise"], [1.0], device="cpu")
    result["machine"], result["rows"][0]["overhead"]
"""
from __future__ import annotations

import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import FatalError, UsageError

TASKS = ("denoise", "upscale", "inpaint", "compress", "decompress")
SIZES = (1.0, 6.0, 24.0)  # megapixels: a phone thumbnail's worth, a small camera, a 24 MP camera
FORMATS = ("png", "jpg")
FOLDER_IMAGES = 3  # files in the end-to-end folder: the first decode and last encode cannot overlap
DENOISE_SIGMA = 15.0  # the sigma denoise is told (0-255), so the blind estimate is timed apart
UPSCALE_SCALE = 2  # upscale's size is its output: a 24 MP row enlarges 6 MP x2 (as large_photo.py)
MAX_SIZE = 100.0  # megapixels: larger runs belong in benchmarks/, not a speed check
ASPECT = 1.5  # 3:2, a camera's


# ---------------------------------------------------------------------------- arguments
def parse_tasks(text: str | list[str] | None) -> list[str]:
    """Task names from "denoise,upscale" (or a list); all of TASKS for None or "all"."""
    if text is None or text == "all":
        return list(TASKS)
    names = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    names = [t for t in names if t]
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        raise UsageError(f"--tasks takes a comma-separated list of {', '.join(TASKS)} (or all)"
                         + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return list(dict.fromkeys(names))


def parse_sizes(text: str | list[float] | None) -> list[float]:
    """Megapixels from "1,6,24" (or a list); SIZES for None."""
    if text is None:
        return list(SIZES)
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    sizes = []
    for p in parts:
        if p == "":
            continue
        try:
            mp = float(p)
        except (TypeError, ValueError):
            raise UsageError(f"--sizes takes megapixels separated by commas (1,6,24), got '{p}'") from None
        if not 0.001 <= mp <= MAX_SIZE or not math.isfinite(mp):
            raise UsageError(f"each of --sizes must be between 0.001 and {MAX_SIZE:g} megapixels, got {p}")
        sizes.append(mp)
    if not sizes:
        raise UsageError("--sizes takes megapixels separated by commas (1,6,24)")
    return sizes


def image_shape(megapixels: float) -> tuple[int, int]:
    """(height, width) of a 3:2 image of about `megapixels`, sides a multiple of 8 (24 -> 4000x6000)."""
    w = max(16, 8 * round(math.sqrt(megapixels * 1e6 * ASPECT) / 8))
    h = max(16, 8 * round(w / ASPECT / 8))
    return h, w


def default_repeat(megapixels: float) -> int:
    """Runs per timing when --repeat is not given: 3 up to 2 MP, 2 up to 8 MP, 1 above (a 24 MP
    denoise is minutes on a small CPU)."""
    return 3 if megapixels <= 2 else 2 if megapixels <= 8 else 1


# ---------------------------------------------------------------------------- generated images
def synthetic_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An (H, W, 3) float32 image in [0, 1] that codecs treat like a photo (not like random noise,
    which makes PNG and JPEG far slower and larger): a smooth sky-like gradient, shapes with hard
    and soft edges, texture at two scales, and sensor-like noise (sigma about 2/255). The same seed
    gives the same pixels."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    xx = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :, None]
    top, bottom = rng.uniform(0.3, 0.9, 3).astype(np.float32), rng.uniform(0.1, 0.5, 3).astype(np.float32)
    img = top + (bottom - top) * yy + 0.15 * xx * rng.uniform(-1, 1, 3).astype(np.float32)

    # Shapes: drawn at full size, a third of them blurred (out of focus).
    shapes = Image.new("RGB", (width, height))
    cover = Image.new("L", (width, height))
    unit = min(height, width)
    for i in range(24):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(-0.1, 1.0) * width, rng.uniform(-0.1, 1.0) * height
        x1, y1 = x0 + rng.uniform(0.05, 0.4) * unit, y0 + rng.uniform(0.05, 0.4) * unit
        box = (x0, y0, x1, y1)
        draw_shape = ImageDraw.Draw(shapes).ellipse if i % 3 else ImageDraw.Draw(shapes).rectangle
        draw_cover = ImageDraw.Draw(cover).ellipse if i % 3 else ImageDraw.Draw(cover).rectangle
        draw_shape(box, fill=colour)
        draw_cover(box, fill=255)
    cover = cover.filter(ImageFilter.BoxBlur(max(1, unit // 400)))
    alpha = np.asarray(cover, np.float32)[..., None] / 255.0
    img = img * (1.0 - alpha) + np.asarray(shapes, np.float32) / 255.0 * alpha

    # Texture: smooth random fields at 1/64 and 1/6 of the size, enlarged bicubically.
    for step, amount in ((64, 0.10), (6, 0.05)):
        small = rng.standard_normal((height // step + 2, width // step + 2)).astype(np.float32)
        field = np.asarray(Image.fromarray(small, "F").resize((width, height), Image.BICUBIC), np.float32)
        img += amount * field[..., None]
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(2.0 / 255.0)
    return np.clip(img, 0.0, 1.0, out=img)


def defect_mask(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Inpaint's holes (True): dust spots and short scratches, a few pixels wide (so that the
    default --fill auto gives them the network's fill), about two per megapixel and at least three."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed + 1)
    im = Image.new("L", (width, height))
    draw = ImageDraw.Draw(im)
    for i in range(max(3, round(2 * height * width / 1e6))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        if i % 2:
            r = rng.uniform(3, 8)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        else:
            length, angle = rng.uniform(40, 200), rng.uniform(0, 2 * math.pi)
            draw.line((x, y, x + length * math.cos(angle), y + length * math.sin(angle)), fill=255,
                      width=int(rng.integers(2, 6)))
    return np.asarray(im) > 0


# ---------------------------------------------------------------------------- the tasks
class BenchTask:
    """One task as the bench runs it: its input file, how it is read, the model step (what the
    command line's processor does per file) and how its output is written. The model loads on
    the first call of `processor`."""

    name = ""
    output_suffix: str | None = None  # None: the --format's
    input_extensions: set[str] | None = None  # None: images
    output_extensions: set[str] | None = None

    def __init__(self, options, fmt: str):
        from .imageio import FORMAT_EXTENSIONS

        self.options, self.fmt = options, fmt
        self.image_suffix = FORMAT_EXTENSIONS[fmt]
        self._processor = None

    def input_megapixels(self, size: float) -> float:
        return size

    def make_input(self, pixels: np.ndarray) -> tuple[bytes, str]:
        """The bytes and suffix of an input file holding `pixels`."""
        from .imageio import Picture, encode_image

        return encode_image(Picture(pixels), self.image_suffix), self.image_suffix

    integer = False  # decoded as the command decodes: integers for upscale and denoise

    def read(self, source, max_pixels, output_size=None):
        from .imageio import read_image

        return read_image(source, max_pixels, output_size, integer=self.integer)

    def probe(self, path, max_pixels, output_size=None, verify=False):
        from .imageio import probe_image

        return probe_image(path, max_pixels, output_size, verify=verify, integer=self.integer)

    output_size = None  # (h, w) -> (h, w) for the preflight's limits, as the command gives it
    scale = 1  # output pixels per input pixel along each side

    def make_processor(self) -> Callable:
        raise NotImplementedError

    @property
    def processor(self) -> Callable:
        if self._processor is None:
            self._processor = self.make_processor()
        return self._processor

    def encode(self, out) -> bytes | None:
        from .imageio import encode_image

        return None if isinstance(out, bytes) else encode_image(out, self.output_suffix or self.image_suffix)

    def runner_facts(self, h: int, w: int) -> dict:
        """The precision, tile and batch size the engine chooses for an (h, w) input."""
        from .engine import Runner

        runner = Runner(self.options)
        tile = self.options.tile
        if tile is None:
            try:  # an enlarging task's tile depends on its scale in newer engines
                tile = runner.default_tile(h, w, scale=self.scale)
            except TypeError:
                tile = runner.default_tile(h, w)
        return {"precision": _dtype_name(runner.amp_dtype), "tile": tile,
                "batch_size": self.options.batch_size or runner.default_batch()}

    def extra_timings(self, pic) -> dict:
        return {}


def _dtype_name(dtype) -> str:
    """torch.bfloat16 -> "bf16"; None (no autocast) -> "fp32"."""
    return "fp32" if dtype is None else {"bfloat16": "bf16", "float16": "fp16"}.get(str(dtype)[6:], str(dtype))


class DenoiseTask(BenchTask):
    name = "denoise"
    integer = True

    def make_processor(self):
        from .tasks.denoise import Denoiser

        den = Denoiser(None, self.options)
        return lambda pic, item: den.picture(pic, DENOISE_SIGMA)

    def extra_timings(self, pic) -> dict:
        from .noise import estimate_noise

        from .imageio import as_float

        return {"estimate_s": lambda: estimate_noise(as_float(pic.pixels), data_range=1.0)}


class UpscaleTask(BenchTask):
    name = "upscale"
    scale = UPSCALE_SCALE
    integer = True

    def input_megapixels(self, size: float) -> float:
        return size / UPSCALE_SCALE ** 2

    @staticmethod
    def output_size(h: int, w: int) -> tuple[int, int]:
        return h * UPSCALE_SCALE, w * UPSCALE_SCALE

    def make_processor(self):
        from .tasks.upscale import Upscaler

        up = Upscaler(None, self.options)
        return lambda pic, item: up.picture(pic, UPSCALE_SCALE)


class InpaintTask(BenchTask):
    name = "inpaint"

    def __init__(self, options, fmt):
        super().__init__(options, fmt)
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    def mask(self, h: int, w: int) -> np.ndarray:
        if (h, w) not in self._masks:
            self._masks[(h, w)] = defect_mask(h, w)
        return self._masks[(h, w)]

    def make_processor(self):
        from .tasks.inpaint import Inpainter

        inp = Inpainter(None, self.options)
        # The mask is made before timing (as the command reads it once for --mask FILE).
        return lambda pic, item: inp.picture(pic, self.mask(pic.height, pic.width))


class CompressTask(BenchTask):
    name = "compress"
    output_extensions = {".aei"}

    @property
    def output_suffix(self):
        from .container import EXTENSION

        return EXTENSION

    def make_processor(self):
        from .tasks.compress import make_codec

        codec = make_codec(None, self.options)
        return lambda pic, item: codec.picture(pic)

    def runner_facts(self, h, w):
        from .tasks.compress import ANALYSIS_MARGIN, TILE_PIXELS

        # Codec._tiled: whole up to the tile plus its two margins
        whole = max(h, w) <= TILE_PIXELS + 2 * ANALYSIS_MARGIN
        return {"precision": "fp32", "tile": 0 if whole else TILE_PIXELS, "batch_size": 1}


class DecompressTask(BenchTask):
    name = "decompress"

    def __init__(self, options, fmt):
        super().__init__(options, fmt)
        from .container import EXTENSION

        self.input_extensions = {EXTENSION}
        self._codec = None

    def make_input(self, pixels):
        from .container import EXTENSION
        from .imageio import Picture
        from .tasks.compress import make_codec

        if self._codec is None:
            self._codec = make_codec(None, self.options)
        data, _ = self._codec.picture(Picture(pixels))
        return data, EXTENSION

    def read(self, source, max_pixels, output_size=None):
        from .tasks.compress import read_encoded

        return read_encoded(source, max_pixels, output_size)

    def probe(self, path, max_pixels, output_size=None, verify=False):
        from .tasks.compress import probe_encoded

        return probe_encoded(path, max_pixels, output_size, verify)

    def make_processor(self):
        from .tasks.compress import Decoders

        decoders = Decoders(None, self.options)
        return lambda e, item: decoders.picture(e, self.options.max_pixels)

    runner_facts = CompressTask.runner_facts


TASK_CLASSES = {cls.name: cls for cls in (DenoiseTask, UpscaleTask, InpaintTask, CompressTask, DecompressTask)}


# ---------------------------------------------------------------------------- measuring
def _timed(fn: Callable, repeat: int) -> tuple[float, list[float], object]:
    """Median seconds of `repeat` calls of fn, every run's seconds, and the last result."""
    runs, result = [], None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), runs, result


def run_folder(task: BenchTask, folder: Path, out_dir: Path) -> dict:
    """The folder through the command line's engine (collect, plan, preflight, run_jobs), as
    `aetool TASK FOLDER -o OUT` runs it but without the progress reporting: {"seconds": wall time,
    "files", "model_s": the model's seconds per file inside the pipeline}. A failed file is a
    FatalError."""
    from .batch import plan_jobs, preflight, run_jobs
    from .discovery import IMAGE_EXTENSIONS, collect_inputs, plan_output

    out_ext = task.output_extensions or IMAGE_EXTENSIONS
    fmt = task.output_suffix if task.output_suffix else task.fmt
    results, model_runs = [], []

    def process(pic, item):
        t0 = time.perf_counter()
        out = task.processor(pic, item)
        model_runs.append(time.perf_counter() - t0)
        return out

    started = time.perf_counter()
    items, _ = collect_inputs([str(folder)], output=str(out_dir), fmt=fmt,
                              extensions=task.input_extensions or IMAGE_EXTENSIONS, output_extensions=out_ext)
    jobs, decided = plan_jobs(items, lambda item: plan_output(item, str(out_dir), False, "", fmt), True)
    jobs, refused = preflight(jobs, task.options.max_pixels, task.output_size, task.options.workers,
                              probe=task.probe)
    stopped = run_jobs(jobs, process, suffix_for=lambda job: job.output.suffix.lower(), quality=None,
                       max_pixels=task.options.max_pixels, workers=task.options.workers, on_result=results.append,
                       overwrite=True, output_size=task.output_size, read=task.read)
    seconds = time.perf_counter() - started
    bad = [r for r in decided + refused + results if r.status != "ok"]
    if stopped or bad or len(results) != len(items):
        why = stopped or (bad[0].error if bad else "not every file was done")
        raise FatalError(f"the end-to-end run of {task.name} failed: {why}")
    return {"seconds": seconds, "files": len(items), "model_s": statistics.median(model_runs)}


def machine_facts(device: str = "auto", threads: int = 0) -> dict:
    """What the bench ran on: aetool, torch, CPU, GPU, threads, device."""
    import torch

    from . import __version__
    from .device import resolve_device

    resolved = resolve_device(device)
    facts = {"aetool": __version__, "torch": torch.__version__, "python": platform.python_version(),
             "os": platform.platform(), "cpu": _cpu_name(), "cores": os.cpu_count(),
             "torch_threads": torch.get_num_threads(), "device": resolved,
             "gpu": torch.cuda.get_device_name(resolved) if resolved.startswith("cuda") else None}
    try:
        facts["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # Windows
        pass
    return facts


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.machine()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def run_bench(tasks: list[str] | str | None = None, sizes: list[float] | str | None = None, *,
              device: str = "auto", precision: str = "auto", threads: int = 0, tile: int | None = None,
              batch_size: int = 0, workers: int = 0, fmt: str = "png", repeat: int = 0,
              folder_images: int = FOLDER_IMAGES, on_step: Callable[[str], None] | None = None) -> dict:
    """Time each task at each size (megapixels) on this machine; see the module's docstring for
    what each time means. `repeat` 0: default_repeat(size); `threads` 0: torch's default;
    `tile` None: the engine's choice. `on_step(message)` is told what runs next (a progress line).

    Returns {"machine": machine_facts(), "settings": {...}, "columns": {name: meaning},
    "rows": [one dict per task and size]}; every time is in seconds."""
    from .device import check_names

    task_names, size_list = parse_tasks(tasks), parse_sizes(sizes)
    fmt = fmt.lower()
    if fmt == "jpeg":
        fmt = "jpg"
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if repeat < 0 or threads < 0 or folder_images < 1:
        raise UsageError("--repeat and --threads must be 0 (automatic) or more")
    check_names(device, precision)
    import torch

    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(task_names, size_list, device, precision, threads, tile, batch_size, workers, fmt, repeat,
                    folder_images, on_step or (lambda message: None))
    finally:
        torch.set_num_threads(threads_before)  # a Python caller's process is left as it was


def _run(task_names, size_list, device, precision, threads, tile, batch_size, workers, fmt, repeat,
         folder_images, step) -> dict:
    from .batch import default_workers
    from .engine import EngineOptions

    options = EngineOptions(device=device, precision=precision, tile=tile, batch_size=batch_size, workers=workers)
    result = {"machine": machine_facts(device, threads),
              "settings": {"tasks": task_names, "sizes": size_list, "format": fmt, "repeat": repeat or "auto",
                           "folder_images": folder_images, "precision": precision,
                           "workers": workers or default_workers(), "denoise_sigma": DENOISE_SIGMA,
                           "upscale_scale": UPSCALE_SCALE},
              "columns": COLUMNS, "rows": []}
    photos: dict[tuple[int, int], np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="aetool-bench-") as tmp:
        work = Path(tmp)
        for name in task_names:
            task = TASK_CLASSES[name](options, fmt)
            step(f"{name}: loading the model")
            t0 = time.perf_counter()
            warm = synthetic_photo(*image_shape(0.02))
            _run_once(task, warm)
            load_s = time.perf_counter() - t0
            for size in size_list:
                h, w = image_shape(task.input_megapixels(size))
                if (h, w) not in photos:
                    photos[(h, w)] = synthetic_photo(h, w)
                pixels = photos[(h, w)]
                n = repeat or default_repeat(size)
                row = {"task": name, "megapixels": size, "input": [w, h], "load_s": round(load_s, 3),
                       "repeat": n, **task.runner_facts(h, w)}
                step(f"{name} {size:g} MP: files")
                data, suffix = task.make_input(pixels)
                row["input_bytes"] = len(data)
                folder = work / f"{name}-{size:g}"
                folder.mkdir()
                for i in range(folder_images):
                    (folder / f"img{i}{suffix}").write_bytes(data)
                src = folder / f"img0{suffix}"
                step(f"{name} {size:g} MP: decode")
                row["decode_s"], row["decode_runs"], pic = _timed(
                    lambda: task.read(src, options.max_pixels, task.output_size), n)
                for key, fn in task.extra_timings(pic).items():
                    step(f"{name} {size:g} MP: {key[:-2]}")
                    row[key], row[key[:-2] + "_runs"], _ = _timed(fn, n)
                # Each folder run follows a run of the model alone, its reference: the machine's speed
                # drifts by more than the overhead between a block of model runs and a later folder
                # run (one such pair per row read from -17 % to +41 % on a 2-core VM).
                out_dir = work / f"{name}-{size:g}-out"
                model_runs, e2e_runs, inside, ratios = [], [], [], []
                for i in range(n):
                    step(f"{name} {size:g} MP: model ({i + 1}/{n})")
                    t0 = time.perf_counter()
                    out, _ = task.processor(pic, None)
                    model_runs.append(time.perf_counter() - t0)
                    if i == 0 and isinstance(out, bytes):
                        row["output"], row["encode_s"], row["encode_runs"] = [w, h], None, []
                        row["output_bytes"] = len(out)
                    elif i == 0:
                        row["output"] = [out.width, out.height]
                        step(f"{name} {size:g} MP: encode")
                        row["encode_s"], row["encode_runs"], encoded = _timed(lambda: task.encode(out), n)
                        row["output_bytes"] = len(encoded)
                        del encoded
                    del out
                    step(f"{name} {size:g} MP: {folder_images} files end to end ({i + 1}/{n})")
                    e2e = run_folder(task, folder, out_dir)
                    e2e_runs.append(e2e["seconds"] / e2e["files"])
                    inside.append(e2e["model_s"])
                    ratios.append(e2e_runs[-1] / model_runs[-1] - 1.0 if model_runs[-1] > 0 else math.nan)
                    for p in out_dir.iterdir():
                        p.unlink()
                del pic
                row["model_s"], row["model_runs"] = statistics.median(model_runs), model_runs
                row["end_to_end_s"], row["end_to_end_runs"] = statistics.median(e2e_runs), e2e_runs
                row["end_to_end_model_s"] = statistics.median(inside)
                row["overhead"] = statistics.median(ratios) if row["model_s"] > 0 else None
                row["overhead_runs"] = ratios
                for p in folder.iterdir():
                    p.unlink()
                result["rows"].append(_rounded(row))
            task = None
    return result


def _run_once(task: BenchTask, pixels: np.ndarray) -> None:
    """Load the model and run every step once on a small image (first-call costs out of the timings)."""
    data, _ = task.make_input(pixels)
    pic = task.read(data, task.options.max_pixels)
    out, _ = task.processor(pic, None)
    task.encode(out)


def _rounded(row: dict) -> dict:
    def r(v):
        return round(v, 6) if isinstance(v, float) else [r(x) for x in v] if isinstance(v, list) else v

    return {k: r(v) for k, v in row.items()}


COLUMNS = {
    "decode_s": "seconds to read and decode one input file (read_image of a PNG/JPEG in --format; "
                "decompress: parse an .aei file)",
    "estimate_s": "denoise only: seconds of the blind noise estimate (what a run without --sigma adds)",
    "model_s": "seconds of the task's processing of one already-decoded image (the model step of the command)",
    "encode_s": "seconds to encode the output (encode_image to --format; compress: none, its output is the "
                "file's bytes)",
    "end_to_end_s": "wall seconds per image of a folder of folder_images files through the command's "
                    "engine (batch.run_jobs: decode ahead, model, encode and write behind), outputs to a "
                    "temporary folder; median of repeat such runs",
    "end_to_end_model_s": "median seconds of the model step inside that run (above model_s: the model was "
                          "slowed by the reading and writing threads)",
    "overhead": "what reading, decoding, encoding and writing add to the model when they overlap with it: "
                "the median over the repeats of (a folder run's seconds per image / the run of the model "
                "alone just before it) - 1 (overhead_runs: each of them)",
    "load_s": "seconds to load the task's model and run it once on a small image (not in the other times)",
    "megapixels": "the image size of the row: the input's, and for upscale the output's (the input is a "
                  f"quarter of it, enlarged x{UPSCALE_SCALE})",
    "tile": "tile side in pixels the engine chose (0: the image in one piece)",
    "precision": "the engine's choice for --precision (the autocast dtype; the codecs run in fp32)",
}
