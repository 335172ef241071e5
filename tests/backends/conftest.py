"""One Better Auth app and two users for the whole matrix; per backend, the backend
(started by its own documented run.sh) with a Portcullis in front of it."""

from __future__ import annotations

import atexit
from pathlib import Path

import pytest

from backends import BACKENDS, Caller, Guarded, start_backend
from stack import WEB_DIR, Process, gateway_bin, jwt_via_bearer, sign_up, start_gateway, start_web, wait_http_ok

atexit.register(Process.stop_all)


def pytest_sessionstart(session):
    problems = []
    try:
        gateway_bin()
    except RuntimeError as err:
        problems.append(str(err))
    if not (WEB_DIR / ".next" / "BUILD_ID").is_file():
        problems.append(f"no production build in {WEB_DIR / '.next'} (run scripts/demo-setup.sh --tests)")
    if problems:
        pytest.exit("backend matrix prerequisites missing:\n  " + "\n  ".join(problems), returncode=2)


def pytest_sessionfinish(session, exitstatus):
    Process.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for proc in Process.live:
            report.sections.append((f"log tail of {proc.name}", proc.log_tail(30)))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("backends")


@pytest.fixture(scope="session")
def web(workdir):
    app = start_web(workdir, name="auth")
    try:
        wait_http_ok(f"{app.url}/api/health", proc=app.proc, timeout=60)
        yield app
    finally:
        app.proc.stop()


@pytest.fixture(scope="session")
def callers(web) -> tuple[Caller, Caller]:
    """Alice and Bob, each with a JWT from Better Auth."""
    users = sign_up(web, label="alice"), sign_up(web, label="bob")
    return tuple(Caller(user=u, jwt=jwt_via_bearer(web, u)) for u in users)


@pytest.fixture(scope="module", params=BACKENDS)
def guarded(request, workdir, web) -> Guarded:
    name = request.param
    backend = start_backend(name, workdir)
    gateway = None
    try:
        wait_http_ok(f"{backend.url}/healthz", proc=backend.proc, timeout=60)
        gateway = start_gateway(workdir, name=name, web=web, tasks=backend)
        wait_http_ok(f"{gateway.admin_url}/readyz", proc=gateway.proc, timeout=30)
        yield Guarded(backend=backend, gateway=gateway)
    finally:
        if gateway is not None:
            gateway.proc.stop()
        backend.proc.stop()
