#!/usr/bin/env bash
# The GPU checks of one short session on one CUDA GPU: what a CPU machine cannot run. Every figure in
# BENCHMARKS.md's GPU rows comes from this script's log.
#
#   OUT=results OFFICIAL=official bash benchmarks/gpu_checks.sh
#
# OUT: a folder for gpu.log (everything printed) and results.jsonl (one JSON object per benchmark).
# OFFICIAL (optional): a folder holding the authors' code, network/ (= code/network of github.com/Yang-007/CCQ)
# and a_DynConv/ (of the same repository), for the side-by-side training-step comparison.
# PYTHON (default python3): an interpreter with torch (CUDA) and ccq's dependencies; ccq is taken from this
# checkout. BUDGET (default 480): seconds for the whole script; the steps run in the order of what matters most
# (the training step against the official code, a whole CT, then the trainer's GPU paths), each with its own time
# limit cut to what is left of the budget, and a step that no longer fits is skipped and recorded as such, so a
# device session keeps time for one rerun. A failing step does not stop the others.
set -u
OUT=${OUT:?set OUT to a folder for the results}
OFFICIAL=${OFFICIAL:-}
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-480}
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
JSONL="$OUT/results.jsonl"
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# step NAME SECONDS CMD...: run CMD with a time limit, log it, and keep its last line if that is JSON.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - SECONDS))
    if ((left < 20)); then
        echo "=== $name: skipped, ${left} s of the budget left" | tee -a "$LOG"
        echo "{\"step\": \"$name\", \"skipped\": true}" >>"$JSONL"
        return
    fi
    ((limit > left)) && limit=$left
    echo "=== $name (limit $limit s): $*" | tee -a "$LOG"
    local start=$SECONDS
    timeout "$limit" "$@" >"$WORK/$name.out" 2>&1
    local rc=$?
    cat "$WORK/$name.out" >>"$LOG"
    echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG"
    local last
    last=$(grep -v '^\s*$' "$WORK/$name.out" | tail -n 1)
    if [[ $last == \{* ]]; then
        echo "{\"step\": \"$name\", \"exit\": $rc, \"result\": $last}" >>"$JSONL"
    else
        echo "{\"step\": \"$name\", \"exit\": $rc}" >>"$JSONL"
        tail -n 5 "$WORK/$name.out"
    fi
}

step environment 60 bash -c "nvidia-smi -L; $PY -c 'import torch, ccq; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'"

# 1. Training step, ours against the authors' code: the official recipe's batch 2 of 64x192x192 patches, forward,
#    loss, backward and SGD step, ccq's default GPU settings; peak GPU memory and TFLOP/s in the JSON.
official=()
if [[ -n $OFFICIAL ]]; then
    official=(--official-src "$OFFICIAL/network" --official-dodnet-src "$OFFICIAL/a_DynConv")
fi
for precision in fp32 bf16; do
    step "model_speed_$precision" 100 "$PY" benchmarks/model_speed.py --device cuda --batch 2 --patch 64 192 192 \
        --repeats 5 --precision "$precision" --no-dodnet "${official[@]}" --json
done

# 2. A whole CT for every task with flip TTA: a 512x512x300 CT at 0.8 x 0.8 x 1.5 mm, the official preset (random
#    weights) on the paper's 1.5 x 0.8 x 0.8 mm grid, from reading the file to writing every label map; then one
#    task alone, the official evaluation's unit of work (it runs the seven tasks one after the other).
step predict_ct_all 150 "$PY" benchmarks/infer_memory.py --preset official --spacing 1.5 0.8 0.8 --device cuda \
    --tta --json
step predict_ct_one 90 "$PY" benchmarks/infer_memory.py --preset official --spacing 1.5 0.8 0.8 --device cuda \
    --tta --tasks liver --json

# 3. The trainer's GPU paths on the demo's data (the demo itself runs first, on the GPU, and leaves its prepared
#    phantoms): torch.compile, and the NCCL process group, resumed.
step demo 150 "$PY" -m ccq demo --out "$WORK/demo" --device cuda --no-progress
cp "$WORK/demo/summary.json" "$OUT/demo_summary.json" 2>/dev/null
DATA="$WORK/demo/prepared"
step train_bf16_compile 150 "$PY" -m ccq train --preset demo --data "$DATA" --out "$WORK/compile" --device cuda \
    --precision bf16 --compile --iterations 60 --no-progress
step train_nccl 60 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m ccq train --preset demo \
    --data "$DATA" --out "$WORK/nccl" --device cuda --iterations 20 --no-progress
step train_nccl_resume 60 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m ccq train \
    --out "$WORK/nccl" --device cuda --iterations 40 --resume --no-progress
for run in compile nccl; do
    echo "--- $run: last training record" >>"$LOG"
    grep '"kind": "train"' "$WORK/$run/log.jsonl" 2>/dev/null | tail -n 1 >>"$LOG"
done

# 4. The official training preset through the real trainer (loader, augmentation, optimizer step included).
step train_speed_official 100 "$PY" benchmarks/train_speed.py --preset official --device cuda \
    --precision fp32 bf16 --iterations 15 --cases 3 --json

rm -rf "$WORK"
echo "done in $SECONDS s" | tee -a "$LOG"
