"""`python -m shopflow.sources.orders_api`: serve the orders API on SHOPFLOW_ORDERS_API_HOST/PORT."""

from __future__ import annotations

import sqlite3
import sys

import uvicorn

from shopflow.errors import ShopflowError
from shopflow.settings import load_settings
from shopflow.sources.orders_api.app import create_app


def main() -> int:
    """Serve until SIGINT/SIGTERM; a configuration problem is one line on stderr and exit 2."""
    try:
        settings = load_settings()
        app = create_app(settings)
    except ShopflowError as exc:
        print(f"orders API: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:
        print(
            f"orders API: cannot open the store ({exc}): check SHOPFLOW_ORDERS_API_STORE or SHOPFLOW_HOME",
            file=sys.stderr,
        )
        return 2
    uvicorn.run(
        app,
        host=settings.orders_api_host,
        port=settings.orders_api_port,
        log_level="info",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
