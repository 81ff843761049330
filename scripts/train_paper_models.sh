#!/usr/bin/env bash
# Trains both paper-size models (preset "paper": VAE 45.0 M parameters, SPADE 28.9 M + an 11.8 M
# discriminator) on the default phantom (100 subjects, seed 0) on one GPU, installs them as version
# paper-v1 into runs/paper-models, and evaluates them (cardiosynth evaluate models).
#
# Sized to finish in under 8 minutes on one H100-class GPU. That is an ESTIMATE, not a measurement
# (no GPU was available when this was written); bench/gpu.sh times one epoch of each preset, and the
# epochs below should be corrected from its train.txt. The estimate: forward FLOPs per 128 x 128 slice
# (torch.utils.flop_counter) are 14.4 G (VAE) and 16.2 G (SPADE generator) + 3.0 G (discriminator);
# a training step costs about 3 x forward for the VAE (43 G per slice) and about 79 G per slice for
# SPADE (generator, discriminator on fake and real, both backward passes). At an assumed 100 TFLOP/s
# effective in bf16 (about 10 % of an H100's peak: small 128 x 128 convolutions, instance norm) and
# about 1,800 training slices, an epoch is ~0.8 s of VAE and ~1.4 s of SPADE arithmetic, plus per-step
# overhead (syncs for logging: ~10-30 ms x 56 VAE and 113 SPADE steps), the held-out check, the sample
# grid and a ~0.5 GB checkpoint per epoch: ~4 s (VAE) and ~7 s (SPADE) per epoch. The two runs share
# the GPU at once (they are independent: SPADE learns from real label maps), so the overheads overlap:
#   phantom ~1 min + max(40 x 4 s, 30 x 7 s) ~ 3.5-4.5 min with sharing + evaluation ~1.5 min < 8 min.
# VAE_EPOCHS, SPADE_EPOCHS, DEVICE, DATA (an existing data set is used as it is), RUNS (run folders and
# the registry root, default runs), REPORT (default reports/models-paper) and PRESET (cpu-small: a
# quick run of the script itself on a CPU) override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
cs="${CARDIOSYNTH:-.venv/bin/cardiosynth}"
device="${DEVICE:-cuda}"
data="${DATA:-data/phantom}"
vae_epochs="${VAE_EPOCHS:-40}"
spade_epochs="${SPADE_EPOCHS:-30}"
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
