"""Which files a run takes and what it names their outputs: re-runs into the input folder,
--include/--exclude/--max-depth, GIF and HEIC inputs; and the help text that describes them."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from aetool.cli import app
from aetool.discovery import collect_inputs, plan_output
from aetool.imageio import read_image
from conftest import structured_image

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def records(output: str) -> dict[str, str]:
    """{input file name: status} from --json lines."""
    lines = [json.loads(x) for x in output.splitlines() if x.startswith("{")]
    return {Path(x["input"]).name: x["status"] for x in lines if "input" in x}


def names(items) -> list[str]:
    return [it.rel.as_posix() for it in items]


def files_below(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------ outputs written into the input folder
@pytest.mark.parametrize("recursive", [False, True])
@pytest.mark.parametrize("fmt", ["same", "png"])
def test_second_run_into_the_input_folder_takes_no_output_as_input(photo_dir, tiny_model, recursive, fmt):
    cmd = ["denoise", photo_dir, "-o", photo_dir, "--suffix", "_dn", "--format", fmt, "--model", tiny_model,
           "--sigma", "5", "--json"] + (["-r"] if recursive else [])
    first = run(*cmd)
    assert first.exit_code == 0, first.output
    after_first = files_below(photo_dir)
    second = run(*cmd)
    assert second.exit_code == 0, second.output
    status = records(second.stdout)
    assert status and set(status.values()) == {"skipped"}, status  # nothing new, nothing failed
    assert not any(n.endswith(("_dn.png", "_dn.jpg")) for n in status)  # outputs were not inputs
    assert files_below(photo_dir) == after_first
    assert not any("_dn_dn" in n for n in after_first)
    expected = {"a_dn.png", "b_dn.jpg" if fmt == "same" else "b_dn.png"}
    assert expected <= set(after_first)
    assert ("sub/c_dn.png" in after_first) == recursive


def test_outputs_of_other_inputs_are_not_inputs_but_look_alikes_are(tmp_path):
    d = tmp_path / "shoot"
    d.mkdir()
    for name in ("a.jpg", "a_dn.png", "a_dn_dn.png", "b_dn.png"):
        Image.fromarray(structured_image(16, 16)).save(d / name)
    # a.jpg -> a_dn.png (and a_dn.png -> a_dn_dn.png, an earlier run's mistake): outputs, not inputs.
    # b_dn.png is nobody's output here: the user's own file, taken.
    items, missing = collect_inputs([str(d)], output=str(d), suffix="_dn", fmt="png")
    assert names(items) == ["a.jpg", "b_dn.png"] and not missing
    # Another output folder: every file is an input.
    items, _ = collect_inputs([str(d)], output=str(tmp_path / "out"), suffix="_dn", fmt="png")
    assert len(items) == 4
    # Named one by one, or by a pattern, the same holds.
    items, _ = collect_inputs([str(d / "a.jpg"), str(d / "a_dn.png")], output=str(d), suffix="_dn", fmt="png")
    assert names(items) == ["a.jpg"]
    items, _ = collect_inputs([str(d / "*.png")], output=str(d), suffix="_dn", fmt="png")
    assert names(items) == ["a_dn.png", "b_dn.png"]  # a.jpg is not an input now: a_dn.png is nobody's output


def test_without_a_suffix_an_input_that_is_its_own_output_is_still_reported(photo_dir, tiny_model):
    items, _ = collect_inputs([str(photo_dir)], output=str(photo_dir), suffix="", fmt="same")
    assert names(items) == ["a.png", "b.jpg"]


# ------------------------------------------------------------------ --include, --exclude, --max-depth
@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "t"
    for rel in ("a.jpg", "b.PNG", "IMG_1.jpg", "raw/c.jpg", "raw/deep/d.png", "keep/e.jpg", "keep/deep/f.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(structured_image(8, 8)).save(root / rel, format="PNG" if rel.endswith("PNG") else None)
    return root


def test_include_and_exclude_match_file_names_or_paths_below_the_folder(tree):
    def take(**kw):
        items, missing = collect_inputs([str(tree)], recursive=True, **kw)
        assert not missing
        return sorted(names(items))

    assert take(include=["*.jpg"]) == ["IMG_1.jpg", "a.jpg", "keep/deep/f.jpg", "keep/e.jpg", "raw/c.jpg"]
    assert take(include=["*.png"]) == ["b.PNG", "raw/deep/d.png"]  # any case
    assert take(include=["img_*"]) == ["IMG_1.jpg"]
    assert take(exclude=["raw/**"]) == ["IMG_1.jpg", "a.jpg", "b.PNG", "keep/deep/f.jpg", "keep/e.jpg"]
    assert take(include=["*/*.jpg"]) == ["keep/e.jpg", "raw/c.jpg"]  # * stays within one folder name
    assert take(include=["**/deep/*"]) == ["keep/deep/f.jpg", "raw/deep/d.png"]
    assert take(include=["**/*.png"]) == ["b.PNG", "raw/deep/d.png"]  # **/ also matches no folder
    assert take(include=["*.jpg", "*.png"], exclude=["keep/**", "a.*"]) == ["IMG_1.jpg", "b.PNG", "raw/c.jpg",
                                                                           "raw/deep/d.png"]
    assert take(include=["[ab].*"]) == ["a.jpg", "b.PNG"]
    assert take(include=["[!ab].*"]) == ["keep/deep/f.jpg", "keep/e.jpg", "raw/c.jpg", "raw/deep/d.png"]


def test_filters_apply_to_glob_inputs_not_to_files_named(tree):
    items, _ = collect_inputs([str(tree / "**" / "*.jpg")], exclude=["raw/**"])
    assert sorted(names(items)) == ["IMG_1.jpg", "a.jpg", "keep/deep/f.jpg", "keep/e.jpg"]
    items, missing = collect_inputs([str(tree / "raw" / "*.jpg")], exclude=["*.jpg"])
    assert not items and "--include/--exclude" in missing[0][1]
    items, _ = collect_inputs([str(tree / "raw" / "c.jpg")], exclude=["*.jpg"])
    assert names(items) == ["c.jpg"]


def test_max_depth(tree):
    def take(depth):
        return sorted(names(collect_inputs([str(tree)], max_depth=depth)[0]))

    assert take(0) == ["IMG_1.jpg", "a.jpg", "b.PNG"]
    assert take(1) == ["IMG_1.jpg", "a.jpg", "b.PNG", "keep/e.jpg", "raw/c.jpg"]
    assert len(take(2)) == 7


def test_filter_options_on_the_command_line(tree, tmp_path):
    out = tmp_path / "out"
    r = run("denoise", tree, "-o", out, "--include", "*.jpg", "--exclude", "raw/**", "--max-depth", "1",
            "--dry-run")
    assert r.exit_code == 0, r.output
    planned = sorted(Path(line.split(" -> ")[1]).relative_to(out).as_posix() for line in r.stdout.splitlines()
                     if line.startswith("planned:"))
    assert planned == ["IMG_1.jpg", "a.jpg", "keep/e.jpg"]
    assert run("denoise", tree, "-o", out, "--max-depth", "-1").exit_code == 2


# ------------------------------------------------------------------------------- GIF and HEIC inputs
def test_gif_in_a_folder_scan_gives_its_first_frame_as_png(tmp_path, tiny_model):
    d = tmp_path / "in"
    d.mkdir()
    frames = [Image.fromarray(structured_image(32, 48, seed=s)).convert("P") for s in (1, 2)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    items, _ = collect_inputs([str(d)])
    assert names(items) == ["anim.gif"]
    assert plan_output(items[0], str(tmp_path / "o"), False, "", "same").name == "anim.png"
    assert plan_output(items[0], str(tmp_path / "o"), False, "", "jpg").name == "anim.jpg"
    r = run("denoise", d, "-o", tmp_path / "o", "--model", tiny_model, "--sigma", "5", "-q")
    assert r.exit_code == 0, r.output
    out = Image.open(tmp_path / "o" / "anim.png")
    assert out.format == "PNG" and out.size == (48, 32)


def test_heic_input_reads_with_pillow_heif(tmp_path, tiny_model):
    pillow_heif = pytest.importorskip("pillow_heif")
    rgb = structured_image(32, 48)
    buf = io.BytesIO()
    pillow_heif.from_bytes(mode="RGB", size=(48, 32), data=rgb.tobytes()).save(buf, quality=95)
    d = tmp_path / "in"
    d.mkdir()
    (d / "phone.HEIC").write_bytes(buf.getvalue())
    pic = read_image(d / "phone.HEIC")
    assert pic.source_format == "HEIF" and np.abs(pic.pixels * 255 - rgb).mean() < 6  # lossy, but the same picture
    r = run("denoise", d, "-o", tmp_path / "o", "--model", tiny_model, "--sigma", "5", "-q")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "o" / "phone.png").size == (48, 32)  # HEIC is not written: PNG


def test_heic_without_pillow_heif_says_what_to_install(tmp_path):
    fake = tmp_path / "x.heic"
    fake.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64)
    code = ("import sys; sys.modules['pillow_heif'] = None\n"  # as if it were not installed
            "from aetool.imageio import read_image\n"
            f"read_image({str(fake)!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert 'install the HEIC extra: pip install "aetool[heic]"' in proc.stderr.splitlines()[-1]


# --------------------------------------------------------------------------- help text and messages
HELP_PAGES = [["denoise"], ["upscale"], ["inpaint"], ["models"], ["models", "info"], ["train", "denoise"],
              ["train", "upscale"], ["train", "inpaint"], ["train", "compress"], ["compress"], ["decompress"],
              ["truncate"], ["info"], []]


@pytest.mark.parametrize("command", HELP_PAGES, ids=lambda c: " ".join(c) or "aetool")
def test_help_fits_80_columns_and_names_values_plainly(command):
    r = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert r.exit_code == 0, r.output
    text = r.output
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for placeholder in ("<str>", "<list", "<int", "<float", "<path>", "range>", "{inputs}", "{name}"):
        assert placeholder not in text, (placeholder, text)
    # Each example is printed as written: no line of it is rewrapped.
    cmd = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    printed = {line.strip() for line in text.splitlines()}
    for line in (cmd.epilog or "").splitlines():
        if line.strip().startswith(("aetool ", "cat ", "-")):
            assert line.strip() in printed, (line, text)


def test_shell_completion_is_offered():
    r = runner.invoke(app, ["--help"])
    assert "--install-completion" in r.output and "--show-completion" in r.output
    r = runner.invoke(app, ["--show-completion", "bash"])
    assert r.exit_code == 0 and "complete" in r.output and "_AETOOL_COMPLETE" in r.output


def test_wrong_task_model_message_names_the_right_command(tmp_path, make_upscaler, tiny_model):
    Image.fromarray(structured_image(16, 16)).save(tmp_path / "x.png")
    r = run("inpaint", tmp_path / "x.png", "--mask", "alpha", "-o", tmp_path / "o", "--model", make_upscaler(2))
    assert r.exit_code == 2 and "a upscale" not in r.output
    assert "is for `aetool upscale`, not for inpainting" in r.output
    r = run("upscale", tmp_path / "x.png", "-o", tmp_path / "o", "--model", tiny_model)
    assert r.exit_code == 2 and "is for `aetool denoise`, not for upscaling" in r.output


@pytest.mark.parametrize("command", ["denoise", "inpaint"])
def test_an_empty_model_name_is_a_usage_error(tmp_path, command):
    """`--model "$MODEL"` with MODEL unset: a message and exit 2, not a traceback."""
    Image.fromarray(structured_image(16, 16)).save(tmp_path / "x.png")
    extra = ["--mask", "alpha"] if command == "inpaint" else []
    for name in ("", "/"):
        r = run(command, tmp_path / "x.png", *extra, "-o", tmp_path / "o", "--model", name)
        assert r.exit_code == 2 and f"no model named or at '{name}'" in r.output, r.output
