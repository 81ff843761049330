"""Settings shared by the gateway and the workers (environment variables ``CARDIOSYNTH_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from cardiosynth.storage.base import ObjectStore


class CommonSettings(BaseSettings):
    """Broker, job store and object storage: every process of the stack reads these."""

    model_config = SettingsConfigDict(env_prefix="CARDIOSYNTH_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = Field(default=None, description="Celery broker; defaults to redis_url")
    job_store_url: str | None = Field(
        default=None, description="redis://... or sqlite:///path; default redis_url"
    )
    broker_folder: Path | None = Field(default=None, description="folder of the filesystem:// broker")
    job_prefix: str = "cs"
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

    def broker(self) -> str:
        return self.broker_url or self.redis_url

    def job_store(self) -> str:
        return self.job_store_url or self.redis_url

    def build_storage(self) -> ObjectStore:
        """The configured object store."""
        if self.storage == "local":
            from cardiosynth.storage.local import LocalStore

            key = self.signing_key.get_secret_value().encode()
            if len(key) < 16:
                raise ValueError("CARDIOSYNTH_SIGNING_KEY must be set (16+ characters) for local storage")
            return LocalStore(self.storage_dir, signing_key=key, base_url=self.public_url)
        from cardiosynth.storage.s3 import S3Store

        return S3Store(
            self.s3_bucket,
            endpoint_url=self.s3_endpoint_url,
            public_endpoint_url=self.s3_public_endpoint_url,
            region=self.s3_region,
            access_key=self.s3_access_key.get_secret_value() if self.s3_access_key else None,
            secret_key=self.s3_secret_key.get_secret_value() if self.s3_secret_key else None,
        )
