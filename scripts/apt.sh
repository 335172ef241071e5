# Sourced, not run: `apt_install PACKAGE...` installs Debian packages when it can (as
# root, or with sudo that needs no password), printing what it does on stderr. Returns
# non-zero when it cannot, so the caller can say what to install by hand. Every script
# that needs a Debian package (chromium, golang-go, php-cli, redis-server, ...) uses it.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
    sudo=(sudo -n)
  fi
  printf '[apt] installing Debian packages: %s\n' "$*" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}
