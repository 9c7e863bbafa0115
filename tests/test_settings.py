"""The settings object: defaults, environment, profiles and one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shopflow.errors import ShopflowError
from shopflow.settings import BusKind, Profile, Settings, load_settings


def test_local_defaults_are_safe(settings: Settings, shopflow_home: Path) -> None:
    assert settings.profile is Profile.LOCAL
    assert settings.lake_url == str((shopflow_home / "lake").resolve())
    assert settings.orders_api_base_url == "http://127.0.0.1:8765"
    assert settings.orders_api_store_path == shopflow_home / "orders_api.sqlite3"
    assert settings.bus is BusKind.PUBSUB
    assert settings.source_db_url.startswith("postgresql://")


def test_environment_overrides_defaults(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPFLOW_BUS", "kafka")
    monkeypatch.setenv("SHOPFLOW_ORDERS_API_PORT", "9999")
    monkeypatch.setenv("SHOPFLOW_ORDERS_API_TOKEN", "s3cret")
    fresh = load_settings()
    assert fresh.bus is BusKind.KAFKA
    assert fresh.orders_api_base_url == "http://127.0.0.1:9999"
    assert fresh.orders_api_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(fresh)


def test_gcp_profile_puts_the_lake_in_the_bucket(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPFLOW_PROFILE", "gcp")
    monkeypatch.setenv("SHOPFLOW_GCS_BUCKET", "shop-bucket")
    monkeypatch.setenv("SHOPFLOW_ORDERS_API_TOKEN", "a-real-secret")
    assert load_settings().lake_url == "gs://shop-bucket/lake"


def test_gcp_profile_refuses_the_local_default_token(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPFLOW_PROFILE", "gcp")
    monkeypatch.setenv("SHOPFLOW_GCS_BUCKET", "shop-bucket")
    with pytest.raises(ShopflowError, match="SHOPFLOW_ORDERS_API_TOKEN") as caught:
        load_settings()
    assert "\n" not in str(caught.value) and "local-dev-token" not in str(caught.value)
    monkeypatch.setenv("SHOPFLOW_ORDERS_API_TOKEN", "local-dev-token")
    with pytest.raises(ShopflowError, match="SHOPFLOW_ORDERS_API_TOKEN"):
        load_settings()


def test_a_token_in_dotenv_is_refused_and_never_echoed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SHOPFLOW_SEED=7\nSHOPFLOW_ORDERS_API_TOKEN=leaked-in-a-file\n")
    with pytest.raises(ShopflowError, match="only from the environment") as caught:
        load_settings()
    assert "leaked-in-a-file" not in str(caught.value)
    (tmp_path / ".env").write_text("SHOPFLOW_SEED=7\n")
    assert load_settings().seed == 7


def test_child_processes_get_the_token_only_when_they_need_it(settings: Settings) -> None:
    assert "SHOPFLOW_ORDERS_API_TOKEN" not in settings.child_environment(with_secrets=False)
    env = settings.child_environment(with_secrets=True)
    assert env["SHOPFLOW_ORDERS_API_TOKEN"] == "local-dev-token"


def test_gcp_profile_without_a_bucket_is_a_one_line_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPFLOW_PROFILE", "gcp")
    with pytest.raises(ShopflowError, match="SHOPFLOW_GCS_BUCKET") as caught:
        load_settings()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SHOPFLOW_ORDERS_API_PORT", "not-a-port", "SHOPFLOW_ORDERS_API_PORT"),
        ("SHOPFLOW_BUS", "carrier-pigeon", "SHOPFLOW_BUS"),
        ("SHOPFLOW_ORDERS_API_FAULT_5XX_RATE", "1.5", "SHOPFLOW_ORDERS_API_FAULT_5XX_RATE"),
        ("SHOPFLOW_GCP_PROJECT", "abc", "SHOPFLOW_GCP_PROJECT"),
    ],
)
def test_bad_values_name_the_variable(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ShopflowError, match=expected) as caught:
        load_settings()
    assert "\n" not in str(caught.value)


def test_example_env_lists_only_real_settings() -> None:
    example = Path(__file__).parents[1] / "example.env"
    names = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in example.read_text().splitlines()
        if "=" in line and line.lstrip("# ").startswith("SHOPFLOW_")
    }
    fields = {f"SHOPFLOW_{name.upper()}" for name in Settings.model_fields}
    assert names, "example.env lists no settings"
    assert names <= fields, f"example.env names unknown settings: {sorted(names - fields)}"
    assert fields <= names, f"example.env misses settings: {sorted(fields - names)}"


def test_example_env_as_given_is_the_local_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # Copying it to .env must change nothing until a value is edited.
    for name in list(os.environ):
        if name.startswith("SHOPFLOW_"):
            monkeypatch.delenv(name)
    example = Path(__file__).parents[1] / "example.env"
    from_example = Settings(_env_file=example)  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert from_example.model_dump() == defaults.model_dump()


def test_a_copy_with_another_home_has_its_own_lake(settings: Settings, tmp_path: Path) -> None:
    assert settings.lake_url.startswith(str(settings.home.resolve()))
    moved = settings.model_copy(update={"home": tmp_path / "elsewhere"})
    assert moved.lake_url == str((tmp_path / "elsewhere" / "lake").resolve())


def test_an_event_floor_in_the_future_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPFLOW_EVENT_MIN_TS", "9999-12-31T00:00:00Z")
    with pytest.raises(ShopflowError, match="SHOPFLOW_EVENT_MIN_TS is in the future"):
        load_settings()


def test_the_pubsub_emulator_is_the_local_default_and_never_the_gcp_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    assert settings.pubsub_emulator_host == "127.0.0.1:8085"
    gcp = {"profile": "gcp", "gcs_bucket": "b", "orders_api_token": "a-real-secret"}
    assert load_settings(**gcp).pubsub_emulator_host is None
    assert load_settings(**gcp, pubsub_emulator_host="10.0.0.2:8085").pubsub_emulator_host == (
        "10.0.0.2:8085"
    )
    monkeypatch.setenv("SHOPFLOW_PUBSUB_EMULATOR_HOST", "10.0.0.3:8085")
    assert load_settings(**gcp).pubsub_emulator_host == "10.0.0.3:8085"
    # Empty means real Pub/Sub on either profile, and a child process inherits that.
    monkeypatch.setenv("SHOPFLOW_PUBSUB_EMULATOR_HOST", "")
    real_on_local = load_settings()
    assert real_on_local.pubsub_emulator_host is None
    child = real_on_local.child_environment(with_secrets=False)
    assert child["SHOPFLOW_PUBSUB_EMULATOR_HOST"] == ""
    monkeypatch.setenv("SHOPFLOW_PUBSUB_EMULATOR_HOST", child["SHOPFLOW_PUBSUB_EMULATOR_HOST"])
    assert load_settings().pubsub_emulator_host is None


def test_real_pubsub_with_the_google_emulator_variable_set_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Google client would obey PUBSUB_EMULATOR_HOST over any endpoint it is given.
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
    gcp = {"profile": "gcp", "gcs_bucket": "b", "orders_api_token": "a-real-secret"}
    with pytest.raises(
        ShopflowError, match=r"PUBSUB_EMULATOR_HOST=127\.0\.0\.1:8085 is set"
    ) as caught:
        load_settings(**gcp)
    assert "\n" not in str(caught.value)
    # Fine when the emulator is what was asked for, or when the bus is not Pub/Sub.
    assert load_settings(**gcp, pubsub_emulator_host="127.0.0.1:8085").pubsub_emulator_host
    assert load_settings(**gcp, bus="kafka").bus is BusKind.KAFKA


def test_real_bigquery_with_the_google_emulator_variable_set_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", "http://127.0.0.1:9050")
    gcp = {"profile": "gcp", "gcs_bucket": "b", "orders_api_token": "a-real-secret"}
    with pytest.raises(ShopflowError, match="BigQuery client would load that emulator"):
        load_settings(**gcp)
    endpoint = "http://127.0.0.1:9050"
    assert load_settings(**gcp, bigquery_api_endpoint=endpoint).bigquery_api_endpoint == endpoint
    assert load_settings().profile is Profile.LOCAL  # the local warehouse is DuckDB
