"""Speed on a camera-sized photo, through the command line as a user runs it (interpreter start,
model loading, JPEG decoding and PNG encoding included): one 24-megapixel (6000x4000) photo.

The photo is scikit-image's astronaut (NASA, public domain) enlarged to 6000x4000 with Lanczos;
its pixel content does not matter here, only its size. Each row is one command, timed (median of
--repeats):

- denoise: `aetool denoise big.jpg --sigma 15` (the photo with Gaussian noise, sigma 15);
- inpaint: `aetool inpaint big.jpg --mask holes.png` with five small holes (dust-spot boxes and a
  scratch: 0.02% of the image), beside the same command with an empty mask (the no-op: reading,
  writing and start-up only) and OpenCV Telea on the same holes (benchmarks/inpaint_baselines.py);
- upscale: `aetool upscale --scale 2` of the photo at 3000x2000 (6 MP in, 24 MP out), beside
  Pillow bicubic (benchmarks/sr_baselines.py).

    python benchmarks/large_photo.py                # writes the large-photo section of docs/benchmarks.md
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, cpu_precision, machine, machine_line, md_table, resolve_command, run_timed, write_section  # noqa: E402

WIDTH, HEIGHT = 6000, 4000


def make_inputs(work: Path) -> dict:
    from skimage import data

    from aetool.noise import add_gaussian_noise

    big = np.asarray(Image.fromarray(data.astronaut()).resize((WIDTH, HEIGHT), Image.LANCZOS))
    files = {}
    for name, img in (("photo", big), ("noisy", add_gaussian_noise(big, 15, np.random.default_rng(0))),
                      ("half", np.asarray(Image.fromarray(big).resize((WIDTH // 2, HEIGHT // 2), Image.LANCZOS)))):
        d = work / name
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / "big.jpg", quality=95)
        files[name] = d / "big.jpg"
    holes = np.zeros((HEIGHT, WIDTH), np.uint8)
    for y, x in ((500, 700), (1800, 4200), (3100, 1500), (900, 5200)):
        holes[y:y + 24, x:x + 24] = 255  # dust spots
    holes[2500:2506, 2000:2600] = 255  # a scratch
    masks = work / "masks"
    masks.mkdir(exist_ok=True)
    Image.fromarray(holes).save(masks / "big.png")
    Image.fromarray(np.zeros_like(holes)).save(work / "empty.png")
    files.update(holes=masks / "big.png", masks=masks, empty=work / "empty.png", hole_fraction=float((holes > 0).mean()))
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out-md", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--aetool", default="aetool")
    args = ap.parse_args(argv)
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "command": shlex.join(["python"] + sys.argv)}
    work = args.work or Path(tempfile.mkdtemp(prefix="large-photo-"))
    files = make_inputs(work)
    aetool, py = resolve_command(args.aetool), [sys.executable]
    here = Path(__file__).resolve().parent
    out = work / "out"
    rows = [
        ("denoise, σ 15 told", "aetool denoise", 24.0,
         aetool + ["denoise", str(files["noisy"]), "-o", str(out / "d.png"), "--sigma", "15", "--overwrite"]),
        ("inpaint, 5 small holes", "aetool inpaint", 24.0,
         aetool + ["inpaint", str(files["photo"]), "--mask", str(files["holes"]), "-o", str(out / "i.png"), "--overwrite"]),
        ("inpaint, empty mask (no-op)", "aetool inpaint", 24.0,
         aetool + ["inpaint", str(files["photo"]), "--mask", str(files["empty"]), "-o", str(out / "e.png"), "--overwrite"]),
        ("inpaint, 5 small holes", "OpenCV Telea", 24.0,
         py + [str(here / "inpaint_baselines.py"), "telea", str(files["photo"].parent), str(files["masks"]), str(out / "telea")]),
        ("upscale x2, 6 MP in, 24 MP out", "aetool upscale", 24.0,
         aetool + ["upscale", str(files["half"]), "-o", str(out / "u.png"), "--scale", "2", "--overwrite"]),
        ("upscale x2, 6 MP in, 24 MP out", "Pillow bicubic", 24.0,
         py + [str(here / "sr_baselines.py"), "bicubic", "--scale", "2", str(files["half"].parent), str(out / "bicubic")]),
    ]
    out.mkdir(parents=True, exist_ok=True)
    table = []
    for job, method, mp, cmd in rows:
        run = run_timed(cmd, args.repeats)
        cell = f"{run.seconds:.1f}" if run.error == "" else f"error: {run.error}"
        per_mp = f"{run.seconds / mp:.2f}" if run.error == "" else "-"
        table.append([job, method, cell, per_mp])
        print(job, method, cell, file=sys.stderr)
    text = "\n".join([
        "## Large photos (speed)", "",
        f"Measured {info['date']} on {machine_line(info['machine'])}; aetool CPU precision: {cpu_precision()}.  ",
        f"Command: `{info['command']}`", "",
        f"One {WIDTH}x{HEIGHT} JPEG (24 MP; scikit-image's astronaut enlarged with Lanczos), each command run once "
        f"as a user would (start-up, model loading, JPEG decoding and PNG encoding included; median of {args.repeats}). "
        f"The inpainting mask has 4 dust spots of 24x24 pixels and a 600x6 scratch "
        f"({100 * files['hole_fraction']:.3f}% of the image).", "",
        md_table(["job", "method", "seconds", "s/MP of output"], table),
    ])
    write_section(args.out_md, "large-photo", text)
    print(f"wrote {args.out_md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
