"""Queue and task names: the one vocabulary the gateway (which sends tasks by name and never imports
the workers) and the workers share. A leaf module: it imports nothing of the project."""

from __future__ import annotations

VAE_QUEUE = "vae"
SPADE_QUEUE = "spade"
STAGES = (VAE_QUEUE, SPADE_QUEUE)  # a job's stages in order; each stage is the queue it runs on
VAE_TASK = "cardiosynth.vae_stage"
SPADE_TASK = "cardiosynth.spade_stage"
FAILURE_TASK = "cardiosynth.job_failed"
