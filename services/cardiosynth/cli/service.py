"""``cardiosynth up``, ``demo``, ``openapi`` and ``models list`` / ``models push``: the service stack
and its model registry."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cardiosynth.cli.args import _positive_int, _seed
from cardiosynth.cli.common import _default_cache, _echo, _ensure_default_data, log
from cardiosynth.models.catalog import DEFAULT_VERSION


def cmd_up(args: argparse.Namespace) -> int:
    import contextlib
    import signal as signals

    from cardiosynth.embedded import running_stack

    state = args.state or (_default_cache() / "embedded")
    with running_stack(state, port=args.port, data=args.data, api_key=args.api_key) as stack:
        _echo(f"cardiosynth is up at {stack.url} (docs: {stack.url}/docs)")
        _echo(f"web page: {stack.url}/ui (sign in with the API key below)")
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


def cmd_models_push(args: argparse.Namespace) -> int:
    from cardiosynth.config import CommonSettings
    from cardiosynth.models.catalog import find_model
    from cardiosynth.models.registry import push_model

    store = CommonSettings().build_storage()
    for kind in ("vae", "spade"):
        prefix = push_model(store, find_model(kind, args.version, args.model_root))
        _echo(f"pushed {kind} {args.version} to {prefix}/")
    return 0


def add_service_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """``up``, ``demo`` and ``openapi`` (``models`` comes later in the help: :func:`add_models_commands`)."""
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


def add_models_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("models", help="the model registry")
    mv = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = mv.add_parser("list", help="models by kind and version")
    q.add_argument("--model-root", type=Path, default=None)
    q.set_defaults(func=cmd_models_list)
    q = mv.add_parser("push", help="upload a model version (VAE + SPADE) to the configured object store")
    q.add_argument("--version", default=DEFAULT_VERSION)
    q.add_argument("--model-root", type=Path, default=None)
    q.set_defaults(func=cmd_models_push)
