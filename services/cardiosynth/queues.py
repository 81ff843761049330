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

# The stage graph of a /synthesize job (issue 13): ``stats`` once, then per chunk of subjects
# ``encode -> correlate -> interpolate -> decode`` on ``vae`` and ``translate -> store`` on ``spade``,
# then ``finalize``. While it runs, the job's ``stage`` is GRAPH_STAGE and each task holds a lease of
# its own (kind, chunk index) in the job store instead of the job's single heartbeat.
GRAPH_STAGE = "graph"
STATS_TASK = "cardiosynth.stats"
VAE_CHUNK_TASK = "cardiosynth.encode_correlate_interpolate_decode"
SPADE_CHUNK_TASK = "cardiosynth.translate_store"
FINALIZE_TASK = "cardiosynth.finalize"
# Lease kinds (one per task) and the queue each runs on.
GRAPH_KINDS = {"stats": VAE_QUEUE, "vae": VAE_QUEUE, "spade": SPADE_QUEUE, "finalize": SPADE_QUEUE}
# The stages the job's progress names, in order; "stats" and "finalize" run once, the others per chunk.
GRAPH_PROGRESS = ("stats", "encode", "correlate", "interpolate", "decode", "translate", "store", "finalize")

# A succeeded job's files as one tar (POST /jobs/{id}/archive; cardiosynth.workers.archive). On the SPADE
# queue, beside finalize: it needs no model and only reads what SPADE chunks stored, and a SPADE worker
# that packs an archive delays only SPADE chunks, while the VAE queue keeps starting the next jobs (their
# stats and encoding) meanwhile. No queue of its own: every deployment (compose, embedded, CI) already
# runs workers for these two queues, and a third would need workers nobody starts.
ARCHIVE_STAGE = "archive"
ARCHIVE_TASK = "cardiosynth.archive"
ARCHIVE_QUEUE = SPADE_QUEUE
