"""The archive's tar writer (pure): members in the given order with their sizes and checksums, the same
bytes for the same inputs, streamed one member at a time, unsafe or repeated names refused."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from cardiosynth.tarball import write_tar

MEMBERS = [
    ("job/manifest.json", b'{"files": []}'),
    ("job/HCM_000/HCM_000_s1.00_ED_gt.nii.gz", bytes(range(256)) * 40),
    ("job/HCM_000/provenance.json", b"{}"),
    ("job/HCM_001/" + "x" * 150 + ".nii.gz", b"\x1f\x8b" + b"\x00" * 1000),  # longer than ustar's 100
    ("job/empty.txt", b""),
]


def _write(members: list[tuple[str, bytes]], **kwargs: int) -> tuple[bytes, object]:
    out = io.BytesIO()
    summary = write_tar(out, [(n, lambda d=d: d) for n, d in members], **kwargs)
    return out.getvalue(), summary


def test_members_order_sizes_and_content_round_trip() -> None:
    data, summary = _write(MEMBERS, mtime=1_764_000_000)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == [n for n, _ in MEMBERS]
        assert [i.size for i in infos] == [len(d) for _, d in MEMBERS]
        assert {i.mtime for i in infos} == {1_764_000_000}
        assert all(i.isfile() and i.mode == 0o644 and i.uid == 0 for i in infos)
        for info, (_, content) in zip(infos, MEMBERS, strict=True):
            handle = tar.extractfile(info)
            assert handle is not None
            assert handle.read() == content
    assert summary.bytes == len(data)
    assert summary.bytes % 10240 == 0
    assert summary.sha256 == hashlib.sha256(data).hexdigest()
    assert [(m.name, m.size, m.sha256) for m in summary.members] == [
        (n, len(d), hashlib.sha256(d).hexdigest()) for n, d in MEMBERS
    ]


def test_the_same_inputs_give_the_same_bytes_and_other_inputs_do_not() -> None:
    first, a = _write(MEMBERS)
    second, b = _write(MEMBERS)
    assert first == second
    assert a.sha256 == b.sha256
    _, reordered = _write(MEMBERS[::-1])
    _, later = _write(MEMBERS, mtime=1)
    changed = [*MEMBERS[:-1], ("job/empty.txt", b"!")]
    _, edited = _write(changed)
    assert len({a.sha256, reordered.sha256, later.sha256, edited.sha256}) == 4  # type: ignore[attr-defined]


def test_members_are_read_one_at_a_time_in_order_and_progress_is_reported() -> None:
    log: list[str] = []
    out = io.BytesIO()

    def reader(name: str, content: bytes):  # type: ignore[no-untyped-def]
        def read() -> bytes:
            log.append(f"read {name}")
            return content

        return read

    def progress(done: int, written: int) -> None:
        log.append(f"done {done}")
        assert written <= out.tell() + 10240  # what the stream has passed on so far

    write_tar(out, [(n, reader(n, d)) for n, d in MEMBERS[:3]], progress=progress)
    names = [n for n, _ in MEMBERS[:3]]
    assert log == [x for i, n in enumerate(names, 1) for x in (f"read {n}", f"done {i}")]


@pytest.mark.parametrize("name", ["", "/abs/x", "a/../b", "a//b", "./a", "a\\b"])
def test_unsafe_names_are_refused_by_name(name: str) -> None:
    with pytest.raises(ValueError, match="invalid tar member name"):
        _write([(name, b"x")])


def test_a_repeated_name_is_refused() -> None:
    with pytest.raises(ValueError, match="given twice"):
        _write([("a/b", b"1"), ("a/b", b"2")])
    with pytest.raises(ValueError, match="mtime"):
        _write([("a/b", b"1")], mtime=-1)
