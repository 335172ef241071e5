#!/usr/bin/env bash
# Runs the Django task API on 127.0.0.1:${PORT:-8000} under gunicorn. The first run
# creates .venv here and installs requirements.txt; every run applies migrations.
# Usage: run.sh [--prepare]   (--prepare: install, migrate and exit)
# Environment: PORT, TASKS_DB (SQLite file, default tasks.sqlite3 here),
#              DJANGO_ALLOWED_HOSTS (default localhost,127.0.0.1), PYTHON (default python3)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"

want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if ! [ -x .venv/bin/python ] || ! grep -qx "$want" .venv/.requirements.sha256 2>/dev/null; then
  echo "[django] installing requirements.txt into $PWD/.venv" >&2
  "$PYTHON" -m venv .venv || { echo "[django] cannot create a venv (on Debian: apt-get install python3-venv)" >&2; exit 1; }
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  printf '%s\n' "$want" >.venv/.requirements.sha256
fi

.venv/bin/python manage.py migrate --noinput --verbosity 0
[ "${1:-}" = --prepare ] && exit 0
# Loopback only: the gateway is the one client this process may ever have.
exec .venv/bin/gunicorn --bind "127.0.0.1:${PORT:-8000}" --workers 1 --no-control-socket \
  --access-logfile - tasksite.wsgi
