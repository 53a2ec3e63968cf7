"""`aetool bench` and aetool.bench: tiny sizes, so that each test runs in seconds."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from aetool.bench import image_shape, parse_sizes, parse_tasks, synthetic_photo
from aetool.cli.app import app
from aetool.errors import UsageError

runner = CliRunner()


def test_cli_json_has_the_documented_fields_with_positive_times():
    import torch

    threads_before = torch.get_num_threads()
    r = runner.invoke(app, ["bench", "--tasks", "denoise", "--sizes", "0.002,0.005", "--json", "-q", "--repeat", "1",
                            "--device", "cpu", "--threads", "1"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    m = result["machine"]
    assert m["torch_threads"] == 1 and m["device"] == "cpu" and m["aetool"] and m["torch"] and m["cpu"]
    assert set(result["columns"]) >= {"decode_s", "model_s", "encode_s", "end_to_end_s", "overhead"}
    rows = result["rows"]
    assert [(r["task"], r["megapixels"]) for r in rows] == [("denoise", 0.002), ("denoise", 0.005)]
    for row in rows:
        for key in ("decode_s", "estimate_s", "model_s", "encode_s", "end_to_end_s", "end_to_end_model_s", "load_s"):
            assert row[key] > 0, key
        assert row["overhead"] == pytest.approx(row["end_to_end_s"] / row["model_s"] - 1, abs=2e-3)
        assert len(row["overhead_runs"]) == len(row["end_to_end_runs"]) == len(row["model_runs"])
        assert row["precision"] in ("fp32", "bf16") and row["tile"] == 0 and row["batch_size"] == 1
        h, w = image_shape(row["megapixels"])
        assert row["input"] == [w, h] == row["output"] and row["input_bytes"] > 0
        assert len(row["model_runs"]) == 1
    import torch

    assert torch.get_num_threads() == threads_before  # --threads is undone for the rest of the process


def test_cli_table_is_plain_text_when_piped():
    r = runner.invoke(app, ["bench", "-t", "upscale", "-s", "0.004", "--repeat", "1", "--device", "cpu",
                            "--threads", "1"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("aetool ") and "torch" in lines[0]
    assert any(line.startswith("upscale: precision") and "tile" in line for line in lines)
    header = next(line for line in lines if line.startswith("task"))
    assert "model" in header and "overhead" in header and "│" not in r.stdout
    row = next(line for line in lines if line.startswith("upscale "))
    h, w = image_shape(0.004 / 4)  # upscale's size is its output: the input is a quarter of it
    assert row.split()[2] == f"{w}x{h}" and row.rstrip().endswith("%")


def test_compress_and_decompress_rows():
    from aetool.bench import run_bench

    result = run_bench(["compress", "decompress"], [0.01], device="cpu", repeat=1, threads=1)
    comp, dec = result["rows"]
    assert comp["encode_s"] is None and comp["output_bytes"] < comp["input_bytes"]  # the .aei is the output
    assert dec["decode_s"] > 0 and dec["encode_s"] > 0 and dec["end_to_end_s"] > 0
    assert dec["output"] == comp["input"]


def test_overhead_pairs_each_folder_run_with_the_model_run_before_it():
    from statistics import median

    from aetool.bench import run_bench

    row = run_bench(["decompress"], [0.005], device="cpu", repeat=3, threads=1)["rows"][0]
    pairs = list(zip(row["end_to_end_runs"], row["model_runs"]))
    assert len(pairs) == 3 == len(row["overhead_runs"])
    # (the JSON rounds times to 1e-6 s, ratios of millisecond runs to about 1e-3)
    assert row["overhead_runs"] == pytest.approx([e / m - 1 for e, m in pairs], abs=5e-3)
    assert row["overhead"] == pytest.approx(median(row["overhead_runs"]), abs=1e-6)
    assert row["end_to_end_s"] == pytest.approx(median(row["end_to_end_runs"]), abs=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--tasks", "denoise,sharpen"], "unknown: sharpen"),
    (["--tasks", ","], "--tasks"),
    (["--sizes", "big"], "--sizes"),
    (["--sizes", "0"], "between"),
    (["--sizes", "1,-6"], "between"),
    (["--sizes", "nan"], "between"),
    (["--format", "gif"], "--format"),
    (["--device", "tpu"], "--device"),
])
def test_bad_arguments_are_usage_errors(args, message):
    r = runner.invoke(app, ["bench", *args, "-q"])
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_parsers():
    assert parse_tasks("all") == ["denoise", "upscale", "inpaint", "compress", "decompress"]
    assert parse_tasks(" Upscale, denoise,upscale") == ["upscale", "denoise"]
    assert parse_sizes("1, 6,24") == [1.0, 6.0, 24.0]
    with pytest.raises(UsageError):
        parse_sizes("")
    assert image_shape(24) == (4000, 6000) and image_shape(6) == (2000, 3000)


def test_help_does_not_import_torch():
    code = ("import sys\nfrom aetool.cli.app import app\n"
            "try:\n    app(['bench', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Examples" in out.stdout and "overhead" in out.stdout and "minutes" in out.stdout


def test_synthetic_photo_is_deterministic_and_compresses_like_a_photo():
    from PIL import Image

    a, b = synthetic_photo(200, 300, seed=3), synthetic_photo(200, 300, seed=3)
    assert a.dtype == np.float32 and a.shape == (200, 300, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, synthetic_photo(200, 300, seed=4))
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.08  # not flat

    def png_bytes(x):
        buf = io.BytesIO()
        Image.fromarray(np.round(x * 255).astype(np.uint8)).save(buf, "PNG")
        return len(buf.getvalue())

    noise = np.random.default_rng(0).uniform(0, 1, a.shape)
    assert png_bytes(a) < 0.6 * png_bytes(noise)  # structure, not noise, for the codecs
    assert np.abs(np.diff(a, axis=1)).max() > 0.3  # hard edges too
