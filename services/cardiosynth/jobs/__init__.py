"""Job records in the project's own store (Redis), not in Celery's result backend.

Celery answers PENDING for ids it never saw, expires results after a day and leaves a task STARTED
forever when its worker is OOM-killed; a job store of our own knows every job, keeps it as long as
we say, and a reaper fails jobs whose heartbeat went stale.
"""
