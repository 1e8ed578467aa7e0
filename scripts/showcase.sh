#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A tour of mp: builds the examples in Release and runs each one listed in examples/TOUR
# (lines "name<TAB>description"; '#' starts a comment) under a heading.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

ensure_packages cmake ninja-build g++ libcereal-dev libgtest-dev libgmock-dev libbenchmark-dev
default_build_parallelism

cmake --preset release
cmake --build --preset release --target examples

tour=examples/TOUR
if [[ ! -f $tour ]]; then
  echo "showcase: $tour is missing" >&2
  exit 1
fi

ran=0
failures=()
while IFS= read -r -u 3 line || [[ -n $line ]]; do
  [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
  name=${line%%$'\t'*}
  description=${line#"$name"}
  description=${description#$'\t'}
  name=${name//[[:space:]]/}
  echo
  echo "== $name: $description"
  program=build/release/examples/$name
  if [[ $name == */* || ! -x $program ]]; then
    echo "showcase: $program was not built" >&2
    failures+=("$name (not built)")
    continue
  fi
  ran=$((ran + 1))
  set +e
  "$program" </dev/null
  status=$?
  set -e
  if ((status != 0)); then
    echo "showcase: $name failed with exit status $status" >&2
    failures+=("$name (exit status $status)")
  fi
done 3<"$tour"

echo
if ((${#failures[@]} > 0)); then
  echo "showcase: ${#failures[@]} example(s) failed:" >&2
  printf '  %s\n' "${failures[@]}" >&2
  exit 1
fi
if ((ran == 0)); then
  echo "showcase: $tour lists no examples" >&2
  exit 1
fi
echo "showcase: all $ran examples ran"
