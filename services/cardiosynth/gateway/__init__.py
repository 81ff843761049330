"""The REST gateway (FastAPI). It never imports torch: it validates, records jobs, dispatches them to
the worker queues and serves results; the networks run in the workers."""
