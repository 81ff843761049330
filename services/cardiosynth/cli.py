"""The ``cardiosynth`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cardiosynth import __version__
from cardiosynth.log import configure_logging
from cardiosynth.synthesis.modes import (
    CORRELATION_MODES,
    DEFAULT_CORRELATION,
    DEFAULT_INTERPOLATION,
    INTERPOLATIONS,
)

log = logging.getLogger("cardiosynth")


def _echo(text: str = "") -> None:
    """Command output (results for the user) goes to stdout; diagnostics go to the log on stderr."""
    sys.stdout.write(text + "\n")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {number}")
    return number


def _seed(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer, got {value!r}") from None
    if not 0 <= number < 2**32:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2^32), got {number}")
    return number


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
        )
    elapsed = time.perf_counter() - started
    _echo(f"wrote {args.subjects} subjects to {args.out / 'training'} in {elapsed:.1f} s (seed {args.seed})")
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


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {number}")
    return number


def cmd_train(args: argparse.Namespace) -> int:
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "seed": args.seed,
    }
    common = {
        "holdout": args.holdout,
        "resume": args.resume,
        "overwrite": args.overwrite,
        "version": args.version,
        "model_root": args.model_root,
        "show_progress": not args.quiet,
    }
    if args.model == "vae":
        from cardiosynth.models.train_vae import run_vae_training, vae_preset

        path = run_vae_training(args.data, args.out, vae_preset(args.preset, **overrides), **common)
    else:
        from cardiosynth.models.train_spade import run_spade_training, spade_preset

        path = run_spade_training(args.data, args.out, spade_preset(args.preset, **overrides), **common)
    card = json.loads((path / "card.json").read_text(encoding="utf-8"))
    _echo(f"{args.model} model {args.version}: {path}")
    for name, value in card.get("metrics", {}).items():
        _echo(f"  {name}: {value:.4f}" if isinstance(value, float) else f"  {name}: {value}")
    return 0


def cmd_evaluate_models(args: argparse.Namespace) -> int:
    from cardiosynth.evaluation.models import ModelRefs, evaluate_models, report_markdown, write_report
    from cardiosynth.models.registry import update_card

    refs = ModelRefs(args.vae_version, args.spade_version, args.model_root, args.vae_dir, args.spade_dir)
    report = evaluate_models(
        args.data, refs, segmenter_epochs=args.segmenter_epochs, seed=args.seed, show_progress=not args.quiet
    )
    json_path, md_path = write_report(report, args.out)
    _echo(report_markdown(report))
    _echo(f"report: {json_path} and {md_path}")
    if args.update_cards:
        vae, spade = refs.load()
        figures = report["figures"]
        update_card(vae.path, metrics={k: v for k, v in figures.items() if k.startswith("vae_")})
        update_card(spade.path, metrics={k: v for k, v in figures.items() if not k.startswith("vae_")})
        _echo(f"updated cards: {vae.path} {spade.path}")
    return 0


def cmd_evaluate_synthesis(args: argparse.Namespace) -> int:
    from cardiosynth.data.labels import parse_group
    from cardiosynth.evaluation.synthesis import GROUPS, evaluate_synthesis, synthesis_markdown
    from cardiosynth.models.registry import load_model

    vae = load_model("vae", args.model, args.model_root)
    spade = load_model("spade", args.model, args.model_root) if args.images else None
    data = args.data if args.data is not None else _ensure_default_data()
    groups = tuple(parse_group(g) for g in args.groups.split(",")) if args.groups else GROUPS
    report = evaluate_synthesis(
        vae.module,  # type: ignore[arg-type]
        data,
        args.out,
        model_version=vae.version,
        n=args.n,
        trajectory_n=args.trajectories,
        trajectory_steps=args.steps,
        seed=args.seed,
        train_fraction=args.train_fraction,
        k=args.k,
        groups=groups,
        cross=args.cross,
        modes=args.modes.split(",") if args.modes else None,
        cache_dir=args.cache,
        spade=spade.module if spade is not None else None,  # type: ignore[arg-type]
    )
    _echo(synthesis_markdown(report))
    _echo(f"report: {args.out}/synthesis.json, synthesis.md, precision_recall.png, identity_fidelity.png")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from cardiosynth.models.catalog import list_models

    rows = list_models(args.model_root)
    if not rows:
        _echo("no models")
    for kind, version, path in rows:
        card = (
            json.loads((path / "card.json").read_text(encoding="utf-8"))
            if (path / "card.json").is_file()
            else {}
        )
        _echo(
            f"{kind:6s} {version:16s} preset={card.get('preset', '?')} "
            f"epochs={card.get('epochs', '?')} {path}"
        )
    return 0


def _severity(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"severity must be a number, got {value!r}") from None
    if not 0.0 < number <= 1.0:
        raise argparse.ArgumentTypeError(f"severity must be in (0, 1], got {number}")
    return number


def _default_cache() -> Path:
    from cardiosynth.data.default import cache_root

    return cache_root()


def _ensure_default_data() -> Path:
    from cardiosynth.data.default import default_data

    return default_data()


def cmd_synthesize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cardiosynth.data.labels import parse_group
    from cardiosynth.models.registry import load_model
    from cardiosynth.synthesis.engine import PHASES, SynthesisRequest, Synthesizer
    from cardiosynth.synthesis.modes import check_interpolation, check_mode
    from cardiosynth.synthesis.output import format_table, write_subject

    severities = SynthesisRequest.trajectory(args.trajectory) if args.trajectory else (args.severity,)
    request = SynthesisRequest(
        pathology=parse_group(args.pathology),
        n=args.n,
        seed=args.seed,
        severities=severities,
        correlation=check_mode(args.correlation),
        interpolation=check_interpolation(args.interpolation),
        phases=tuple(args.phases.split(",")) if args.phases else PHASES,
        base_subjects=tuple(args.base.split(",")) if args.base else (),
        territory=args.territory,
    )
    existing = [
        p for p in (args.out / f"{request.pathology.value}_{i:03d}" for i in range(request.n)) if p.exists()
    ]
    if existing and not args.overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass --overwrite to replace outputs")
    vae = load_model("vae", args.model, args.model_root)
    spade = load_model("spade", args.model, args.model_root)
    models = {"vae": vae.version, "spade": spade.version}
    data = args.data if args.data is not None else _ensure_default_data()
    synthesizer = Synthesizer(
        vae.module,  # type: ignore[arg-type]
        spade.module,  # type: ignore[arg-type]
        data,
        model_versions=models,
        cache_dir=None if args.no_cache else args.cache,
    )
    started = time.perf_counter()
    with tqdm(total=5, desc="synthesize", disable=args.quiet) as bar:

        def progress(stage: str, done: int, total: int) -> None:
            bar.set_postfix(stage=stage)
            bar.update(1)

        subjects = synthesizer.run(request, progress)
    written = []
    for subject in subjects:
        written.append(write_subject(subject, request, args.out, models=models, overwrite=args.overwrite,
                                     preview=not args.no_preview))  # fmt: skip
    elapsed = time.perf_counter() - started
    _echo(f"wrote {len(written)} {request.pathology.value} subjects to {args.out} in {elapsed:.1f} s")
    _echo(format_table(subjects, max(request.severities)))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    import contextlib
    import signal as signals

    from cardiosynth.embedded import running_stack

    state = args.state or (_default_cache() / "embedded")
    with running_stack(state, port=args.port, data=args.data, api_key=args.api_key) as stack:
        _echo(f"cardiosynth is up at {stack.url} (docs: {stack.url}/docs)")
        _echo(f"API key: {stack.api_key}")
        _echo(f'try: curl -X POST {stack.url}/synthesize -H "X-API-Key: {stack.api_key}" '
              "-H 'Content-Type: application/json' -d '{\"pathology\": \"HCM\", \"n\": 5}'")  # fmt: skip
        _echo("Ctrl-C stops it")
        stop = {"now": False}

        def _stop(*_: object) -> None:
            stop["now"] = True

        signals.signal(signals.SIGTERM, _stop)
        with contextlib.suppress(KeyboardInterrupt):
            stack.supervise(lambda: stop["now"])  # a process that dies is restarted, with a backoff
    _echo("stopped")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from cardiosynth.embedded import run_job, running_stack

    started = time.perf_counter()
    body = {"pathology": args.pathology, "n": args.n, "seed": args.seed}
    _echo("starting the embedded stack (gateway, VAE worker, SPADE worker) ...")
    data = args.data if args.data is not None else _ensure_default_data()
    with (
        tempfile.TemporaryDirectory(prefix="cardiosynth-") as tmp,
        running_stack(Path(tmp), data=data) as stack,
    ):
        up = time.perf_counter() - started
        _echo(f"up at {stack.url} after {up:.0f} s; POST /synthesize {json.dumps(body)}")
        results = run_job(stack, body, args.out, echo=_echo)
    total = time.perf_counter() - started
    _echo(f"downloaded {len(results['files'])} files into {args.out}/ in {total:.0f} s")
    columns = ("LVEDV", "LVEF", "RVEDV", "RVEF", "maxWT", "mass")
    _echo(f"{'subject':10s} " + " ".join(f"{c:>7s}" for c in columns))
    keys = ("lv_edv", "lv_ef", "rv_edv", "rv_ef", "max_wall_thickness", "myo_mass")
    for subject, by_severity in sorted(results["biomarkers"].items()):
        for b in by_severity.values():
            if b is not None:
                _echo(f"{subject:10s} " + " ".join(f"{b[k]:7.1f}" for k in keys))
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from cardiosynth.gateway.openapi import openapi_yaml

    text = openapi_yaml()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            log.error(
                "%s differs from the app's schema; run: cardiosynth openapi --out %s", args.out, args.out
            )
            return 1
        _echo(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    _echo(f"wrote {args.out}")
    return 0


def cmd_models_push(args: argparse.Namespace) -> int:
    from cardiosynth.config import CommonSettings
    from cardiosynth.models.catalog import find_model
    from cardiosynth.models.registry import push_model

    store = CommonSettings().build_storage()
    for kind in ("vae", "spade"):
        prefix = push_model(store, find_model(kind, args.version, args.model_root))
        _echo(f"pushed {kind} {args.version} to {prefix}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiosynth",
        description="Labelled cardiac MR data with a chosen pathology (label VAE, latent synthesis, SPADE).",
    )
    parser.add_argument("--version", action="version", version=f"cardiosynth {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("phantom", help="generate an ACDC-format phantom data set")
    p.add_argument("--out", type=Path, required=True, help="data-set root; subjects go to OUT/training")
    p.add_argument(
        "--subjects", type=_positive_int, default=100, help="number of subjects (default 100, >= 5)"
    )
    p.add_argument("--seed", type=_seed, default=0, help="data-set seed (default 0)")
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

    p = sub.add_parser("train", help="train the label VAE or the SPADE translator")
    p.add_argument("model", choices=["vae", "spade"])
    p.add_argument("--data", type=Path, required=True, help="ACDC-layout data (phantom or real ACDC)")
    p.add_argument(
        "--out", type=Path, required=True, help="run directory (checkpoint, history, samples, model/)"
    )
    p.add_argument("--preset", default="cpu-small", choices=["cpu-small", "paper"], help="default cpu-small")
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the preset's epochs")
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument("--lr", type=_positive_float, default=None, help="learning rate (SPADE: the generator's)")
    p.add_argument("--seed", type=_seed, default=None, help="run seed (default 0)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of subjects held out per group")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="start afresh over an existing run")
    p.add_argument("--version", default="phantom-v1", help="model version name (default phantom-v1)")
    p.add_argument("--model-root", type=Path, default=None, help="also install into this registry root")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("synthesize", help="synthetic subjects of a chosen pathology (labels + images)")
    p.add_argument("--pathology", required=True, help="NOR, DCM, HCM, MINF or RV")
    p.add_argument("-n", type=_positive_int, default=1, help="number of synthetic subjects (1-100)")
    p.add_argument("--seed", type=_seed, default=0)
    sev = p.add_mutually_exclusive_group()
    sev.add_argument("--severity", type=_severity, default=1.0, help="in (0, 1]; default 1.0")
    sev.add_argument("--trajectory", type=_positive_int, default=None, metavar="K",
                     help="K severities 1/K, 2/K, ..., 1")  # fmt: skip
    p.add_argument("--correlation", default=DEFAULT_CORRELATION, choices=CORRELATION_MODES,
                   help="correlation of the sampled latents (default both)")  # fmt: skip
    p.add_argument("--interpolation", default=DEFAULT_INTERPOLATION, choices=INTERPOLATIONS,
                   help="sample: towards a class sample (the paper's, default); shift: the base moved by "
                   "the class shift, keeping its identity")  # fmt: skip
    p.add_argument("--phases", default=None, help="ED,ES (default both)")
    p.add_argument("--base", default=None, help="comma-separated NOR subject ids to start from")
    p.add_argument("--territory", default=None, choices=["LAD", "LCx", "RCA"],
                   help="MINF only: infarct territory (default: drawn per subject with the data's "
                   "territory frequencies)")  # fmt: skip
    p.add_argument(
        "--data", type=Path, default=None, help="ACDC-layout data (default: the phantom, made once)"
    )
    p.add_argument("--model", default="phantom-v1", help="model version (VAE and SPADE)")
    p.add_argument("--model-root", type=Path, default=None)
    p.add_argument("--cache", type=Path, default=_default_cache(), help="class-statistics cache")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--no-preview", action="store_true")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("up", help="run the service stack on this machine (no Docker, Redis or S3)")
    p.add_argument("--port", type=_positive_int, default=8000)
    p.add_argument("--state", type=Path, default=None, help="state folder (default: the user cache)")
    p.add_argument("--data", type=Path, default=None, help="ACDC-layout data (default: the phantom)")
    p.add_argument("--api-key", default=None,
                   help="API key (default: $CARDIOSYNTH_API_KEY, else the state folder's own)")  # fmt: skip
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("demo", help="start the embedded stack, run one job through the API, download it")
    p.add_argument("--pathology", default="HCM")
    p.add_argument("-n", type=_positive_int, default=5)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("out"))
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("openapi", help="write (or --check) the gateway's OpenAPI document")
    p.add_argument("--out", type=Path, default=Path("api-spec/openapi.yaml"))
    p.add_argument("--check", action="store_true", help="exit 1 when the file differs from the app")
    p.set_defaults(func=cmd_openapi)

    p = sub.add_parser("evaluate", help="evaluation reports")
    ev = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = ev.add_parser("models", help="VAE reconstruction Dice, SPADE label fidelity and intensities")
    q.add_argument("--data", type=Path, required=True, help="ACDC-layout data the models were trained on")
    q.add_argument("--out", type=Path, required=True, help="report folder (models.json, models.md)")
    q.add_argument("--vae-version", default="phantom-v1")
    q.add_argument("--spade-version", default="phantom-v1")
    q.add_argument("--model-root", type=Path, default=None, help="registry root (default: shipped models)")
    q.add_argument("--vae-dir", type=Path, default=None, help="a VAE model directory instead of the registry")
    q.add_argument(
        "--spade-dir", type=Path, default=None, help="a SPADE model directory instead of the registry"
    )
    q.add_argument("--segmenter-epochs", type=_positive_int, default=4)
    q.add_argument("--seed", type=_seed, default=0)
    q.add_argument("--update-cards", action="store_true", help="write the figures into the model cards")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_evaluate_models)

    q = ev.add_parser(
        "synthesis",
        help="precision/recall, normalised W1, fidelity, topology, memorisation, identity vs severity: "
        "method and baselines against held-out subjects",
    )
    q.add_argument("--data", type=Path, default=None, help="ACDC-layout data (default: the phantom)")
    q.add_argument("--out", type=Path, required=True, help="report folder")
    q.add_argument("--model", default="phantom-v1")
    q.add_argument("--model-root", type=Path, default=None)
    q.add_argument(
        "-n", type=_positive_int, default=20, help="synthetic subjects per class and row (default 20)"
    )
    q.add_argument("--trajectories", type=_positive_int, default=10, help="trajectories per class and family")
    q.add_argument("--steps", type=_positive_int, default=5, help="severities per trajectory (default 5)")
    q.add_argument("--seed", type=_seed, default=0)
    q.add_argument(
        "--train-fraction",
        type=_positive_float,
        default=0.6,
        help="share of each group for the class statistics; the rest is held out (default 0.6)",
    )
    q.add_argument("-k", type=_positive_int, default=3, help="neighbours for precision / recall (default 3)")
    q.add_argument("--groups", default=None, help="comma-separated classes (default: DCM,HCM,MINF,NOR,RV)")
    q.add_argument(
        "--cross", action="store_true", help="every correlation mode with every interpolation family"
    )
    q.add_argument("--modes", default=None, help="comma-separated correlation modes (default: every mode)")
    q.add_argument(
        "--images", action="store_true", help="also image realism (C2ST, texture; needs SPADE, slower)"
    )
    q.add_argument("--cache", type=Path, default=_default_cache())
    q.set_defaults(func=cmd_evaluate_synthesis)

    p = sub.add_parser("models", help="the model registry")
    mv = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = mv.add_parser("list", help="models by kind and version")
    q.add_argument("--model-root", type=Path, default=None)
    q.set_defaults(func=cmd_models_list)
    q = mv.add_parser("push", help="upload a model version (VAE + SPADE) to the configured object store")
    q.add_argument("--version", default="phantom-v1")
    q.add_argument("--model-root", type=Path, default=None)
    q.set_defaults(func=cmd_models_push)

    p = sub.add_parser("preview", help="montage PNG of an ACDC-layout folder")
    p.add_argument("data", type=Path)
    p.add_argument("--out", type=Path, required=True, metavar="PNG")
    p.set_defaults(func=cmd_preview)

    from cardiosynth.export.commands import add_dataset_commands

    add_dataset_commands(sub)  # dataset build / dataset export
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(args.log_level)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        code: int = args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        # Bad input: one clear line, no traceback (the message names the file or value at fault).
        log.error("%s", exc)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
