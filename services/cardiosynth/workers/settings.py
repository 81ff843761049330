"""Worker configuration from the environment (``CARDIOSYNTH_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from cardiosynth.config import CommonSettings


class WorkerSettings(CommonSettings):
    data_dir: Path | None = Field(default=None, description="ACDC-layout data; default: the phantom")
    model_root: Path | None = Field(default=None, description="registry root; default: shipped models")
    heartbeat_s: float = Field(default=10.0, gt=0)
    visibility_timeout_s: int = Field(default=4 * 3600, ge=1, description="longer than the longest stage")
    liveness_s: float = Field(default=5.0, gt=0, description="how often a worker says it is alive")
    liveness_ttl_s: float = Field(default=20.0, gt=0, description="a worker silent this long is gone")

    @field_validator("data_dir", "model_root", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes "${VAR:-}" as an empty string; that means "not set", not the current folder.
        return None if value == "" else value
