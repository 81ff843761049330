#!/usr/bin/env bash
# The GPU check of issue 11, in one run (about 5 minutes on one H100, an estimate; every step has its
# own timeout so the whole stays under 9): the device, the device tests (the gpu-marked ones run),
# the precision comparison (labels Dice and image difference of bf16 and fp16 against fp32, shipped
# models), forward throughput of decode and translate at paper size and at phantom size for n = 100
# (batch sizes chosen from free memory) against the slice-at-a-time loop, bench/synthesis.py
# --device cuda (n = 1, 10, 100), and one epoch of each paper preset (seconds per epoch: what
# scripts/train_paper_models.sh's epochs rest on). Reports: gpu.log (everything), precision.json,
# throughput-paper.json, throughput-cpu-small.json, synthesis.txt, train.txt.
#
#   bench/gpu.sh                  on a machine with a GPU; reports under $OUT (or reports/gpu)
#   bench/gpu.sh --cpu-smoke      tiny sizes on the CPU: proves the script runs end to end
#
# Installs nothing from the network. The device machines have torch but not MONAI or nibabel: carry
# their wheels (pure Python) in .whl/ at the repository root, e.g. from the project's wheelhouse:
#   mkdir -p .whl && cp ~/.cache/cardiosynth/wheelhouse-*/{monai,nibabel}-*.whl .whl/
# and the script installs them with pip --no-index into a temporary folder.
set -uo pipefail
cd "$(dirname "$0")/.."

smoke=0
[[ "${1:-}" == "--cpu-smoke" ]] && smoke=1

out="${OUT:-reports/gpu}"
[[ $smoke == 1 ]] && out="${OUT:-/tmp/cardiosynth-gpu-smoke}"
work="$(mktemp -d /tmp/cardiosynth-gpu.XXXXXX)"
mkdir -p "$out"
log="$out/gpu.log"
: >"$log"

py=python3
[[ -x .venv/bin/python ]] && py=.venv/bin/python  # a development checkout (the smoke test)
if ls .whl/*.whl >/dev/null 2>&1; then
  $py -m pip install -q --no-index --no-deps --no-compile --target "$work/site" .whl/*.whl || exit 1
  export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/services${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! $py -c "import monai, nibabel" 2>/dev/null; then
  echo "MONAI and nibabel are missing: carry their wheels in .whl/ (see the top of $0)" | tee -a "$log"
  exit 1
fi
cs="$py -m cardiosynth"

# The limits are sized for the GPU run; a shared CPU needs many times longer for the smoke's tiny sizes.
scale=1
if [[ $smoke == 1 ]]; then
  scale=20 device=cpu subjects=5 n_tp=2 n_syn="1" naive=1 compare_n=1 loop=2 preset=cpu-small tp_presets="cpu-small"
else
  device=cuda subjects=30 n_tp=100 n_syn="1 10 100" naive=10 compare_n=10 loop=32 preset=paper
  tp_presets="paper cpu-small"
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log it, go on after a failure
  local name=$1 limit=$2
  shift 2
  limit=$((limit * scale))
  echo "== $name ($(date -u +%H:%M:%S), limit ${limit} s): $*" | tee -a "$log"
  local started=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - started)) s" | tee -a "$log"
}

command -v nvidia-smi >/dev/null && step nvidia-smi 30 nvidia-smi
step device 60 $py -c "import json; from cardiosynth.device import describe; print(json.dumps(describe('$device')))"
step data 120 $cs phantom --out "$work/phantom" --subjects "$subjects" --seed 0 --quiet
# The device tests, those marked gpu among them (skipped where there is no CUDA).
step device-tests 240 $py -m pytest tests/test_device.py -q -p no:cacheprovider -rs
step precision 120 $py bench/precision.py compare --device "$device" -n "$compare_n" --data "$work/phantom" \
  --out "$work/precision"
cp "$work/precision/precision.json" "$out/precision.json"
for p in $tp_presets; do
  step "throughput-$p" 120 $py bench/precision.py throughput --device "$device" --preset "$p" -n "$n_tp" \
    --loop-sample "$loop" --out "$work/throughput-$p"
  cp "$work/throughput-$p/throughput.json" "$out/throughput-$p.json"
done
step synthesis 150 bash -c "$py bench/synthesis.py --data '$work/phantom' --device $device --n $n_syn \
  --naive-max $naive 2>&1 | tee '$out/synthesis.txt'"
for model in vae spade; do
  step "train-$model" 120 $cs train $model --data "$work/phantom" --out "$work/run-$model" --preset "$preset" \
    --epochs 1 --device "$device" --version gpu-check --quiet
  [[ -f "$work/run-$model/history.jsonl" ]] && { echo "$model: $(cat "$work/run-$model/history.jsonl")"; } \
    | tee -a "$log" >>"$out/train.txt"
done
echo "reports: $out (gpu.log, precision.json, throughput-*.json, synthesis.txt, train.txt)" | tee -a "$log"
rm -rf "$work"
