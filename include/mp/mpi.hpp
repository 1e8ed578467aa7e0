// SPDX-License-Identifier: MIT
// The executor and the pool on the ranks of an MPI job (mpi4py.futures'
// MPIPoolExecutor and MPICommExecutor), for work that outgrows one machine.
// Library target mp::mpi, built where CMake finds MPI (Open MPI).
//
// The SPMD idiom: every rank runs the same program; rank 0 runs its logic and
// the other ranks serve tasks, entering through the session at the top of
// main, and leaving when it ends:
//
//   int main(int argc, char** argv) {
//     mp::mpi::session mpi(argc, argv);  // ranks other than 0 serve here, then exit
//     mp::mpi::pool_executor executor;   // every other rank is a worker
//     std::cout << executor.submit(square, 7).result() << '\n';
//   }
//
// Tasks travel as they do to spawned workers: by code identity (the same
// binary on every rank, checked when the session starts) and the codec.
// See docs/mpi.md.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "mp/errors.hpp"
#include "mp/executor.hpp"
#include "mp/export.hpp"
#include "mp/pool.hpp"

namespace mp::mpi {

/// An MPI call failed: the message has MPI's own words for why.
class MP_EXPORT mpi_error : public process_error {
 public:
  using process_error::process_error;
};

/// How a rank with nothing to do waits for a message: the trade between the
/// latency of the next task and the CPU an idle rank burns.
struct polling {
  /// After each message, how long a rank (and the client's collecting thread)
  /// keeps polling without sleeping: a task that arrives meanwhile starts at
  /// MPI's own latency, but an idle rank uses a whole core for this long.
  /// Back-to-back tasks keep it polling.
  std::chrono::microseconds spin = std::chrono::milliseconds(5);
  /// Past the spin, the sleep between two polls, growing from 50 µs to this:
  /// what an idle rank costs (a wake-up and a probe per `sleep`: about 2% of
  /// a core at 1 ms), and the most a task after a quiet spell waits.
  std::chrono::microseconds sleep = std::chrono::milliseconds(1);
};

struct session_options {
  polling wait{};
  /// How often a worker rank serving an executor says it is alive, from a
  /// thread of its own (so also while it runs a long task).
  std::chrono::milliseconds heartbeat = std::chrono::milliseconds(500);
  /// A worker rank silent this long is taken for dead: its tasks fail with
  /// mp::broken_process_pool and the executor goes on without it. This
  /// matters only where the job outlives a dead rank (mpirun
  /// --enable-recovery); by default Open MPI ends the whole job at once.
  std::chrono::milliseconds presumed_dead = std::chrono::seconds(10);
};

/// The MPI side of a program: initializes MPI (MPI_THREAD_MULTIPLE where the
/// library gives it, at least MPI_THREAD_SERIALIZED) and checks that every
/// rank runs the same build of the program (throwing mp::mpi::mpi_error,
/// naming the ranks, if not). On rank 0 it returns; on every other rank it
/// serves the executors and pools of rank 0 and, when rank 0's session ends,
/// finalizes MPI and exits the process with status 0: nothing after it in
/// main runs there. A program started alone (one rank, no mpirun) gets a
/// session of one rank, whose executors start their workers with
/// MPI_Comm_spawn (executor_options::spawn); a rank so spawned serves here too.
///
/// One per program, made first thing in main and alive while executors and
/// pools are; its destructor (rank 0) ends the job's service and finalizes MPI.
class MP_EXPORT session {
 public:
  [[gnu::noinline]] session(int& argc, char**& argv, session_options options = {});
  session(const session&) = delete;
  session& operator=(const session&) = delete;
  ~session();

  /// This process's rank in MPI_COMM_WORLD (0 wherever this returns).
  int rank() const noexcept;
  /// The ranks of the job (MPI_COMM_WORLD's size).
  int size() const noexcept;
  /// Worker ranks no executor or pool holds now.
  int free_workers() const;
};

struct executor_options {
  /// Worker ranks to use, of those free; 0: all of them. Asking for more than
  /// are free is an mp::usage_error, as is a job with none free and no spawn.
  unsigned max_workers = 0;
  /// Python's initializer and initargs, run once on each worker rank as the
  /// executor takes it (it must be portable: see mp::bound_call). If it
  /// throws, the executor is broken (mp::broken_process_pool).
  bound_call initializer{};
  /// When the job has no free worker rank (a program started alone), start
  /// this many with MPI_Comm_spawn: the same program, which serves from its
  /// session. 0: none (then mp::usage_error). Open MPI needs room for them:
  /// on a small machine set OMPI_MCA_rmaps_base_oversubscribe=1.
  unsigned spawn = 0;
};

namespace detail {
/// The engine of an executor or pool on worker ranks (src/mpi/mpi.cpp).
MP_EXPORT std::shared_ptr<mp::detail::pool_core> make_rank_pool(const executor_options& options,
                                                                destroy_action on_destroy);
}  // namespace detail

/// mpi4py.futures' MPIPoolExecutor: mp::process_pool_executor's interface
/// (submit, map with chunksize and timeout, shutdown, futures that work with
/// mp::wait and mp::as_completed) on worker ranks. A task that throws gives
/// its exception to its future as its own type. A task past its timeout (via
/// map's timeout) fails at once, but its rank runs it to the end: a rank is
/// not killed. Arguments that hold descriptors (queues, locks, connections)
/// cannot reach another rank: such a task fails with mp::usage_error.
class pool_executor : public process_pool_executor {
 public:
  explicit pool_executor(executor_options options = {})
      : process_pool_executor(detail::make_rank_pool(options, destroy_action::join)) {}
  explicit pool_executor(unsigned max_workers)
      : pool_executor(executor_options{.max_workers = max_workers}) {}
};

/// mp::pool's interface (map, imap, imap_unordered, starmap, apply_async...)
/// on worker ranks. The destructor finishes the submitted tasks, as
/// mp::pool's.
class pool : public mp::pool {
 public:
  explicit pool(executor_options options = {})
      : mp::pool(detail::make_rank_pool(options, destroy_action::join)) {}
  explicit pool(unsigned processes) : pool(executor_options{.max_workers = processes}) {}
};

}  // namespace mp::mpi
