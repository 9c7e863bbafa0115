"""The one typed settings object: `SHOPFLOW_*` environment variables, safe local defaults."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AwareDatetime,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shopflow.errors import ShopflowError

#: The orders API token of the local profile; refused under any other profile.
LOCAL_DEV_TOKEN: Final = "local-dev-token"
#: Variables the Google clients themselves obey: Pub/Sub over any endpoint it is given, BigQuery
#: when given none.
GOOGLE_PUBSUB_EMULATOR_ENV: Final = "PUBSUB_EMULATOR_HOST"
GOOGLE_BIGQUERY_EMULATOR_ENV: Final = "BIGQUERY_EMULATOR_HOST"
#: Settings that are secrets: read only from the environment, never from `.env` or logs.
SECRET_FIELDS: Final = ("orders_api_token", "alert_webhook_url")


class Profile(StrEnum):
    """Where shopflow runs: one machine, or Google Cloud."""

    LOCAL = "local"
    GCP = "gcp"


class BusKind(StrEnum):
    """Which event bus carries behaviour events."""

    PUBSUB = "pubsub"
    KAFKA = "kafka"


#: The engines the ETL's transforms run on.
EtlEngine = Literal["duckdb", "spark"]


#: Files of the zone database that are not zones every engine knows.
_NOT_ZONES: Final = frozenset({"localtime", "posixrules", "Factory"})


def canonical_timezone(name: str) -> str:
    """The IANA key of a time zone name (ValueError when it is not one DuckDB and BigQuery know)."""
    try:
        key = ZoneInfo(name.strip()).key
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone") from None
    if key in _NOT_ZONES or (key not in available_timezones() and key != "UTC"):
        raise ValueError(f"{name!r} is not an IANA time zone")
    return key


class Settings(BaseSettings):
    """Everything shopflow can be configured with. Environment first, then `.env`, then defaults."""

    model_config = SettingsConfigDict(
        env_prefix="SHOPFLOW_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    profile: Profile = Profile.LOCAL
    home: Path = Field(default=Path("./.shopflow"), description="Everything a local run writes.")
    lake_root: str | None = Field(
        default=None,
        description="Lake root URL; default `<home>/lake` (local) or `gs://<gcs_bucket>/lake` (gcp).",
    )
    gcs_bucket: str | None = None
    gcp_project: str = Field(default="shopflow-local", min_length=6)

    # Shop database (products, users).
    source_db_url: str = "postgresql://postgres@127.0.0.1:5432/shopflow"

    # Orders REST API.
    orders_api_host: str = "127.0.0.1"
    orders_api_port: int = Field(default=8765, ge=1, le=65535)
    orders_api_url: str | None = Field(
        default=None, description="Base URL of the orders API; default from host and port."
    )
    orders_api_token: SecretStr = SecretStr(LOCAL_DEV_TOKEN)
    orders_api_store: Path | None = Field(
        default=None, description="SQLite file behind the local orders API; default under home."
    )
    orders_api_max_page_size: int = Field(default=1000, ge=1, le=100_000)
    orders_api_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="A request without an answer by then is retried."
    )
    orders_api_fault_5xx_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    orders_api_fault_429_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    orders_api_fault_slow_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    orders_api_fault_slow_seconds: float = Field(default=2.0, ge=0.0)
    orders_api_fault_seed: int | None = None

    # Event bus.
    bus: BusKind = BusKind.PUBSUB
    events_topic: str = Field(default="shop-events", min_length=3)
    events_subscription: str = Field(default="shop-events-landing", min_length=3)
    pubsub_emulator_host: str | None = Field(
        default="127.0.0.1:8085",
        description=(
            "host:port of the Pub/Sub emulator; default 127.0.0.1:8085 on local, none (real "
            "Pub/Sub) on gcp; empty: real Pub/Sub."
        ),
    )
    pubsub_pull_mode: Literal["sync", "streaming"] = "sync"
    # Sync pull: Pull calls (of up to 1,000 each) kept in flight in the background, also while a
    # batch is written, until one landing batch of pulled messages waits.
    pubsub_pull_concurrency: int = Field(default=4, ge=1, le=32)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_consumer_group: str = "shopflow-landing"

    # Every call to the bus (topic set-up, pull, acknowledge) gives up after this long.
    bus_call_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    # Landing.
    # 20,000: fewer, larger raw files at bus speed (bench landing); a batch is ~4 MB of payloads.
    landing_batch_max_messages: int = Field(default=20_000, ge=1)
    landing_batch_max_seconds: float = Field(default=5.0, gt=0)
    # Plausible events: the rest is dead-lettered at landing with the bound it breaks.
    event_max_future_seconds: float = Field(
        default=900.0, ge=0, le=7 * 86400, description="Accepted event_ts past the ingest time."
    )
    event_min_ts: AwareDatetime = Field(
        default=datetime(2000, 1, 1, tzinfo=UTC), description="Earliest accepted event_ts."
    )
    event_max_price_inr: float = Field(default=10_000_000.0, gt=0, le=1e12)

    # Warehouse: a DuckDB file under home (local), or a BigQuery dataset in gcp_project (gcp).
    bigquery_dataset: str = "shopflow"
    bigquery_location: str | None = None
    bigquery_api_endpoint: str | None = Field(
        default=None, description="Only for a BigQuery emulator, e.g. http://127.0.0.1:9050."
    )
    reporting_timezone: str = Field(
        default="UTC",
        description="IANA time zone of the daily metrics and the dashboard, e.g. Asia/Kolkata.",
    )

    # ETL engine: the same PySpark-API transforms on Spark, or on DuckDB through SQLFrame.
    # Default duckdb on local, spark on gcp (see _check_etl_engine).
    etl_engine: EtlEngine = "duckdb"

    # Spark.
    spark_master: str = "local[2]"
    # 2g ran out of heap collecting the outputs of a 1M-event run (bench etl_engines).
    spark_driver_memory: str = "4g"
    spark_jdbc_jar: Path = Path("/usr/share/java/postgresql.jar")

    # Dataproc Serverless (gcp profile: the hourly DAG's ETL task submits a batch).
    dataproc_region: str = "asia-south1"
    dataproc_runtime_version: str = "2.2"
    dataproc_artifacts_uri: str | None = Field(
        default=None,
        description="gs:// folder with entrypoint.py and shopflow.zip (make dataproc-artifact).",
    )
    dataproc_service_account: str | None = None
    dataproc_executor_cores: int = Field(default=4, ge=1, le=64)
    dataproc_executor_memory: str = "8g"
    dataproc_max_executors: int = Field(default=10, ge=1, le=2000)

    # Simulator.
    seed: int = 42

    # Orchestration (Airflow) and alerts.
    airflow_port: int = Field(default=8080, ge=1, le=65535, description="Local Airflow UI/API.")
    alert_webhook_url: SecretStr | None = Field(
        default=None, description="Slack-compatible webhook that receives alerts; unset: log only."
    )
    alert_slowness_factor: float = Field(
        default=3.0, gt=1.0, le=1000.0, description="Alert when a task takes this many medians."
    )
    alert_slowness_history_runs: int = Field(
        default=10, ge=3, le=1000, description="Successful runs the median is taken over."
    )
    events_stale_after_seconds: float = Field(
        default=900.0, gt=0, description="Alert when nothing has landed for this long."
    )
    events_max_backlog: int = Field(
        default=1_000_000, ge=0, description="Alert when more events wait on the bus (Kafka)."
    )

    # Data-quality checks before each load (docs/quality.md): thresholds of the checks.
    quality_freshness_max_age_seconds: float = Field(
        default=7200.0, gt=0, description="Warn when the newest curated event is older than this."
    )
    quality_volume_min_ratio: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="An hour with fewer events than this share of its median is an error.",
    )
    quality_volume_history_days: int = Field(
        default=7, ge=1, le=90, description="Earlier dates whose same hour the median is over."
    )
    quality_volume_min_median_events: int = Field(
        default=20, ge=1, description="Hours whose median is smaller are noise: not judged."
    )
    quality_reconciliation_tolerance: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Share of a date's orders that may mismatch between events and the API.",
    )
    quality_max_unknown_share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of a date's events that may name a product or user the catalogue lacks.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then `.env` (never for a secret), then defaults."""
        return (init_settings, env_settings, _DotenvWithoutSecrets(settings_cls, dotenv_settings))

    @model_validator(mode="after")
    def _check_event_bounds(self) -> Settings:
        if self.event_min_ts > datetime.now(UTC):
            raise ValueError(
                "SHOPFLOW_EVENT_MIN_TS is in the future: every event would be dead-lettered"
            )
        return self

    @field_validator("reporting_timezone")
    @classmethod
    def _check_reporting_timezone(cls, value: str) -> str:
        try:
            return canonical_timezone(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IANA time zone name (e.g. UTC, Asia/Kolkata)"
            ) from None

    @model_validator(mode="after")
    def _check_profile(self) -> Settings:
        if self.profile is Profile.GCP and self.lake_root is None and not self.gcs_bucket:
            raise ValueError("the gcp profile needs SHOPFLOW_GCS_BUCKET or SHOPFLOW_LAKE_ROOT")
        return self

    @model_validator(mode="after")
    def _check_etl_engine(self) -> Settings:
        # gcp defaults to Spark (Dataproc): the field default is the local profile's, so an unset
        # engine becomes spark there. An explicit duckdb stays: one machine (a Cloud Run job)
        # reading the lake through gcsfs is a real deployment for a small shop.
        if self.profile is Profile.GCP and "etl_engine" not in self.model_fields_set:
            self.etl_engine = "spark"
        return self

    @model_validator(mode="after")
    def _check_pubsub_emulator(self) -> Settings:
        # The field default is the local profile's emulator; on gcp an unset host means real
        # Pub/Sub. An empty value means real Pub/Sub on either profile.
        if not self.pubsub_emulator_host or (
            self.profile is Profile.GCP and "pubsub_emulator_host" not in self.model_fields_set
        ):
            self.pubsub_emulator_host = None
        if (
            self.bus is BusKind.PUBSUB
            and self.pubsub_emulator_host is None
            and os.environ.get(GOOGLE_PUBSUB_EMULATOR_ENV)
        ):
            # The Google client obeys this variable over any endpoint it is given: events would
            # silently go to that emulator instead of real Pub/Sub.
            raise ValueError(
                f"{GOOGLE_PUBSUB_EMULATOR_ENV}={os.environ[GOOGLE_PUBSUB_EMULATOR_ENV]} is set, "
                "so the Google Pub/Sub client would use that emulator, not real Pub/Sub: unset it, "
                "or set SHOPFLOW_PUBSUB_EMULATOR_HOST to use an emulator"
            )
        return self

    @model_validator(mode="after")
    def _check_bigquery_emulator(self) -> Settings:
        emulator = os.environ.get(GOOGLE_BIGQUERY_EMULATOR_ENV)
        if self.profile is Profile.GCP and self.bigquery_api_endpoint is None and emulator:
            raise ValueError(
                f"{GOOGLE_BIGQUERY_EMULATOR_ENV}={emulator} is set, so the Google BigQuery client "
                "would load that emulator, not BigQuery: unset it, or set "
                "SHOPFLOW_BIGQUERY_API_ENDPOINT to use an emulator"
            )
        return self

    @model_validator(mode="after")
    def _check_secrets(self) -> Settings:
        if self.profile is not Profile.LOCAL:
            for name in SECRET_FIELDS:
                secret = getattr(self, name)
                if secret is not None and secret.get_secret_value() == LOCAL_DEV_TOKEN:
                    raise ValueError(
                        f"the {self.profile.value} profile needs its own SHOPFLOW_{name.upper()} "
                        "(the local default is refused outside the local profile)"
                    )
        return self

    @property
    def lake_url(self) -> str:
        """The lake root as a URL or local path, without a trailing slash."""
        if self.lake_root:
            return self.lake_root.rstrip("/")
        if self.profile is Profile.GCP:
            return f"gs://{self.gcs_bucket}/lake"
        return str((self.home / "lake").resolve())

    @property
    def orders_api_base_url(self) -> str:
        """Base URL the orders ingest talks to."""
        if self.orders_api_url:
            return self.orders_api_url.rstrip("/")
        return f"http://{self.orders_api_host}:{self.orders_api_port}"

    @property
    def orders_api_store_path(self) -> Path:
        """SQLite file that backs the local orders API."""
        return self.orders_api_store or self.home / "orders_api.sqlite3"

    @property
    def run_dir(self) -> Path:
        """Pid files and logs of local services."""
        return self.home / "run"

    def child_environment(self, *, with_secrets: bool) -> dict[str, str]:
        """`SHOPFLOW_*` variables that recreate these settings in a child process (paths made
        absolute); secrets only for a child that needs them."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in SECRET_FIELDS and not with_secrets:
                continue
            if value is None:
                if type(self).model_fields[name].default is None:
                    continue
                text = ""  # none where the default is not, e.g. real Pub/Sub on local
            elif isinstance(value, SecretStr):
                text = value.get_secret_value()
            elif isinstance(value, Path):
                text = str(value.resolve())
            elif isinstance(value, Enum):
                text = str(value.value)
            elif isinstance(value, datetime):
                text = value.isoformat()
            else:
                text = str(value)
            env[f"SHOPFLOW_{name.upper()}"] = text
        return env


class _DotenvWithoutSecrets(PydanticBaseSettingsSource):
    """The `.env` source, refusing secrets: they come only from the environment."""

    def __init__(self, settings_cls: type[BaseSettings], dotenv: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._dotenv = dotenv

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values = self._dotenv()
        found = [name for name in SECRET_FIELDS if name in values]
        if found:
            names = ", ".join(f"SHOPFLOW_{n.upper()}" for n in found)
            raise ShopflowError(
                f"{names} found in .env: secrets are read only from the environment; "
                "remove it from .env and export it instead"
            )
        return values


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; a bad value becomes one actionable line, not a traceback."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"SHOPFLOW_{'_'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ShopflowError(f"invalid settings: {problems}") from None
