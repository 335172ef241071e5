"""Run the task service: python -m taskservice [--host H] [--port P] [--database-url URL]."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

import uvicorn

from .app import create_app
from .db import DEFAULT_DATABASE_URL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskservice", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("TASKS_HOST", "127.0.0.1"),
                        help="address to bind (default: $TASKS_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("TASKS_PORT", "8000")),
                        help="port to bind (default: $TASKS_PORT or 8000)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
                        help="SQLAlchemy URL: sqlite:///path.db or postgresql://... (default: $DATABASE_URL)")
    parser.add_argument("--log-level", default=os.environ.get("TASKS_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)

    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(
            f"warning: binding {args.host}: this service trusts X-User-Id blindly and must only be "
            "reachable through the gateway",
            file=sys.stderr,
        )

    app = create_app(args.database_url)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, server_header=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
