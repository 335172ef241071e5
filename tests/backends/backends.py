"""The backends of deploy/backends as the matrix sees them: each started by its own
run.sh on a free loopback port, with its /__stats request log."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack import REPO_ROOT, Gateway, Process, User, _base_env, free_port, http_client

BACKENDS_DIR = REPO_ROOT / "deploy" / "backends"
BACKENDS = ["django", "express", "go", "php"]


@dataclass
class Backend:
    name: str
    url: str
    proc: Process

    def stats(self) -> dict[str, Any]:
        with http_client() as client:
            response = client.get(f"{self.url}/__stats")
            response.raise_for_status()
            return response.json()

    def requests_since(self, before: int) -> list[dict[str, Any]]:
        """The /api requests that reached the backend after `before` of them had."""
        stats = self.stats()
        count = stats["api_requests"] - before
        return stats["recent"][-count:] if count else []


@dataclass
class Guarded:
    """A backend with its own Portcullis in front of it."""

    backend: Backend
    gateway: Gateway


@dataclass
class Caller:
    user: User
    jwt: str


def start_backend(name: str, workdir: Path) -> Backend:
    port = free_port()
    env = {**_base_env(), "PORT": str(port), "TASKS_DB": str(workdir / f"{name}-tasks.sqlite3")}
    for keep in ("GOCACHE", "GOPATH", "PYTHON"):
        if keep in os.environ:
            env[keep] = os.environ[keep]
    proc = Process(
        f"backend:{name}",
        [str(BACKENDS_DIR / name / "run.sh")],
        env=env,
        cwd=BACKENDS_DIR / name,
        log_path=workdir / f"{name}-backend.log",
    )
    return Backend(name=name, url=f"http://127.0.0.1:{port}", proc=proc)
