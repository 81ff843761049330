"""Gateway configuration from the environment (``CARDIOSYNTH_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from cardiosynth.config import CommonSettings
from cardiosynth.gateway.schemas import MAX_SUBJECT_SEVERITIES


class GatewaySettings(CommonSettings):
    """Settings of the gateway process. Secrets are ``SecretStr`` so they never reach logs."""

    api_keys: SecretStr = Field(default=SecretStr(""), description="comma-separated API keys")
    max_queued_per_key: int = Field(default=10, ge=1)
    # Default: the largest job the schema accepts, so every valid request fits an idle key's quota.
    max_subjects_in_flight_per_key: int = Field(
        default=MAX_SUBJECT_SEVERITIES,
        ge=1,
        description="queued + running subjects x severities per key (429 above)",
    )
    # 10 GiB: about 4,000 subjects x severities of NIfTI (~2.5 MB each) per key. A key's first job may
    # be larger (bytes are checked before a job starts); later ones wait for retention or a purge.
    max_stored_bytes_per_key: int = Field(
        default=10 * 2**30,
        ge=1,
        description="bytes of succeeded jobs' files a key may hold before new jobs are refused (429); "
        "freed by retention or DELETE /jobs/{id}?purge=true",
    )
    result_url_ttl_s: int = Field(default=3600, ge=60)
    heartbeat_stale_s: float = Field(default=600.0, gt=0)
    result_retention_s: int = Field(
        default=7 * 24 * 3600, ge=60, description="a finished job's files are deleted this long after it ends"
    )
    max_body_bytes: int = Field(
        default=16_384, ge=1024, description="largest request body accepted (413 above)"
    )
    # GET /jobs/{id}/events (cardiosynth.gateway.events): one store read per poll per open stream.
    events_poll_s: float = Field(default=0.5, gt=0, description="how often an event stream reads its job")
    events_heartbeat_s: float = Field(
        default=15.0, gt=0, description="a comment line after this long without an event (keeps proxies open)"
    )
    events_max_s: float = Field(
        default=3600.0, gt=0, description="an event stream ends after this long; the client resumes it"
    )

    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]
