// Starts the demo stack for the browser tests: the Next.js production build (Better
// Auth), the task service and the Portcullis binary, each its own process group on a
// free 127.0.0.1 port, logging to a file. Two shapes: sidecar (the page on the web app's
// origin, the gateway on another, bearer JWTs) and edge (the gateway in front of both,
// the session cookie as the credential; config/edge.toml). Readiness is polled; every process is stopped
// by its PID (the whole group, so Next.js workers go too).

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const WEB_DIR = join(REPO_ROOT, "deploy/demo/web");
const TASKS_DIR = join(REPO_ROOT, "deploy/demo/tasks");
const PYTHON = join(REPO_ROOT, ".venv/bin/python");

export function gatewayBin() {
  return process.env.PORTCULLIS_BIN || join(REPO_ROOT, "target/debug/portcullis");
}

export function missingPrerequisites() {
  const problems = [];
  if (!existsSync(gatewayBin())) problems.push(`no gateway binary at ${gatewayBin()} (cargo build, or set PORTCULLIS_BIN)`);
  if (!existsSync(join(WEB_DIR, ".next/BUILD_ID"))) problems.push("no web app build (run scripts/demo-setup.sh)");
  if (!existsSync(PYTHON)) problems.push("no .venv (run scripts/demo-setup.sh)");
  return problems;
}

const handedOut = new Set();

/** A port nothing listens on right now (bind port 0, read it, release it). */
export async function freePort() {
  for (;;) {
    const port = await new Promise((ok, fail) => {
      const server = createServer();
      server.once("error", fail);
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address();
        server.close(() => ok(port));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

function baseEnv() {
  const keep = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"];
  return Object.fromEntries(keep.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]]));
}

export class Proc {
  static live = new Set();

  constructor(name, command, args, { env, cwd, logPath }) {
    this.name = name;
    this.logPath = logPath;
    const fd = openSync(logPath, "a");
    this.child = spawn(command, args, { env, cwd, stdio: ["ignore", fd, fd], detached: true });
    closeSync(fd);
    this.exited = new Promise((ok) => this.child.once("exit", (code, signal) => ok({ code, signal })));
    this.running = true;
    this.exited.then(() => (this.running = false));
    Proc.live.add(this);
  }

  logTail(lines = 30) {
    try {
      return readFileSync(this.logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  async stop() {
    Proc.live.delete(this);
    const pgid = this.child.pid;
    try {
      process.kill(-pgid, "SIGTERM");
    } catch {
      // already gone
    }
    const timeout = new Promise((ok) => setTimeout(() => ok("timeout"), 10_000).unref());
    await Promise.race([this.exited, timeout]);
    try {
      process.kill(-pgid, "SIGKILL"); // whatever of the group is left
    } catch {
      // all gone
    }
    await this.exited;
  }

  static async stopAll() {
    await Promise.all([...Proc.live].map((p) => p.stop()));
  }
}

/** Polls `check` until it is truthy; fails at once if `proc` exits. */
export async function waitUntil(what, check, { timeout, proc, interval = 100 }) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (proc && !proc.running) throw new Error(`${proc.name} exited while waiting for ${what}:\n${proc.logTail()}`);
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${proc ? `:\n${proc.logTail()}` : ""}`);
    }
    await new Promise((ok) => setTimeout(ok, interval));
  }
}

async function answers200(url) {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return response.status === 200;
  } catch {
    return false;
  }
}

export function waitHttpOk(url, proc, timeout) {
  return waitUntil(`200 from ${url}`, () => answers200(url), { timeout, proc });
}

function gatewayConfig({ listen, admin, webUrl, tasksUrl, leeway }) {
  return `[server]
listen = "127.0.0.1:${listen}"
admin_listen = "127.0.0.1:${admin}"
upstream_timeout = "10s"

[[providers]]
name = "better-auth"
issuer = "${webUrl}"
audiences = ["${webUrl}"]
jwks_url = "${webUrl}/api/auth/jwks"
leeway = "${leeway}"
refresh_interval = "5m"
refresh_cooldown = "1s"
# The web app's JWTs name their session in "sid": ending one session revokes its tokens.
session_claim = "sid"

[[routes]]
name = "tasks"
prefix = "/api/tasks"
upstream = "${tasksUrl}"
auth = "required"

[[routes]]
name = "admin"
prefix = "/api/admin"
upstream = "${tasksUrl}"
auth = "required"
roles = ["admin"]

[cors]
allowed_origins = ["${webUrl}"]

# The web app sends POST /revoke here when sessions end (one gateway: no [redis]).
[revocation]
max_token_lifetime = "15m"

[identity]
user_id_header = "X-User-Id"
claim_headers = { email = "X-User-Email" }
`;
}

// Edge mode (config/edge.toml's shape): the gateway is the page's origin; the web app
// behind it is reached on loopback, and so is its JWKS.
function edgeGatewayConfig({ listen, admin, webUrl, gatewayUrl, tasksUrl, leeway }) {
  return `[server]
listen = "127.0.0.1:${listen}"
admin_listen = "127.0.0.1:${admin}"
upstream_timeout = "10s"

[[providers]]
name = "better-auth"
issuer = "${gatewayUrl}"
audiences = ["${gatewayUrl}"]
jwks_url = "${webUrl}/api/auth/jwks"
leeway = "${leeway}"
refresh_interval = "5m"
refresh_cooldown = "1s"
# The web app's JWTs name their session in "sid": ending one session revokes its tokens.
session_claim = "sid"

[cookies]
trusted_origins = ["${gatewayUrl}"]

[[routes]]
name = "tasks"
prefix = "/api/tasks"
upstream = "${tasksUrl}"
auth = "required"
token_sources = ["authorization", "session_cookie"]

[[routes]]
name = "admin"
prefix = "/api/admin"
upstream = "${tasksUrl}"
auth = "required"
roles = ["admin"]
token_sources = ["authorization", "session_cookie"]

[[routes]]
name = "auth"
prefix = "/api/auth"
upstream = "${webUrl}"
auth = "public"
auth_server = true

[[routes]]
name = "web"
prefix = "/"
upstream = "${webUrl}"
auth = "public"
auth_server = true

# The web app sends POST /revoke here when sessions end (one gateway: no [redis]).
[revocation]
max_token_lifetime = "15m"

[identity]
user_id_header = "X-User-Id"
claim_headers = { email = "X-User-Email" }
`;
}

/**
 * The whole stack. `jwtLifetime` is Better Auth's JWT_EXPIRATION; `leeway` the gateway's.
 * `edge: { cookieMaxAge }` starts the edge shape, with the session cookie cache living
 * `cookieMaxAge` seconds. `pageUrl` is where a browser opens the app in either shape.
 * Every part can be stopped and started again on the same port (the outage tests).
 */
export async function startStack(workdir, { jwtLifetime, leeway, adminEmails, edge = null }) {
  const [webPort, tasksPort, gatewayPort, adminPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const stack = {
    workdir,
    webUrl: `http://127.0.0.1:${webPort}`,
    tasksUrl: `http://127.0.0.1:${tasksPort}`,
    gatewayUrl: `http://127.0.0.1:${gatewayPort}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    pageUrl: edge ? `http://127.0.0.1:${gatewayPort}` : `http://127.0.0.1:${webPort}`,
    gatewayLog: join(workdir, "portcullis.log"),
    web: null,
    tasks: null,
    gateway: null,
  };
  const configPath = join(workdir, "portcullis.toml");
  const ports = { listen: gatewayPort, admin: adminPort, webUrl: stack.webUrl, tasksUrl: stack.tasksUrl, leeway };
  writeFileSync(
    configPath,
    edge ? edgeGatewayConfig({ ...ports, gatewayUrl: stack.gatewayUrl }) : gatewayConfig(ports),
  );
  const edgeEnv = edge
    ? { PORTCULLIS_EDGE: "1", SESSION_COOKIE_CACHE: "jwt", SESSION_COOKIE_MAX_AGE: String(edge.cookieMaxAge) }
    : {};

  stack.startWeb = async () => {
    stack.web = new Proc(
      "web",
      "node",
      [join(WEB_DIR, "node_modules/next/dist/bin/next"), "start", "-H", "127.0.0.1", "-p", String(webPort)],
      {
        cwd: WEB_DIR,
        logPath: join(workdir, "web.log"),
        env: {
          ...baseEnv(),
          NODE_ENV: "production",
          NEXT_TELEMETRY_DISABLED: "1",
          BETTER_AUTH_URL: stack.pageUrl,
          BETTER_AUTH_SECRET: randomBytes(32).toString("base64url"),
          DATABASE_URL: `file:${join(workdir, "auth.db")}`,
          JWT_EXPIRATION: jwtLifetime,
          GATEWAY_URL: stack.gatewayUrl,
          DEMO_ADMIN_EMAILS: adminEmails.join(","),
          PORTCULLIS_ADMIN_URL: stack.adminUrl,
          ...edgeEnv,
        },
      },
    );
    await waitHttpOk(`${stack.webUrl}/api/health`, stack.web, 60_000);
  };

  stack.startTasks = async () => {
    stack.tasks = new Proc(
      "tasks",
      PYTHON,
      ["-m", "taskservice", "--host", "127.0.0.1", "--port", String(tasksPort), "--log-level", "warning",
        "--database-url", `sqlite:///${join(workdir, "tasks.db")}`],
      { cwd: TASKS_DIR, logPath: join(workdir, "tasks.log"), env: { ...baseEnv(), PYTHONPATH: TASKS_DIR } },
    );
    await waitHttpOk(`${stack.tasksUrl}/healthz`, stack.tasks, 30_000);
  };

  stack.startGateway = async () => {
    stack.gateway = new Proc("portcullis", gatewayBin(), ["--log-format", "json", "--config", configPath], {
      cwd: workdir,
      logPath: stack.gatewayLog,
      env: { ...baseEnv(), NO_COLOR: "1", PORTCULLIS_LOG: "info" },
    });
    await waitHttpOk(`${stack.adminUrl}/readyz`, stack.gateway, 30_000);
  };

  /** The task service's own count of requests that reached /api (loopback only). */
  stack.serviceRequestCount = async () => {
    const response = await fetch(`${stack.tasksUrl}/__stats`);
    return (await response.json()).api_requests;
  };

  /** The gateway's access-log lines (JSON), oldest first. */
  stack.accessLog = () =>
    readFileSync(stack.gatewayLog, "utf8")
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line))
      .filter((entry) => entry.target === "portcullis::access");

  stack.stop = async () => {
    for (const proc of [stack.gateway, stack.tasks, stack.web]) if (proc) await proc.stop();
  };

  try {
    await Promise.all([stack.startWeb(), stack.startTasks()]);
    await stack.startGateway();
  } catch (err) {
    await stack.stop();
    throw err;
  }
  return stack;
}
