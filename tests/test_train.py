"""`aetool train denoise`: a tiny run end to end, the files it leaves, and an exact --resume."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from aetool.cli import app
from conftest import structured_image

runner = CliRunner()
TINY = ["--width", "8,16", "--blocks", "1", "--patch", "32", "--batch-size", "4", "--val-count", "2",
        "--precision", "fp32", "--warmup", "2"]


@pytest.fixture
def train_dir(tmp_path):
    d = tmp_path / "train"
    d.mkdir()
    for i in range(6):
        Image.fromarray(structured_image(64, 80, seed=i)).save(d / f"img{i}.png")
    return d


def test_train_writes_weights_card_plot_and_the_model_loads(train_dir, tmp_path):
    out = tmp_path / "m" / "mine.safetensors"
    r = runner.invoke(app, ["train", "denoise", "--data", str(train_dir), "--out", str(out), "--steps", "6",
                            "--val-every", "3", *TINY])
    assert r.exit_code == 0, r.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["steps"] == 6 and card["training"]["command"].startswith("aetool train denoise")
    assert card["config"] == {"in_channels": 3, "channels": [8, 16], "blocks": 1}
    assert out.with_suffix(".png").stat().st_size > 1000
    assert len(json.loads(out.with_name("mine.history.json").read_text())["val_psnr"]) == 2
    # The trained file is usable by path.
    src = tmp_path / "noisy.png"
    Image.fromarray(structured_image(seed=9)).save(src)
    r = runner.invoke(app, ["denoise", str(src), "-o", str(tmp_path / "den.png"), "--model", str(out),
                            "--sigma", "20", "-q"])
    assert r.exit_code == 0, r.output


def test_resume_continues_exactly(train_dir, tmp_path, monkeypatch):
    from aetool.training import loop
    from aetool.training.denoise import DenoiseTask
    from aetool.training.loop import TrainConfig, train

    def task():
        return DenoiseTask([train_dir], width=(8, 16), blocks=1, patch=32, val_count=2)

    def cfg(out, resume=False):
        return TrainConfig(out=out, steps=8, batch_size=4, patch=32, warmup=2, val_every=4, precision="fp32",
                           resume=resume, quiet=True, threads=1)

    straight = tmp_path / "a.safetensors"
    train(cfg(straight), task())

    interrupted = tmp_path / "b.safetensors"
    t = task()
    real_sample = t.sample_batch
    calls = {"n": 0}

    def sample_then_stop(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_sample(*args, **kwargs)

    t.sample_batch = sample_then_stop
    with pytest.raises(KeyboardInterrupt):
        train(cfg(interrupted), t)
    assert json.loads(interrupted.with_name("b.ckpt.json").read_text())["step"] == 5
    train(cfg(interrupted, resume=True), task())
    a, b = load_file(str(straight)), load_file(str(interrupted))
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)


def test_resume_without_checkpoint_is_a_usage_error(train_dir, tmp_path):
    r = runner.invoke(app, ["train", "denoise", "--data", str(train_dir), "--out", str(tmp_path / "x.safetensors"),
                            "--resume", *TINY])
    assert r.exit_code == 2 and "checkpoint" in r.output


def test_missing_data_folder_is_a_usage_error(tmp_path):
    r = runner.invoke(app, ["train", "denoise", "--data", str(tmp_path / "none"), "--out",
                            str(tmp_path / "x.safetensors")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_init_fine_tunes_an_existing_model(train_dir, tmp_path):
    base = tmp_path / "base.safetensors"
    r = runner.invoke(app, ["train", "denoise", "--data", str(train_dir), "--out", str(base), "--steps", "2",
                            "--val-every", "2", *TINY])
    assert r.exit_code == 0, r.output
    tuned = tmp_path / "tuned.safetensors"
    r = runner.invoke(app, ["train", "denoise", "--data", str(train_dir), "--out", str(tuned), "--steps", "2",
                            "--val-every", "2", "--init", str(base), *TINY])
    assert r.exit_code == 0, r.output
    card = json.loads(tuned.with_suffix(".json").read_text())
    base_card = json.loads(base.with_suffix(".json").read_text())
    assert card["training"]["init"] == str(base) and card["config"] == base_card["config"]
    assert card["training"]["init_from"]["sha256"] == base_card["sha256"]
    assert card["training"]["init_from"]["training"]["command"] == base_card["training"]["command"]
    r = runner.invoke(app, ["train", "denoise", "--data", str(train_dir), "--out", str(tmp_path / "g.safetensors"),
                            "--init", str(base), "--channels", "1", *TINY])
    assert r.exit_code == 2 and "channels" in r.output


def test_train_upscale_end_to_end_and_resume(train_dir, tmp_path):
    out = tmp_path / "sr.safetensors"
    tiny = ["--width", "8", "--blocks", "1", "--patch", "16", "--batch-size", "2", "--val-count", "2",
            "--precision", "fp32", "--warmup", "1", "--val-every", "2"]
    for degradation in ("bicubic", "photo"):
        r = runner.invoke(app, ["train", "upscale", "--scale", "3", "--degradation", degradation, "--data",
                                str(train_dir), "--out", str(out), "--steps", "2", *tiny])
        assert r.exit_code == 0, r.output
        card = json.loads(out.with_suffix(".json").read_text())
        assert card["task"] == "upscale" and card["config"]["scale"] == 3
        assert card["training"]["data"]["degradation"] == degradation
        assert 5 < card["training"]["final_val_psnr"] < 60
    r = runner.invoke(app, ["train", "upscale", "--scale", "3", "--data", str(train_dir), "--out", str(out),
                            "--steps", "4", "--resume", *tiny])
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["training"]["steps"] == 4
    src = tmp_path / "small.png"
    Image.fromarray(structured_image(20, 24, seed=3)).save(src)
    r = runner.invoke(app, ["upscale", str(src), "-o", str(tmp_path / "big.png"), "--model", str(out)])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "big.png").size == (72, 60)
    # An x3 model seeds an x2 one: its feature layers carry over, the sub-pixel layer is new.
    x2 = tmp_path / "x2.safetensors"
    r = runner.invoke(app, ["train", "upscale", "--scale", "2", "--data", str(train_dir), "--out",
                            str(x2), "--init", str(out), "--steps", "1", "--lr", "1e-9", *tiny])
    assert r.exit_code == 0, r.output
    card = json.loads(x2.with_suffix(".json").read_text())
    assert card["config"]["scale"] == 2 and card["training"]["init_from"]["name"] == "sr"
    seeded, seed = load_file(x2), load_file(out)
    assert (seeded["head.weight"] - seed["head.weight"]).abs().max() < 1e-6
    assert seeded["to_subpixels.weight"].shape[0] == 12 and seeded["to_subpixels.weight"].abs().max() < 1e-6
    r = runner.invoke(app, ["train", "denoise", "--data", str(train_dir), "--out",
                            str(tmp_path / "d.safetensors"), "--init", str(out), "--steps", "1"])
    assert r.exit_code == 2 and "not a denoiser" in r.output


def _touch_images(folder, n):
    folder.mkdir()
    for i in range(n):
        (folder / f"img{i:02d}.png").write_bytes(b"")  # listed, not read
    return folder


def test_hold_out_never_takes_the_majority(tmp_path):
    from aetool.errors import UsageError
    from aetool.training.data import split_files

    for n in (1, 2, 3, 4, 5, 9, 10, 39, 40, 100):
        split = split_files([_touch_images(tmp_path / f"d{n}", n)], None, 8)
        assert len(split.train) >= 1 and (not split.held_out or len(split.val) <= n // 5), n
        if n >= 40:
            assert len(split.val) == 8 and not split.warnings
    d9 = tmp_path / "d9"
    split = split_files([d9], None, 8)  # a user's 9 images: 8 trained on, not 1
    assert len(split.train) == 8 and [p.name for p in split.val] == ["img08.png"]
    assert "holding out 1 of 9" in split.warnings[0]
    split = split_files([tmp_path / "d3"], None, 8)  # too few to hold any out: validate on the training files
    assert not split.held_out and split.val == split.train and len(split.train) == 3
    assert "validating on the training images" in split.warnings[0]
    assert not split_files([tmp_path / "d40"], None, 0).held_out
    with pytest.raises(UsageError, match="--val-count must be 0 or more"):
        split_files([d9], None, -1)


def test_three_large_images_train_with_warnings(tmp_path):
    """3 images of 800 px once gave 'no training image is at least 64x64 pixels' (all 3 were
    held out for validation); now they are trained on, with warnings that say why and what to do."""
    d = tmp_path / "three"
    d.mkdir()
    for i in range(3):
        Image.fromarray(structured_image(300, 400, seed=i)).save(d / f"big{i}.png")
    out = tmp_path / "three.safetensors"
    r = runner.invoke(app, ["train", "denoise", "--data", str(d), "--out", str(out), "--steps", "2", "-q", *TINY])
    assert r.exit_code == 0, r.output
    assert "only 3 training images" in r.output and "validating on the training images" in r.output
    training = json.loads(out.with_suffix(".json").read_text())["training"]
    assert training["data"]["train_images"] == 3
    assert training["validation"]["held_out"] is False and len(training["validation"]["files"]) == 3


def test_refusals_say_the_true_reason(tmp_path):
    def refusal(*args):
        r = runner.invoke(app, ["train", "denoise", "--out", str(tmp_path / "x.safetensors"), *TINY, *args])
        assert r.exit_code == 2, r.output
        return r.output

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    assert "no images found in" in refusal("--data", str(empty)) and ".png" in refusal("--data", str(empty))
    small = tmp_path / "small"
    small.mkdir()
    for w, h in ((20, 30), (31, 90)):
        Image.fromarray(structured_image(h, w)).save(small / f"{w}x{h}.png")
    msg = refusal("--data", str(small))  # TINY has --patch 32
    assert "no training image is at least 32x32 pixels (--patch 32)" in msg
    assert "20x30.png 20x30" in msg and "31x90.png 31x90" in msg and "smaller --patch" in msg
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(structured_image(64, 64)).save(broken / "good.png")
    (broken / "bad.png").write_bytes(b"not a png")
    msg = refusal("--data", str(broken))
    assert "cannot read" in msg and "bad.png" in msg
    assert "--val-every must be at least 1, got 0" in refusal("--data", str(small), "--val-every", "0")
    assert "--batch-size must be at least 1, got 0" in refusal("--data", str(small), "--batch-size", "0")


def test_a_short_run_has_a_loss_curve(train_dir, tmp_path):
    """A 5-step run once recorded one loss point (every 20 steps and the last), drawn as an
    invisible one-point line: its plot had an empty loss axis."""
    from aetool.training.loop import History, loss_curve, loss_interval

    out = tmp_path / "short.safetensors"
    r = runner.invoke(app, ["train", "denoise", "--data", str(train_dir), "--out", str(out), "--steps", "5",
                            "--val-every", "5", *TINY])
    assert r.exit_code == 0, r.output
    history = History(**json.loads(out.with_name("short.history.json").read_text()))
    assert history.step == [1, 2, 3, 4, 5] and len(history.loss) == 5
    steps, loss = loss_curve(history)
    assert list(steps) == [1, 2, 3, 4, 5] and np.all(np.isfinite(loss))
    assert [loss_interval(n) for n in (5, 100, 500, 1000, 20000)] == [1, 2, 10, 20, 20]
    long = History(step=list(range(20, 20001, 20)), loss=list(np.linspace(1, 0.1, 1000)))
    steps, loss = loss_curve(long)  # smoothed over 5 points
    assert len(steps) == len(loss) == 996 and steps[-1] == 20000


def test_lr_schedule_over_a_time_budget():
    from aetool.training.loop import TrainConfig, lr_at

    steps = TrainConfig(out="x.safetensors", steps=1000, warmup=100, lr=1e-3, lr_min=1e-5)
    assert lr_at(steps, 0) == pytest.approx(1e-5) and lr_at(steps, 99) == pytest.approx(1e-3)
    assert lr_at(steps, 1000) == pytest.approx(1e-5) and lr_at(steps, 500, seconds=1e9) == lr_at(steps, 500)
    timed = TrainConfig(out="x.safetensors", steps=100000, minutes=2, warmup=100, lr=1e-3, lr_min=1e-5)
    assert lr_at(timed, 500, seconds=0) == pytest.approx(1e-3, rel=1e-3)  # by time, the cosine starts
    assert lr_at(timed, 500, seconds=60) == pytest.approx(lr_at(steps, 550))  # half the budget: half the cosine
    assert lr_at(timed, 200, seconds=120) == pytest.approx(1e-5)  # the budget spent: --lr-min
    assert lr_at(timed, 9, seconds=1) == pytest.approx(1e-4)  # warming up (by steps)
    assert lr_at(timed, 9, seconds=119.9) < 1e-5 + 1e-7  # a budget shorter than the warm-up still ends low
    bounded = TrainConfig(out="x.safetensors", steps=1000, minutes=2, warmup=100, lr=1e-3, lr_min=1e-5)
    assert lr_at(bounded, 500, seconds=6) == pytest.approx(lr_at(timed, 500, seconds=60))  # --steps further on
    assert lr_at(bounded, 1000, seconds=1) == pytest.approx(1e-5)  # --steps, the upper bound, reached first


def test_minutes_stops_by_time_validates_and_resumes(train_dir, tmp_path):
    import re

    out = tmp_path / "timed.safetensors"
    args = ["train", "denoise", "--data", str(train_dir), "--out", str(out), "--steps", "100000",
            "--val-every", "100000", "--lr", "1e-3", "--lr-min", "1e-5", *TINY]
    r = runner.invoke(app, [*args, "--minutes", "0.05"])
    assert r.exit_code == 0, r.output
    assert "time budget of 0.05 min reached" in r.output
    training = json.loads(out.with_suffix(".json").read_text())["training"]
    assert training["minutes"] == 0.05 and "--minutes 0.05" in training["command"]
    assert 1 <= training["steps"] < 100000 and training["seconds"] >= 3
    history = json.loads(out.with_name("timed.history.json").read_text())
    assert history["seconds"] >= 3.0 and history["val_step"] == [training["steps"]]  # validated at the end
    assert history["step"][-1] == training["steps"]  # the last partial loss point too
    last_lr = float(re.findall(r"lr ([0-9.e+-]+) \(last step\)", r.output)[-1])
    assert 1e-5 <= last_lr < 1e-5 + 0.05 * (1e-3 - 1e-5)  # a run cut by time ends near --lr-min
    # --resume with the same budget: spent, so nothing more is trained; with a larger one it goes on.
    steps = training["steps"]
    r = runner.invoke(app, [*args, "--minutes", "0.05", "--resume"])
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_suffix(".json").read_text())["training"]["steps"] == steps
    r = runner.invoke(app, [*args, "--minutes", "0.07", "--resume"])
    assert r.exit_code == 0, r.output
    training = json.loads(out.with_suffix(".json").read_text())["training"]
    assert training["steps"] > steps and training["minutes"] == 0.07 and training["seconds"] >= 4
    r = runner.invoke(app, [*args, "--minutes", "0"])
    assert r.exit_code == 2 and "--minutes must be positive" in r.output


GPU_TRAIN = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_train.sh"


def _gpu_train(out, total, data_root, only, batch="2"):
    """benchmarks/gpu_train.sh as it is run on a GPU machine, here on the CPU with tiny data."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, AETOOL_GPU_TRAIN_ONLY=only, AETOOL_GPU_TRAIN_BATCH=batch, PYTHON=sys.executable,
               OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(GPU_TRAIN), str(out), total, str(data_root)], env=env, capture_output=True,
                          text=True, timeout=300)


def _shared_data_like(root, card_name, size=(100, 120)):
    """A tiny DATA_ROOT laid out like ../shared/data: the folders the card names, 3 images each."""
    card = json.loads((GPU_TRAIN.parent.parent / "weights" / f"{card_name}.json").read_text())
    for i, folder in enumerate(card["training"]["data"]["folders"]):
        assert folder.startswith("../shared/data/")
        d = root / folder[len("../shared/data/"):]
        d.mkdir(parents=True)
        for k in range(3):
            Image.fromarray(structured_image(*size, channels=card["channels"], seed=10 * i + k)).save(d / f"{k}.png")
    return card


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_train_script_runs_unattended_on_cpu(tmp_path):
    """The smallest shipped model (upscale-x2), 0.05 minutes in all: the script's whole path once."""
    shipped = _shared_data_like(tmp_path / "data", "upscale-x2")
    out = tmp_path / "out"
    r = _gpu_train(out, "0.05", tmp_path / "data", "upscale-x2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("upscale-x2.ckpt")) == [
        "summary.txt", "upscale-x2.history.json", "upscale-x2.json", "upscale-x2.log", "upscale-x2.png",
        "upscale-x2.safetensors"]
    card = json.loads((out / "upscale-x2.json").read_text())
    training = card["training"]
    assert card["name"] == "upscale-x2" and card["config"] == shipped["config"]
    assert training["init"] == "upscale-x2" and training["init_from"]["sha256"] == shipped["sha256"]
    assert 0 < training["minutes"] <= 0.05 and training["steps"] >= 1 and training["batch_size"] == 2
    assert training["data"]["folders"] == [str(tmp_path / "data" / "train" / f) for f in ("bsd200", "t91")]
    assert training["data"]["degradation"] == "bicubic" and "--scale 2" in training["command"]
    assert training["lr"] == pytest.approx(shipped["training"]["lr"] / 4)
    log = (out / "upscale-x2.log").read_text()
    assert log.startswith("$ ") and "time budget of" in log
    row = [line for line in r.stdout.splitlines() if line.startswith("upscale-x2 ")]
    assert len(row) == 1 and f"{shipped['training']['final_val_psnr']:.3f} -> " in row[0] and row[0].endswith("ok")
    assert (out / "summary.txt").read_text().strip() in r.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_train_script_goes_on_after_a_failure(tmp_path):
    """A model without its data and one whose data breaks its trainer: both logged, both in the
    summary, exit status 1; an unknown model name is a usage error before anything runs."""
    gray = tmp_path / "data" / "train" / "bsd400-gray"
    gray.mkdir(parents=True)
    (gray / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    r = _gpu_train(out, "0.05", tmp_path / "data", "denoise-color,denoise-gray")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "data folder(s) missing" in (out / "denoise-color.log").read_text()
    assert "cannot read" in (out / "denoise-gray.log").read_text()
    rows = [line for line in r.stdout.splitlines() if line.startswith("denoise-")]
    assert len(rows) == 2 and "not run: data folder(s) missing" in rows[0] and "FAILED: exit status 2" in rows[1]
    assert "2 of 2 model(s) failed" in r.stderr
    r = _gpu_train(tmp_path / "out2", "0.05", tmp_path / "data", "denoise-color,no-such-model")
    assert r.returncode == 2 and "no shipped model named no-such-model" in r.stderr
