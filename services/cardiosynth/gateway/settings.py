"""Gateway configuration from the environment (``CARDIOSYNTH_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """Settings of the gateway process. Secrets are ``SecretStr`` so they never reach logs."""

    model_config = SettingsConfigDict(env_prefix="CARDIOSYNTH_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    job_prefix: str = "cs"
    api_keys: SecretStr = Field(default=SecretStr(""), description="comma-separated API keys")
    max_queued_per_key: int = Field(default=10, ge=1)
    result_url_ttl_s: int = Field(default=3600, ge=60)
    heartbeat_stale_s: float = Field(default=600.0, gt=0)
    public_url: str = "http://127.0.0.1:8000"
    storage: Literal["local", "s3"] = "local"
    storage_dir: Path = Path("storage")
    signing_key: SecretStr = Field(default=SecretStr(""), description="HMAC key of local download links")
    s3_bucket: str = "cardiosynth"
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None

    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]
