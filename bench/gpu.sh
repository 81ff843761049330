#!/usr/bin/env bash
# The GPU check of issue 11, in one run of about 8.5 minutes on one H100/H200 (measured on an H200:
# device and data 11 s, tests 87 s, precision 33 s, throughput 4 x ~20 s, synthesis 72 + 92 s,
# training 3 epochs 132 s; the machine's start takes a minute or two more). Every step has its own
# time limit, so a hung step does not take the rest with it. With a 10-minute limit per command, run
# the paper models at full length as a second command (STEPS=train ..., below: 7.5 minutes).
#   1. the device (nvidia-smi, cardiosynth.device.describe) and the default phantom (100 subjects);
#   2. the tests marked gpu (tests/test_device.py -m gpu: models on the device, stages and the whole
#      synthesizer equal to the CPU's, a VAE and a SPADE training step, checkpoints that load on CPU);
#   3. precision: bf16 and fp16 against fp32 with the shipped models (label Dice, image difference);
#   4. forward throughput of decode + translate for n = 100 at paper and phantom size (batch sizes
#      from free memory) against the slice-at-a-time loop; paper size in bf16 and fp32, and in bf16
#      within 24 GiB (a 24 GB card simulated: batch sizes from that memory, no out-of-memory);
#   5. bench/synthesis.py --device cuda, n = 1, 10, 100: the whole pipeline against its floor (the
#      pure batched forward passes) and the slice-at-a-time loop, with the shipped models and with
#      paper-size networks;
#   6. scripts/train_paper_models.sh with a few epochs (seconds per epoch of both paper presets
#      trained side by side, and the script end to end, evaluation included).
# Reports (at most 8 files, what the device tool brings back): gpu.log (everything), precision.json,
# throughput.jsonl, synthesis.jsonl, train.txt, models-paper.md, reports.tgz (all of it).
#
#   bench/gpu.sh                  on a machine with a GPU; reports under $OUT (or reports/gpu)
#   bench/gpu.sh --cpu-smoke      tiny sizes on the CPU: proves the script runs end to end
#   STEPS="tests synthesis" bench/gpu.sh   only those steps (tests precision throughput synthesis
#                                          train; the device and the data always)
#   STEPS=train VAE_EPOCHS=100 SPADE_EPOCHS=40 TRAIN_LIMIT=500 bench/gpu.sh
#                                          the paper models at the script's full length (default: 3
#                                          epochs each, a check that the script runs, limit 200 s)
#
# Installs nothing from the network. A bare GPU machine has torch but not MONAI or nibabel: carry
# their wheels (pure Python) in .whl/ at the repository root, e.g.
#   pip download --no-deps -d .whl monai==1.6.1 nibabel==5.4.2
# and the script installs them with pip --no-index into a temporary folder. The service dependencies
# (pydantic, FastAPI, Celery) are not needed: the tests that use them skip without them.
set -uo pipefail
cd "$(dirname "$0")/.."

smoke=0
[[ "${1:-}" == "--cpu-smoke" ]] && smoke=1

out="${OUT:-reports/gpu}"
[[ $smoke == 1 ]] && out="${OUT:-/tmp/cardiosynth-gpu-smoke}"
work="$(mktemp -d /tmp/cardiosynth-gpu.XXXXXX)"
mkdir -p "$out" "$work/reports"
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
  scale=20 device=cpu subjects=5 n_tp=2 n_syn="1 2" naive=1 compare_n=1 loop=2 preset=cpu-small
  tp_runs="cpu-small:auto" syn_presets="cpu-small" vae_epochs=1 spade_epochs=1
else
  device=cuda subjects=100 n_tp=100 n_syn="1 10 100" naive=10 compare_n=10 loop=32 preset=paper
  # preset:precision[:GiB], the last a memory limit (a 24 GB card simulated on this one)
  tp_runs="${TP_RUNS:-paper:bf16 paper:fp32 paper:bf16:24 cpu-small:bf16}" syn_presets="paper"
  vae_epochs="${VAE_EPOCHS:-3}" spade_epochs="${SPADE_EPOCHS:-3}"
fi
train_limit="${TRAIN_LIMIT:-200}"

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
bundle() { tar -C "$work" -czf "$out/reports.tgz" reports 2>/dev/null; }
steps="${STEPS:-tests precision throughput synthesis train}"
want() { [[ " $steps " == *" $1 "* ]]; }

command -v nvidia-smi >/dev/null && step nvidia-smi 30 nvidia-smi
step device 60 $py -c "import json; from cardiosynth.device import describe; print(json.dumps(describe('$device')))"
data="$work/phantom"
step data 120 $cs phantom --out "$data" --subjects "$subjects" --seed 0 --quiet
want tests && step gpu-tests 150 $py -m pytest tests/test_device.py -m gpu -q -p no:cacheprovider -rs

want precision && step precision 90 $py bench/precision.py compare --device "$device" -n "$compare_n" --data "$data" \
  --out "$work/reports/precision"
cp "$work/reports/precision/precision.json" "$out/precision.json" 2>/dev/null

want throughput || tp_runs=""
for run in $tp_runs; do
  IFS=: read -r p precision gib <<<"$run"
  name="$p-$precision${gib:+-${gib}GiB}"
  step "throughput-$name" 90 $py bench/precision.py throughput --device "$device" --preset "$p" \
    --precision "$precision" -n "$n_tp" --loop-sample "$loop" ${gib:+--memory-limit-gib "$gib"} \
    --out "$work/reports/throughput-$name"
  f="$work/reports/throughput-$name/throughput.json"
  [[ -f $f ]] && $py -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))" "$f" >>"$out/throughput.jsonl"
done
bundle

# The shipped (phantom-size) models, then networks of each preset's size.
syn_models="shipped $syn_presets"
want synthesis || syn_models=""
for models in $syn_models; do
  opt=()
  [[ $models != shipped ]] && opt=(--preset "$models")
  step "synthesis-$models" 120 $py bench/synthesis.py --data "$data" --device "$device" --n $n_syn \
    --naive-max "$naive" "${opt[@]}" --json "$work/reports/synthesis-$models.json"
  f="$work/reports/synthesis-$models.json"
  [[ -f $f ]] && $py -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))" "$f" >>"$out/synthesis.jsonl"
done
bundle

# Both paper presets trained side by side for a few epochs, the script end to end (its evaluation
# included): the per-epoch seconds in history.jsonl are what the script's default epochs rest on.
want train && step train-paper-models "$train_limit" env CARDIOSYNTH="$cs" DEVICE="$device" DATA="$data" PRESET="$preset" \
  VAE_EPOCHS="$vae_epochs" SPADE_EPOCHS="$spade_epochs" RUNS="$work/runs" REPORT="$work/reports/models-paper" \
  bash scripts/train_paper_models.sh
for model in vae spade; do
  f="$work/runs/$model-paper-v1/history.jsonl"
  [[ -f $f ]] && { echo "$model:"; cat "$f"; } >>"$out/train.txt"
done
cp "$work/reports/models-paper/models.md" "$out/models-paper.md" 2>/dev/null
cp -r "$work/runs"/*/history.jsonl "$work/reports/" 2>/dev/null
bundle
echo "reports: $out (gpu.log, precision.json, throughput.jsonl, synthesis.jsonl, train.txt, models-paper.md, reports.tgz)" | tee -a "$log"
rm -rf "$work"
