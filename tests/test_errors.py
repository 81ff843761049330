from __future__ import annotations

from cardiosynth.errors import MAX_DETAIL, public_detail, redact


def test_redact_hides_paths_and_urls() -> None:
    text = "subject 'p9' is not in /srv/cardiosynth/data/training (see s3://bucket/key, http://minio:9000/x)"
    out = redact(text)
    assert "/srv" not in out
    assert "minio" not in out
    assert "bucket" not in out
    assert "subject 'p9' is not in <path>" in out
    assert out.count("<url>") == 2


def test_redact_keeps_plain_messages_and_bounds_length() -> None:
    assert redact("severities must be in (0, 1], got [1.5]") == "severities must be in (0, 1], got [1.5]"
    assert redact("ratio 3/4 of slices") == "ratio 3/4 of slices"
    assert len(redact("x" * 10_000)) == MAX_DETAIL


def test_public_detail_keeps_bad_input_and_hides_bugs() -> None:
    assert public_detail(ValueError("n must be in 1..100, got 0")) == "n must be in 1..100, got 0"
    hidden = public_detail(FileNotFoundError("/var/lib/cardiosynth/state/jobs.db"))
    assert "/var" not in hidden
    assert "FileNotFoundError" in hidden
    assert "endpoint" not in public_detail(KeyError("http://10.0.0.5:9000 endpoint"))
