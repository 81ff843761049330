"""Experiment (not shipped): noise-injection weights with 10x the generator learning rate, 20 epochs.

.venv/bin/python reports/realism-phantom-v2/noise_lr10.py DATA RUN_DIR
"""

import logging
import sys
from pathlib import Path

import torch

from cardiosynth.models.spade import SpadeTranslator
from cardiosynth.models.train_spade import run_spade_training, spade_preset

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
NOISE: set[int] = set()
_init = SpadeTranslator.__init__


def init(self, config=None):
    _init(self, config)
    if self.config.noise:
        NOISE.update(id(p) for p in self.noise_weights)


SpadeTranslator.__init__ = init
_Adam = torch.optim.Adam


class Adam(_Adam):
    def __init__(self, params, lr, **kw):
        params = list(params)
        noise = [p for p in params if id(p) in NOISE]
        if noise:
            rest = [p for p in params if id(p) not in NOISE]
            super().__init__([{"params": rest}, {"params": noise, "lr": lr * 10}], lr=lr, **kw)
        else:
            super().__init__(params, lr=lr, **kw)


torch.optim.Adam = Adam
cfg = spade_preset("cpu-small", epochs=20)
path = run_spade_training(
    Path(sys.argv[1]), Path(sys.argv[2]), cfg, version="noise-lr10", show_progress=False, device="cpu"
)
logging.getLogger("noise_lr10").info("model in %s", path)
