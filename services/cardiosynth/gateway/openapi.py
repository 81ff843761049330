"""The OpenAPI document of the gateway, as checked in under ``api-spec/openapi.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

SPEC_PATH = Path("api-spec") / "openapi.yaml"


class _NoDispatch:
    """The spec needs the routes only; nothing is sent anywhere."""

    def submit(self, job_id: str, request: dict[str, Any]) -> None:
        raise RuntimeError("not for use")

    def resume(self, job_id: str, stage: str) -> None:
        raise RuntimeError("not for use")

    def cancel(self, job_id: str) -> None:
        raise RuntimeError("not for use")

    def workers(self) -> dict[str, int]:
        return {}

    def ping(self) -> None:
        return None


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI schema (built without Redis, storage or workers)."""
    import tempfile

    from cardiosynth.gateway.app import create_app
    from cardiosynth.gateway.settings import GatewaySettings
    from cardiosynth.storage.local import LocalStore

    with tempfile.TemporaryDirectory() as tmp:
        settings = GatewaySettings(
            api_keys=SecretStr("spec"), job_store_url=f"sqlite:///{tmp}/jobs.db", storage_dir=Path(tmp)
        )
        store = LocalStore(Path(tmp), signing_key=b"spec-signing-key-0000")
        app = create_app(settings, _NoDispatch(), storage=store)
        doc: dict[str, Any] = app.openapi()
    return doc


def openapi_yaml() -> str:
    text: str = yaml.safe_dump(openapi_document(), sort_keys=False, allow_unicode=True, width=100)
    return text
