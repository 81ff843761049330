#!/usr/bin/env bash
# Reproduces the shipped models with their evaluation: the phantom data set (seed 0, 100 subjects),
# then the label VAE and the SPADE translator with the cpu-small preset (seed 0), installed into the
# package's weights/ folder, then the evaluation report that fills in their model cards.
#
#   bash scripts/train_default_models.sh            # phantom-v2c (the default: phantom version 2)
#   bash scripts/train_default_models.sh v2d        # phantom-v2d (SPADE with style KL weight 0.005)
#   bash scripts/train_default_models.sh v2b        # phantom-v2b (VAE 72 epochs, phantom-v2's SPADE)
#   bash scripts/train_default_models.sh v2         # phantom-v2 (VAE 24 epochs and SPADE)
#   bash scripts/train_default_models.sh v1         # phantom-v1 (phantom version 1)
#
# phantom-v2d is phantom-v2c's VAE (copied, same weights) with a SPADE translator trained as
# phantom-v2c's but with the style KL weight at 0.005 (about 47 minutes on 2 cores); it needs
# phantom-v2c in the weights folder. phantom-v2c is phantom-v2b's VAE (copied, same weights) with a
# SPADE translator with noise injection, L1 weight 1, KL weight 0.05 and a moving average of its
# weights, 24 epochs (the preset's defaults; about 36 minutes); it needs phantom-v2b in the weights
# folder. phantom-v2b is phantom-v2's SPADE
# translator (copied) with a VAE trained 72 epochs instead of 24 (48 minutes); v2 and v1 train both
# networks (about 50 minutes on 2 idle CPU cores: VAE 24 epochs, SPADE 6 epochs without noise
# injection, L1 weight 10, no moving average, as they were trained, then the evaluation). Run from a
# checkout with .venv set up (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
cs=.venv/bin/cardiosynth
weights=services/cardiosynth/weights
which=${1:-v2c}
case "$which" in
  v1) phantom_version=1 ;;
  v2 | v2b | v2c | v2d) phantom_version=2 ;;
  *) echo "usage: $0 [v2c|v2d|v2b|v2|v1]" >&2; exit 2 ;;
esac
version=phantom-$which
data=data/phantom-v$phantom_version
report=reports/models  # phantom-v1's report kept its first name
[ "$which" = v2 ] && report=reports/models-phantom-v2
[ "$which" = v2b ] && report=reports/models-phantom-v2b
[ "$which" = v2c ] && report=reports/models-phantom-v2c
[ "$which" = v2d ] && report=reports/models-phantom-v2d
# The SPADE recipe of the models trained before noise injection (the preset's defaults since v2c).
legacy_spade=(--epochs 6 --l1-weight 10 --no-noise --ema-decay 0)

# copy_unchanged KIND FROM TO NOTE: install model KIND of version FROM again as version TO (same weights).
copy_unchanged() {
  .venv/bin/python - "$weights" "$@" <<'PY'
import sys
from pathlib import Path

from cardiosynth.models.registry import copy_model

weights, kind, source, target, note = Path(sys.argv[1]), *sys.argv[2:6]
copy_model(weights / kind / source, weights, target, note=note)
PY
}

$cs phantom --out "$data" --subjects 100 --seed 0 --version "$phantom_version" --overwrite --quiet
if [ "$which" = v2d ]; then
  copy_unchanged vae phantom-v2c phantom-v2d "the phantom-v2c label VAE unchanged (same weights), paired with the phantom-v2d SPADE"
  $cs train spade --data "$data" --out "runs/spade-$version" --preset cpu-small --seed 0 --overwrite \
    --kld-weight 0.005 --model-root "$weights" --version "$version" --quiet
elif [ "$which" = v2c ]; then
  copy_unchanged vae phantom-v2b phantom-v2c "the phantom-v2b label VAE unchanged (same weights), paired with the phantom-v2c SPADE"
  $cs train spade --data "$data" --out "runs/spade-$version" --preset cpu-small --seed 0 --overwrite \
    --model-root "$weights" --version "$version" --quiet
elif [ "$which" = v2b ]; then
  $cs train vae --data "$data" --out "runs/vae-$version" --preset cpu-small --epochs 72 --seed 0 \
    --overwrite --model-root "$weights" --version "$version" --quiet
  copy_unchanged spade phantom-v2 phantom-v2b "the phantom-v2 SPADE translator unchanged (same weights), paired with the phantom-v2b VAE"
else
  $cs train vae --data "$data" --out "runs/vae-$version" --preset cpu-small --seed 0 --overwrite \
    --model-root "$weights" --version "$version" --quiet
  $cs train spade --data "$data" --out "runs/spade-$version" --preset cpu-small --seed 0 --overwrite \
    "${legacy_spade[@]}" --model-root "$weights" --version "$version" --quiet
fi
$cs evaluate models --data "$data" --out "$report" --model-root "$weights" \
  --vae-version "$version" --spade-version "$version" --update-cards --quiet
