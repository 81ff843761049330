#!/usr/bin/env bash
# Reproduces the shipped models with their evaluation: the phantom data set (seed 0, 100 subjects),
# then the label VAE and the SPADE translator with the cpu-small preset (seed 0), installed into the
# package's weights/ folder, then the evaluation report that fills in their model cards.
#
#   bash scripts/train_default_models.sh            # phantom-v2 (the default models, phantom version 2)
#   bash scripts/train_default_models.sh v1         # phantom-v1 (phantom version 1)
#
# About 50 minutes on 2 idle CPU cores (VAE 24 epochs, SPADE 6 epochs, evaluation).
# Run from a checkout with .venv set up (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
cs=.venv/bin/cardiosynth
weights=services/cardiosynth/weights
which=${1:-v2}
case "$which" in
  v1) phantom_version=1 ;;
  v2) phantom_version=2 ;;
  *) echo "usage: $0 [v1|v2]" >&2; exit 2 ;;
esac
version=phantom-$which
data=data/phantom-$which
report=reports/models  # phantom-v1's report kept its first name
[ "$which" = v2 ] && report=reports/models-phantom-v2

$cs phantom --out "$data" --subjects 100 --seed 0 --version "$phantom_version" --overwrite --quiet
$cs train vae --data "$data" --out "runs/vae-$version" --preset cpu-small --seed 0 --overwrite \
  --model-root "$weights" --version "$version" --quiet
$cs train spade --data "$data" --out "runs/spade-$version" --preset cpu-small --seed 0 --overwrite \
  --model-root "$weights" --version "$version" --quiet
$cs evaluate models --data "$data" --out "$report" --model-root "$weights" \
  --vae-version "$version" --spade-version "$version" --update-cards --quiet
