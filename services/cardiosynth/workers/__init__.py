"""Celery workers: queue ``vae`` (encode -> stats -> correlate -> interpolate -> decode) and queue
``spade`` (translate -> store). Tasks do I/O, call the synthesis stages, and report to the job store."""
