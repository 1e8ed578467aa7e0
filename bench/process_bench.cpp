// SPDX-License-Identifier: MIT
// Micro-benchmarks of mp::process: the cost of starting and joining a child
// that does nothing, next to bare fork + waitpid for reference.
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include "mp/process.hpp"

namespace {

void BM_process_start_join(benchmark::State& state) {
  for (auto _ : state) {
    mp::process p([] {});
    p.start();
    p.join();
    if (p.exitcode() != 0) state.SkipWithError("child failed");
  }
}
// The work is in another process and in the kernel, so CPU time of this
// thread says little: report wall-clock time.
BENCHMARK(BM_process_start_join)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_fork_waitpid(benchmark::State& state) {
  for (auto _ : state) {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid || status != 0)
      state.SkipWithError("fork/waitpid failed");
  }
}
BENCHMARK(BM_fork_waitpid)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
