// SPDX-License-Identifier: MIT
// A worker rank dies (SIGKILL) while it runs a task. Run by CTest under
// mpirun in two ways:
//   - as Open MPI runs a job by default, which ends the whole job at once: the
//     test passes on mpirun's message naming the rank, within its timeout, and
//     fails if rank 0 prints anything (it waits on the future meanwhile);
//   - under `mpirun --enable-recovery`, where the job outlives the rank: the
//     dead rank's task must fail with mp::broken_process_pool (once the rank
//     has been silent past session_options::presumed_dead), the task on the
//     other rank must finish, and new tasks run on the rank left.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "mp/mpi.hpp"

namespace {

using namespace std::chrono_literals;

int die(int) {
  ::raise(SIGKILL);
  return 0;
}

int slow(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

int square(int x) {
  return x * x;
}

}  // namespace

int main(int argc, char** argv) {
  mp::mpi::session mpi(argc, argv, {.heartbeat = 100ms, .presumed_dead = 2s});
  {
    mp::mpi::pool_executor executor;
    auto other = executor.submit(slow, 300);
    auto dying = executor.submit(die, 0);
    try {
      (void)dying.result();
      std::printf("finished: the dying task returned\n");
    } catch (const mp::broken_process_pool& e) {
      std::printf("the dying task failed: %s\n", e.what());
    }
    std::printf("the other task returned %d\n", other.result());
    int sum = 0;
    for (int i = 0; i < 10; ++i) sum += executor.submit(square, i).result();
    std::printf("later tasks returned %d\n", sum);
  }
  // A new executor takes the rank left.
  mp::mpi::pool_executor again;
  std::printf("a new executor has %u worker(s) and returned %d\n", again.max_workers(),
              again.submit(square, 7).result());
  return 0;
}
