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
# checkout. Each step has its own time limit and a failing step does not stop the others.
set -u
OUT=${OUT:?set OUT to a folder for the results}
OFFICIAL=${OFFICIAL:-}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
LOG="$OUT/gpu.log"
JSONL="$OUT/results.jsonl"
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# step NAME SECONDS CMD...: run CMD with a time limit, log it, and keep its last line if that is JSON.
step() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*" | tee -a "$LOG"
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

# 1. Training step, ours against the authors' code (the official GPU recipe: batch 2, 64x192x192).
official=()
if [[ -n $OFFICIAL ]]; then
    official=(--official-src "$OFFICIAL/network" --official-dodnet-src "$OFFICIAL/a_DynConv")
fi
for precision in fp32 bf16; do
    step "model_speed_$precision" 120 "$PY" benchmarks/model_speed.py --device cuda --batch 2 --patch 64 192 192 \
        --repeats 5 --precision "$precision" "${official[@]}" --json
done

# 2. Mixed precision, torch.compile and the NCCL process group through the real trainer, on the demo's data
#    (the demo itself runs first, on the GPU, and leaves its prepared phantoms).
step demo 150 "$PY" -m ccq demo --out "$WORK/demo" --device cuda --no-progress
cp "$WORK/demo/summary.json" "$OUT/demo_summary.json" 2>/dev/null
DATA="$WORK/demo/prepared"
step train_fp16 60 "$PY" -m ccq train --preset demo --data "$DATA" --out "$WORK/fp16" --device cuda \
    --precision fp16 --iterations 60 --no-progress
step train_bf16_compile 120 "$PY" -m ccq train --preset demo --data "$DATA" --out "$WORK/compile" --device cuda \
    --precision bf16 --compile --iterations 60 --no-progress
step train_nccl 60 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m ccq train --preset demo \
    --data "$DATA" --out "$WORK/nccl" --device cuda --iterations 20 --no-progress
for run in fp16 compile nccl; do
    echo "--- $run: last training record" >>"$LOG"
    grep '"kind": "train"' "$WORK/$run/log.jsonl" 2>/dev/null | tail -n 1 >>"$LOG"
done

# 3. The official training preset through the real trainer (loader, augmentation, optimizer step included).
step train_speed_official 120 "$PY" benchmarks/train_speed.py --preset official --device cuda \
    --precision fp32 bf16 --iterations 15 --cases 3 --json

# 4. All tasks at once against one task at a time, the official model on a CT-sized prepared volume.
step infer_speed_official 90 "$PY" benchmarks/infer_speed.py --preset official --shape 128 384 384 \
    --device cuda --json

rm -rf "$WORK"
echo "done" | tee -a "$LOG"
