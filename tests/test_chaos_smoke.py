"""The chaos suite (bench/chaos.py) runs, counts and cleans up: two cheap scenarios on a real gateway
over a redis-server of its own (no workers, a few seconds)."""

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
def test_oversized_bodies_are_refused_and_the_race_is_counted(tmp_path: Path) -> None:
    chaos = _chaos()
    root = tmp_path / "chaos"
    root.mkdir()
    rows = chaos.run(tmp_path, quick=True, only=["oversized", "cap_race:redis"], limit_s=120, root=root)
    by_name = {row.scenario: row for row in rows}
    assert set(by_name) == {"oversized", "cap_race"}
    big = by_name["oversized"]
    assert big.error is None
    assert big.verdict == "PASS", big.notes  # 413/422 for 10 MB bodies, nothing echoed, Redis unchanged
    assert big.tries == 12
    assert big.dropped == 0
    race = by_name["cap_race"]
    assert race.error is None
    assert race.tries == 50
    codes = race.notes[0]
    accepted = int(codes.split()[1])
    assert 1 <= accepted <= 50
    assert race.s500 == 0
    assert race.dropped == 0
    # Every process it started (redis-server, gateway) is gone.
    assert not _processes_under(root)
    text = chaos.table(rows)
    assert "oversized" in text
    assert "cap_race" in text


def _processes_under(root: Path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(root) in text:
            found.append(text)
    return found
