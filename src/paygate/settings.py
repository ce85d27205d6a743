"""All configuration, read once from the environment (prefix PAYGATE_)."""

from __future__ import annotations

import json
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Development defaults: refused in production (see `Settings.refuse_defaults_in_production`).
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"
DEV_MASTER_KEYS = "dev-2026:ZGV2LW9ubHktbWFzdGVyLWtleS0zMi1ieXRlcyEhISE="


class Mode(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYGATE_", extra="ignore")

    mode: Mode = Mode.DEVELOPMENT
    # Unset: paygate starts an embedded PostgreSQL with its data under data_dir/pgdata.
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path("var")

    # Master keys for envelope encryption: "keyid:base64key" entries separated by commas
    # (or lines, in master_key_file); the first is the primary used for new data keys.
    master_keys: SecretStr | None = None
    master_key_file: Path | None = None
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)

    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86400, ge=300)
    # A refresh token used again within this many seconds is a race, not a theft.
    refresh_reuse_grace_seconds: int = Field(default=5, ge=0, le=60)
    # A replaced gateway secret stays accepted this long (webhooks in flight), 0 to 7 days.
    credential_grace_hours: int = Field(default=24, ge=0, le=168)
    gateway_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Whether gateways in the test environment may call private addresses (the local
    # emulators on 127.0.0.1). Unset: yes in development and test mode, never in production,
    # where any tenant could otherwise aim a "test" gateway at the internal network (SSRF).
    test_gateways_reach_private_addresses: bool | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Outbound webhooks: how long one delivery attempt may take, and whether endpoints may
    # point at private addresses over plain http. Unset: only in development and test mode
    # (a receiver on 127.0.0.1); in production every endpoint is https and SSRF-checked.
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, le=60)
    webhook_endpoints_reach_private_addresses: bool | None = None

    # Rate limits, in `limits` notation ("10/minute", several joined by ";"): one setting per
    # bucket and key, `rate_limit_<bucket>_<ip|account>`; an empty string turns one off.
    # Shared through Redis when redis_url is set, per process otherwise.
    rate_limit_sign_in_ip: str = "20/minute;200/hour"
    rate_limit_sign_in_account: str = "5/minute;50/hour"
    rate_limit_sign_up_ip: str = "10/minute;50/hour"
    rate_limit_refresh_ip: str = "60/minute"
    rate_limit_password_reset_ip: str = "10/hour"
    rate_limit_password_reset_account: str = "5/hour"
    # "account" is the invoice for the public payment page.
    rate_limit_pay_page_ip: str = "120/minute"
    rate_limit_pay_page_account: str = "120/minute"
    rate_limit_pay_submit_ip: str = "20/minute;100/hour"
    rate_limit_pay_submit_account: str = "20/minute;100/hour"
    # Webhooks refused (bad signature) per sending IP, and per gateway ("account").
    rate_limit_webhook_ip: str = "600/minute"
    rate_limit_webhook_account: str = "60/minute;600/hour"
    rate_limit_key_prefix: str = "paygate-rl"
    # Redis keys of the token revocation list start with this (one Redis may serve several
    # deployments, or test runs).
    # It also names the Redis connection (CLIENT SETNAME): no spaces.
    revocation_key_prefix: str = Field(
        default="paygate-rev", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$"
    )
    # Account lockout: this many failed sign-ins in a row lock the account this long.
    lockout_threshold: int = Field(default=10, ge=1)
    lockout_minutes: int = Field(default=30, ge=1)
    # How long an emailed password-reset link works.
    password_reset_ttl_minutes: int = Field(default=30, ge=5, le=1440)

    # Outbound mail (password resets, lockout and key-expiry notices). Without smtp_host,
    # messages are written to data_dir/outbox as .eml files instead.
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    mail_from: str = "paygate <no-reply@paygate.localhost>"

    # Owners are emailed this many days before an API key expires (once per key).
    api_key_expiry_notice_days: int = Field(default=7, ge=1, le=90)

    # Gateway health monitoring (monitoring/). Each gateway's check interval and failure
    # threshold are set per gateway; these are the defaults and the shared bounds.
    monitoring_default_interval_minutes: int = Field(default=5, ge=1, le=60)
    # Consecutive failed checks before a gateway is down (Uptime Kuma's "retries").
    monitoring_default_failure_threshold: int = Field(default=2, ge=1, le=10)
    # Checks one worker runs at once; a round stops claiming after round_seconds.
    monitoring_concurrency: int = Field(default=20, ge=1, le=500)
    monitoring_round_seconds: float = Field(default=50.0, gt=0, le=300)
    # Passive health: a gateway whose live calls fail technically (timeout, 5xx, network) at
    # this rate within the window, at least min_failures times, is degraded (and alerted).
    monitoring_passive_window_minutes: int = Field(default=10, ge=1, le=1440)
    monitoring_passive_min_failures: int = Field(default=5, ge=1)
    monitoring_passive_failure_rate: float = Field(default=0.25, gt=0, le=1)
    # A custom gateway's TLS certificate is read once a day and warned of this many days ahead.
    monitoring_tls_warning_days: int = Field(default=14, ge=1, le=90)
    # Raw check results are kept this long, then kept as per-hour rollups.
    monitoring_raw_retention_days: int = Field(default=7, ge=1, le=90)

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    run_worker: bool = True
    log_format: str = "auto"  # auto: console in development, JSON otherwise
    log_level: str = "INFO"
    # Browser origins allowed to call /api/ (CORS), comma-separated or a JSON list.
    # Empty: no CORS header is ever sent.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def check_origins(cls, value: list[str]) -> list[str]:
        origins = []
        for origin in value:
            origins.append(normalize_origin(origin))
        return origins

    @model_validator(mode="after")
    def refuse_defaults_in_production(self) -> Settings:
        if self.mode is Mode.PRODUCTION:
            if self.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
                raise ValueError("PAYGATE_JWT_SECRET must be set in production")
            if len(self.jwt_secret.get_secret_value()) < 32:
                raise ValueError("PAYGATE_JWT_SECRET must be at least 32 characters")
            raw = self.master_keys_text()
            if not raw or DEV_MASTER_KEYS.split(":", 1)[1] in raw:
                raise ValueError(
                    "PAYGATE_MASTER_KEYS or PAYGATE_MASTER_KEY_FILE must name a real master key "
                    "in production (generate one with `paygate keys generate`)"
                )
        return self

    def master_keys_text(self) -> str:
        """The configured master key entries, from the environment or the key file."""
        if self.master_keys is not None:
            return self.master_keys.get_secret_value()
        if self.master_key_file is not None:
            return self.master_key_file.read_text()
        return DEV_MASTER_KEYS if self.mode is not Mode.PRODUCTION else ""

    @property
    def json_logs(self) -> bool:
        return self.log_format == "json" or (
            self.log_format == "auto" and self.mode is Mode.PRODUCTION
        )

    @property
    def development(self) -> bool:
        return self.mode is not Mode.PRODUCTION

    @property
    def private_addresses_for_test_gateways(self) -> bool:
        if self.test_gateways_reach_private_addresses is not None:
            return self.test_gateways_reach_private_addresses
        return self.development

    @property
    def private_addresses_for_webhook_endpoints(self) -> bool:
        if self.webhook_endpoints_reach_private_addresses is not None:
            return self.webhook_endpoints_reach_private_addresses
        return self.development

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]`, lower-cased; anything else (a path, a wildcard) is refused."""
    text = origin.strip().rstrip("/")
    parts = urlsplit(text)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
        or "*" in text
    ):
        raise ValueError(f"{origin!r} is not an origin like https://shop.example.com")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{origin!r} has a bad port") from exc
    host = parts.hostname
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
