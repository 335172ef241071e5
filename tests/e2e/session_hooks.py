"""The pytest hooks every suite that runs on tests/e2e/stack.py shares (the e2e suite and
the backend matrix): refuse to start without a gateway binary and a production build of
the web app, stop every process the suite started, and put the log tails of the running
processes into a failed test's report. A conftest imports them by name."""

from __future__ import annotations

import atexit

import pytest

from stack import WEB_DIR, Process, gateway_bin

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
        pytest.exit("prerequisites missing:\n  " + "\n  ".join(problems), returncode=2)


def pytest_sessionfinish(session, exitstatus):
    Process.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for proc in Process.live:
            report.sections.append((f"log tail of {proc.name}", proc.log_tail(30)))
