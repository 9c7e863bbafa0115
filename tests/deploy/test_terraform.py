"""deploy/terraform/ against the code it deploys: every file parses, every variable is described
and typed, every output is a real setting's environment variable (and together they make a valid
gcp-profile environment), every other setting has a stated reason, and the lake bucket, the
dead-letter wiring and the service accounts' roles are what docs/deploy.md says."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pytest

from shopflow.lake import LakeLayout
from shopflow.orchestration.cloud import dataproc_batch
from shopflow.settings import Profile, Settings, load_settings
from shopflow.sources.bus.pubsub import DEFAULT_ACK_DEADLINE_SECONDS
from tests.deploy.terraform_config import (
    TERRAFORM_DIR,
    TerraformConfig,
    load_config,
    parse_file,
    references,
    render,
    single,
)

#: The output-name rule: an output is named after the setting's environment variable.
OUTPUT_NAME: Final = re.compile(r"SHOPFLOW_[A-Z][A-Z0-9_]*")

#: Why each setting without an output has none. Together with the outputs: every Settings field.
NO_OUTPUT_BECAUSE: Final = {
    "home": "the local profile's working folder; on gcp the lake, its _state/ and the warehouse are in the cloud",
    "source_db_url": "the shop's PostgreSQL is not created here and its URL can carry a password: set with the secrets (docs/deploy.md)",
    "orders_api_host": "the local orders API only; gcp uses SHOPFLOW_ORDERS_API_URL",
    "orders_api_port": "the local orders API only; gcp uses SHOPFLOW_ORDERS_API_URL",
    "orders_api_token": "a secret: Terraform creates its Secret Manager secret; the value is added and handed to Composer outside the Terraform state",
    "orders_api_store": "the local orders API's SQLite file",
    "orders_api_max_page_size": "tuning; the default suits the real API",
    "orders_api_timeout_seconds": "tuning; the default suits the real API",
    "orders_api_fault_5xx_rate": "fault injection of the local orders API",
    "orders_api_fault_429_rate": "fault injection of the local orders API",
    "orders_api_fault_slow_rate": "fault injection of the local orders API",
    "orders_api_fault_slow_seconds": "fault injection of the local orders API",
    "orders_api_fault_seed": "fault injection of the local orders API",
    "pubsub_pull_mode": "tuning of the landing consumer; the default works on real Pub/Sub",
    "pubsub_pull_concurrency": "tuning of the landing consumer; the default works on real Pub/Sub",
    "quality_freshness_max_age_seconds": "a data-quality threshold (docs/quality.md): the shop's choice, not infrastructure",
    "quality_max_unknown_share": "a data-quality threshold (docs/quality.md): the shop's choice, not infrastructure",
    "quality_reconciliation_tolerance": "a data-quality threshold (docs/quality.md): the shop's choice, not infrastructure",
    "quality_volume_history_days": "a data-quality threshold (docs/quality.md): the shop's choice, not infrastructure",
    "quality_volume_min_median_events": "a data-quality threshold (docs/quality.md): the shop's choice, not infrastructure",
    "quality_volume_min_ratio": "a data-quality threshold (docs/quality.md): the shop's choice, not infrastructure",
    "reporting_timezone": "how daily metrics are read (docs/metrics.md), not infrastructure; default UTC",
    "kafka_bootstrap_servers": "the Kafka bus; this configuration deploys Pub/Sub",
    "kafka_consumer_group": "the Kafka bus; this configuration deploys Pub/Sub",
    "bus_call_timeout_seconds": "tuning; the default applies",
    "landing_batch_max_messages": "tuning of the landing consumer; the default applies",
    "landing_batch_max_seconds": "tuning of the landing consumer; the default applies",
    "event_max_future_seconds": "a validation bound of landing; the default applies",
    "event_min_ts": "a validation bound of landing; the default applies",
    "event_max_price_inr": "a validation bound of landing; the default applies",
    "bigquery_api_endpoint": "only for a BigQuery emulator; unset on gcp",
    "spark_master": "local Spark only; Dataproc sets the master",
    "spark_driver_memory": "the batches' driver memory: a sizing choice, default 4g",
    "spark_jdbc_jar": "local Spark only; the ETL on Dataproc reads the lake, not the shop DB",
    "dataproc_executor_cores": "a sizing choice of the ETL batches; the default applies",
    "dataproc_executor_memory": "a sizing choice of the ETL batches; the default applies",
    "dataproc_max_executors": "a sizing choice of the ETL batches; the default applies",
    "seed": "the simulator only",
    "airflow_port": "the local Airflow only; Composer serves its own UI",
    "alert_webhook_url": "a secret: Terraform creates its Secret Manager secret; the value is added and handed to Composer outside the Terraform state",
    "alert_slowness_factor": "alert tuning; the default applies",
    "alert_slowness_history_runs": "alert tuning; the default applies",
    "events_stale_after_seconds": "alert tuning; the default applies",
    "events_max_backlog": "Kafka's backlog alert; Pub/Sub's backlog is a Cloud Monitoring metric",
}

#: What the outputs' `${...}` references stand for in a sample deployment.
SAMPLE_VALUES: Final = {
    "var.project_id": "shop-prod-4711",
    "var.region": "asia-south1",
    "var.dataproc_runtime_version": "2.2",
    "var.orders_api_url": "https://orders.example.com",
    "google_storage_bucket.lake.name": "shop-prod-4711-shopflow-lake",
    "google_pubsub_topic.events.name": "shop-events",
    "google_pubsub_subscription.events_landing.name": "shop-events-landing",
    "google_bigquery_dataset.warehouse.dataset_id": "shopflow",
    "google_bigquery_dataset.warehouse.location": "asia-south1",
    "google_service_account.etl.email": "shopflow-etl@shop-prod-4711.iam.gserviceaccount.com",
}

#: Every project-level role, by member: the whole project-wide privilege of the deployment.
PROJECT_ROLES: Final = {
    ("etl", "roles/dataproc.worker"),
    ("composer", "roles/composer.worker"),
    ("composer", "roles/bigquery.jobUser"),
    ("composer", "google_project_iam_custom_role.composer_runner.id"),
    ("landing", "google_project_iam_custom_role.landing_bus_setup.id"),
}
BASIC_ROLES: Final = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC_MEMBERS: Final = {"allUsers", "allAuthenticatedUsers"}


@pytest.fixture(scope="module")
def config() -> TerraformConfig:
    return load_config()


def test_every_tf_file_parses(config: TerraformConfig) -> None:
    names = {path.name for path in config.files}
    assert {"variables.tf", "outputs.tf", "storage.tf", "pubsub.tf", "iam.tf"} <= names
    for path in config.files:
        assert parse_file(path), f"{path.name} is empty"


def test_a_syntax_error_is_reported_with_its_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tf"
    broken.write_text('variable "x" {\n  type = string\n', encoding="utf-8")
    with pytest.raises(AssertionError, match=r"broken\.tf is not valid HCL"):
        parse_file(broken)


def test_every_variable_has_a_description_and_a_type(config: TerraformConfig) -> None:
    assert config.variables
    for name, body in config.variables.items():
        assert str(body.get("description", "")).strip(), f"variable {name} has no description"
        assert str(body.get("type", "")).strip(), f"variable {name} has no type"


def test_every_output_is_a_settings_environment_variable(config: TerraformConfig) -> None:
    assert config.outputs
    for name, body in config.outputs.items():
        assert OUTPUT_NAME.fullmatch(name), f"output {name} is not named SHOPFLOW_<FIELD>"
        field = name.removeprefix("SHOPFLOW_").lower()
        assert field in Settings.model_fields, f"output {name}: Settings has no field {field}"
        assert str(body.get("description", "")).strip(), f"output {name} has no description"


def test_every_setting_has_an_output_or_a_reason(config: TerraformConfig) -> None:
    with_output = {name.removeprefix("SHOPFLOW_").lower() for name in config.outputs}
    fields = set(Settings.model_fields)
    both = with_output & set(NO_OUTPUT_BECAUSE)
    assert not both, f"settings with an output and a reason for having none: {sorted(both)}"
    unaccounted = fields - with_output - set(NO_OUTPUT_BECAUSE)
    assert not unaccounted, f"settings with neither an output nor a reason: {sorted(unaccounted)}"
    stale = set(NO_OUTPUT_BECAUSE) - fields
    assert not stale, f"reasons for settings that no longer exist: {sorted(stale)}"
    assert all(reason.strip() for reason in NO_OUTPUT_BECAUSE.values())


def _rendered_outputs(config: TerraformConfig) -> dict[str, str]:
    unknown = {
        ref
        for body in config.outputs.values()
        for ref in references(body["value"])
        if ref not in SAMPLE_VALUES
    }
    assert not unknown, f"outputs refer to {sorted(unknown)}: add sample values to the test"
    return {name: render(body["value"], SAMPLE_VALUES) for name, body in config.outputs.items()}


def test_docs_deploy_lists_every_output(config: TerraformConfig) -> None:
    guide = (TERRAFORM_DIR.parents[1] / "docs" / "deploy.md").read_text(encoding="utf-8")
    missing = [name for name in config.outputs if f"`{name}`" not in guide]
    assert not missing, f"docs/deploy.md does not list the outputs {missing}"


def test_the_outputs_are_a_valid_gcp_environment(
    config: TerraformConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`terraform output -json` as the environment (docs/deploy.md) plus the two secrets gives
    gcp-profile settings whose lake, bus, warehouse and Dataproc batch are the deployed ones."""
    for key in list(os.environ):
        if key.startswith("SHOPFLOW_") and not key.startswith("SHOPFLOW_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    environment = _rendered_outputs(config)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SHOPFLOW_ORDERS_API_TOKEN", "token-from-secret-manager")

    settings = load_settings()

    assert settings.profile is Profile.GCP
    assert settings.etl_engine == "spark"
    assert not settings.pubsub_emulator_host, "the gcp environment must reach real Pub/Sub"
    lake = f"gs://{SAMPLE_VALUES['google_storage_bucket.lake.name']}"
    assert settings.lake_url == f"{lake}/lake"
    assert settings.orders_api_base_url == SAMPLE_VALUES["var.orders_api_url"]
    batch = dataproc_batch(
        settings, datetime(2026, 11, 25, 10, tzinfo=UTC), datetime(2026, 11, 25, 11, tzinfo=UTC)
    )
    assert batch["pyspark_batch"]["main_python_file_uri"] == f"{lake}/artifacts/entrypoint.py"
    account = batch["environment_config"]["execution_config"]["service_account"]
    assert account == SAMPLE_VALUES["google_service_account.etl.email"]


def test_the_lake_bucket_is_private_versioned_and_ages_only_raw_events(
    config: TerraformConfig,
) -> None:
    lake = config.resources[("google_storage_bucket", "lake")]
    assert lake["uniform_bucket_level_access"] is True
    assert lake["public_access_prevention"] == "enforced"
    assert single(lake["versioning"])["enabled"] is True

    aged = [rule for rule in lake["lifecycle_rule"] if single(rule["condition"]).get("age")]
    assert {single(rule["action"])["type"] for rule in aged} == {"SetStorageClass", "Delete"}
    prefixes = {p for rule in aged for p in single(rule["condition"]).get("matches_prefix", [])}
    assert prefixes, "an age rule without a prefix would age the whole lake"

    # Where the code writes, under the lake root the outputs give.
    root = render(config.outputs["SHOPFLOW_LAKE_ROOT"]["value"], SAMPLE_VALUES)
    bucket = f"gs://{SAMPLE_VALUES['google_storage_bucket.lake.name']}/"
    layout = LakeLayout(root)

    def aged_by_lifecycle(url: str) -> bool:
        return any(f"{url.removeprefix(bucket)}/".startswith(prefix) for prefix in prefixes)

    assert aged_by_lifecycle(layout.events_root()), "the raw events are not aged"
    # Every ETL run reads every raw pull (orders, products, users snapshots): never aged, nor
    # the curated zone, the dead letters or the state.
    kept = [layout.pull_root(source) for source in ("orders", "products", "users")]
    kept += [layout.curated_root("events_clean"), layout.deadletter_root("events")]
    kept += [layout.state_root()]
    assert not [url for url in kept if aged_by_lifecycle(url)]


def test_no_resource_is_public(config: TerraformConfig) -> None:
    for (kind, name), body in config.resources.items():
        if kind == "google_storage_bucket":
            assert body.get("public_access_prevention") == "enforced", (
                f"bucket {name} can be made public"
            )
            assert body.get("uniform_bucket_level_access") is True, (
                f"bucket {name} allows object ACLs"
            )
        members = [body.get("member", ""), *body.get("members", [])]
        public = [m for m in members if any(p in str(m) for p in PUBLIC_MEMBERS)]
        assert not public, f"{kind}.{name} grants {public}"


def test_dead_letters_reach_a_subscribed_topic_the_service_agent_may_publish_to(
    config: TerraformConfig,
) -> None:
    landing = config.resources[("google_pubsub_subscription", "events_landing")]
    assert landing["topic"] == "${google_pubsub_topic.events.id}"
    assert landing["ack_deadline_seconds"] == DEFAULT_ACK_DEADLINE_SECONDS
    policy = single(landing["dead_letter_policy"])
    assert policy["dead_letter_topic"] == "${google_pubsub_topic.events_dead_letter.id}"

    subscriptions = config.resources_of("google_pubsub_subscription")
    assert any(
        sub["topic"] == "${google_pubsub_topic.events_dead_letter.id}"
        for sub in subscriptions.values()
    ), "nothing subscribes to the dead-letter topic: its messages would be dropped"

    agent = "${local.pubsub_service_agent}"
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in config.locals["pubsub_service_agent"]
    topic_grants = {
        (g["topic"], g["role"])
        for g in config.resources_of("google_pubsub_topic_iam_member").values()
        if g["member"] == agent
    }
    assert topic_grants == {
        ("${google_pubsub_topic.events_dead_letter.id}", "roles/pubsub.publisher")
    }
    sub_grants = {
        (g["subscription"], g["role"])
        for g in config.resources_of("google_pubsub_subscription_iam_member").values()
        if g["member"] == agent
    }
    assert sub_grants == {
        ("${google_pubsub_subscription.events_landing.id}", "roles/pubsub.subscriber")
    }


def test_service_accounts_have_no_basic_role_and_only_the_listed_project_roles(
    config: TerraformConfig,
) -> None:
    accounts = set(config.resources_of("google_service_account"))
    assert accounts == {"landing", "etl", "composer"}
    for (kind, name), body in config.resources.items():
        if kind.endswith(("_iam_member", "_iam_binding")):
            assert body["role"] not in BASIC_ROLES, f"{kind}.{name} grants {body['role']}"
    project_roles = set()
    for name, body in config.resources_of("google_project_iam_member").items():
        match = re.fullmatch(r"\$\{google_service_account\.(\w+)\.member\}", body["member"])
        assert match, (
            f"google_project_iam_member.{name} is for {body['member']}, not a shopflow account"
        )
        role = body["role"].removeprefix("${").removesuffix("}")
        project_roles.add((match.group(1), role))
    assert project_roles == PROJECT_ROLES


def test_composer_3_runs_as_its_account_in_its_own_bucket(config: TerraformConfig) -> None:
    composer = config.resources[("google_composer_environment", "shopflow")]
    assert single(composer["storage_config"])["bucket"] == "${google_storage_bucket.composer.name}"
    settings = single(composer["config"])
    assert (
        single(settings["node_config"])["service_account"]
        == "${google_service_account.composer.email}"
    )
    assert single(settings["software_config"])["image_version"] == "${var.composer_image_version}"
    validation = single(config.variables["composer_image_version"]["validation"])
    assert "composer-3-airflow-3" in validation["condition"]


def test_secret_values_never_enter_the_terraform_state(config: TerraformConfig) -> None:
    secrets = {
        body["secret_id"] for body in config.resources_of("google_secret_manager_secret").values()
    }
    assert secrets == {"shopflow-orders-api-token", "shopflow-alert-webhook-url"}
    assert not config.resources_of("google_secret_manager_secret_version")
    readers = {
        (grant["secret_id"], grant["role"], grant["member"])
        for grant in config.resources_of("google_secret_manager_secret_iam_member").values()
    }
    assert readers == {
        (
            "${google_secret_manager_secret.orders_api_token.id}",
            "roles/secretmanager.secretAccessor",
            "${google_service_account.landing.member}",
        )
    }
    text = "\n".join(path.read_text(encoding="utf-8") for path in TERRAFORM_DIR.glob("*.tf"))
    assert 'data "google_secret_manager_secret_version"' not in text
