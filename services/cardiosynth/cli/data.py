"""``cardiosynth phantom``, ``summary`` and ``preview``: make and inspect ACDC-layout data."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cardiosynth.cli.args import _positive_int, _seed
from cardiosynth.cli.common import _echo, log


def _summarise(root: Path, json_path: Path | None) -> int:
    from cardiosynth.data.acdc import iter_subjects
    from cardiosynth.data.summary import format_summary, summarise_subject

    rows = [summarise_subject(s) for s in iter_subjects(root)]
    _echo(format_summary(rows))
    if json_path is not None:
        payload = [
            {
                "subject": r.subject_id,
                "group": r.group,
                "diagnosis": r.diagnosis.label if r.diagnosis else None,
                "reasons": list(r.diagnosis.reasons) if r.diagnosis else [],
                "biomarkers": r.biomarkers.to_dict(),
            }
            for r in rows
        ]
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n", encoding="utf-8")
        log.info("wrote %s", json_path)
    return 0


def _preview(root: Path, png: Path) -> None:
    from cardiosynth.data.acdc import read_dataset
    from cardiosynth.data.phantom.preview import write_preview

    write_preview(read_dataset(root), png)
    _echo(f"preview: {png}")


def cmd_phantom(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cardiosynth.data.phantom import generate_dataset

    started = time.perf_counter()
    with tqdm(total=args.subjects, desc="phantom", unit="subject", disable=args.quiet) as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        generate_dataset(
            args.out,
            args.subjects,
            args.seed,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=progress,
            version=args.version,
        )
    elapsed = time.perf_counter() - started
    _echo(
        f"wrote {args.subjects} phantom v{args.version} subjects to {args.out / 'training'} "
        f"in {elapsed:.1f} s (seed {args.seed})"
    )
    if args.preview is not None:
        _preview(args.out, args.preview)
    if args.summary:
        _echo()
        return _summarise(args.out, args.summary_json)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    return _summarise(args.data, args.json)


def cmd_preview(args: argparse.Namespace) -> int:
    _preview(args.data, args.out)
    return 0


def add_data_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """``phantom`` and ``summary`` (``preview`` comes later in the help: :func:`add_preview_command`)."""
    p = sub.add_parser("phantom", help="generate an ACDC-format phantom data set")
    p.add_argument("--out", type=Path, required=True, help="data-set root; subjects go to OUT/training")
    p.add_argument(
        "--subjects", type=_positive_int, default=100, help="number of subjects (default 100, >= 5)"
    )
    p.add_argument("--seed", type=_seed, default=0, help="data-set seed (default 0)")
    p.add_argument(
        "--version",
        type=int,
        choices=(1, 2),
        default=2,
        help="phantom version: 2 (default) the ACDC-like population and anatomy of issue 10, "
        "1 the earlier phantom, kept reproducible",
    )
    p.add_argument("--workers", type=_positive_int, default=None, help="processes (default: CPU count)")
    p.add_argument("--overwrite", action="store_true", help="replace subjects already in OUT/training")
    p.add_argument("--preview", type=Path, default=None, metavar="PNG", help="write a montage PNG")
    p.add_argument("--summary", action="store_true", help="print biomarker ranges and the rule diagnosis")
    p.add_argument(
        "--summary-json", type=Path, default=None, metavar="FILE", help="also write the summary as JSON"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser(
        "summary", help="biomarkers, rule diagnosis and per-group ranges of an ACDC-layout folder"
    )
    p.add_argument("data", type=Path, help="ACDC root, its training/ folder, or a patientNNN folder")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write per-subject JSON")
    p.set_defaults(func=cmd_summary)


def add_preview_command(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("preview", help="montage PNG of an ACDC-layout folder")
    p.add_argument("data", type=Path)
    p.add_argument("--out", type=Path, required=True, metavar="PNG")
    p.set_defaults(func=cmd_preview)
