"""Training with several processes (torchrun, DistributedDataParallel over gloo on the CPU): two
processes give the weights of one with the same global batch, a stopped run resumes exactly, a
checkpoint moves between 1 and 2 processes, and rank 0 alone writes files.

Tolerance. Two processes compute the same patches as one (every rank draws the global batch and
keeps its half), so the only difference is the order of the sums: the gradient is the mean of
two half-batch means (DDP averages them) instead of one mean over the batch, and convolutions on
2 patches may block their sums differently from 4. That changes gradients in their last bits
(about 1e-7 relative), and the weights by about as much, except where a gradient is a near
cancellation to about zero: there rounding can flip its sign, and Adam, which normalises each
gradient, then moves that weight by up to a step's update the other way. So the test bounds the
whole difference by what training moved: |w2 - w1| <= REL * |w1 - w_init| (L2 over all weights),
REL = 1 %: room for about three such weights (each at most 2 x 4e-4 against a move of 0.14
here, 0.6 %), while a wrong share (rank 1 training on rank 0's half) differs by 29 %. (On the machine it was written on, the
difference is 0.) Runs with the same number of processes repeat their sums exactly, so a resumed
2-process run equals an uninterrupted one bit for bit."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from conftest import structured_image

REL = 0.01
STEPS, STOP_AT = 8, 6  # an interrupted run stops when drawing the 6th batch: its checkpoint is step 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _task(data):
    from aetool.training.denoise import DenoiseTask

    return DenoiseTask([data], width=(8, 16), blocks=1, patch=32, val_count=2)


def _cfg(out, resume=False):
    from aetool.training.loop import TrainConfig

    return TrainConfig(out=Path(out), steps=STEPS, batch_size=4, patch=32, warmup=2, val_every=4, precision="fp32",
                       resume=resume, quiet=True, threads=1)


def _stopping(task, at):
    """The task, its sample_batch raising KeyboardInterrupt at call `at` (as Ctrl-C would)."""
    real, calls = task.sample_batch, [0]

    def sample_then_stop(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    task.sample_batch = sample_then_stop
    return task


def _train_one(data, out, resume=False, stop_at=None):
    """One process, in this one (no torchrun)."""
    from aetool.training.loop import train

    task = _task(data) if stop_at is None else _stopping(_task(data), stop_at)
    if stop_at is None:
        return train(_cfg(out, resume), task)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(out, resume), task)


def _worker(rank, world, data, tmp, ports):
    """One of `world` ranks, set up as torchrun sets its workers up (the environment), running
    the scenarios in turn, each with its own rendezvous port. Records which files it wrote."""
    import torch

    from aetool.training import loop

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
    wrote: list[str] = []
    real_save, real_export = loop._save_checkpoint, loop.export
    loop._save_checkpoint = lambda out, *a, **k: (wrote.append(f"checkpoint {Path(out).name}"), real_save(out, *a, **k))
    loop.export = lambda model, out, *a, **k: (wrote.append(f"export {Path(out).name}"), real_export(model, out, *a, **k))
    scenarios = [("a2.safetensors", False, None),  # straight
                 ("b2.safetensors", False, STOP_AT), ("b2.safetensors", True, None),  # stopped, resumed
                 ("c.safetensors", True, None)]  # resumes the checkpoint of one process (step 5)
    for (name, resume, stop_at), port in zip(scenarios, ports):
        os.environ["MASTER_PORT"] = str(port)
        task = _task(data) if stop_at is None else _stopping(_task(data), stop_at)
        try:
            summary = loop.train(_cfg(tmp / name, resume), task)
            assert summary["rank"] == rank and summary["processes"] == world
        except KeyboardInterrupt:
            wrote.append(f"interrupted {name}")
            if rank == 0:  # the 2-process checkpoint of step 5, for one process to resume
                for src, dst in zip(loop.checkpoint_paths(tmp / name), loop.checkpoint_paths(tmp / "d.safetensors")):
                    shutil.copy(src, dst)
    (tmp / f"rank{rank}.json").write_text(json.dumps(wrote))


def _spawn(world, *args, timeout=120):
    """Start `world` ranks of _worker and wait (a deadlock fails the test instead of hanging it)."""
    import torch.multiprocessing as mp

    ctx = mp.start_processes(_worker, args=(world, *args), nprocs=world, join=False, start_method="spawn")
    deadline = time.time() + timeout
    while not ctx.join(timeout=1):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{world} training processes still running after {timeout} s (a deadlock?)")


def _weights(path):
    return load_file(str(path))


def _initial_weights(data):
    import torch

    torch.manual_seed(0)  # as the loop seeds the initial weights (--seed 0)
    return {k: v.detach() for k, v in _task(data).build_model().state_dict().items()}


def _assert_close(a, b, initial):
    """b is within REL of what training moved a (see the module's docstring)."""
    a, b = _weights(a), _weights(b)
    assert a.keys() == b.keys() == initial.keys()
    diff = sum(float((a[k].double() - b[k].double()).square().sum()) for k in a) ** 0.5
    moved = sum(float((a[k].double() - initial[k].double()).square().sum()) for k in a) ** 0.5
    assert moved > 0 and diff <= REL * moved, f"weights differ by {diff:.3g}, {diff / moved:.2%} of training's move"


def _assert_equal(a, b):
    a, b = _weights(a), _weights(b)
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp") / "train"
    d.mkdir()
    for i in range(6):
        Image.fromarray(structured_image(64, 80, seed=i)).save(d / f"img{i}.png")
    return d


def test_two_processes_match_one_resume_exactly_and_move_between_counts(data, tmp_path):
    # One process: the reference, and a run stopped at step 5 for two processes to resume.
    _train_one(data, tmp_path / "a1.safetensors")
    _train_one(data, tmp_path / "c.safetensors", stop_at=STOP_AT)
    _spawn(2, data, tmp_path, [_free_port() for _ in range(4)])

    # (a) the same global batch on 2 processes gives the weights and losses of 1 (see REL).
    initial = _initial_weights(data)
    _assert_close(tmp_path / "a1.safetensors", tmp_path / "a2.safetensors", initial)
    one = json.loads((tmp_path / "a1.history.json").read_text())
    two = json.loads((tmp_path / "a2.history.json").read_text())
    assert one["step"] == two["step"] == list(range(1, STEPS + 1)) and one["val_step"] == two["val_step"] == [4, 8]
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)  # the global batch's loss, not rank 0's half
    card = json.loads((tmp_path / "a2.json").read_text())["training"]
    assert card["processes"] == 2 and card["batch_size"] == 4 and card["steps"] == STEPS
    assert "processes" not in json.loads((tmp_path / "a1.json").read_text())["training"]
    # (b) stopped at step 5 and resumed: bit for bit the uninterrupted 2-process run.
    _assert_equal(tmp_path / "a2.safetensors", tmp_path / "b2.safetensors")
    # (c) a checkpoint of 1 process resumed by 2, and one of 2 resumed by 1: the 1-process run.
    assert json.loads((tmp_path / "d.ckpt.json").read_text())["step"] == STOP_AT - 1
    _assert_close(tmp_path / "a1.safetensors", tmp_path / "c.safetensors", initial)
    _train_one(data, tmp_path / "d.safetensors", resume=True)
    _assert_close(tmp_path / "a1.safetensors", tmp_path / "d.safetensors", initial)
    # (d) rank 0 alone wrote checkpoints and weights; both ranks saw the interruption.
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank1 == ["interrupted b2.safetensors"]
    assert rank0 == ["checkpoint a2.safetensors", "export a2.safetensors", "checkpoint b2.safetensors",
                     "interrupted b2.safetensors", "checkpoint b2.safetensors", "export b2.safetensors",
                     "checkpoint c.safetensors", "export c.safetensors"]


def test_torchrun_command_line(data, tmp_path):
    """`python -m torch.distributed.run --nproc-per-node 2 -m aetool train denoise ...` as a user
    types it: one set of files and messages (rank 0's), the weights of one process."""
    out = tmp_path / "run" / "m.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), "-m", "aetool", "train", "denoise", "--data", str(data), "--out", str(out),
           "--steps", str(STEPS), "--val-every", "4", "--width", "8,16", "--blocks", "1", "--patch", "32",
           "--batch-size", "4", "--val-count", "2", "--precision", "fp32", "--warmup", "2", "--threads", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.count("wrote ") == 1 and r.stderr.count("only 5 training images") == 1
    assert r.stderr.count("step 8/8") == 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.ckpt.json", "m.ckpt.safetensors", "m.history.json",
                                                           "m.json", "m.png", "m.safetensors"]
    assert json.loads(out.with_suffix(".json").read_text())["training"]["processes"] == 2
    _train_one(data, tmp_path / "one.safetensors")
    _assert_close(tmp_path / "one.safetensors", out, _initial_weights(data))


def test_processes_from_the_environment(monkeypatch):
    from aetool.errors import UsageError
    from aetool.training.distributed import Processes, share
    from aetool.training.loop import TrainConfig, check_config

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert Processes.from_env().world == 1  # no torchrun: one process, as always
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    procs = Processes.from_env()
    assert (procs.rank, procs.world, procs.local_rank, procs.main) == (3, 4, 1, False)
    assert share(8, procs) == slice(6, 8) and procs.device("cpu") == "cpu"
    with pytest.raises(UsageError, match="each process takes the GPU of its local rank"):
        procs.device("cuda:0")
    with pytest.raises(UsageError, match="MPS"):
        procs.device("mps")
    cfg = TrainConfig(out="x.safetensors", batch_size=6)
    check_config(cfg)
    with pytest.raises(UsageError, match=r"--batch-size 6 cannot be split evenly across 4 processes.*global batch.*"
                                         r"multiple of 4 \(4 or 8\)"):
        check_config(cfg, world=4)
