from __future__ import annotations

from pathlib import Path

import pytest

from cardiosynth.cli import main


def test_phantom_with_summary_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ph"
    png = tmp_path / "preview.png"
    # Version 1: every subject meets its group's criteria (version 2 lets a few sit near them).
    code = main(["phantom", "--out", str(out), "--subjects", "5", "--workers", "1", "--quiet", "--summary",
                 "--version", "1", "--preview", str(png),
                 "--summary-json", str(tmp_path / "s.json")])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "wrote 5 phantom v1 subjects" in text
    assert "agreement: 5/5 subjects" in text
    assert "LVEF %" in text
    assert "ACDC" in text  # the published means next to the measured ones
    assert png.is_file()
    assert (tmp_path / "s.json").is_file()


def test_summary_of_an_existing_folder(phantom_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(phantom_root)]) == 0
    assert "5 subjects" in capsys.readouterr().out


def test_bad_input_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err
    assert "Traceback" not in err
    assert main(["phantom", "--out", str(tmp_path), "--subjects", "3", "--quiet"]) == 2
    assert "at least 5" in capsys.readouterr().err


def test_argument_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["phantom", "--out", "x", "--seed", "-4"])
    assert exc.value.code == 2
    assert "seed must be in" in capsys.readouterr().err
