"""`--ray`: the same files, records, summary and exit code as a local run, with the jobs run by Ray
Data's actors. One local Ray instance (2 CPUs) serves the whole module; the CLI's `--ray local`
uses it, as it uses any connection its process already has."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from aetool.cli import app
from conftest import structured_image

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def records(stdout: str) -> tuple[dict, dict]:
    """{input: record} and the summary from --json output; every stdout line must be JSON."""
    lines = [json.loads(line) for line in stdout.splitlines()]
    return {x["input"]: x for x in lines[:-1]}, lines[-1]["summary"]


def comparable(recs: dict, summary: dict, out: Path) -> tuple[dict, dict]:
    """What must match between two runs: not the times, and outputs named relative to the folder."""
    recs = {k: {f: (str(Path(v).relative_to(out)) if f == "output" else v) for f, v in r.items() if f != "seconds"}
            for k, r in recs.items()}
    return recs, {k: v for k, v in summary.items() if k not in ("seconds", "megapixels_per_second")}


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too: no temporary or claim may be left)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture
def mixed_dir(tmp_path) -> Path:
    """Good images (one in a subfolder, one JPEG) and two bad files."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(structured_image(48, 64, seed=i)).save(d / f"good{i}.png")
    Image.fromarray(structured_image(48, 64, seed=7)).save(d / "sub" / "deep.jpg", quality=90)
    jpeg = (d / "sub" / "deep.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])  # fails when decoded, in an actor
    (d / "text.png").write_text("this is not a picture")  # fails in the driver's preflight
    return d


def test_denoise_folder_with_bad_files_matches_the_local_run_and_reruns_finish_it(ray_local, mixed_dir, tmp_path, tiny_model):
    common = ("denoise", mixed_dir, "-r", "--model", tiny_model, "--sigma", "10", "--json")
    local = run(*common, "-o", tmp_path / "local")
    on_ray = run(*common, "-o", tmp_path / "ray", "--ray", "local")
    assert local.exit_code == on_ray.exit_code == 1, on_ray.output
    assert comparable(*records(on_ray.stdout), tmp_path / "ray") == comparable(*records(local.stdout), tmp_path / "local")
    recs, summary = records(on_ray.stdout)
    assert summary["ok"] == 4 and summary["failed"] == 2 and summary["not_started"] == 0
    assert recs[str(mixed_dir / "truncated.jpg")]["status"] == "failed"
    outputs = files(tmp_path / "ray")
    assert outputs == files(tmp_path / "local")  # byte-identical, and no partial or hidden file left
    assert sorted(outputs) == ["good0.png", "good1.png", "good2.png", "sub/deep.jpg"]

    # A re-run (after a node was lost, say) does only what is missing: the bad files fail again.
    (tmp_path / "ray" / "good1.png").unlink()
    again = run(*common, "-o", tmp_path / "ray", "--ray", "local", "--ray-actors", "1")  # 1 file to do
    assert again.exit_code == 1, again.output
    recs, summary = records(again.stdout)
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (1, 3, 2)
    assert recs[str(mixed_dir / "good1.png")]["status"] == "ok"
    assert files(tmp_path / "ray") == outputs  # the missing file is back, the same bytes


def test_upscale_on_ray_matches_the_local_run(ray_local, tmp_path, make_upscaler):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        Image.fromarray(structured_image(24, 32, seed=i)).save(d / f"p{i}.png")
    common = ("upscale", d, "--model", make_upscaler(2), "--json")
    local = run(*common, "-o", tmp_path / "local")
    on_ray = run(*common, "-o", tmp_path / "ray", "--ray", "local", "--ray-actors", "1")
    assert local.exit_code == on_ray.exit_code == 0, on_ray.output
    assert comparable(*records(on_ray.stdout), tmp_path / "ray") == comparable(*records(local.stdout), tmp_path / "local")
    assert files(tmp_path / "ray") == files(tmp_path / "local") and len(files(tmp_path / "ray")) == 3


def test_actor_killed_mid_file_loses_nothing_and_a_fatal_error_stops_the_run(ray_local, tmp_path):
    """An actor that dies in the middle of a file (as on a node that goes down): Ray restarts it and
    runs its batch again; the files it had written are skipped, the one it was writing is done
    (its claim was held by a dead process), and nothing partial is left. A processor's fatal
    error (a broken model) stops the run with its reason, as run_jobs does locally."""
    from aetool.batch import plan_jobs
    from aetool.cluster import Session
    from aetool.discovery import collect_inputs, plan_output
    from aetool.errors import ModelError

    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    for i in range(6):
        Image.fromarray(structured_image(16, 16, seed=i)).save(d / f"p{i}.png")
    marker = tmp_path / "died-once"

    def processor(die_at: str = "", fatal_at: str = ""):
        def make_processor():
            def process(pic, item):
                if item.path.name == die_at and not marker.exists():
                    marker.touch()
                    os._exit(1)  # no clean-up at all, like a machine that loses power
                if item.path.name == fatal_at:
                    raise ModelError("the model produced NaN")
                return pic, {}
            return process
        return make_processor

    items, _ = collect_inputs([str(d)], False, output=str(out))
    jobs, _ = plan_jobs(items, lambda item: plan_output(item, str(out), False, "", "png"), False)
    options = dict(suffix_for=lambda job: ".png", quality=None, max_pixels=10**6, workers=1)
    reported = []
    with Session("local") as session:
        assert session.run_jobs(jobs, processor(die_at="p3.png"), on_result=reported.append, actors=1,
                                **options) is None
    assert marker.exists()  # the actor did die
    assert len(reported) == 6 and all(r.status in ("ok", "skipped") for r in reported)
    assert sorted(files(out)) == [f"p{i}.png" for i in range(6)]  # all there; no temporary, no claim left
    for i in range(6):
        with Image.open(out / f"p{i}.png") as im:
            assert (im.size, im.mode) == ((16, 16), "RGB")

    out2 = tmp_path / "out2"
    jobs, _ = plan_jobs(items, lambda item: plan_output(item, str(out2), False, "", "png"), False)
    reported = []
    with Session("local") as session:
        stopped = session.run_jobs(jobs, processor(fatal_at="p5.png"), on_result=reported.append, actors=1,
                                   **options)
    assert stopped == "the model produced NaN"
    assert any(r.status == "failed" and r.input.endswith("p5.png") for r in reported)
    assert not [p for p in files(out2) if p.startswith(".")]


def test_without_ray_installed_ray_is_a_usage_error_that_says_what_to_install(photo_dir, tmp_path, tiny_model,
                                                                             monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    out = tmp_path / "out"
    r = run("denoise", photo_dir, "-o", out, "--model", tiny_model, "--ray", "local")
    assert r.exit_code == 2
    assert 'pip install "aetool[ray]"' in r.output
    assert not out.exists()  # refused before anything was planned or written


def test_ray_usage_errors(photo_dir, tmp_path, tiny_model):
    pytest.importorskip("ray.data")
    out = tmp_path / "out"
    r = run("denoise", photo_dir, "-o", out, "--model", tiny_model, "--ray", "in/")
    assert r.exit_code == 2 and "--ray takes local" in r.output and "got 'in/'" in r.output
    r = run("denoise", photo_dir / "a.png", "-o", "-", "--model", tiny_model, "--ray", "local")
    assert r.exit_code == 2 and "standard input or output" in r.output
    r = run("denoise", photo_dir, "-o", out, "--model", tiny_model, "--ray-actors", "2")
    assert r.exit_code == 2 and "--ray-actors is for --ray" in r.output


def test_actors_one_per_gpu_else_one_per_cpu():
    from aetool.cluster import check_address, plan_actors
    from aetool.errors import UsageError

    assert plan_actors({"CPU": 8.0}, "auto") == (8, {"num_cpus": 1})
    assert plan_actors({"CPU": 8.0}, "cpu", 2) == (2, {"num_cpus": 4})
    assert plan_actors({"CPU": 32.0, "GPU": 4.0}, "auto") == (4, {"num_gpus": 1})
    assert plan_actors({"CPU": 32.0, "GPU": 2.0}, "cuda", 4) == (4, {"num_gpus": 0.5})
    assert plan_actors({"CPU": 32.0, "GPU": 4.0}, "cpu") == (32, {"num_cpus": 1})
    for resources, device in (({"CPU": 8.0}, "cuda"), ({"CPU": 8.0, "GPU": 2.0}, "cuda:1")):
        with pytest.raises(UsageError):
            plan_actors(resources, device)
    assert [check_address(a) for a in ("local", "AUTO", "10.0.0.5:6379", "ray://head:10001")] == [
        "local", "auto", "10.0.0.5:6379", "ray://head:10001"]
