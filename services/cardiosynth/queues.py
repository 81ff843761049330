"""Queue and task names: the one vocabulary the gateway (which sends tasks by name and never imports
the workers) and the workers share. A leaf module: it imports nothing of the project."""

from __future__ import annotations

VAE_QUEUE = "vae"
SPADE_QUEUE = "spade"
STAGES = (VAE_QUEUE, SPADE_QUEUE)  # a job's stages in order; each stage is the queue it runs on
VAE_TASK = "cardiosynth.vae_stage"
SPADE_TASK = "cardiosynth.spade_stage"
FAILURE_TASK = "cardiosynth.job_failed"
# A dataset build (POST /datasets) is one stage of its own, run by one task on the SPADE queue: it
# needs both models, which a SPADE worker already holds (its stage assembles VAE labels), and the
# dataset card needs every subject of the build (see cardiosynth.workers.dataset_tasks).
DATASET_STAGE = "dataset"
DATASET_TASK = "cardiosynth.dataset_build"
DATASET_QUEUE = SPADE_QUEUE
