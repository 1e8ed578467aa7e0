// SPDX-License-Identifier: MIT
// The pool engine's inside: what travels between the engine and its workers,
// and the one interface every kind of worker implements.
//
//   pool, thread_pool, process_pool_executor   (include/mp/pool.hpp, executor.hpp)
//        |
//   pool_core::impl  (src/pool.cpp): tasks, dispatch, deadlines, cancel,
//        |           replacing dead workers, the pool's thread
//   worker_backend / worker_site  (this header)
//        |                      |
//   process workers             thread workers
//   (src/pool_process_workers.cpp: a queue per worker, one shared result
//    queue, descriptors over a socket; any start method)
//                               (src/pool_thread_workers.cpp: plain memory)
//
// A third backend (ranks of an MPI job) implements the same two classes.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mp/detail/byte_buffer.hpp"
#include "mp/detail/codec.hpp"
#include "mp/pool.hpp"
#include "remote_errors.hpp"

namespace mp::detail {

/// Bytes on the wire as a std::vector<std::byte>: the count, then the bytes.
template <class Archive>
void save_bytes(Archive& archive, std::span<const std::byte> bytes) {
  const auto count = static_cast<std::uint64_t>(bytes.size());
  archive.save_binary(&count, sizeof count);
  archive.save_binary(bytes.data(), bytes.size());
}
template <class Archive>
void load_bytes(Archive& archive, byte_buffer& bytes) {
  std::uint64_t count = 0;
  archive.load_binary(&count, sizeof count);
  if (count > archive.remaining()) throw_bad_length(count, 1, archive.remaining());
  bytes.resize(static_cast<std::size_t>(count));
  archive.load_binary(bytes.data(), bytes.size());
}

/// A task as the engine keeps it until its result is in: the encoded call,
/// shared with whatever carries it to a worker (no copy for a thread), and
/// the pool's copies of the descriptors its arguments refer to.
struct job {
  std::uint64_t id = 0;
  std::shared_ptr<const byte_buffer> payload;
  task_handles handles;
};

/// A task on its way to a worker process (id 0: stop). Sent from `outgoing`,
/// received into `payload`.
struct pool_task {
  std::uint64_t id = 0;
  std::uint32_t slot = 0;  // in the worker's ring of task states
  std::uint32_t fds = 0;   // descriptors that come beside it, over the handle channel
  std::span<const std::byte> outgoing;
  byte_buffer payload;
  template <class Archive>
  void save(Archive& archive) const {
    archive(id, slot, fds);
    save_bytes(archive, outgoing);
  }
  template <class Archive>
  void load(Archive& archive) {
    archive(id, slot, fds);
    load_bytes(archive, payload);
  }
};

/// The tasks the pool hands a worker process at once, as one queue record:
/// a worker is refilled in bursts, and a record per task would cost a lock
/// and the hand-over of a few cache lines each.
struct pool_task_batch {
  std::span<const pool_task> outgoing;  // when sending
  std::vector<pool_task> tasks;         // when received: the first `count` (kept for their buffers)
  std::size_t count = 0;
  template <class Archive>
  void save(Archive& archive) const {
    archive(static_cast<std::uint32_t>(outgoing.size()));
    for (const pool_task& t : outgoing) archive(t);
  }
  template <class Archive>
  void load(Archive& archive) {
    std::uint32_t n = 0;
    archive(n);
    // Each task takes at least its id, slot, descriptor count and length.
    constexpr std::size_t least = 8 + 4 + 4 + 8;
    if (n > archive.remaining() / least) throw_bad_length(n, least, archive.remaining());
    if (tasks.size() < n) tasks.resize(n);
    count = 0;
    for (std::uint32_t i = 0; i < n; ++i, ++count) archive(tasks[i]);
  }
};

/// Why a task failed, as its result says.
enum class task_failure : std::uint8_t {
  none,
  raised,       // the task threw: `fault` says what
  worker_died,  // its worker died while it ran
  timed_out,    // it ran past its time limit
  cancelled,    // cancelled before it started, or stopped while it ran
  terminated,   // the pool was terminated first
  broken,       // the pool is broken (a worker's initializer failed)
  refused,      // the engine could not hand it to a worker
};
inline constexpr auto last_task_failure = task_failure::refused;

/// A worker's result: the encoded return value or the failure (`fault`, on
/// the wire only for a failure). The result with id 0 says the worker's
/// initializer failed, with `fault`.
struct pool_result {
  std::uint64_t id = 0;
  task_failure failure = task_failure::none;
  bool skipped = false;  // cancelled (or moved to another worker) before it started
  byte_buffer value;     // the encoded return value
  remote_fault fault;    // when raised (or the engine's message in fault.message)
  template <class Archive>
  void save(Archive& archive) const {
    archive(id, static_cast<std::uint8_t>(failure), skipped);
    save_bytes(archive, value.span());
    if (failure != task_failure::none)  // (most results: a value, and no fault)
      archive(fault.type, fault.message, fault.pid, fault.code, fault.category);
  }
  template <class Archive>
  void load(Archive& archive) {
    std::uint8_t kind = 0;
    archive(id, kind, skipped);
    if (kind > static_cast<std::uint8_t>(last_task_failure))
      throw decode_error("a pool result names failure kind " + std::to_string(kind) +
                         ", which does not exist");
    failure = static_cast<task_failure>(kind);
    load_bytes(archive, value);
    if (failure != task_failure::none)
      archive(fault.type, fault.message, fault.pid, fault.code, fault.category);
    else
      fault = {};
  }
};

/// The states of the tasks a worker holds, in memory it shares with the pool:
/// the pool marks a slot queued when it hands the worker a task, and the
/// worker marks it running before it starts the task, unless the pool took
/// the task back first (cancelled, or moved to an idle worker). One
/// compare-exchange decides, so the pool always knows whether a task it
/// handed out has started.
///
/// A task's time limit counts from when its worker marks it running, which
/// the worker records beside the state (steady_clock is CLOCK_MONOTONIC, the
/// same in every process): a worker still starting (a spawned one under a
/// sanitizer, or one whose initializer is slow) must not use up the time of
/// the task it has not begun.
struct task_ring {
  // Tasks a worker holds at most (a backend may hold fewer, and the pool
  // gives it fewer large ones): enough that a worker fed faster than it runs
  // never sleeps between tasks, and the pool's thread refills it in bursts
  // rather than a wake-up per task. (128, not 32: map with chunksize 1 ran
  // 15% faster on processes and twice as fast on threads, measured.)
  static constexpr std::uint32_t depth = 128;
  enum : std::uint64_t { queued = 1, running = 2, cancelled = 3 };
  static constexpr std::uint64_t encode(std::uint64_t id, std::uint64_t state) {
    return id << 2 | state;
  }
  std::atomic<std::uint64_t> slot[depth];
  std::atomic<std::int64_t> started[depth];  // steady_clock nanoseconds, stored before `running`
  std::atomic<std::uint32_t> ready;          // 1 once the initializer has returned
  // Where the worker runs, for spreading busy workers over CPUs (see
  // spread_over_cpus): 1 + the CPU it began its last task on (0: none yet),
  // and since when it runs the task it runs now (0: none).
  std::atomic<std::int32_t> cpu;
  std::atomic<std::int64_t> running_since;
};

/// Runs the initializer of a worker; if it throws, puts the result that says
/// so through `put` and returns false.
template <class Put>
bool initialize_worker(const bound_call& initializer, task_ring& ring, Put&& put) {
  if (initializer) {
    pool_result failed;
    try {
      initializer();
    } catch (...) {
      failed.failure = task_failure::raised;
      capture_fault(failed.fault);
    }
    if (failed.failure != task_failure::none) {
      put(failed);
      return false;
    }
  }
  ring.ready.store(1, std::memory_order_release);
  return true;
}

/// Runs task `id` from slot `slot` of `ring` into `result`, after marking it
/// running; false, with `result.skipped`, if the pool took it back first.
MP_EXPORT bool run_task(task_ring& ring, std::uint64_t id, std::uint32_t slot,
                        std::span<const std::byte> payload, handle_source* handles,
                        pool_result& result, byte_buffer& scratch);

/// A busy worker's place, for spread_over_cpus.
struct worker_place {
  int cpu = -1;              // where it runs
  std::vector<int> allowed;  // where it may run
};

/// Which busy workers to move to which CPU, as (index, cpu), so that no two
/// of them share a CPU while another CPU they may use has none of them. Left
/// alone, the scheduler of a busy machine often wakes workers onto one CPU
/// (every other one is running something, if only a low-priority loop) and
/// takes a hundred milliseconds or more to part them: a short CPU-bound map
/// then runs at the speed of one CPU.
MP_EXPORT std::vector<std::pair<std::size_t, int>> spread_over_cpus(
    std::span<const worker_place> workers);

/// One worker: a place that runs tasks, as the engine sees it. Used under
/// the engine's lock, from one thread at a time.
class worker_site {
 public:
  virtual ~worker_site() = default;
  /// The states of the tasks it holds.
  virtual task_ring& ring() = 0;
  /// Queues `task`, in `slot` of the ring, behind those it holds. False if
  /// the worker has gone (it is noticed and replaced, and the task, not
  /// started, goes elsewhere). Throws for a failure that is the task's own.
  /// The task may wait in the site until flush().
  virtual bool deliver(const job& task, std::uint32_t slot) = 0;
  /// Sends what deliver() kept back, as one message.
  virtual void flush() {}
  /// Whether it still runs.
  virtual bool alive() = 0;
  /// Stops it at once and waits for it; false if it cannot be stopped (a
  /// thread): the engine then abandons its running task.
  virtual bool stop_now() = 0;
  /// Asks it to exit once it has run what it holds.
  virtual void finish() = 0;
  /// Waits until it has exited.
  virtual void join() = 0;
  /// For messages: "PoolWorker-1, pid 123".
  virtual std::string who() = 0;
  /// For messages, once it has gone: "was killed by signal 9 (SIGKILL)".
  virtual std::string how_it_ended() = 0;
  /// Whether it ended as a process killed from outside ends (SIGKILL,
  /// SIGTERM, SIGINT, SIGHUP): not a failure of its own start.
  virtual bool killed_from_outside() = 0;
  /// The thread that runs its tasks, on this machine, for moving it to
  /// another CPU (see spread_over_cpus); 0 if there is none or it is not
  /// known yet.
  virtual pid_t task_thread() { return 0; }
};

/// A kind of worker: makes them and brings their results in.
class worker_backend {
 public:
  virtual ~worker_backend() = default;
  /// Starts worker number `index` (from 0).
  virtual std::unique_ptr<worker_site> start(std::size_t index) = 0;
  /// Takes the next result into `out`, waiting at most `wait` for one.
  virtual bool next_result(pool_result& out, std::chrono::nanoseconds wait) = 0;
  /// Whether its workers are processes (dead ones fail with
  /// mp::broken_process_pool; a broken pool is a broken_process_pool).
  virtual bool processes() const = 0;
  /// Whether worker `index`, gone, can be started again: not a rank of an
  /// MPI job that died. The pool goes on without it, and is broken once it
  /// has no worker left.
  virtual bool replaceable(std::size_t index) { return static_cast<void>(index), true; }
  /// How many tasks a worker of this kind holds at most (up to task_ring::depth).
  virtual std::uint32_t depth() const { return task_ring::depth; }
};

std::unique_ptr<worker_backend> make_process_workers(const pool_options& options);
std::unique_ptr<worker_backend> make_thread_workers(const pool_options& options);

/// The exception a failed task's result stands for.
std::exception_ptr failure_exception(task_failure failure, const remote_fault& fault,
                                     bool processes);

}  // namespace mp::detail
