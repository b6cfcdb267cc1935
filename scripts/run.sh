#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine and run mlcache's benchmark or tests.
#
#   bash scripts/run.sh bench [ARGS...]   # mlcache bench ARGS...
#   bash scripts/run.sh test  [ARGS...]   # python -m pytest tests ARGS...
#   bash scripts/run.sh setup             # install only (CI runs its benchmark check next)
#
# Installs only what is missing (apt packages, then a .venv in the repo root
# with the package and its test/bench extras).  The Redis and PostgreSQL servers
# used are throwaway ones started by mlcache.localservers on free loopback
# ports: the system services that Debian's packages start (6379, 5432) are
# neither needed nor touched.
set -euo pipefail

usage() {
    echo "usage: bash scripts/run.sh {bench|test|setup} [ARGS...]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
    bench | test | setup) ;;
    *) usage ;;
esac

# Work from the repo root whatever the caller's cwd: pip installs ".".
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "run.sh: $*"; }

# ------------------------------------------------------------ system packages

have_postgres_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && return 0
    done
    # Elsewhere (not a Debian layout) localservers also accepts pg_ctl on PATH.
    command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1
}

have_python_headers() {
    [ "$(python3 -c "import sysconfig, os; print(os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" 2>/dev/null)" = "True" ]
}

missing_packages() {
    local pkgs=()
    command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
    have_postgres_bindir || pkgs+=(postgresql)
    if ! command -v python3 >/dev/null 2>&1; then
        pkgs+=(python3 python3-venv python3-dev)
    else
        # Debian's python3 has the venv module but not ensurepip without
        # python3-venv, and then `python3 -m venv` fails half way.
        { python3 -m venv --help >/dev/null 2>&1 && python3 -c "import ensurepip" >/dev/null 2>&1; } \
            || pkgs+=(python3-venv)
        have_python_headers || pkgs+=(python3-dev)
    fi
    # The Cython extension (compiled L1) is built by pip install.
    { command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; } || pkgs+=(build-essential)
    # The +-form: an empty array is "unbound" under set -u in bash < 4.4.
    echo ${pkgs[@]+"${pkgs[@]}"}
}

missing=$(missing_packages)
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "run.sh: missing packages ($missing) and no sudo to install them; as root run:" >&2
        echo "  apt-get update && apt-get install -y $missing" >&2
        exit 1
    fi
    say "installing missing packages: $missing"
    # shellcheck disable=SC2086  # word splitting of $SUDO and the package list is intended
    $SUDO apt-get update -q
    # shellcheck disable=SC2086
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
    # Check again: e.g. python3-dev does not help a python3 that is not Debian's.
    still=$(missing_packages)
    if [ -n "$still" ]; then
        echo "run.sh: still missing after apt-get install: $still" >&2
        exit 1
    fi
else
    say "system packages present (redis-server, postgresql, python3-venv/dev, C compiler)"
fi

# ------------------------------------------------------------------ virtualenv

# Reuse .venv only if its interpreter still runs (a venv breaks when the
# python it was made from is removed or upgraded).
if [ -x .venv/bin/python ] && .venv/bin/python -c "import sys" >/dev/null 2>&1; then
    say "reusing .venv"
else
    say "creating .venv"
    rm -rf .venv
    python3 -m venv .venv
fi

say "installing mlcache[test,bench] into .venv (builds the Cython extension)"
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/pip install -q --disable-pip-version-check ".[test,bench]"

# ------------------------------------------------------------------------ run

case "$cmd" in
    bench)
        say "mlcache bench $*"
        exec .venv/bin/mlcache bench "$@"
        ;;
    setup)
        say "installed; .venv is ready"
        ;;
    test)
        say "python -m pytest tests $*"
        # exec: the script's exit code is pytest's.
        exec .venv/bin/python -m pytest tests "$@"
        ;;
esac
