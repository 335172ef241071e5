"""Start and stop the real demo stack for the end-to-end tests.

Every part runs as its own process on 127.0.0.1 with a port picked by binding
port 0: the Next.js production server with Better Auth, the task service
(uvicorn) and the Portcullis binary. Readiness is polled, never slept for.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx2 as httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = REPO_ROOT / "deploy" / "demo" / "web"
TASKS_DIR = REPO_ROOT / "deploy" / "demo" / "tasks"
DEFAULT_GATEWAY_BIN = REPO_ROOT / "target" / "release" / "portcullis"

ALGORITHMS = ["EdDSA", "ES256", "ES512", "RS256", "PS256"]


def gateway_bin() -> Path:
    path = Path(os.environ.get("PORTCULLIS_BIN") or DEFAULT_GATEWAY_BIN)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(f"gateway binary not found at {path} (build it or set PORTCULLIS_BIN)")
    return path


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on right now (bind port 0, read it, release it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def http_client(**kwargs: Any) -> httpx.Client:
    # trust_env=False: never route loopback traffic through a configured proxy.
    return httpx.Client(timeout=kwargs.pop("timeout", 15.0), trust_env=False, **kwargs)


# --- processes ----------------------------------------------------------------------


class Process:
    """A child process in its own session (process group), logging to a file."""

    live: list["Process"] = []

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], cwd: Path, log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        Process.live.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        pgid = self.popen.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        # Children (e.g. the Next.js server worker) share the group: make sure all are gone.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=timeout)
        self._log.close()
        if self in Process.live:
            Process.live.remove(self)

    @classmethod
    def stop_all(cls) -> None:
        for proc in list(cls.live):
            proc.stop()


def wait_until(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    proc: Process | None = None,
) -> None:
    """Poll `check` until it returns True; fail fast if `proc` dies."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{proc.log_tail()}")
        if time.monotonic() >= deadline:
            tail = f":\n{proc.log_tail()}" if proc else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(interval)


def wait_http_ok(url: str, *, proc: Process, timeout: float) -> None:
    with http_client(timeout=2.0) as client:

        def ok() -> bool:
            try:
                return client.get(url).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(f"200 from {url}", ok, timeout=timeout, proc=proc)


# --- the three services ------------------------------------------------------------


@dataclass
class WebApp:
    """One Next.js + Better Auth instance with its own SQLite file and secret."""

    url: str
    proc: Process
    alg: str

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/api/auth/jwks"

    def jwks(self) -> dict[str, Any]:
        with http_client() as client:
            response = client.get(self.jwks_url)
            response.raise_for_status()
            return response.json()


def start_web(
    workdir: Path,
    *,
    name: str,
    alg: str = "EdDSA",
    expiration: str = "15m",
    rotation_interval: int | None = None,
    grace_period: int | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    public_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> WebApp:
    """`public_url`: where browsers reach the app (the gateway's URL in edge mode);
    defaults to the app's own address. `port`: a free port picked beforehand."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **_base_env(),
        **(extra_env or {}),
        "NODE_ENV": "production",
        "NEXT_TELEMETRY_DISABLED": "1",
        "BETTER_AUTH_URL": public_url or url,
        "BETTER_AUTH_SECRET": secrets.token_urlsafe(32),
        "DATABASE_URL": f"file:{workdir / f'{name}-auth.db'}",
        "JWT_ALG": alg,
        "JWT_EXPIRATION": expiration,
    }
    if rotation_interval is not None:
        env["JWKS_ROTATION_INTERVAL"] = str(rotation_interval)
    if grace_period is not None:
        env["JWKS_GRACE_PERIOD"] = str(grace_period)
    if issuer is not None:
        env["JWT_ISSUER"] = issuer
    if audience is not None:
        env["JWT_AUDIENCE"] = audience
    proc = Process(
        f"web:{name}",
        ["node", str(WEB_DIR / "node_modules" / "next" / "dist" / "bin" / "next"), "start", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        cwd=WEB_DIR,
        log_path=workdir / f"{name}-web.log",
    )
    return WebApp(url=url, proc=proc, alg=alg)


@dataclass
class TaskService:
    url: str
    proc: Process

    def stats(self) -> dict[str, Any]:
        with http_client() as client:
            response = client.get(f"{self.url}/__stats")
            response.raise_for_status()
            return response.json()

    def request_count(self) -> int:
        return self.stats()["api_requests"]


def start_tasks(workdir: Path, *, name: str) -> TaskService:
    port = free_port()
    env = {**_base_env(), "PYTHONPATH": str(TASKS_DIR)}
    proc = Process(
        f"tasks:{name}",
        [
            sys.executable, "-m", "taskservice",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--database-url", f"sqlite:///{workdir / f'{name}-tasks.db'}",
            "--log-level", "warning",
        ],
        env=env,
        cwd=TASKS_DIR,
        log_path=workdir / f"{name}-tasks.log",
    )
    return TaskService(url=f"http://127.0.0.1:{port}", proc=proc)


@dataclass
class Gateway:
    url: str
    admin_url: str
    proc: Process
    config_path: Path

    def client(self) -> httpx.Client:
        return http_client(base_url=self.url)


def gateway_config(
    *,
    listen_port: int,
    admin_port: int,
    web: WebApp,
    tasks: TaskService,
    leeway: str,
    refresh_cooldown: str,
) -> str:
    return f"""\
[server]
listen = "127.0.0.1:{listen_port}"
admin_listen = "127.0.0.1:{admin_port}"
upstream_timeout = "10s"

[[providers]]
name = "better-auth"
issuer = "{web.url}"
jwks_url = "{web.jwks_url}"
audiences = ["{web.url}"]
leeway = "{leeway}"
refresh_interval = "5m"
refresh_cooldown = "{refresh_cooldown}"
# The web app's JWTs name their session in `sid`; ending a session revokes its tokens.
session_claim = "sid"

[[routes]]
name = "tasks"
prefix = "/api/tasks"
upstream = "{tasks.url}"
auth = "required"

# The web app sends POST /revoke to the admin listener when sessions end.
[revocation]
max_token_lifetime = "15m"

[identity]
user_id_header = "X-User-Id"
claim_headers = {{ email = "X-User-Email" }}
"""


def edge_gateway_config(*, listen_port: int, admin_port: int, web: WebApp, tasks: TaskService) -> str:
    """Edge mode (config/edge.toml's shape): the gateway is the only origin the client
    sees; Better Auth's signed session cookie is the credential on /api/tasks."""
    public = f"http://127.0.0.1:{listen_port}"
    return f"""\
[server]
listen = "127.0.0.1:{listen_port}"
admin_listen = "127.0.0.1:{admin_port}"
upstream_timeout = "10s"

[[providers]]
name = "better-auth"
issuer = "{public}"
jwks_url = "{web.jwks_url}"
audiences = ["{public}"]
leeway = "1s"
refresh_cooldown = "1s"
session_claim = "sid"

[cookies]
trusted_origins = ["{public}"]

[[routes]]
name = "tasks"
prefix = "/api/tasks"
upstream = "{tasks.url}"
auth = "required"
token_sources = ["authorization", "session_cookie"]

[[routes]]
name = "auth"
prefix = "/api/auth"
upstream = "{web.url}"
auth = "public"
auth_server = true

[[routes]]
name = "web"
prefix = "/"
upstream = "{web.url}"
auth = "public"
auth_server = true

# The web app sends POST /revoke to the admin listener when sessions end.
[revocation]
max_token_lifetime = "15m"

[identity]
user_id_header = "X-User-Id"
claim_headers = {{ email = "X-User-Email" }}
"""


def start_gateway(
    workdir: Path,
    *,
    name: str,
    web: WebApp,
    tasks: TaskService,
    leeway: str = "1s",
    refresh_cooldown: str = "1s",
    ports: tuple[int, int] | None = None,
    edge: bool = False,
) -> Gateway:
    """`ports`: the (listen, admin) ports, when picked before the web app started (it
    must know the admin URL, and in edge mode its public URL). `edge`: edge mode."""
    listen_port, admin_port = ports or (free_port(), free_port())
    config_path = workdir / f"{name}-portcullis.toml"
    if edge:
        config_text = edge_gateway_config(listen_port=listen_port, admin_port=admin_port, web=web, tasks=tasks)
    else:
        config_text = gateway_config(
            listen_port=listen_port,
            admin_port=admin_port,
            web=web,
            tasks=tasks,
            leeway=leeway,
            refresh_cooldown=refresh_cooldown,
        )
    config_path.write_text(config_text)
    # Logs go to a file: no colour codes.
    env = {**_base_env(), "RUST_LOG": os.environ.get("RUST_LOG", "info"), "NO_COLOR": "1"}
    proc = Process(
        f"portcullis:{name}",
        [str(gateway_bin()), "--config", str(config_path)],
        env=env,
        cwd=workdir,
        log_path=workdir / f"{name}-portcullis.log",
    )
    return Gateway(
        url=f"http://127.0.0.1:{listen_port}",
        admin_url=f"http://127.0.0.1:{admin_port}",
        proc=proc,
        config_path=config_path,
    )


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "NODE_EXTRA_CA_CERTS")
    return {k: v for k, v in os.environ.items() if k in keep}


@dataclass
class Stack:
    """Web app + task service + gateway wired together."""

    web: WebApp
    tasks: TaskService
    gateway: Gateway
    processes: list[Process] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


def start_stack(
    workdir: Path,
    *,
    name: str,
    leeway: str = "1s",
    refresh_cooldown: str = "1s",
    edge_cookie_max_age: int | None = None,
    **web_options: Any,
) -> Stack:
    """`edge_cookie_max_age`: start in edge mode (the gateway in front of both the web
    app and the task service; the web app signs a session cookie cache of this many
    seconds with its JWT keys)."""
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[Process] = []
    # The gateway's ports come first: the web app tells its admin listener about
    # sessions that end (PORTCULLIS_ADMIN_URL), and in edge mode the gateway is its URL.
    gateway_ports = (free_port(), free_port())
    web_options["extra_env"] = {
        **(web_options.get("extra_env") or {}),
        "PORTCULLIS_ADMIN_URL": f"http://127.0.0.1:{gateway_ports[1]}",
    }
    edge_ports = None
    if edge_cookie_max_age is not None:
        edge_ports = gateway_ports
        web_options["public_url"] = f"http://127.0.0.1:{edge_ports[0]}"
        web_options["extra_env"].update({
            "SESSION_COOKIE_CACHE": "jwt",
            "SESSION_COOKIE_MAX_AGE": str(edge_cookie_max_age),
        })
    try:
        web = start_web(workdir, name=name, **web_options)
        started.append(web.proc)
        tasks = start_tasks(workdir, name=name)
        started.append(tasks.proc)
        wait_http_ok(f"{web.url}/api/health", proc=web.proc, timeout=60)
        wait_http_ok(f"{tasks.url}/healthz", proc=tasks.proc, timeout=30)
        gateway = start_gateway(
            workdir,
            name=name,
            web=web,
            tasks=tasks,
            leeway=leeway,
            refresh_cooldown=refresh_cooldown,
            ports=gateway_ports,
            edge=edge_ports is not None,
        )
        started.append(gateway.proc)
        wait_http_ok(f"{gateway.admin_url}/readyz", proc=gateway.proc, timeout=30)
    except BaseException:
        for proc in reversed(started):
            proc.stop()
        raise
    return Stack(web=web, tasks=tasks, gateway=gateway, processes=started)


# --- Better Auth and JWT helpers -------------------------------------------------


@dataclass
class User:
    email: str
    password: str
    session_token: str
    user_id: str
    cookies: httpx.Cookies


def sign_up(web: WebApp, *, label: str) -> User:
    """POST /api/auth/sign-up/email; returns the session token, user id and cookies.

    Better Auth allows 3 sign-ups per 10 seconds per client address; a 429 here
    means a test signs up too many users on one instance.
    """
    email = f"{label}-{uuid.uuid4().hex[:12]}@example.com"
    password = secrets.token_urlsafe(16)
    with http_client() as client:
        response = client.post(
            f"{web.url}/api/auth/sign-up/email",
            json={"name": label, "email": email, "password": password},
        )
        assert response.status_code == 200, f"sign-up failed: {response.status_code} {response.text[:300]}"
        body = response.json()
        return User(
            email=email,
            password=password,
            session_token=body["token"],
            user_id=body["user"]["id"],
            cookies=httpx.Cookies(client.cookies),
        )


def jwt_via_cookie(web: WebApp, user: User) -> str:
    """GET /api/auth/token with the session cookie."""
    with http_client(cookies=user.cookies) as client:
        response = client.get(f"{web.url}/api/auth/token")
        assert response.status_code == 200, f"/api/auth/token (cookie): {response.status_code}"
        return response.json()["token"]


def jwt_via_bearer(web: WebApp, user: User) -> str:
    """GET /api/auth/token with the session token as a bearer token (bearer plugin)."""
    with http_client() as client:
        response = client.get(
            f"{web.url}/api/auth/token", headers={"Authorization": f"Bearer {user.session_token}"}
        )
        assert response.status_code == 200, f"/api/auth/token (bearer): {response.status_code}"
        return response.json()["token"]


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_header(token: str) -> dict[str, Any]:
    return json.loads(b64url_decode(token.split(".")[0]))


def jwt_claims(token: str) -> dict[str, Any]:
    return json.loads(b64url_decode(token.split(".")[1]))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
