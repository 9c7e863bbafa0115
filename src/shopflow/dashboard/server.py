"""Starting the dashboard: the `streamlit run` command line and environment for some settings."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from shopflow.errors import ShopflowError
from shopflow.settings import Settings

#: The Streamlit script `shopflow dashboard` serves.
APP_PATH = Path(__file__).with_name("app.py")

#: Streamlit options that keep the server local and quiet: no usage statistics, no file watcher,
#: no browser opening, no e-mail prompt, no developer menu, no external-IP lookup.
STREAMLIT_OPTIONS: dict[str, str] = {
    "server.headless": "true",
    "server.fileWatcherType": "none",
    "server.runOnSave": "false",
    "server.showEmailPrompt": "false",
    "browser.gatherUsageStats": "false",
    "global.developmentMode": "false",
    "client.toolbarMode": "viewer",
    "client.showErrorDetails": "type",
    "client.showErrorLinks": "false",
    "logger.hideWelcomeMessage": "true",
    "theme.base": "light",
}


def browser_host(host: str) -> str:
    """The host a browser should use: a wildcard bind address is reached through localhost."""
    return "localhost" if host in {"0.0.0.0", "::", ""} else host


def dashboard_url(host: str, port: int) -> str:
    """The dashboard's URL."""
    name = browser_host(host)
    return f"http://[{name}]:{port}/" if ":" in name else f"http://{name}:{port}/"


def streamlit_command(host: str, port: int) -> list[str]:
    """`python -m streamlit run <app> --option=value ...` for serving on `host:port`."""
    options = {
        **STREAMLIT_OPTIONS,
        "server.address": host,
        "server.port": str(port),
        # Set explicitly so Streamlit does not look up the machine's external IP to print it.
        "browser.serverAddress": browser_host(host),
        "browser.serverPort": str(port),
    }
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        *(f"--{key}={value}" for key, value in options.items()),
    ]


def check_port_free(host: str, port: int) -> None:
    """Fail with one line when `host:port` cannot be bound (in use, or not a local address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ShopflowError(
                f"cannot serve the dashboard on {host}:{port} ({exc.strerror}); "
                "pick another with --port or --host"
            ) from None


def dashboard_environment(settings: Settings) -> dict[str, str]:
    """The environment the Streamlit process runs with: ours, with the settings' SHOPFLOW_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPFLOW_")}
    env.update({k: v for k, v in os.environ.items() if k.startswith("SHOPFLOW_TEST_")})
    env.update(settings.child_environment(with_secrets=False))
    return env
