"""The chaos suite (bench/chaos.py) runs, counts and cleans up: its three cheap scenarios on a real
gateway over a redis-server of its own (no workers, seconds), each meeting the issue's target."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _chaos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaos_suite", BENCH / "chaos.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs a redis-server binary of its own")
def test_bodies_caps_and_retries_hold_on_a_real_gateway(tmp_path: Path) -> None:
    chaos = _chaos()
    root = tmp_path / "chaos"
    root.mkdir()
    only = ["oversized", "cap_race:redis", "idempotent_full:redis"]
    rows = chaos.run(tmp_path, quick=True, only=only, limit_s=120, root=root)
    by_name = {row.scenario: row for row in rows}
    assert set(by_name) == {"oversized", "cap_race", "idempotent_full"}
    big = by_name["oversized"]
    assert big.error is None
    assert big.verdict == "PASS", big.notes  # 413/422 for 10 MB bodies, nothing echoed, Redis unchanged
    assert big.tries == 12
    assert big.dropped == 0
    race = by_name["cap_race"]
    assert race.tries == 50
    assert race.verdict == "PASS", race.notes  # 50 simultaneous POSTs: exactly the cap accepted
    assert race.notes[0].startswith(f"accepted {chaos.CAP} of 50")
    retry = by_name["idempotent_full"]
    assert retry.verdict == "PASS", retry.notes  # a retry with its Idempotency-Key is not refused
    # Every process it started (redis-server, gateway) is gone.
    assert not _processes_under(root)
    text = chaos.table(rows)
    assert "oversized" in text
    assert "cap_race" in text


def _processes_under(root: Path) -> list[str]:
    """Live processes whose command line, working folder (redis-server's ``--dir``) or environment
    (the gateway's storage folder) names ``root``."""
    found = []
    marker = str(root).encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = str(proc.joinpath("cwd").readlink()).encode()
            seen = [proc.joinpath("cmdline").read_bytes(), cwd, proc.joinpath("environ").read_bytes()]
        except OSError:
            continue
        if any(marker in blob for blob in seen):
            found.append(proc.name)
    return found
