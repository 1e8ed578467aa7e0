# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Helpers shared by scripts/check.sh and scripts/showcase.sh; sourced, not run.

# ensure_packages PACKAGE...: installs with apt-get those Debian packages that are missing.
# Needs root (or sudo) only when something is missing.
ensure_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "note: no dpkg-query (not Debian?); assuming these are installed: $*" >&2
    return 0
  fi
  local package missing=()
  for package in "$@"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)" != "install ok installed" ]]; then
      missing+=("$package")
    fi
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  local as_root=()
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "error: missing packages need root to install: ${missing[*]}" >&2
      return 1
    fi
    as_root=(sudo)
  fi
  echo "installing missing packages: ${missing[*]}" >&2
  "${as_root[@]}" apt-get update -q
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Lets ninja use every core unless the caller chose otherwise.
default_build_parallelism() {
  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
}
