// SPDX-License-Identifier: MIT
// A program started alone (no mpirun: a session of one rank) whose executor
// starts its two workers with MPI_Comm_spawn, twice in a row; each spawned
// rank serves from its own session and exits with its executor. Run by CTest,
// which passes it on its output.
#include <unistd.h>

#include <cstdio>
#include <set>
#include <vector>

#include "mp/mpi.hpp"

namespace {

int worker_pid(int) {
  return static_cast<int>(::getpid());
}

int square(int x) {
  return x * x;
}

}  // namespace

int main(int argc, char** argv) {
  mp::mpi::session mpi(argc, argv);
  std::printf("ranks in the job: %d\n", mpi.size());
  for (int round = 1; round <= 2; ++round) {
    mp::mpi::pool_executor executor({.spawn = 2});
    std::set<int> pids;
    std::vector<mp::future<int>> futures;
    for (int i = 0; i < 20; ++i) futures.push_back(executor.submit(worker_pid, i));
    for (auto& f : futures) pids.insert(f.result());
    int sum = 0;
    for (const int r : executor.map(square, std::vector<int>{1, 2, 3, 4}, {}, 2)) sum += r;
    std::printf("round %d: %u spawned workers, %s, map %d\n", round, executor.max_workers(),
                !pids.contains(static_cast<int>(::getpid())) ? "none of them this process"
                                                             : "this process among them",
                sum);
  }
  return 0;
}
