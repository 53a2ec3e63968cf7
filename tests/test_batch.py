"""The engine under every image command, under faults: broken models, non-finite output, signals,
kill -9 and re-run, memory and pixel limits before decoding, dry-run preflight, progress that
reports each file when its output is in place, and JSON lines that nothing wraps."""
from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aetool.cli import app
from conftest import structured_image

runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def image_folder(folder: Path, count: int, size: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        Image.fromarray(structured_image(size, size, seed=k)).save(folder / f"{k:02d}.png")
    return folder


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header that declares width x height pixels, in a few dozen bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def copy_model(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / src.name
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def save_denoiser(path: Path, scale_weights: float | None = None, nan: bool = False, sha: bool = False) -> Path:
    """A tiny denoiser with weights made to misbehave, saved in fp32 like a damaged file would be."""
    import torch

    from aetool.models.unet_denoiser import UNetDenoiser
    from aetool.registry import Card, count_parameters, save_weights, sha256_of

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = UNetDenoiser(in_channels=3, channels=(8, 16, 16), blocks=1)
    with torch.no_grad():
        for p in model.parameters():
            if scale_weights is not None and p.dim() == 4:
                p.fill_(scale_weights)
        if nan:
            next(model.parameters()).view(-1)[0] = float("nan")
    save_weights(model, path, "denoise", half=False)
    Card(name=path.stem, task="denoise", arch=model.arch_name, config=model.config, file=path.name,
         sha256=sha256_of(path) if sha else "", channels=3, parameters=count_parameters(model)).save(path.with_suffix(".json"))
    return path


# ------------------------------------------------------------------ wrong results never reported ok


def test_nan_weights_are_a_usage_error_before_any_file(tmp_path):
    model = save_denoiser(tmp_path / "m" / "nan.safetensors", nan=True)
    out = tmp_path / "out"
    r = run("denoise", image_folder(tmp_path / "in", 3), "-o", out, "--model", model, "--sigma", "5")
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and "NaN or infinite" in r.stderr
    assert not out.exists()


def test_non_finite_output_fails_the_file_and_stops_the_batch(tmp_path):
    # Finite weights whose activations overflow float32: the output is inf/NaN, which used to be
    # clipped to a black image and reported "ok".
    model = save_denoiser(tmp_path / "m" / "overflow.safetensors", scale_weights=1e20)
    out = tmp_path / "out"
    r = run("denoise", image_folder(tmp_path / "in", 4), "-o", out, "--model", model, "--sigma", "5", "--json",
            "--precision", "fp32")
    assert r.exit_code == 1, r.output
    records, summary = json_lines(r.stdout)[:-1], json_lines(r.stdout)[-1]["summary"]
    assert records[0]["status"] == "failed" and "NaN or infinite" in records[0]["error"]
    assert summary["ok"] == 0 and summary["failed"] == 1 and summary["not_started"] == 3
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("damage", ["bytes", "card"])
def test_damaged_model_is_one_usage_error_for_every_command(tmp_path, tiny_model, tiny_inpainter, make_upscaler,
                                                            damage):
    folder = image_folder(tmp_path / "in", 5)
    for command, src in (("denoise", tiny_model), ("upscale", make_upscaler(2)), ("inpaint", tiny_inpainter)):
        model = copy_model(src, tmp_path / command / "models")
        if damage == "bytes":  # a flipped byte in the tensors: the card's sha256 no longer matches
            data = bytearray(model.read_bytes())
            data[-5] ^= 0xFF
            model.write_bytes(bytes(data))
        else:
            model.with_suffix(".json").write_text("{not json")
        out = tmp_path / command / "out"
        extra = ["--mask-color", "#ff00ff"] if command == "inpaint" else []
        r = run(command, folder, "-o", out, "--model", model, *extra)
        assert r.exit_code == 2, (command, r.output)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.output, r.stderr
        assert ("sha256" if damage == "bytes" else "cannot be read") in r.stderr
        assert not out.exists()
        info = run("models", "info", model)
        assert info.exit_code == 2 and info.stderr.count("\n") == 1 and "Traceback" not in info.output


# ------------------------------------------------------------------ faults that end cleanly


def _start(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "aetool", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, **kwargs)


def _wait_for_outputs(out: Path, count: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and len(list(out.glob("*.png"))) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"no output appeared (exit {proc.poll()}): {proc.stderr.read().decode() if proc.poll() is not None else ''}")


def test_sigterm_finishes_cleanly_with_summary_and_exit_143(tmp_path, tiny_model):
    folder = image_folder(tmp_path / "in", 12, size=512)
    out = tmp_path / "out"
    proc = _start(["denoise", folder, "-o", out, "--model", tiny_model, "--sigma", "5", "--json"])
    _wait_for_outputs(out, 1, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr.decode()
    records = json_lines(stdout.decode())
    summary = records[-1]["summary"]
    written = sorted(p.name for p in out.iterdir())
    assert summary["interrupted"] and summary["stopped"] == "SIGTERM"
    assert 1 <= summary["ok"] < 12 and summary["ok"] == len(written)  # every written file reported
    assert summary["ok"] + summary["not_started"] == 12
    assert all(not n.startswith(".") for n in written)  # no temporary or lock file left
    for name in written:
        Image.open(out / name).load()  # complete files only
    assert "terminated" in stderr.decode() and "denoise:" in stderr.decode()


def test_kill_9_then_rerun_finishes_and_cleans_up(tmp_path, tiny_model):
    folder = image_folder(tmp_path / "in", 12, size=512)
    out = tmp_path / "out"
    proc = _start(["denoise", folder, "-o", out, "--model", tiny_model, "--sigma", "5"])
    _wait_for_outputs(out, 1, proc)
    proc.kill()
    proc.wait()
    # What a kill -9 can leave: a temporary file and a claim of this (now dead) process.
    from aetool.atomic import node_id

    (out / f".05.png.{node_id()}.{proc.pid}.deadbeef.aetool-tmp").write_bytes(b"half a file")
    r = run("denoise", folder, "-o", out, "--model", tiny_model, "--sigma", "5", "--json")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [f"{k:02d}.png" for k in range(12)]
    summary = json_lines(r.stdout)[-1]["summary"]
    assert summary["ok"] + summary["skipped"] == 12


def test_two_runs_on_one_output_folder_split_the_work(tmp_path, tiny_model):
    folder = image_folder(tmp_path / "in", 16, size=256)
    out = tmp_path / "out"
    args = ["denoise", folder, "-o", out, "--model", tiny_model, "--sigma", "5", "--json"]
    procs = [_start(args), _start(args)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1].decode() for r in results]
    oks = [{Path(x["input"]).name for x in json_lines(r[0].decode())[:-1] if x["status"] == "ok"} for r in results]
    assert not (oks[0] & oks[1])  # no file done twice
    assert len(oks[0] | oks[1]) == 16 and sorted(p.name for p in out.iterdir()) == [f"{k:02d}.png" for k in range(16)]


def test_bomb_with_a_raised_pixel_limit_is_refused_by_the_memory_check(tmp_path, tiny_model):
    d = tmp_path / "in"
    d.mkdir()
    (d / "bomb.png").write_bytes(png_bomb(200_000, 200_000))  # 40,000 MP in 69 bytes
    Image.fromarray(structured_image(seed=1)).save(d / "good.png")
    r = run("denoise", d, "-o", tmp_path / "out", "--model", tiny_model, "--sigma", "5", "--json",
            "--max-pixels", "1e6")
    assert r.exit_code == 1
    recs = {Path(x["input"]).name: x for x in json_lines(r.stdout)[:-1]}
    assert recs["good.png"]["status"] == "ok"
    assert recs["bomb.png"]["status"] == "failed" and "memory" in recs["bomb.png"]["error"]
    assert "40,000 MP" in recs["bomb.png"]["error"] and "e+" not in recs["bomb.png"]["error"]


def test_memory_check_uses_the_available_memory(tmp_path, tiny_model):
    d = image_folder(tmp_path / "in", 1, size=256)
    r = run("denoise", d, "-o", tmp_path / "out", "--model", tiny_model, "--sigma", "5",
            env={"AETOOL_MEMORY_LIMIT": "100000"})
    assert r.exit_code == 1 and "needs at least" in r.stderr and "is available" in r.stderr


def test_the_memory_check_counts_integer_outputs_as_integers(tmp_path, make_upscaler):
    """upscale and denoise hold their pixels as integers: a x4 of 24 MP needs about 1.2 GB, not the
    7 GB that float pixels and blend weights would, and is not refused where 2 GB are free."""
    from aetool.limits import memory_needed

    assert memory_needed(4000, 6000, 3, 1, 16000, 24000, integer=True) == 24_000_000 * 3 + 384_000_000 * 3
    assert memory_needed(4000, 6000, 3, 1, 16000, 24000) > 6e9
    assert memory_needed(10000, 10000, 3, 1, 10000, 10000, integer=True) == 600_000_000
    Image.fromarray(structured_image(seed=1)).save(tmp_path / "a.png")
    limit = {"AETOOL_MEMORY_LIMIT": "1200000"}  # between the integer need (0.63 MB) and the float one (3.9 MB)
    r = run("upscale", tmp_path / "a.png", "-o", tmp_path / "a4.png", "--model", make_upscaler(4), env=limit)
    assert r.exit_code == 0, r.stderr


def test_upscale_output_is_checked_against_max_pixels_before_decoding(tmp_path, make_upscaler, monkeypatch):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded although the output is above the limit")

    monkeypatch.setattr("aetool.imageio._decode", must_not_decode)
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(structured_image(200, 200)).save(d / "a.png")  # 0.04 MP in, 0.16 MP at x2
    r = run("upscale", d, "-o", tmp_path / "out", "--model", make_upscaler(2), "--max-pixels", "0.1")
    assert r.exit_code == 1 and "the output would be 400x400" in r.stderr


# ------------------------------------------------------------------ dry run: a real preflight


def test_dry_run_reports_what_a_real_run_would_fail(tmp_path, tiny_model):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(structured_image(seed=1)).save(d / "good.png")
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("this is not a picture")
    (d / "header.png").write_bytes(png_bomb(64, 64)[:20])  # truncated inside its header
    (d / "bomb.png").write_bytes(png_bomb(100_000, 100_000))
    good = (d / "good.png").read_bytes()
    (d / "cut.png").write_bytes(good[: len(good) // 2])  # header fine, data cut
    out = tmp_path / "out"
    dry = run("denoise", d, "-o", out, "--model", tiny_model, "--sigma", "5", "--dry-run", "--json")
    real = run("denoise", d, "-o", tmp_path / "real", "--model", tiny_model, "--sigma", "5", "--json")
    assert dry.exit_code == real.exit_code == 1
    dry_status = {Path(x["input"]).name: x["status"] for x in json_lines(dry.stdout)[:-1]}
    real_status = {Path(x["input"]).name: x["status"] for x in json_lines(real.stdout)[:-1]}
    assert dry_status == {**{k: "failed" for k in real_status}, "good.png": "planned"}
    assert real_status["good.png"] == "ok" and sum(v == "failed" for v in real_status.values()) == 5
    assert not out.exists()  # the dry run creates nothing


def test_dry_run_reports_an_unwritable_output_folder(tmp_path, tiny_model):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    r = run("denoise", image_folder(tmp_path / "in", 2), "-o", blocker / "out", "--model", tiny_model,
            "--dry-run", "--json")
    assert r.exit_code == 1
    assert all("cannot write to folder" in x["error"] for x in json_lines(r.stdout)[:-1])


# ------------------------------------------------------------------ what the user sees


def test_each_file_is_reported_when_its_output_is_in_place(tmp_path):
    """A file's result must not wait for the next file's model run (the bar showed 6/8 for minutes)."""
    from aetool.batch import plan_jobs, run_jobs
    from aetool.discovery import collect_inputs, plan_output

    folder = image_folder(tmp_path / "in", 3)
    items, _ = collect_inputs([str(folder)])
    jobs, _ = plan_jobs(items, lambda it: plan_output(it, str(tmp_path / "out"), False, "", "same"), False)
    first_reported = threading.Event()
    seen = []

    def on_result(r):
        assert r.status == "ok" and Path(r.output).exists(), r  # reported after the rename, never before
        seen.append(Path(r.input).name)
        first_reported.set()

    def process(pic, item):
        if item.path.name == "01.png":  # the first file's result must arrive while this one runs
            assert first_reported.wait(10), "the first file was not reported while the second ran"
        return pic, {}

    stopped = run_jobs(jobs, process, suffix_for=lambda j: ".png", quality=None, max_pixels=10**8, workers=2,
                       on_result=on_result)
    assert stopped is None and sorted(seen) == ["00.png", "01.png", "02.png"]


def test_tiles_report_progress_inside_an_image():
    from aetool.engine import EngineOptions, Runner, report_tiles

    fractions = []
    img = structured_image(200, 300).astype(np.float32) / 255
    with report_tiles(fractions.append):
        Runner(EngineOptions(tile=64, overlap=16, batch_size=2)).run(lambda x: x, img)
    assert len(fractions) > 3 and fractions == sorted(fractions) and fractions[-1] == 1.0


def test_preflight_weights_jobs_by_megapixels(tmp_path):
    from aetool.batch import plan_jobs, preflight
    from aetool.discovery import collect_inputs, plan_output

    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(structured_image(100, 200)).save(d / "a.png")
    Image.fromarray(structured_image(300, 400)).save(d / "b.jpg")
    items, _ = collect_inputs([str(d)])
    jobs, _ = plan_jobs(items, lambda it: plan_output(it, str(tmp_path / "o"), False, "", "same"), False)
    ready, failed = preflight(jobs, 10**8)
    assert not failed and sorted(j.megapixels for j in ready) == [0.02, 0.12]


def test_summary_line_on_stderr_without_a_terminal_unless_quiet(tmp_path, tiny_model):
    folder = image_folder(tmp_path / "in", 2)
    r = run("denoise", folder, "-o", tmp_path / "out", "--model", tiny_model, "--sigma", "5")
    assert r.exit_code == 0 and r.stdout == ""
    assert r.stderr.startswith("denoise: 2 done, 0 skipped, 0 failed in ") and r.stderr.count("\n") == 1
    r = run("denoise", folder, "-o", tmp_path / "out2", "--model", tiny_model, "--sigma", "5", "-q")
    assert r.exit_code == 0 and r.output == ""


def test_verbose_with_json_goes_to_stderr(tmp_path, tiny_model):
    r = run("denoise", image_folder(tmp_path / "in", 2), "-o", tmp_path / "out", "--model", tiny_model,
            "--sigma", "5", "--json", "-v")
    assert r.exit_code == 0
    assert len(json_lines(r.stdout)) == 3 and all(line.startswith("{") for line in r.stdout.splitlines())
    assert r.stderr.count("ok: ") == 2


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_json_lines_on_a_narrow_terminal_are_never_wrapped(tmp_path, tiny_model):
    deep = tmp_path / ("a-very-long-folder-name-" * 3) / "in"
    folder = image_folder(deep, 2)
    primary, secondary = os.openpty()
    env = {**os.environ, "COLUMNS": "40", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "aetool", "denoise", str(folder), "-o", str(tmp_path / "out"),
                             "--model", str(tiny_model), "--sigma", "5", "--json"],
                            stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(primary)
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    lines = [line for line in text.split("\n") if line.startswith("{")]
    assert proc.returncode == 0, text
    assert len(lines) == 3 and all(json.loads(line) for line in lines), text


# ------------------------------------------------------------------ probes that passed before, kept passing


def test_read_only_file_system_stops_the_batch(tmp_path, tiny_model, monkeypatch):
    import errno

    def read_only(path, data, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("aetool.atomic.write_atomic", read_only)
    r = run("denoise", image_folder(tmp_path / "in", 6), "-o", tmp_path / "out", "--model", tiny_model,
            "--sigma", "5", "--json")
    summary = json_lines(r.stdout)[-1]["summary"]
    assert r.exit_code == 1 and "Read-only" in summary["stopped"] and summary["not_started"] >= 3


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_output_folder_fails_every_file_before_processing(tmp_path, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        r = run("denoise", image_folder(tmp_path / "in", 3), "-o", out, "--model", tiny_model, "--sigma", "5",
                "--json")
    finally:
        out.chmod(0o755)
    assert r.exit_code == 1
    assert all("cannot write to folder" in x["error"] for x in json_lines(r.stdout)[:-1])


def test_symlink_loop_in_a_folder_tree_is_not_followed(tmp_path, tiny_model):
    folder = image_folder(tmp_path / "in", 2)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    r = run("denoise", folder, "-r", "-o", tmp_path / "out", "--model", tiny_model, "--sigma", "5", "--json")
    assert r.exit_code == 0, r.output
    assert json_lines(r.stdout)[-1]["summary"]["ok"] == 2


def test_model_replicas_share_the_folder_in_threads_of_their_own(tmp_path):
    """run_jobs with a list of processors (--devices): every file once, by whichever replica is
    free; both replicas work, each in its own thread, and a bad file still fails alone."""
    from aetool.batch import plan_jobs, run_jobs
    from aetool.discovery import collect_inputs, plan_output

    folder = image_folder(tmp_path / "in", 6)
    (folder / "07.png").write_bytes(b"not a png")
    items, _ = collect_inputs([str(folder)])
    jobs, _ = plan_jobs(items, lambda it: plan_output(it, str(tmp_path / "out"), False, "", "same"), False)
    threads = {0: set(), 1: set()}
    both_busy = threading.Barrier(2, timeout=10)

    def replica(k):
        def process(pic, item):
            threads[k].add(threading.current_thread().name)
            if item.path.name in ("00.png", "01.png"):
                both_busy.wait()  # the first two files run at the same time, one per replica
            return pic.with_pixels(pic.pixels * 0.5), {"replica": k}
        return process

    results = []
    stopped = run_jobs(jobs, [replica(0), replica(1)], suffix_for=lambda j: ".png", quality=None,
                       max_pixels=10**8, workers=2, on_result=results.append)
    assert stopped is None
    ok = sorted(Path(r.input).name for r in results if r.status == "ok")
    assert ok == [f"{i:02d}.png" for i in range(6)]
    assert [Path(r.input).name for r in results if r.status == "failed"] == ["07.png"]
    assert {r.info["replica"] for r in results if r.status == "ok"} == {0, 1}
    assert len(threads[0] | threads[1]) == 2 and not (threads[0] & threads[1])


def test_devices_cli_runs_a_replica_per_device(tmp_path, tiny_model):
    """`--devices cpu,cpu`: two CPU replicas give the bytes one device gives; bad lists are exit 2."""
    folder = image_folder(tmp_path / "in", 4)
    base = ["denoise", str(folder), "--model", str(tiny_model), "--sigma", "15", "-q"]
    assert run(*base, "-o", str(tmp_path / "one")).exit_code == 0
    res = run(*base, "-o", str(tmp_path / "two"), "--devices", "cpu,cpu", "--json")
    assert res.exit_code == 0, res.output
    for f in sorted((tmp_path / "one").iterdir()):
        assert (tmp_path / "two" / f.name).read_bytes() == f.read_bytes()
    for bad in ("auto", "gpu0", "all,cpu", ","):
        r = run(*base, "-o", str(tmp_path / "bad"), "--devices", bad)
        assert r.exit_code == 2, (bad, r.output)
