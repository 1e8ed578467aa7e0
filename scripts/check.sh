#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The project's test command (README and CI): format check, Debug with ASan+UBSan, Release, TSan,
# install-and-consume, fuzzing, and a check that nothing was left running or in /dev/shm.
# MP_CHECK_STEPS="format dev" runs a subset; MP_FUZZ_SECONDS sets each fuzzer's time (20).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

all_steps=(format dev release tsan consumer fuzz leftovers)
declare -A describe=(
  [format]="clang-format --dry-run --Werror on include src tests examples bench"
  [dev]="Debug with AddressSanitizer and UndefinedBehaviorSanitizer (preset ci-dev)"
  [release]="Release (preset ci-release)"
  [tsan]="ThreadSanitizer (preset ci-tsan)"
  [consumer]="package libmp-dev (cpack), extract it, build and run tests/consumer against it with CMake and pkg-config (mp::mpi on three ranks too); then a shared install with CMake"
  [fuzz]="libFuzzer targets, ${MP_FUZZ_SECONDS:-20} s each (preset fuzz)"
  [leftovers]="no process left from this run, no new /dev/shm entries or fork server directories"
)

read -r -a steps <<<"${MP_CHECK_STEPS:-${all_steps[*]}}"
if ((${#steps[@]} == 0)); then
  echo "check: MP_CHECK_STEPS names no step; the steps are: ${all_steps[*]}" >&2
  exit 2
fi
for step in "${steps[@]}"; do
  if [[ -z ${describe[$step]+set} ]]; then
    echo "check: unknown step '$step' in MP_CHECK_STEPS; the steps are: ${all_steps[*]}" >&2
    exit 2
  fi
done

ensure_packages cmake ninja-build g++ clang clang-format libclang-rt-14-dev libcereal-dev libssl-dev \
  libopenmpi-dev openmpi-bin python3-mpi4py \
  pkg-config libgtest-dev libgmock-dev libbenchmark-dev libboost-dev python3 ca-certificates git
default_build_parallelism

# Every process started from here inherits this marker, so the last step finds strays even
# after they were re-parented to init.
export MP_CHECK_RUN="$$-$RANDOM$RANDOM"
mapfile -t shm_at_start < <(ls -A /dev/shm 2>/dev/null || true)
# Fork servers' socket directories (docs/start-methods.md): each server removes its own.
forkserver_dirs() { ls -d /tmp/mp-forkserver-* "${TMPDIR:-/tmp}"/mp-forkserver-* 2>/dev/null | sort -u || true; }
mapfile -t forkserver_dirs_at_start < <(forkserver_dirs)

# new_temp_dir VAR: makes a directory that is removed when the step ends, and stores its path
# in VAR.
temp_dirs=()
new_temp_dir() {
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/mp-check.XXXXXX")
  temp_dirs+=("$dir")
  printf -v "$1" '%s' "$dir"
}

configure_build_test() {
  cmake --preset "$1"
  cmake --build --preset "$1"
  ctest --preset "$1"
}

step_format() {
  local files=() file
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files --cached --others --exclude-standard -- \
      include src tests examples bench | grep -E '\.(hpp|cpp|h|c)$' | grep -vE '(^|/)build/' || true)
  else
    mapfile -t files < <(find include src tests examples bench -name build -prune -o -type f \
      \( -name '*.hpp' -o -name '*.cpp' -o -name '*.h' -o -name '*.c' \) -print 2>/dev/null | sort)
  fi
  local existing=()
  for file in "${files[@]}"; do
    [[ -f $file ]] && existing+=("$file")
  done
  if ((${#existing[@]} == 0)); then
    echo "no C++ files found" >&2
    return 1
  fi
  echo "checking ${#existing[@]} files with $(clang-format --version)"
  local tmp log
  new_temp_dir tmp
  log=$tmp/clang-format.log
  if ! clang-format --dry-run --Werror "${existing[@]}" 2>"$log"; then
    head -n 40 "$log" >&2
    local offenders=()
    mapfile -t offenders < <(grep -oE '^[^:]+:[0-9]+:[0-9]+: error' "$log" | cut -d: -f1 | sort -u)
    echo "error: ${#offenders[@]} files need formatting; fix with:" >&2
    echo "  clang-format -i ${offenders[*]}" >&2
    return 1
  fi
}

step_dev() { configure_build_test ci-dev; }
step_release() { configure_build_test ci-release; }
step_tsan() { configure_build_test ci-tsan; }

step_consumer() {
  # Also works on its own (MP_CHECK_STEPS=consumer): only the library itself is needed.
  if [[ ! -f build/ci-release/CMakeCache.txt ]]; then
    cmake --preset ci-release
  fi
  # The libraries the package holds: mp, and mp::mpi where CMake found MPI.
  local libraries=(mp)
  if cmake --build --preset ci-release --target help | grep -q '^mp_mpi:'; then
    libraries+=(mp_mpi)
  fi
  cmake --build --preset ci-release --target "${libraries[@]}"
  local tmp
  new_temp_dir tmp
  # The Debian package, libmp-dev, of the static Release build (cpack installs what is built;
  # it builds nothing). Extracted, never installed: the consumer is built against the copy,
  # through CMake and through pkg-config, which also proves both package files relocatable.
  (cd build/ci-release && cpack -G DEB -B "$tmp/package")
  local deb
  deb=$(find "$tmp/package" -maxdepth 1 -name 'libmp-dev_*.deb' -print -quit)
  if [[ -z $deb ]]; then
    echo "error: cpack wrote no libmp-dev_*.deb" >&2
    return 1
  fi
  check_deb_fields "$deb"
  dpkg-deb -x "$deb" "$tmp/root"
  consume "$tmp/root/usr" "$tmp/build"
  consume_with_pkg_config "$tmp/root/usr" "$tmp/pkg-config-build"
  # A shared build with hidden visibility proves that everything the headers
  # need is exported.
  cmake -S . -B "$tmp/shared" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DMP_DEVELOPER_MODE=OFF -DMP_WARNINGS_AS_ERRORS=ON
  cmake --build "$tmp/shared"
  cmake --install "$tmp/shared" --prefix "$tmp/shared-prefix"
  LD_LIBRARY_PATH="$tmp/shared-prefix/lib" consume "$tmp/shared-prefix" "$tmp/shared-build"
}

# check_deb_fields DEB: the package's name, and the dependencies its headers and library need.
check_deb_fields() {
  local package depends
  package=$(dpkg-deb -f "$1" Package)
  depends=$(dpkg-deb -f "$1" Depends)
  echo "$(basename "$1"): Package: $package; Depends: $depends"
  if [[ $package != libmp-dev || $depends != *libcereal-dev* ]]; then
    echo "error: expected Package libmp-dev depending on libcereal-dev" >&2
    return 1
  fi
}

# consume PREFIX BUILD_DIR: builds tests/consumer against the package in PREFIX and runs it.
consume() {
  cmake -S tests/consumer -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$1" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  cmake --build "$2"
  "$2/mp_consumer"
  if has_mpi "$1"; then
    run_mpi "$2" "$2/mp_mpi_consumer"
  fi
}

# has_mpi PREFIX: the install in PREFIX has mp::mpi (then it must have its pkg-config file too).
has_mpi() {
  [[ -f $1/lib/cmake/mp/mpMpiTargets.cmake ]]
}

# run_mpi WORK_DIR PROGRAM: PROGRAM on three ranks of mpirun on this machine (oversubscribed;
# as root, which Open MPI refuses unless told), its session directories under WORK_DIR.
run_mpi() {
  mkdir -p "$1/mpi-sessions"
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_orte_tmpdir_base="$1/mpi-sessions" \
    mpirun --oversubscribe --bind-to none -n 3 "$2"
}

# consume_with_pkg_config PREFIX BUILD_DIR: the same program, compiled with nothing but the
# flags `pkg-config --cflags --libs mp` gives for the mp.pc in PREFIX.
consume_with_pkg_config() {
  local flags=()
  # PKG_CONFIG_LIBDIR, not _PATH: only this prefix, never an mp installed on the machine.
  read -r -a flags < <(PKG_CONFIG_LIBDIR="$1/lib/pkgconfig" pkg-config --cflags --libs mp)
  echo "pkg-config --cflags --libs mp: ${flags[*]}"
  mkdir -p "$2"
  # The warnings users turn on, with mp's headers included as their own (-I, not -isystem).
  ${CXX:-c++} -std=c++20 -O2 -Wall -Wextra -Wpedantic -Werror tests/consumer/main.cpp \
    -o "$2/mp_consumer" "${flags[@]}"
  "$2/mp_consumer"
  # mp-mpi.pc requires Open MPI's ompi-c.pc, found where pkg-config looks by default.
  if has_mpi "$1"; then
    local mpi_flags=() system_path
    system_path=$(pkg-config --variable pc_path pkg-config)
    read -r -a mpi_flags < <(PKG_CONFIG_LIBDIR="$1/lib/pkgconfig:$system_path" \
      pkg-config --cflags --libs mp-mpi)
    echo "pkg-config --cflags --libs mp-mpi: ${mpi_flags[*]}"
    ${CXX:-c++} -std=c++20 -O2 tests/consumer/mpi_main.cpp -o "$2/mp_mpi_consumer" "${mpi_flags[@]}"
    run_mpi "$2" "$2/mp_mpi_consumer"
  fi
}
step_fuzz() {
  if [[ ! -f tests/fuzz/CMakeLists.txt ]]; then
    echo "skipped: tests/fuzz/CMakeLists.txt does not exist yet"
    return 0
  fi
  cmake --preset fuzz
  cmake --build --preset fuzz
  local fuzzers=()
  mapfile -t fuzzers < <(find build/fuzz/tests/fuzz -maxdepth 1 -type f -executable \
    -name 'fuzz_*' 2>/dev/null | sort)
  if ((${#fuzzers[@]} == 0)); then
    echo "error: tests/fuzz builds no build/fuzz/tests/fuzz/fuzz_* executables" >&2
    return 1
  fi
  local tmp seconds=${MP_FUZZ_SECONDS:-20} fuzzer name work
  new_temp_dir tmp
  # The targets are built with -fno-sanitize-recover=all, so any report ends the run; these
  # make sure of it at run time too, with a stack trace.
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
  export ASAN_OPTIONS="halt_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  for fuzzer in "${fuzzers[@]}"; do
    name=$(basename "$fuzzer")
    work="$tmp/$name"
    mkdir -p "$work/corpus" "$work/artifacts"
    # A copy, so that the inputs libFuzzer adds do not land in the repository.
    if [[ -d tests/fuzz/corpus/${name#fuzz_} ]]; then
      cp -R "tests/fuzz/corpus/${name#fuzz_}/." "$work/corpus/"
    fi
    echo "-- $name: ${seconds} s from $(find "$work/corpus" -type f | wc -l) corpus inputs"
    # A sanitizer report fails the step even if the target somehow went on and exited 0.
    if ! (cd "$work" && "$OLDPWD/$fuzzer" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/" corpus >"$work/log" 2>&1) ||
      grep -qE 'runtime error:|==[0-9]+==ERROR: [A-Za-z]+Sanitizer' "$work/log"; then
      tail -n 60 "$work/log" >&2
      mkdir -p build/fuzz/artifacts
      cp -R "$work/artifacts/." build/fuzz/artifacts/
      echo "error: $name failed; its crashing inputs are in build/fuzz/artifacts/" >&2
      return 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$work/log" || true
  done
}

# Does process $1 carry this run's marker? Builtins only, so the scan starts no process.
carries_marker() {
  local entry
  while IFS= read -r -d '' entry; do
    [[ $entry == "MP_CHECK_RUN=$MP_CHECK_RUN" ]] && return 0
  done <"/proc/$1/environ"
  return 1
}

# Sets `parent` to the parent pid of process $1 (comm, in parentheses, may hold spaces).
read_parent() {
  local stat
  parent=
  read -r stat <"/proc/$1/stat"
  read -r _ parent _ <<<"${stat##*) }"
}

step_leftovers() {
  # The scan forks nothing, so every process it finds predates it.
  local pid dir parent strays=()
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if carries_marker "$pid" 2>/dev/null; then
      strays+=("$pid")
    elif read_parent "$pid" 2>/dev/null && [[ $parent == "$$" ]]; then
      strays+=("$pid")
    fi
  done
  local shm_now=() name new_shm=()
  mapfile -t shm_now < <(ls -A /dev/shm 2>/dev/null || true)
  declare -A before=()
  for name in "${shm_at_start[@]}"; do before[$name]=1; done
  for name in "${shm_now[@]}"; do
    [[ -n ${before[$name]+set} ]] || new_shm+=("$name")
  done

  local ok=1
  if ((${#strays[@]} > 0)); then
    ok=0
    echo "error: processes from this run are still alive (now killed):" >&2
    for pid in "${strays[@]}"; do
      echo "  pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || echo '(gone)')" >&2
    done
    kill -KILL "${strays[@]}" 2>/dev/null || true
  fi
  if ((${#new_shm[@]} > 0)); then
    ok=0
    echo "error: new entries in /dev/shm since the start of this run:" >&2
    printf '  /dev/shm/%s\n' "${new_shm[@]}" >&2
  fi
  local dirs_now=() new_dirs=()
  mapfile -t dirs_now < <(forkserver_dirs)
  declare -A dirs_before=()
  for name in "${forkserver_dirs_at_start[@]}"; do dirs_before[$name]=1; done
  for name in "${dirs_now[@]}"; do
    [[ -n ${dirs_before[$name]+set} ]] || new_dirs+=("$name")
  done
  if ((${#new_dirs[@]} > 0)); then
    ok=0
    echo "error: fork server socket directories left since the start of this run (now removed):" >&2
    printf '  %s\n' "${new_dirs[@]}" >&2
    rm -rf "${new_dirs[@]}"
  fi
  ((ok == 1)) && echo "no stray processes, no new /dev/shm entries or fork server directories"
  ((ok == 1))
}

seconds_since() {
  local now=${EPOCHREALTIME//[.,]/} then=${1//[.,]/}
  local tenths=$(((now - then) / 100000))
  echo "$((tenths / 10)).$((tenths % 10))"
}

passed=0
failed=0
timings=()
started=$EPOCHREALTIME
for step in "${steps[@]}"; do
  echo
  echo "==> [$((passed + 1))/${#steps[@]}] $step: ${describe[$step]}"
  step_start=$EPOCHREALTIME
  # A subshell, so that `set -e` holds inside the step and its traps and cd stay there.
  set +e
  (
    set -e
    trap 'rm -rf "${temp_dirs[@]}"' EXIT
    "step_$step"
  )
  status=$?
  set -e
  took=$(seconds_since "$step_start")
  timings+=("$(printf '  %-10s %8s s  %s' "$step" "$took" "$([[ $status == 0 ]] && echo passed || echo FAILED)")")
  if ((status == 0)); then
    passed=$((passed + 1))
    echo "<== $step: passed in $took s"
  else
    failed=$((failed + 1))
    echo "<== $step: FAILED (exit status $status) after $took s; stopping here" >&2
    break
  fi
done

echo
printf '%s\n' "${timings[@]}"
echo "  total      $(printf '%8s' "$(seconds_since "$started")") s"
echo "check: $passed passed, $failed failed"
((failed == 0))
