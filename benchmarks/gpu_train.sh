#!/usr/bin/env bash
# Continue the training of every shipped model on a CUDA GPU, within one total time budget, and
# write the new weights and cards to a folder (issue #10; docs/training.md, "On a GPU").
#
#   benchmarks/gpu_train.sh OUT_DIR [TOTAL_MINUTES=9] [DATA_ROOT=../shared/data] [ONLY=name1,name2]
#
# For each model of weights/*.json (in name order) it runs, from the project root,
#
#   aetool train TASK --init NAME --data ... --out OUT_DIR/NAME.safetensors --name NAME \
#       --minutes SHARE --steps 1000000 --device auto --precision auto --batch-size B --lr LR ...
#
# with the data folders and the task's data options taken from the model's card (training.data),
# its log in OUT_DIR/NAME.log, and prints a summary table at the end (also OUT_DIR/summary.txt).
# On CUDA the trainer already runs bf16 autocast (--precision auto, fp16 where bf16 is missing),
# with the model in channels_last and cuDNN autotuning (aetool/training/loop.py).
#
# - The time: every model gets an equal share of what is left of TOTAL_MINUTES, less a fixed
#   allowance for what --minutes does not count (start-up, torch and CUDA initialisation, loading
#   and preparing the data, the final validation, writing the weights, card and plot): so a run
#   that is quicker or slower than planned gives or takes time from the models after it, and the
#   whole stays near TOTAL_MINUTES. The trainer's learning-rate schedule (warm-up, then cosine to
#   --lr-min) runs over each share, so each run ends at the low learning rate.
# - One model failing (missing data, an error, a hang past its share plus 3 minutes) is logged and
#   the others go on; the exit status is then 1. Ctrl-C or SIGTERM stops the whole run (the model
#   in flight saves its checkpoint: its command, first line of its log, with --resume continues it).
# - DATA_ROOT replaces `../shared/data` at the start of the cards' data folders (the team's data
#   checkout beside the repository); other folders are used as the cards give them, from the
#   project root. A relative OUT_DIR or DATA_ROOT is taken from the current directory.
#
# Environment:
#   AETOOL_GPU_TRAIN_ONLY=a,b       train only these models (the 4th argument does the same)
#   AETOOL_GPU_TRAIN_BATCH=N        one --batch-size for every model (default: see batch_for below)
#   AETOOL_GPU_TRAIN_ALLOWANCE=MIN  the per-model allowance in minutes (default 0.3)
#   PYTHON=...                      the Python that has aetool's requirements and torch (default: the
#                                   active virtualenv's, else the project's .venv, else python3)
#
# Exit status: 0 every model trained; 1 some failed (the others ran); 2 bad usage; 130 Ctrl-C,
# 143 SIGTERM (the run in flight saved its checkpoint; the summary is printed all the same).
set -euo pipefail

usage() {
    echo "usage: ${BASH_SOURCE[0]} OUT_DIR [TOTAL_MINUTES=9] [DATA_ROOT=../shared/data] [ONLY=name1,name2]" >&2
    echo "see the comments at the top of ${BASH_SOURCE[0]} and docs/training.md" >&2
    exit 2
}

[[ $# -ge 1 && $# -le 4 && "$1" != -h && "$1" != --help ]] || usage
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOTAL_MINUTES=${2:-9}
ONLY=${4:-${AETOOL_GPU_TRAIN_ONLY:-}}
ALLOWANCE=${AETOOL_GPU_TRAIN_ALLOWANCE:-0.3}
BATCH_OVERRIDE=${AETOOL_GPU_TRAIN_BATCH:-}
# Fine-tuning divides the card's peak learning rate by this: the shipped weights already sit at
# the end of a cosine schedule, and the full peak rate would first throw away part of what they
# learned, which a run of a minute or two cannot win back; a quarter of it (with the usual
# warm-up, and Adam's moments built afresh) moves them without undoing them. It is also what
# the examples in docs/training.md use for fine-tuning (2e-4 -> 5e-5).
LR_DIVISOR=4
# --steps is only an upper bound with --minutes: set far beyond what a share can reach, so that
# time alone ends each run.
STEPS_BOUND=1000000

is_number() { [[ "$1" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] && awk -v x="$1" 'BEGIN { exit !(x > 0) }'; }
if ! is_number "$TOTAL_MINUTES"; then
    echo "gpu_train.sh: TOTAL_MINUTES must be a positive number, got '$TOTAL_MINUTES'" >&2
    exit 2
fi
if ! [[ "$ALLOWANCE" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]]; then
    echo "gpu_train.sh: AETOOL_GPU_TRAIN_ALLOWANCE must be a number of minutes, got '$ALLOWANCE'" >&2
    exit 2
fi
if [[ -n "$BATCH_OVERRIDE" && ! "$BATCH_OVERRIDE" =~ ^[1-9][0-9]*$ ]]; then
    echo "gpu_train.sh: AETOOL_GPU_TRAIN_BATCH must be a positive integer, got '$BATCH_OVERRIDE'" >&2
    exit 2
fi

if [[ $# -ge 3 && -n "$3" ]]; then
    [[ -d "$3" ]] || { echo "gpu_train.sh: DATA_ROOT '$3' is not a folder" >&2; exit 2; }
    DATA_ROOT=$(cd "$3" && pwd)
else
    DATA_ROOT="$ROOT/../shared/data"  # may be missing: the models that need it fail, and say so
fi
mkdir -p "$1"
OUT_DIR=$(cd "$1" && pwd)

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -n "${VIRTUAL_ENV:-}" ]] && command -v python >/dev/null; then PYTHON=python
    elif [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"
    else PYTHON=python3
    fi
fi
cd "$ROOT"  # the trainer runs as `python -m aetool` from here: this checkout's code and weights
export PYTHONUNBUFFERED=1

# Batch size per task on CUDA. The models are small (0.6-3.2 M parameters) and a step costs about
# the same wall time at 16 patches as at 64 on a large GPU, so larger batches see more patches in
# the same minutes; not larger still, because a share of a minute or two then has too few steps
# for the schedule (a few hundred to a few thousand at these sizes). Denoise (64x64 patches) and
# upscale (48x48 low-resolution patches, up to 192x192 targets): 64, 4x the cards' 16. Inpaint and
# compress train on 128x128 patches with bigger activations per patch: 16, 2x the cards' 8.
# Elsewhere (CPU, MPS) the card's own batch size, so that a trial run there is the shipped recipe.
batch_for() {  # TASK CARD_BATCH -> batch size
    if [[ -n "$BATCH_OVERRIDE" ]]; then echo "$BATCH_OVERRIDE"; return; fi
    if [[ "$DEVICE" != cuda ]]; then echo "$2"; return; fi
    case "$1" in
        denoise|upscale) echo 64 ;;
        inpaint|compress) echo 16 ;;
        *) echo "$2" ;;
    esac
}

# The plan, from the cards: one line per model, tab-separated. Also checks the Python and the device.
plan=$("$PYTHON" - "$ROOT" "$DATA_ROOT" "$ONLY" <<'PY'
import json
import shlex
import sys
from pathlib import Path

root, data_root, only = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
shipped = root / "weights"
cards = [json.loads(p.read_text()) for p in sorted(shipped.glob("*.json"))]
names = [c["name"] for c in cards]
wanted = [n.strip() for n in only.split(",") if n.strip()]
unknown = [n for n in wanted if n not in names]
if unknown:
    print(f"gpu_train.sh: no shipped model named {', '.join(unknown)}; weights/*.json has {', '.join(names)}",
          file=sys.stderr)
    sys.exit(2)
if wanted:
    cards = [c for c in cards if c["name"] in wanted]
if not cards:
    print(f"gpu_train.sh: no model cards in {shipped}", file=sys.stderr)
    sys.exit(2)

try:
    import torch

    import aetool.cli  # noqa: F401  (aetool and its requirements are importable)
    from aetool.registry import weights_dir
except ImportError as exc:
    print(f"gpu_train.sh: {sys.executable} cannot import {exc.name}: set PYTHON to the Python of aetool's "
          "environment", file=sys.stderr)
    sys.exit(2)

if torch.cuda.is_available():
    bf16 = "bf16" if torch.cuda.is_bf16_supported() else "fp16 (no bf16 on this GPU)"
    print(f"DEVICE\tcuda\t{torch.cuda.get_device_name(0)}, {bf16} autocast, torch {torch.__version__}")
else:
    print(f"DEVICE\tcpu\tno CUDA GPU: a trial run on this machine's CPU (torch {torch.__version__})")

# --init by name when the trainer's registry reads these same cards (an editable install or this
# checkout); otherwise by the file's path, so that it starts from exactly these weights.
by_name = Path(weights_dir()).resolve() == shipped.resolve()
team_data = (root / ".." / "shared" / "data").resolve()
TRAINER_LR = {"denoise": 4e-4, "upscale": 5e-4, "inpaint": 4e-4, "compress": 1e-4, "anomaly": 5e-4, "autoencoder": 1e-3}


def data_folder(folder: str) -> str:
    """A card's data folder on this machine: `../shared/data/...` moved onto DATA_ROOT."""
    team = "../shared/data"
    norm = folder.replace("\\", "/")
    if data_root.resolve() == team_data or not (norm == team or norm.startswith(team + "/")):
        return folder  # as the card has it (and as it will read in the new card)
    path = data_root / norm[len(team):].lstrip("/")
    try:
        return str(path.relative_to(root))  # inside the checkout: short, and the same on every machine
    except ValueError:
        return str(path)


for card in cards:
    name, task = card["name"], card.get("task")
    training, data, config = card.get("training", {}), card.get("training", {}).get("data", {}), card.get("config", {})

    def fail(reason: str) -> None:
        print(f"FAIL\t{name}\t{task}\t{reason}")

    if task not in TRAINER_LR:
        fail(f"no trainer for task '{task}'")
        continue
    folders = [data_folder(f) for f in data.get("folders", [])]
    if not folders:
        fail("its card names no training data (training.data.folders)")
        continue
    missing = [str(f) for f in folders if not (root / f).is_dir()]
    if missing:
        fail(f"data folder(s) missing: {', '.join(missing)}")
        continue
    args = []
    for f in folders:
        args += ["--data", str(f)]
    patch = training.get("patch") or data.get("lr_patch") or data.get("patch")
    if patch and task != "autoencoder":  # an autoencoder takes whole images (its card's patch is their size)
        args += ["--patch", str(patch)]
    channels = card.get("channels", config.get("in_channels", 3))
    # With --init the architecture comes from the model; what a trainer still checks against it
    # is --channels (denoise, compress; the upscaler is colour only, the inpainter any). The rest
    # are the card's data options, so that the new run sees the same kind of training examples.
    if task == "denoise":
        args += ["--channels", str(channels)]
        if data.get("codecs"):  # a codec post-filter: the same codecs (and share of grey patches)
            args += ["--codec", ",".join(data["codecs"]), "--grey-fraction", f"{data.get('grey_fraction', 0):g}"]
        elif "sigma_range" in data:
            args += ["--sigma-min", f"{data['sigma_range'][0]:g}", "--sigma-max", f"{data['sigma_range'][1]:g}"]
    elif task == "upscale":
        args += ["--scale", str(config.get("scale", 4)), "--degradation", data.get("degradation", "bicubic")]
    elif task == "inpaint":
        if data.get("masks"):
            args += ["--masks", ",".join(data["masks"])]
        if data.get("max_hole"):
            args += ["--max-hole", f"{data['max_hole']:g}"]
    elif task == "compress":
        args += ["--channels", str(channels)]
        if card.get("arch") == "recurrent_codec":  # the progressive codec: its own trainer
            args += ["--arch", "recurrent"]
    elif task == "anomaly":
        args += ["--channels", str(channels), "--family", data.get("family", "repair"),
                 "--size", str(config.get("image_size", 256))]
        if data.get("val"):
            args += [a for v in data["val"] for a in ("--val", data_folder(v))]
    elif task == "autoencoder":
        h, w = config["image_size"]
        pre = card.get("preprocessing", {})
        args += ["--arch", data.get("arch", "conv"), "--latent", str(config["latent"]), "--size", f"{w}x{h}",
                 "--channels", str(channels), "--fit", pre.get("fit", "stretch")]
        for key in ("augment", "input_dropout", "beta", "kl_warmup"):
            value = data.get(key)
            if value not in (None, "none", 0):
                args += ["--" + key.replace("_", "-"), value if isinstance(value, str) else f"{value:g}"]
    init = name if by_name else str(shipped / card.get("file", f"{name}.safetensors"))
    args += ["--init", init]
    lr = float(training.get("lr") or TRAINER_LR[task])
    batch = int(training.get("batch_size") or (8 if task in ("inpaint", "compress") else 16))
    print(f"OK\t{name}\t{task}\t{batch}\t{lr:g}\t{shlex.join(args)}")
PY
) || exit 2

DEVICE=$(awk -F'\t' '$1 == "DEVICE" { print $2 }' <<<"$plan")
DEVICE_TEXT=$(awk -F'\t' '$1 == "DEVICE" { print $3 }' <<<"$plan")
mapfile -t MODELS < <(awk -F'\t' '$1 != "DEVICE"' <<<"$plan")
N=${#MODELS[@]}

now() { date +%s.%N; }
minutes_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", (b - a) / 60 }'; }
# A model's share of the time: what is left of the total (minutes), split evenly over the models
# still to run (count), less the allowance; never under a quarter of the even split nor 0.01 min
# (so that a run late against the total still trains a little, and a tiny trial budget still
# gives each model a few steps).
share_of() {
    awk -v left="$1" -v n="$2" -v a="$ALLOWANCE" 'BEGIN {
        even = left / n; s = even - a
        if (s < even / 4) s = even / 4
        if (s < 0.01) s = 0.01
        printf "%.4g", s }'
}
T0=$(now)
echo "gpu_train.sh: $N model(s), $TOTAL_MINUTES min in all: about $(share_of "$TOTAL_MINUTES" "$N") min of training" \
    "each, after $ALLOWANCE min for loading and writing"
echo "device: $DEVICE_TEXT"
echo "output: $OUT_DIR"
if [[ "$DEVICE" != cuda ]]; then
    echo "gpu_train.sh: warning: no CUDA GPU; training on the CPU with the cards' batch sizes" >&2
fi

RESULTS=()  # name <tab> status <tab> batch, for the summary
failed=0
i=0
# Ctrl-C or SIGTERM (a scheduler's time limit) stops the run: the trainer in flight gets SIGTERM
# (it saves its checkpoint and exits), the rest are not started, the summary is still printed.
# The trainer runs as a background job so that the signal reaches this script while it waits.
child=""
stopped=""
on_signal() {
    stopped=$1
    if [[ -n "$child" ]]; then kill -TERM "$child" 2>/dev/null || true; fi
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
for line in "${MODELS[@]}"; do
    [[ -z "$stopped" ]] || break
    IFS=$'\t' read -r kind name task f4 f5 f6 <<<"$line"
    log="$OUT_DIR/$name.log"
    if [[ "$kind" == FAIL ]]; then
        echo "[$((i + 1))/$N] $name: FAILED before training: $f4" | tee "$log" >&2
        RESULTS+=("$name"$'\t'"not run: $f4"$'\t'"-")
        failed=$((failed + 1)); i=$((i + 1))
        continue
    fi
    card_batch=$f4 card_lr=$f5
    eval "task_args=($f6)"  # shlex-quoted by the plan
    batch=$(batch_for "$task" "$card_batch")
    lr=$(awk -v lr="$card_lr" -v d="$LR_DIVISOR" 'BEGIN { printf "%.3g", lr / d }')
    share=$(share_of "$(awk -v t="$TOTAL_MINUTES" -v used="$(minutes_since "$T0")" 'BEGIN { print t - used }')" \
        $((N - i)))
    cmd=("$PYTHON" -m aetool train "$task" "${task_args[@]}" --out "$OUT_DIR/$name.safetensors" --name "$name"
         --minutes "$share" --steps "$STEPS_BOUND" --device auto --precision auto --batch-size "$batch" --lr "$lr")
    # A guard against a hang (the run itself stops at its share): the share plus 3 minutes for
    # loading and writing, then SIGTERM (the trainer checkpoints and exits), SIGKILL 30 s later.
    guard=$(awk -v s="$share" 'BEGIN { printf "%d", s * 60 + 180 }')
    timer=()
    if command -v timeout >/dev/null; then timer=(timeout --kill-after=30 "$guard"); fi
    echo "[$((i + 1))/$N] $name: $task, $share min, batch $batch, lr $lr (log: $log)"
    { printf '$'; printf ' %q' "${cmd[@]}"; printf '\n'; } >"$log"
    t_model=$(now)
    ${timer[@]+"${timer[@]}"} "${cmd[@]}" >>"$log" 2>&1 </dev/null &
    child=$!
    while :; do
        rc=0
        wait "$child" || rc=$?
        # a signal ends `wait` early: wait again for the trainer's own exit status
        if [[ -z "$stopped" ]] || ! kill -0 "$child" 2>/dev/null; then break; fi
    done
    child=""
    if [[ $rc -eq 0 && -f "$OUT_DIR/$name.json" ]]; then
        echo "      done in $(minutes_since "$t_model") min: $(tail -n 1 "$log")"
        RESULTS+=("$name"$'\t'"ok"$'\t'"$batch")
    else
        case $rc in
            124|137) why="stopped after ${guard} s (the share plus 3 minutes)" ;;
            130|143) why="interrupted" ;;
            *) why="exit status $rc" ;;
        esac
        echo "      FAILED ($why) after $(minutes_since "$t_model") min; the end of $log:" >&2
        tail -n 15 "$log" | sed 's/^/      | /' >&2
        RESULTS+=("$name"$'\t'"FAILED: $why"$'\t'"$batch")
        failed=$((failed + 1))
    fi
    i=$((i + 1))
    if [[ -n "$stopped" ]]; then
        echo "gpu_train.sh: stopped by SIG$stopped; the models after $name were not run" >&2
        break
    fi
done

# The summary, from the cards: the shipped card's final validation against the new one's (the
# same held-out files when the data is the same; the metric is each task's, see the cards).
"$PYTHON" - "$ROOT" "$OUT_DIR" "$(minutes_since "$T0")" "$DEVICE_TEXT" ${RESULTS[@]+"${RESULTS[@]}"} <<'PY' \
    | tee "$OUT_DIR/summary.txt"
import json
import sys
from pathlib import Path

root, out, wall, device = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = [arg.split("\t") for arg in sys.argv[5:]]


def card(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def db(x) -> str:
    return "-" if x is None else f"{x:.3f}"


print(f"\n{'model':<18} {'steps':>7} {'minutes':>7} {'batch':>5}  {'validation before -> after':<28} status")
for name, status, batch in rows:
    before = card(root / "weights" / f"{name}.json").get("training", {}).get("final_val_psnr")
    new = card(out / f"{name}.json").get("training", {}) if status == "ok" else {}
    after = new.get("final_val_psnr")
    steps = f"{new['steps']:,}" if "steps" in new else "-"
    minutes = f"{new['seconds'] / 60:.2f}" if "seconds" in new else "-"
    delta = f" ({after - before:+.3f})" if before is not None and after is not None else ""
    print(f"{name:<18} {steps:>7} {minutes:>7} {batch:>5}  {db(before) + ' -> ' + db(after) + delta:<28} {status}")
print(f"\n{len(rows)} model(s) in {wall} min on {device}; weights, cards, plots and logs in {out}")
print("validation: each task's own metric (dB) on the held-out files its card lists; 'before' is the shipped "
      "card's, comparable when DATA_ROOT holds the same data")
PY

if [[ -n "$stopped" ]]; then
    [[ "$stopped" == INT ]] && exit 130
    exit 143
fi
if [[ $failed -gt 0 ]]; then
    echo "gpu_train.sh: $failed of $N model(s) failed (see their logs in $OUT_DIR)" >&2
    exit 1
fi
