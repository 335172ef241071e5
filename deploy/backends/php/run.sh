#!/usr/bin/env bash
# Runs the PHP task API on 127.0.0.1:${PORT:-8000} with PHP's built-in server, every
# request going through the front controller index.php.
# Needs php-cli and PDO SQLite (Debian: apt-get install php-cli php-sqlite3).
# Environment: PORT, TASKS_DB (SQLite file, default tasks.sqlite3 here)
set -euo pipefail
cd "$(dirname "$0")"
# Loopback only: the gateway is the one client this process may ever have.
exec php -S "127.0.0.1:${PORT:-8000}" index.php
