# shellcheck shell=bash
# Sourced by scripts/up.sh and scripts/test.sh: make sure the project's virtual
# environment exists and holds meshwright, then set VENV_PY to its python.
#
# Never installs into the interpreter it finds: a system Python is
# "externally managed" (PEP 668) on Debian 12 / Ubuntu 23.04+, and pyenv or
# conda interpreters are the user's own. It finds python3 or python (3.11+; a
# pyenv shim that names no installed version is skipped), creates .venv with
# `-m venv`, installs python3-venv with apt when the system Python lacks it and
# this user may (root, or sudo), then `pip install -e .` (or `.[dev]`) into it.
# A later run reuses .venv and installs again only when pyproject.toml changed.
#
# Settings: MESHWRIGHT_VENV (default <repo>/.venv), MESHWRIGHT_PYTHON (the
# interpreter to create it with).

MW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MW_VENV="${MESHWRIGHT_VENV:-$MW_ROOT/.venv}"
MW_MIN_PYTHON="3.11"

# A conda/pyenv PYTHONHOME would point the venv's interpreter at another
# stdlib; a user-wide PIP_USER=1 makes pip refuse to install into a venv.
unset PYTHONHOME
export PIP_USER=0 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

mw_say() { printf 'meshwright: %s\n' "$*" >&2; }

# True when "$1" runs and is Python >= 3.11.
mw_python_ok() {
  "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

# True when "$1" can create a virtual environment with pip in it.
mw_venv_ok() {
  "$1" -c 'import venv, ensurepip' >/dev/null 2>&1
}

# Prints the interpreters to try, best first.
mw_candidates() {
  local name
  if [ -n "${MESHWRIGHT_PYTHON:-}" ]; then
    printf '%s\n' "$MESHWRIGHT_PYTHON"
    return
  fi
  for name in python3 python python3.13 python3.12 python3.11; do
    command -v "$name" 2>/dev/null || true
  done
}

# Runs "$@" as root: directly, with sudo without a password, or with sudo at a
# terminal (it asks). Fails when none of these is possible.
mw_as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo "$@"
  elif command -v sudo >/dev/null 2>&1 && [ -t 0 ]; then
    mw_say "running: sudo $*"
    sudo "$@"
  else
    return 1
  fi
}

# apt-get install "$@", updating the package lists once if they are missing or stale.
mw_apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  export DEBIAN_FRONTEND=noninteractive
  mw_as_root apt-get install -y -qq -o Dpkg::Use-Pty=0 "$@" >&2 && return 0
  mw_as_root apt-get update -qq >&2 && mw_as_root apt-get install -y -qq -o Dpkg::Use-Pty=0 "$@" >&2
}

# Sets MW_PYTHON to an interpreter that can create the venv, installing
# python3-venv (and python3 itself where there is none) with apt if needed.
mw_find_python() {
  local c usable=""
  MW_PYTHON=""
  while IFS= read -r c; do
    [ -n "$c" ] || continue
    mw_python_ok "$c" || continue
    [ -n "$usable" ] || usable="$c"
    if mw_venv_ok "$c"; then
      MW_PYTHON="$c"
      return 0
    fi
  done < <(mw_candidates)

  if [ -n "$usable" ]; then
    local version
    version="$("$usable" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    mw_say "$usable (Python $version) has no venv/ensurepip module; installing python3-venv with apt"
    if mw_apt_install python3-venv || mw_apt_install "python$version-venv"; then
      if mw_venv_ok "$usable"; then
        MW_PYTHON="$usable"
        return 0
      fi
    fi
    mw_say "error: cannot create a virtual environment with $usable."
    mw_say "  On Debian/Ubuntu: sudo apt-get install python3-venv   (then run this again)"
    mw_say "  Or point MESHWRIGHT_PYTHON at a Python $MW_MIN_PYTHON+ that has venv (pyenv, conda, python.org)."
    return 1
  fi

  if ! command -v python3 >/dev/null 2>&1 && ! command -v python >/dev/null 2>&1; then
    mw_say "no python3 found; installing python3 and python3-venv with apt"
    if mw_apt_install python3 python3-venv && command -v python3 >/dev/null 2>&1; then
      if mw_python_ok python3 && mw_venv_ok python3; then
        MW_PYTHON="$(command -v python3)"
        return 0
      fi
    fi
  fi
  mw_say "error: meshwright needs Python $MW_MIN_PYTHON or newer (python3 or python on PATH)."
  mw_say "  Found: $(mw_candidates | while IFS= read -r c; do
    printf '%s=%s ' "$c" "$("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo '?')"
  done)"
  mw_say "  Install one (Debian/Ubuntu: apt-get install python3 python3-venv; or pyenv, conda),"
  mw_say "  or set MESHWRIGHT_PYTHON to its path."
  return 1
}

# The stamp records what was installed into the venv: pyproject.toml's hash,
# the extras, and the venv's own path (scripts in .venv/bin carry it in their
# #! line, so a moved checkout needs a new venv).
mw_stamp_file() { printf '%s/.meshwright-install' "$MW_VENV"; }

mw_pyproject_hash() {
  "$VENV_PY" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
    "$MW_ROOT/pyproject.toml"
}

# ensure_venv base|dev: the venv exists and has meshwright (with [dev] for "dev").
ensure_venv() {
  local want="$1" stamp have_path="" have_hash="" have_extras="" hash
  VENV_PY="$MW_VENV/bin/python"
  stamp="$(mw_stamp_file)"
  if [ -f "$stamp" ]; then
    read -r have_hash have_extras have_path <"$stamp" || true
  fi
  if [ -d "$MW_VENV" ] && { ! mw_python_ok "$VENV_PY" || { [ -n "$have_path" ] && [ "$have_path" != "$MW_VENV" ]; }; }; then
    mw_say "$MW_VENV is broken or was made elsewhere; recreating it"
    rm -rf "$MW_VENV"
    have_hash=""
  fi
  if [ ! -x "$VENV_PY" ]; then
    mw_find_python || return 1
    mw_say "creating $MW_VENV with $MW_PYTHON ($("$MW_PYTHON" -c 'import sys; print(sys.version.split()[0])'))"
    if ! "$MW_PYTHON" -m venv "$MW_VENV" >&2; then
      rm -rf "$MW_VENV"  # a half-made venv (no pip) would be taken as good next time
      mw_say "error: $MW_PYTHON -m venv $MW_VENV failed"
      return 1
    fi
    have_hash=""
  fi
  hash="$(mw_pyproject_hash)"
  if [ "$have_hash" = "$hash" ] && { [ "$have_extras" = dev ] || [ "$want" = base ]; } &&
    "$VENV_PY" -c 'import meshwright.cli' >/dev/null 2>&1; then
    return 0
  fi
  local spec="." label="meshwright"
  if [ "$want" = dev ]; then
    spec=".[dev]"
    label="meshwright and its dev tools"
  fi
  mw_say "installing $label into $MW_VENV (the first time takes a minute)"
  rm -f "$stamp"
  (cd "$MW_ROOT" && "$VENV_PY" -m pip install --quiet -e "$spec") || {
    mw_say "error: pip install -e '$spec' into $MW_VENV failed"
    return 1
  }
  printf '%s %s %s\n' "$hash" "$want" "$MW_VENV" >"$stamp"
}
