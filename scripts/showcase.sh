#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A tour of mp: builds the examples in Release and runs each one listed in examples/TOUR
# (lines "name<TAB>description"; '#' starts a comment) under a heading.
#
# Environment (both optional):
#   MP_BUILD_DIR  the build folder, absolute or relative to where you run this; configured with
#                 the `release` preset's settings. Default: build/release in the source tree.
#   MP_JOBS       how many compile jobs run at once (a positive whole number). Default: one per
#                 core, or CMAKE_BUILD_PARALLEL_LEVEL if that is set.
# Example: MP_BUILD_DIR=/tmp/mp-tour MP_JOBS=2 scripts/showcase.sh
set -euo pipefail
caller_dir=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

build_dir=${MP_BUILD_DIR:-build/release}
if [[ -n ${MP_BUILD_DIR:-} && $build_dir != /* ]]; then
  build_dir=$caller_dir/$build_dir
fi
if [[ -n ${MP_JOBS+set} ]]; then
  if [[ ! $MP_JOBS =~ ^[1-9][0-9]*$ ]]; then
    echo "showcase: MP_JOBS must be a positive whole number, not '$MP_JOBS'" >&2
    exit 2
  fi
  export CMAKE_BUILD_PARALLEL_LEVEL=$MP_JOBS
fi

ensure_packages cmake ninja-build g++ libcereal-dev libssl-dev libgtest-dev libgmock-dev libbenchmark-dev \
  libopenmpi-dev openmpi-bin
default_build_parallelism

echo "showcase: building in $build_dir with $CMAKE_BUILD_PARALLEL_LEVEL jobs"
cmake --preset release -B "$build_dir"
cmake --build "$build_dir" --target examples

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
  if [[ $name == *'|'* ]]; then
    # A pair, "server|client": the server, on a free port and for one client, tells the
    # client its address through a pipe.
    server=$build_dir/examples/${name%%|*}
    program=$build_dir/examples/${name#*|}
    if [[ ! -x $server || ! -x $program ]]; then
      echo "showcase: $server or $program was not built" >&2
      failures+=("$name (not built)")
      continue
    fi
    ran=$((ran + 1))
    set +e
    "$server" 0 1 </dev/null | "$program"
    statuses=("${PIPESTATUS[@]}")
    set -e
    if [[ ${statuses[*]} != "0 0" ]]; then
      echo "showcase: $name failed with exit statuses ${statuses[*]}" >&2
      failures+=("$name (exit statuses ${statuses[*]})")
    fi
    continue
  fi
  launcher=()
  if [[ $name == mpi:* ]]; then
    # An MPI program: three ranks of this machine (rank 0 and two workers), as root if need be.
    name=${name#mpi:}
    launcher=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
      mpiexec --oversubscribe --bind-to none -n 3)
  fi
  program=$build_dir/examples/$name
  if [[ $name == */* || ! -x $program ]]; then
    echo "showcase: $program was not built" >&2
    failures+=("$name (not built)")
    continue
  fi
  ran=$((ran + 1))
  set +e
  "${launcher[@]}" "$program" </dev/null
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
