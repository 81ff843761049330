"""Worker configuration from the environment (``CARDIOSYNTH_*``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from cardiosynth.config import CommonSettings


class WorkerSettings(CommonSettings):
    data_dir: Path | None = Field(default=None, description="ACDC-layout data; default: the phantom")
    model_root: Path | None = Field(default=None, description="registry root; default: shipped models")
    heartbeat_s: float = Field(default=10.0, gt=0)
    visibility_timeout_s: int = Field(default=4 * 3600, ge=1, description="longer than the longest stage")
    liveness_s: float = Field(default=5.0, gt=0, description="how often a worker says it is alive")
    liveness_ttl_s: float = Field(default=20.0, gt=0, description="a worker silent this long is gone")
    device: str = Field(default="auto", description="auto (CUDA when available), cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="autocast of decode and translate; auto: fp32 on CPU, bf16 on CUDA"
    )
    chunk_size: int = Field(
        default=16, ge=1, le=1000, description="subjects per chunk of a job's stage graph (fan-out unit)"
    )
    batch_size: int | None = Field(
        default=None, ge=1, description="slices per forward pass; default: from free GPU memory (CPU: 256/64)"
    )
    sampling_calibration_subjects: int = Field(
        default=128,
        ge=1,
        le=4096,
        description=(
            "end points per class and phase the decoder's sampling calibration is fitted on "
            "(drawn in antithetic pairs: an odd count is rounded up)"
        ),
    )

    motion_calibration_subjects: int = Field(
        default=64,
        ge=1,
        le=100,
        description=(
            "synthetic subjects per class, mode and family that the ED -> ES motion calibration and the "
            "regional contraction calibration are fitted on"
        ),
    )

    @field_validator("data_dir", "model_root", "batch_size", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes "${VAR:-}" as an empty string; that means "not set", not the current folder.
        return None if value == "" else value

    @field_validator("device", mode="before")
    @classmethod
    def _device_spec(cls, value: object) -> object:
        # The form only (no torch import here); whether CUDA is there is checked when models load.
        text = "auto" if value in ("", None) else str(value).strip().lower()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
            raise ValueError(f"CARDIOSYNTH_DEVICE must be auto, cpu, cuda or cuda:N, got {value!r}")
        return text
