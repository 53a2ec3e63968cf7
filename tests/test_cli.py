"""The command line: discovery, naming, skipping, exit codes, JSON, stdin/stdout, bad files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aetool.cli import app
from conftest import structured_image

runner = CliRunner()


def run(*args, input=None):
    result = runner.invoke(app, [str(a) for a in args], input=input)
    return result


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_help_is_fast_and_does_not_import_torch():
    # nor numpy or Pillow (a tenth of a second of every --help): commands import them when they run
    code = ("import sys; from aetool.cli.app import app\n"
            "heavy = [m for m in ('torch', 'numpy', 'PIL') if m in sys.modules]\n"
            "assert not heavy, f'imported by the command line: {heavy}'")
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "aetool", "--help"], capture_output=True, text=True, check=True)
    assert "denoise" in out.stdout and "train" in out.stdout
    assert "Examples" in run("denoise", "--help").output


def test_version():
    from aetool import __version__

    assert __version__ in run("--version").output


def test_folder_recursive_mirrors_tree_and_ignores_hidden(photo_dir, tmp_path, tiny_model):
    out = tmp_path / "out"
    r = run("denoise", photo_dir, "-r", "-o", out, "--model", tiny_model, "--sigma", "10", "--json")
    assert r.exit_code == 0, r.output
    records = json_lines(r.stdout)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["a.png", "b.jpg", os.path.join("sub", "c.png")]
    assert records[-1]["summary"]["ok"] == 3 and records[-1]["summary"]["failed"] == 0
    for rec in records[:-1]:
        assert rec["status"] == "ok" and rec["sigma"] == 10 and rec["megapixels"] > 0


def test_non_recursive_skips_subfolders(photo_dir, tmp_path, tiny_model):
    out = tmp_path / "out"
    r = run("denoise", photo_dir, "-o", out, "--model", tiny_model, "--sigma", "10", "-q")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["a.png", "b.jpg"]


def test_glob_suffix_and_format(photo_dir, tmp_path, tiny_model):
    out = tmp_path / "out"
    r = run("denoise", str(photo_dir / "*.png"), "-o", out, "--model", tiny_model, "--sigma", "5",
            "--suffix", "-clean", "--format", "webp", "-q")
    assert r.exit_code == 0, r.output
    assert [p.name for p in out.iterdir()] == ["a-clean.webp"]
    assert Image.open(out / "a-clean.webp").format == "WEBP"


def test_single_file_output_name(photo_dir, tmp_path, tiny_model):
    target = tmp_path / "x" / "clean.tif"
    r = run("denoise", photo_dir / "a.png", "-o", target, "--model", tiny_model, "--sigma", "5", "-q")
    assert r.exit_code == 0, r.output
    assert Image.open(target).format == "TIFF"


def test_never_overwrites_input(photo_dir, tiny_model):
    before = (photo_dir / "a.png").read_bytes()
    r = run("denoise", photo_dir / "a.png", "-o", photo_dir / "a.png", "--model", tiny_model, "--sigma", "5",
            "--overwrite", "--json")
    assert r.exit_code == 1
    assert "overwrite the input" in json_lines(r.stdout)[0]["error"]
    assert (photo_dir / "a.png").read_bytes() == before
    r = run("denoise", photo_dir, "-o", photo_dir, "--model", tiny_model, "--sigma", "5", "--overwrite", "-q")
    assert r.exit_code == 1
    assert (photo_dir / "a.png").read_bytes() == before


def test_skip_existing_by_default_and_overwrite(photo_dir, tmp_path, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"old")
    r = run("denoise", photo_dir, "-o", out, "--model", tiny_model, "--sigma", "5", "--json")
    assert r.exit_code == 0
    status = {Path(x["input"]).name: x["status"] for x in json_lines(r.stdout)[:-1]}
    assert status == {"a.png": "skipped", "b.jpg": "ok"}
    assert (out / "a.png").read_bytes() == b"old"
    r = run("denoise", photo_dir, "-o", out, "--model", tiny_model, "--sigma", "5", "--overwrite", "-q")
    assert r.exit_code == 0
    assert Image.open(out / "a.png").size == (128, 96)


def test_dry_run_writes_nothing(photo_dir, tmp_path, tiny_model):
    out = tmp_path / "out"
    r = run("denoise", photo_dir, "-o", out, "--model", tiny_model, "--dry-run")
    assert r.exit_code == 0
    assert "a.png" in r.stdout and not out.exists()


def test_bad_files_are_reported_and_the_batch_completes(tmp_path, tiny_model):
    d = tmp_path / "in"
    d.mkdir()
    good = structured_image(seed=5)
    Image.fromarray(good).save(d / "good1.png")
    Image.fromarray(good).save(d / "good2.jpg")
    jpeg = (d / "good2.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("this is not a picture")
    # A PNG header that claims 100000 x 100000 pixels: refused before decoding.
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    (d / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
                                 + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    out = tmp_path / "out"
    r = run("denoise", d, "-o", out, "--model", tiny_model, "--sigma", "5", "--json")
    assert r.exit_code == 1
    recs = {Path(x["input"]).name: x for x in json_lines(r.stdout)[:-1]}
    assert {k for k, v in recs.items() if v["status"] == "ok"} == {"good1.png", "good2.jpg"}
    assert {k for k, v in recs.items() if v["status"] == "failed"} == {"truncated.jpg", "empty.png", "text.png",
                                                                       "huge.png"}
    assert "empty" in recs["empty.png"]["error"]
    assert "MP" in recs["huge.png"]["error"] and "--max-pixels" in recs["huge.png"]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["good1.png", "good2.jpg"]  # no partial files
    assert json_lines(r.stdout)[-1]["summary"] == {**json_lines(r.stdout)[-1]["summary"], "ok": 2, "failed": 4}


def test_missing_input_is_a_failure_not_a_crash(photo_dir, tmp_path, tiny_model):
    r = run("denoise", photo_dir / "a.png", tmp_path / "nope.png", "-o", tmp_path / "out", "--model", tiny_model,
            "--sigma", "5")
    assert r.exit_code == 1
    assert (tmp_path / "out" / "a.png").exists()
    assert "no such file" in r.output


def test_usage_errors_exit_2_without_traceback(photo_dir, tmp_path, tiny_model):
    for args in (["denoise", photo_dir, "-o", tmp_path / "o", "--model", "no-such-model"],
                 ["denoise", photo_dir],
                 ["denoise", photo_dir, "-o", tmp_path / "o", "--tile", "abc"],
                 ["denoise", photo_dir, "-o", tmp_path / "o", "--format", "gif"],
                 ["denoise", photo_dir, "-o", tmp_path / "o", "--sigma", "-3"]):
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output


def test_stdin_to_stdout_subprocess(tmp_path, tiny_model):
    img = structured_image(seed=7)
    src = tmp_path / "in.png"
    Image.fromarray(img).save(src)
    proc = subprocess.run([sys.executable, "-m", "aetool", "denoise", "-", "--model", str(tiny_model),
                           "--sigma", "5"], input=src.read_bytes(), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    # Not a terminal: no progress bar, only the one-line summary on stderr.
    assert proc.stderr.decode().startswith("denoise: 1 done, 0 skipped, 0 failed in ")
    assert len(proc.stderr.decode().splitlines()) == 1
    out = tmp_path / "out.png"
    out.write_bytes(proc.stdout)
    assert np.asarray(Image.open(out)).shape == img.shape


def test_disk_full_stops_the_batch_at_once_without_partial_files(tmp_path, tiny_model, monkeypatch):
    def broken_write(path, data, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("aetool.atomic.write_atomic", broken_write)
    d = tmp_path / "in"
    d.mkdir()
    for k in range(8):
        Image.fromarray(structured_image(48, 64, seed=k)).save(d / f"{k}.png")
    out = tmp_path / "out"
    r = run("denoise", d, "-o", out, "--model", tiny_model, "--sigma", "5", "--json")
    assert r.exit_code == 1
    records, summary = json_lines(r.stdout)[:-1], json_lines(r.stdout)[-1]["summary"]
    # The first failed write stops the batch: only the files already in the pipeline (written
    # behind the model) fail; the rest are not processed only to fail the same way.
    assert all(x["status"] == "failed" and "No space" in x["error"] for x in records)
    assert 1 <= summary["failed"] <= 3 and summary["failed"] + summary["not_started"] == 8
    assert "No space" in summary["stopped"]
    assert r.stderr.count("aetool: stopped:") == 1
    assert not out.exists() or not any(out.rglob("*.*"))


def test_unwritable_output_folder_fails_fast_without_processing(photo_dir, tmp_path, tiny_model, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("an image was processed although its output folder is unwritable")

    monkeypatch.setattr("aetool.tasks.denoise.Denoiser.__call__", must_not_run)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    r = run("denoise", photo_dir, "-o", blocker / "out", "--model", tiny_model, "--sigma", "5", "--json")
    assert r.exit_code == 1
    records = json_lines(r.stdout)[:-1]
    assert records and all(x["status"] == "failed" and "cannot write to folder" in x["error"] for x in records)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    from aetool.imageio import write_atomic

    target = tmp_path / "d" / "x.png"
    write_atomic(target, b"abc")
    assert target.read_bytes() == b"abc"
    assert [p.name for p in target.parent.iterdir()] == ["x.png"]


def test_models_list_and_info():
    r = run("models")
    assert r.exit_code == 0 and "denoise-color" in r.output and "denoise-gray" in r.output
    r = run("models", "info", "denoise-color")
    card = json.loads(r.output)
    assert card["task"] == "denoise" and card["sha256"] and card["training"]["command"].startswith("aetool train")
    assert run("models", "info", "nope").exit_code == 2


def test_file_to_stdout_and_output_file_for_many_inputs(photo_dir, tmp_path, tiny_model):
    proc = subprocess.run([sys.executable, "-m", "aetool", "denoise", str(photo_dir / "a.png"), "-o", "-",
                           "--model", str(tiny_model), "--sigma", "5"], capture_output=True)
    assert proc.returncode == 0 and proc.stdout[:4] == b"\x89PNG"
    r = run("denoise", photo_dir, "-o", tmp_path / "x.png", "--model", tiny_model, "--sigma", "5")
    assert r.exit_code == 2 and "output folder" in r.output


def test_rerun_with_output_inside_input_tree_does_not_reprocess_outputs(photo_dir, tiny_model):
    out = photo_dir / "clean"
    for _ in range(2):
        r = run("denoise", photo_dir, "-r", "-o", out, "--model", tiny_model, "--sigma", "5", "-q")
        assert r.exit_code == 0, r.output
    assert not (out / "clean").exists()


def test_globs_take_image_files_only(photo_dir, tmp_path, tiny_model):
    (photo_dir / "notes.txt").write_text("x")
    r = run("denoise", str(photo_dir / "*"), "-o", tmp_path / "o", "--model", tiny_model, "--sigma", "5", "-q")
    assert r.exit_code == 0, r.output


def test_file_output_for_a_folder_input_says_input_in_the_singular(tmp_path, tiny_model):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(structured_image()).save(d / "a.png")
    r = run("denoise", d, "-o", tmp_path / "x.png", "--model", tiny_model)
    assert r.exit_code == 2 and "there is 1 input;" in r.output and "1 inputs" not in r.output
