#!/usr/bin/env bash
# Reproduces the shipped phantom-v1 models: the phantom data set (seed 0, 100 subjects), then the
# label VAE and the SPADE translator with the cpu-small preset (seed 0), installed into the
# package's weights/ folder, then the evaluation report that fills in their model cards.
# About 50 minutes on 2 CPU cores. Run from a checkout with .venv set up (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
cs=.venv/bin/cardiosynth
weights=services/cardiosynth/weights

$cs phantom --out data/phantom --subjects 100 --seed 0 --overwrite --quiet
$cs train vae --data data/phantom --out runs/vae-phantom-v1 --preset cpu-small --seed 0 --overwrite \
  --model-root "$weights" --version phantom-v1 --quiet
$cs train spade --data data/phantom --out runs/spade-phantom-v1 --preset cpu-small --seed 0 --overwrite \
  --model-root "$weights" --version phantom-v1 --quiet
$cs evaluate models --data data/phantom --out reports/models --model-root "$weights" --update-cards --quiet
