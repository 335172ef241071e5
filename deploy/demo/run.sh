#!/usr/bin/env bash
# Starts the whole demo on this machine, in one of two shapes.
# Sidecar (the default; config/demo.toml): the page and the gateway are two origins, and
# the page sends Better Auth's JWT as a bearer token:
#   web app (Next.js + Better Auth)  http://localhost:3000
#   Portcullis gateway               http://127.0.0.1:8080   (admin: http://127.0.0.1:9090)
#   task service (FastAPI)           http://127.0.0.1:8000   (reachable on loopback only)
# Edge (--edge; config/edge.toml): Portcullis is the only origin the browser sees and
# Better Auth's signed session cookie is the credential (no token code in the page):
#   Portcullis gateway               http://localhost:8080   (admin: http://127.0.0.1:9090)
#     /, /api/auth/*   -> web app    http://127.0.0.1:3000   (loopback only)
#     /api/tasks, /api/admin -> task service http://127.0.0.1:8000 (loopback only)
# Installs and builds what is missing first (scripts/demo-setup.sh), waits until
# every part answers, prints the URL to open and a curl walk-through, and runs until
# Ctrl-C. The previous run's logs are kept as *.log.1 next to the new ones.
#
# Usage: deploy/demo/run.sh [--edge] [--reset]
#   --edge    start the edge shape instead of the sidecar one
#   --reset   delete the demo's databases and secret before starting
# Environment (optional):
#   DEMO_ADMIN_EMAILS       comma-separated emails whose accounts get the admin role
#   JWT_ALG                 EdDSA (default), ES256, ES512, RS256 or PS256
#   JWT_EXPIRATION          lifetime of issued JWTs (default 15m)
#   WEB_DATABASE_URL        database of the web app (default: SQLite in deploy/demo/.state)
#   TASKS_DATABASE_URL      database of the task service (default: SQLite in deploy/demo/.state)
#   PORTCULLIS_BIN          gateway binary to use instead of building one
set -euo pipefail
set -m   # every background job gets its own process group, so it can be stopped as a whole

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEMO_DIR="$REPO_ROOT/deploy/demo"
WEB_DIR="$DEMO_DIR/web"
TASKS_DIR="$DEMO_DIR/tasks"
STATE_DIR="$DEMO_DIR/.state"
LOG_DIR="$STATE_DIR/logs"
CONFIG="$REPO_ROOT/config/demo.toml"
PY="$REPO_ROOT/.venv/bin/python"

# Fixed by config/demo.toml.
WEB_PORT=3000
GATEWAY_PORT=8080
ADMIN_PORT=9090
TASKS_PORT=8000
WEB_URL="http://localhost:$WEB_PORT"
GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"

say() { printf '[demo] %s\n' "$*" >&2; }
die() { printf '[demo] error: %s\n' "$*" >&2; exit 1; }

for arg in "$@"; do
  case "$arg" in
    --reset) RESET=1 ;;
    --edge) EDGE=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

# Edge mode: the gateway serves the pages too, so the web app's public URL is the gateway's.
if [ "${EDGE:-0}" = 1 ]; then
  CONFIG="$REPO_ROOT/config/edge.toml"
  GATEWAY_URL="http://localhost:$GATEWAY_PORT"
  PUBLIC_URL="$GATEWAY_URL"
  TRUSTED_ORIGINS="$GATEWAY_URL,http://127.0.0.1:$GATEWAY_PORT"
  EDGE_ENV=(PORTCULLIS_EDGE=1 SESSION_COOKIE_CACHE=jwt)
else
  PUBLIC_URL="$WEB_URL"
  TRUSTED_ORIGINS="$WEB_URL,http://127.0.0.1:$WEB_PORT"
  EDGE_ENV=()
fi

started_at=$SECONDS
"$REPO_ROOT/scripts/demo-setup.sh"
GATEWAY_BIN="${PORTCULLIS_BIN:-$REPO_ROOT/target/release/portcullis}"
[ -x "$GATEWAY_BIN" ] || die "gateway binary not found: $GATEWAY_BIN"

if [ "${RESET:-0}" = 1 ]; then
  say "resetting demo state in ${STATE_DIR#"$REPO_ROOT"/}"
  rm -rf "$STATE_DIR"
fi
mkdir -p "$LOG_DIR"
chmod 700 "$STATE_DIR"

# One random secret per checkout, kept with the demo's databases.
SECRET_FILE="$STATE_DIR/auth-secret"
if [ ! -s "$SECRET_FILE" ]; then
  (umask 077 && node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("base64url"))' >"$SECRET_FILE")
fi

# A port is taken only if something listens on it. Binding with SO_REUSEADDR, as the
# servers themselves do, succeeds past the TIME-WAIT sockets a run that just stopped
# leaves behind, and fails while a listener holds the port.
port_free() {
  "$PY" -c 'import socket,sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}
for port in "$WEB_PORT" "$GATEWAY_PORT" "$ADMIN_PORT" "$TASKS_PORT"; do
  if ! port_free "$port"; then
    holder=""
    command -v ss >/dev/null 2>&1 && holder="$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n1)"
    die "port $port on 127.0.0.1 is in use${holder:+ by $holder}; stop whatever listens there (the ports are fixed by ${CONFIG#"$REPO_ROOT"/})"
  fi
done

"$GATEWAY_BIN" check --config "$CONFIG" >/dev/null || die "${CONFIG#"$REPO_ROOT"/} does not validate"

# Keep the previous run's logs (one generation) instead of overwriting them; only now,
# so that a start refused above leaves a running demo's logs alone.
for name in web tasks portcullis; do
  if [ -s "$LOG_DIR/$name.log" ]; then mv -f "$LOG_DIR/$name.log" "$LOG_DIR/$name.log.1"; fi
done

# --- process handling ---------------------------------------------------------

PIDS=()
NAMES=()

stop_all() {
  trap - INT TERM EXIT
  set +m   # no job-status chatter while stopping
  [ "${#PIDS[@]}" -eq 0 ] && return 0
  say "stopping ${NAMES[*]}"
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 10))
  for pid in "${PIDS[@]}"; do
    while kill -0 -- "-$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  PIDS=()
  say "stopped"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

start() { # name logfile command...
  local name="$1" log="$2"
  shift 2
  "$@" >"$log" 2>&1 </dev/null &
  PIDS+=("$!")
  NAMES+=("$name")
}

http_ok() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
  else
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" >/dev/null 2>&1
  fi
}

wait_ready() { # name pid url log timeout_seconds
  local name="$1" pid="$2" url="$3" log="$4" deadline=$((SECONDS + $5))
  until http_ok "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$log" >&2 || true
      die "$name exited during start-up (log: ${log#"$REPO_ROOT"/})"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$log" >&2 || true
      die "$name did not become ready at $url within $5s (log: ${log#"$REPO_ROOT"/})"
    fi
    sleep 0.25
  done
  say "$name ready ($url)"
}

# --- start ------------------------------------------------------------------------

say "starting web app on http://127.0.0.1:$WEB_PORT (public URL: $PUBLIC_URL)"
start web "$LOG_DIR/web.log" env \
  NODE_ENV=production NEXT_TELEMETRY_DISABLED=1 \
  BETTER_AUTH_URL="$PUBLIC_URL" \
  BETTER_AUTH_SECRET="$(cat "$SECRET_FILE")" \
  BETTER_AUTH_TRUSTED_ORIGINS="$TRUSTED_ORIGINS" "${EDGE_ENV[@]}" \
  DATABASE_URL="${WEB_DATABASE_URL:-file:$STATE_DIR/auth.db}" \
  JWT_ALG="${JWT_ALG:-EdDSA}" JWT_EXPIRATION="${JWT_EXPIRATION:-15m}" \
  GATEWAY_URL="$GATEWAY_URL" DEMO_ADMIN_EMAILS="${DEMO_ADMIN_EMAILS:-}" \
  PORTCULLIS_ADMIN_URL="http://127.0.0.1:$ADMIN_PORT" \
  bash -c 'cd "$1" && exec node node_modules/next/dist/bin/next start -H 127.0.0.1 -p "$2"' _ "$WEB_DIR" "$WEB_PORT"
WEB_PID=$!

say "starting task service on 127.0.0.1:$TASKS_PORT"
start tasks "$LOG_DIR/tasks.log" env \
  DATABASE_URL="${TASKS_DATABASE_URL:-sqlite:///$STATE_DIR/tasks.db}" PYTHONPATH="$TASKS_DIR" \
  "$PY" -m taskservice --host 127.0.0.1 --port "$TASKS_PORT"
TASKS_PID=$!

wait_ready "web app" "$WEB_PID" "http://127.0.0.1:$WEB_PORT/api/health" "$LOG_DIR/web.log" 60
wait_ready "task service" "$TASKS_PID" "http://127.0.0.1:$TASKS_PORT/healthz" "$LOG_DIR/tasks.log" 30

say "starting Portcullis on $GATEWAY_URL"
start portcullis "$LOG_DIR/portcullis.log" env NO_COLOR=1 "$GATEWAY_BIN" --config "$CONFIG"
GATEWAY_PID=$!
wait_ready "Portcullis" "$GATEWAY_PID" "http://127.0.0.1:$ADMIN_PORT/readyz" "$LOG_DIR/portcullis.log" 30

if [ "${EDGE:-0}" = 1 ]; then
  cat <<EOT

  ┌──────────────────────────────────────────────────────────────────────────┐
    Open $GATEWAY_URL in your browser
    sign up, then add, edit, complete and delete your tasks.
  └──────────────────────────────────────────────────────────────────────────┘

  Portcullis demo is running in edge mode (ready in $((SECONDS - started_at))s). Ctrl-C stops everything.

  Portcullis (the only origin the browser sees)  $GATEWAY_URL
    /, /api/auth/*         -> web app (loopback only)  http://127.0.0.1:$WEB_PORT
    /api/tasks, /api/admin -> task service (loopback only, no auth!)  http://127.0.0.1:$TASKS_PORT
  Gateway admin                              http://127.0.0.1:$ADMIN_PORT/readyz
  Logs (previous run: *.log.1)               ${LOG_DIR#"$REPO_ROOT"/}/{web,tasks,portcullis}.log

  The page sends no token: Better Auth's signed session cookie is the credential, and
  Portcullis refuses a write carrying it from another site (403 cross_site_request).

  Walk-through with curl (in another terminal; every step can be run again):

  GW=$GATEWAY_URL

  # 1. Sign up, or sign in if the account exists, through the gateway; cookies go to a jar
  curl -fs -o /dev/null -c /tmp/portcullis-edge.cookies \$GW/api/auth/sign-up/email -H "Origin: \$GW" \\
    -H 'content-type: application/json' -d '{"name":"Demo User","email":"demo@example.com","password":"correct-horse-battery"}' ||
  curl -fsS -o /dev/null -c /tmp/portcullis-edge.cookies \$GW/api/auth/sign-in/email -H "Origin: \$GW" \\
    -H 'content-type: application/json' -d '{"email":"demo@example.com","password":"correct-horse-battery"}' && echo "signed in"

  # 2. Create a task and list your tasks with the session cookie alone (a write says where it comes from)
  curl -s -b /tmp/portcullis-edge.cookies \$GW/api/tasks -H "Origin: \$GW" -H 'content-type: application/json' \\
    -d '{"title":"Try edge mode"}'; echo
  curl -s -b /tmp/portcullis-edge.cookies \$GW/api/tasks; echo

  # 3. The same write from another site: refused before the task service
  curl -s -b /tmp/portcullis-edge.cookies \$GW/api/tasks -H 'Origin: http://evil.example' \\
    -H 'content-type: application/json' -d '{"title":"forged"}'; echo     # 403 cross_site_request

  # 4. No cookie: 401 session_missing (the page then asks /api/auth/get-session and retries once)
  curl -s \$GW/api/tasks; echo

EOT
else
if [ -n "${DEMO_ADMIN_EMAILS:-}" ]; then
  ADMINS="now: $DEMO_ADMIN_EMAILS"
else
  ADMINS="none now"
fi

cat <<EOT

  ┌──────────────────────────────────────────────────────────────────────────┐
    Open $WEB_URL in your browser
    sign up, then add, edit, complete and delete your tasks.
  └──────────────────────────────────────────────────────────────────────────┘

  Portcullis demo is running (ready in $((SECONDS - started_at))s). Ctrl-C stops everything.

  Web app (sign in, your tasks, your JWT)    $WEB_URL
  Gateway (every task call goes here)        $GATEWAY_URL/api/tasks
  Gateway admin                              http://127.0.0.1:$ADMIN_PORT/readyz
  Task service (loopback only, no auth!)     http://127.0.0.1:$TASKS_PORT
  Logs (previous run: *.log.1)               ${LOG_DIR#"$REPO_ROOT"/}/{web,tasks,portcullis}.log

  Admins ($ADMINS): accounts whose email is in DEMO_ADMIN_EMAILS get Better Auth's
  admin role and see the Admin panel; the gateway lets only them reach /api/admin:
    DEMO_ADMIN_EMAILS=demo@example.com deploy/demo/run.sh
  (an account that already exists becomes an admin when the demo starts with it listed).

  Walk-through with curl (in another terminal; every step can be run again):

  WEB=$WEB_URL GW=$GATEWAY_URL

  # 1. Sign up, or sign in if the account exists; the session cookie goes to a cookie jar
  curl -fs -o /dev/null -c /tmp/portcullis-demo.cookies \$WEB/api/auth/sign-up/email -H 'content-type: application/json' \\
    -d '{"name":"Demo User","email":"demo@example.com","password":"correct-horse-battery"}' ||
  curl -fsS -o /dev/null -c /tmp/portcullis-demo.cookies \$WEB/api/auth/sign-in/email -H 'content-type: application/json' \\
    -d '{"email":"demo@example.com","password":"correct-horse-battery"}' && echo "signed in"

  # 2. Exchange the session for a short-lived JWT (run again when it expires)
  JWT=\$(curl -fsS -b /tmp/portcullis-demo.cookies \$WEB/api/auth/token | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  [ -n "\$JWT" ] && echo "got a JWT" || echo "no JWT: run step 1 first"

  # 3. Create a task, list your tasks, complete the task (all through the gateway)
  TASK=\$(curl -fsS \$GW/api/tasks -H "Authorization: Bearer \$JWT" -H 'content-type: application/json' \\
    -d '{"title":"Try Portcullis"}' | sed -n 's/.*"id":\([0-9]*\).*/\1/p'); echo "created task \$TASK"
  curl -s \$GW/api/tasks -H "Authorization: Bearer \$JWT"; echo
  curl -s -X PATCH \$GW/api/tasks/\$TASK -H "Authorization: Bearer \$JWT" -H 'content-type: application/json' \\
    -d '{"completed":true}'; echo

  # 4. A second user sees none of it: their list is empty, the task is 404 for them
  curl -fs -o /dev/null -c /tmp/portcullis-demo-2.cookies \$WEB/api/auth/sign-up/email -H 'content-type: application/json' \\
    -d '{"name":"Second User","email":"second@example.com","password":"correct-horse-battery"}' ||
  curl -fsS -o /dev/null -c /tmp/portcullis-demo-2.cookies \$WEB/api/auth/sign-in/email -H 'content-type: application/json' \\
    -d '{"email":"second@example.com","password":"correct-horse-battery"}'
  JWT2=\$(curl -fsS -b /tmp/portcullis-demo-2.cookies \$WEB/api/auth/token | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  curl -s \$GW/api/tasks -H "Authorization: Bearer \$JWT2"; echo                             # []
  curl -s -o /dev/null -w '%{http_code}\n' \$GW/api/tasks/\$TASK -H "Authorization: Bearer \$JWT2"   # 404
  curl -s -o /dev/null -w '%{http_code}\n' -X DELETE \$GW/api/tasks/\$TASK -H "Authorization: Bearer \$JWT2"   # 404

  # 5. The owner deletes the task
  curl -s -o /dev/null -w '%{http_code}\n' -X DELETE \$GW/api/tasks/\$TASK -H "Authorization: Bearer \$JWT"    # 204

  # 6. Refused at the gateway, never reaching the task service
  curl -s \$GW/api/tasks; echo                                            # no token: 401
  curl -s \$GW/api/tasks -H 'X-User-Id: someone-else'; echo               # forged identity: 401
  curl -s \$GW/api/admin/stats -H "Authorization: Bearer \$JWT2"; echo    # not an admin: 403 insufficient_scope
  #    demo@example.com listed in DEMO_ADMIN_EMAILS? Then step 2 again, and \$JWT gets the counts:
  curl -s \$GW/api/admin/stats -H "Authorization: Bearer \$JWT"; echo

EOT
fi

# Run until Ctrl-C or until one of the three exits.
set +e
wait -n "${PIDS[@]}"
status=$?
set -e
for i in "${!PIDS[@]}"; do
  if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
    say "${NAMES[$i]} exited (status $status); see ${LOG_DIR#"$REPO_ROOT"/}/${NAMES[$i]}.log"
  fi
done
stop_all
exit 1
