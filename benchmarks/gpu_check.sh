#!/usr/bin/env bash
# The GPU checks of issue #15 as one prepared script of at most ~8 minutes, run after
# benchmarks/gpu_train.sh on a machine with CUDA (docs/scale.md, "On a GPU"):
#
#   benchmarks/gpu_check.sh OUT_DIR
#
# 1. machine: nvidia-smi -L and torch's view of the GPUs (OUT_DIR/gpus.txt);
# 2. `aetool bench --device cuda --sizes 1,6,24 --json` (OUT_DIR/bench.json);
# 3. a folder of 12 generated 6 MP photos denoised (σ 15 told) with --precision fp32, bf16 and fp16 and
#    with --devices all: wall time of each, and the largest difference of bf16/fp16/--devices outputs
#    from fp32's in 8-bit steps (OUT_DIR/precision.json);
# 4. the out-of-memory halving: x4 of a 24 MP photo with the process limited to a small memory
#    fraction (torch.cuda.set_per_process_memory_fraction) must finish, and equal (within 1/255) the
#    same run without the limit; the fp16 overflow fallback: a model whose fp16 activations overflow
#    gives the fp32 result (OUT_DIR/fallbacks.json);
# 5. with more than one GPU: `torchrun --nproc-per-node N -m aetool train denoise` with NCCL for 30
#    steps against one process with the same global batch (OUT_DIR/ddp.json).
#
# Each step has its own time limit and log (OUT_DIR/NAME.log); one failing does not stop the others.
# The summary (OUT_DIR/summary.txt) lists each step's exit status and seconds. Exit status: 0 all
# passed, 1 some failed, 2 bad usage, 3 no CUDA device (nothing run).
set -uo pipefail

OUT="${1:-}"
if [[ -z "$OUT" ]]; then
    echo "usage: benchmarks/gpu_check.sh OUT_DIR" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python}"
if [[ -z "${PYTHON:-}" && -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then
    PY=.venv/bin/python
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"; then
    echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing run" >&2
    exit 3
fi
: > "$OUT/summary.txt"
failed=0

step() {  # step NAME LIMIT_SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local t0 rc
    t0=$(date +%s%N)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    printf '%-12s rc=%-3s %6d ms\n' "$name" "$rc" "$(( ($(date +%s%N) - t0) / 1000000 ))" | tee -a "$OUT/summary.txt"
    [[ $rc -eq 0 ]] || failed=1
}

step gpus 30 bash -c "nvidia-smi -L > '$OUT/gpus.txt'; '$PY' -c \"
import torch
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(i, p.name, round(p.total_memory / 2**30, 1), 'GiB', 'bf16' if torch.cuda.is_bf16_supported() else '')
\" >> '$OUT/gpus.txt'"

step bench 150 bash -c "'$PY' -m aetool bench --device cuda --sizes 1,6,24 --json > '$OUT/bench.json'"

step precision 120 "$PY" - "$OUT" <<'EOF'
import json, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
from PIL import Image
from aetool.bench import synthetic_photo

out = Path(sys.argv[1])
work = Path(tempfile.mkdtemp())
(work / "in").mkdir()
for i in range(12):
    Image.fromarray((synthetic_photo(2000, 3000, seed=i) * 255).round().astype(np.uint8)).save(work / "in" / f"{i:02d}.png")
runs = {}
for name, extra in (("fp32", ["--precision", "fp32"]), ("bf16", ["--precision", "bf16"]),
                    ("fp16", ["--precision", "fp16"]), ("devices-all", ["--devices", "all"])):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "aetool", "denoise", str(work / "in"), "-o", str(work / name),
                           "--sigma", "15", "--device", "cuda", "-q", *extra], capture_output=True, text=True)
    runs[name] = {"rc": proc.returncode, "seconds": round(time.perf_counter() - t0, 2), "stderr": proc.stderr[-500:]}
for name in ("bf16", "fp16", "devices-all"):
    diffs = [int(np.abs(np.asarray(Image.open(work / name / f.name), int) - np.asarray(Image.open(f), int)).max())
             for f in sorted((work / "fp32").glob("*.png")) if (work / name / f.name).exists()]
    runs[name]["max_diff_vs_fp32_8bit"] = max(diffs) if diffs else None
(out / "precision.json").write_text(json.dumps(runs, indent=1))
print(json.dumps(runs, indent=1))
sys.exit(0 if all(r["rc"] == 0 for r in runs.values()) else 1)
EOF

step fallbacks 150 "$PY" - "$OUT" <<'EOF'
import json, sys
import numpy as np
import torch
from aetool.bench import synthetic_photo
from aetool.engine import EngineOptions, Runner
from aetool.tasks.upscale import Upscaler

out = {}
img = synthetic_photo(4000, 6000, seed=1)
free = torch.cuda.mem_get_info()[1]
ref = Upscaler(None, EngineOptions(device="cuda", tile=512))(img[:1024, :1024], scale=4)[0]
# The whole 24 MP photo in one tile cannot fit in 3 GB: the engine must halve batch, then tile.
torch.cuda.set_per_process_memory_fraction(3e9 / free)
big = Upscaler(None, EngineOptions(device="cuda", tile=0))(img, scale=4)[0]
out["oom_halving"] = {"output": list(big.shape), "max_diff_vs_512_tiles_8bit":
                      float(np.abs(big[:4000, :4000] - ref[:4000, :4000]).max() * 255)}  # away from the crop edge
torch.cuda.set_per_process_memory_fraction(1.0)
x = np.random.default_rng(0).random((256, 256, 3), dtype=np.float32)
fn = lambda t: (t * 300.0) ** 2 / 90000.0  # noqa: E731 - 9e4 is fine in fp32, inf in fp16
half = Runner(EngineOptions(device="cuda", precision="fp16", tile=0)).run(fn, x)
full = Runner(EngineOptions(device="cuda", precision="fp32", tile=0)).run(fn, x)
out["fp16_overflow"] = {"finite": bool(np.isfinite(half).all()), "max_diff_vs_fp32": float(np.abs(half - full).max())}
print(json.dumps(out, indent=1))
(__import__("pathlib").Path(sys.argv[1]) / "fallbacks.json").write_text(json.dumps(out, indent=1))
ok = out["oom_halving"]["max_diff_vs_512_tiles_8bit"] <= 1 and out["fp16_overflow"]["finite"]
sys.exit(0 if ok else 1)
EOF

gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [[ "$gpus" -gt 1 ]]; then
    step ddp 150 "$PY" benchmarks/ddp_train.py --device cuda --procs "1,$gpus" --threads-total 16 --steps 30 \
        --skip sampling --json "$OUT/ddp.json"
else
    echo "ddp          skipped: one GPU (torchrun with NCCL needs two)" | tee -a "$OUT/summary.txt"
fi
exit "$failed"
