#!/usr/bin/env bash
# Trains both paper-size models (preset "paper": VAE 45.0 M parameters, SPADE 28.9 M + an 11.8 M
# discriminator) on the default phantom (100 subjects, seed 0) on one GPU, installs them as version
# paper-v1 into runs/paper-models, and evaluates them (cardiosynth evaluate models).
#
# Sized to finish in under 8 minutes on one H100-class GPU, and measured at full length on one NVIDIA
# H200 (bench/gpu.sh, 2026-11-27, reports/gpu/h200-run3): 447 s end to end. Both trainings run side by
# side on the 100-subject phantom (1,714 training slices): VAE 100 epochs (first 20.6 s with start-up
# and cuDNN autotuning, then 1.65 s each: 177 s), SPADE 40 epochs (first 33 s, then 7.6 s each:
# 320 s); both done after 399 s, the evaluation took the other 48 s. Held-out VAE Dice RV / MYO / LV
# 0.944 / 0.917 / 0.948 (nearly flat after epoch 80: 0.943 / 0.917 / 0.947), SPADE fidelity 0.945
# (reports/gpu/h200-run3/models-paper.md). An H100 was not measured: with its slower memory the
# margin under 8 minutes may be gone; SPADE_EPOCHS=30 saves about 75 s.
# VAE_EPOCHS, SPADE_EPOCHS, DEVICE, DATA (an existing data set is used as it is), RUNS (run folders and
# the registry root, default runs), REPORT (default reports/models-paper) and PRESET (cpu-small: a
# quick run of the script itself on a CPU) override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
cs="${CARDIOSYNTH:-.venv/bin/cardiosynth}"
device="${DEVICE:-cuda}"
data="${DATA:-data/phantom}"
vae_epochs="${VAE_EPOCHS:-100}"
spade_epochs="${SPADE_EPOCHS:-40}"
preset="${PRESET:-paper}"
runs="${RUNS:-runs}"
report="${REPORT:-reports/models-paper}"
root="$runs/paper-models"
started=$SECONDS

if ! compgen -G "$data/training/*/Info.cfg" >/dev/null; then
  $cs phantom --out "$data" --subjects 100 --seed 0 --quiet
fi
echo "phantom ready after $((SECONDS - started)) s"

common=(--data "$data" --preset "$preset" --seed 0 --overwrite --device "$device" --model-root "$root"
        --version paper-v1 --quiet)
$cs train vae --out "$runs/vae-paper-v1" --epochs "$vae_epochs" "${common[@]}" &
vae_pid=$!
$cs train spade --out "$runs/spade-paper-v1" --epochs "$spade_epochs" "${common[@]}" &
spade_pid=$!
failed=0
wait "$vae_pid" || failed=1
wait "$spade_pid" || failed=1
[[ $failed == 0 ]] || { echo "training failed (see the messages above)" >&2; exit 1; }
echo "trained after $((SECONDS - started)) s"

$cs evaluate models --data "$data" --out "$report" --model-root "$root" \
  --vae-version paper-v1 --spade-version paper-v1 --device "$device" --update-cards --quiet
echo "done in $((SECONDS - started)) s: models in $root, report in $report"
