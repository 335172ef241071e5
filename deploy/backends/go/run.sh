#!/usr/bin/env bash
# Builds (standard library only, nothing is downloaded) and runs the Go task API on
# 127.0.0.1:${PORT:-8000}. Needs Go 1.19 or newer (Debian: apt-get install golang-go).
# Usage: run.sh [--prepare]   (--prepare: build and exit)
set -euo pipefail
cd "$(dirname "$0")"
export GOPROXY=off GOFLAGS=-mod=mod
go build -o .bin/tasks .
[ "${1:-}" = --prepare ] && exit 0
exec .bin/tasks
