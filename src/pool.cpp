// SPDX-License-Identifier: MIT
// The pool's engine: worker processes, dispatch, and the thread that collects
// results and notices dead workers.
//
// Each worker has a queue of its own, holding up to task_ring::depth tasks so
// that it never waits for the pool between two of them, and a ring in shared
// memory that says which of them it has started. When a worker dies, the task
// it started fails with mp::worker_died and the rest go to other workers:
// nothing else is lost. An idle worker takes queued tasks from a busy one the
// same way. Results come back over one shared queue. The pool's thread waits
// on it, and at least every 20 ms looks at the workers' liveness.
#include <cxxabi.h>
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <memory>
#include <stdexcept>
#include <thread>
#include <typeinfo>
#include <unordered_map>

#include "mp/connection.hpp"
#include "mp/detail/shared_region.hpp"
#include "mp/pool.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "os/system.hpp"

namespace mp {

namespace detail {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

constexpr auto liveness_period = 20ms;

std::string demangled(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(type.name());
}

// The states of the tasks a worker holds, in memory it shares with the pool:
// the pool marks a slot queued when it hands the worker a task, and the worker
// marks it running before it starts the task, unless the pool took the task
// back first (cancelled). One compare-exchange decides, so the pool always
// knows whether a task it handed out has started.
//
// A task's time limit counts from when its worker marks it running, which
// the worker records beside the state (steady_clock is CLOCK_MONOTONIC, the
// same in every process): a worker still starting (a spawned one under a
// sanitizer, or one whose initializer is slow) must not use up the time of
// the task it has not begun.
struct task_ring {
  static constexpr std::uint32_t depth = 4;  // tasks a worker holds at most
  enum : std::uint64_t { queued = 1, running = 2, cancelled = 3 };
  static constexpr std::uint64_t encode(std::uint64_t id, std::uint64_t state) {
    return id << 2 | state;
  }
  std::atomic<std::uint64_t> slot[depth];
  std::atomic<std::int64_t> started[depth];  // steady_clock nanoseconds, stored before `running`
};

// What a worker's handle channel carries: the descriptors of the resources
// among one task's arguments, sent just before the task is queued for it, so
// they wait on the channel when the worker takes the task.
struct handle_message {
  std::uint64_t id = 0;
  const std::vector<unique_fd>* outgoing = nullptr;  // when sending
  std::vector<unique_fd> fds;                        // when received
  template <class Archive>
  void save(Archive& archive) const {
    archive(id, static_cast<std::uint32_t>(outgoing->size()));
    for (const unique_fd& fd : *outgoing) archive(archive.add_handle(fd.get()));
  }
  template <class Archive>
  void load(Archive& archive) {
    std::uint32_t count = 0;
    archive(id, count);
    if (count > archive.remaining()) throw_bad_length(count, 1, archive.remaining());
    fds.clear();
    for (std::uint32_t i = 0; i < count; ++i) {
      std::uint32_t index = 0;
      archive(index);
      fds.push_back(archive.take_handle(index));
    }
  }
};

// A worker: runs the tasks of its queue until the stop task, or until it has
// taken `max_tasks` (0: no limit). Before it runs a task it marks the task's
// slot running; a task the pool took back first (cancelled, or moved to an
// idle worker) it skips, and says so. The descriptors a task's arguments
// need come over `channel`.
void worker_main(mp::queue<pool_task> tasks, mp::queue<pool_result> results,
                 const shared_object<task_ring>& ring, const bound_call& initializer,
                 unsigned max_tasks, mp::connection& channel) {
  if (initializer) initializer();
  // Reused from task to task, with their buffers.
  pool_task task;
  pool_result result;
  byte_buffer out;
  handle_source handles;
  for (unsigned done = 0; max_tasks == 0 || done < max_tasks; ++done) {
    tasks.get_into(task);
    if (task.id == 0) return;
    result.id = task.id;
    result.failed = false;
    result.skipped = false;
    result.value.clear();
    result.type.clear();
    result.message.clear();
    if (task.fds != 0) {
      // Taken even for a task skipped below, so the next task's come next.
      // The pool sent them before it queued the task: they are here.
      auto message = channel.recv<handle_message>();
      if (message.id != task.id || message.fds.size() != task.fds)
        throw decode_error("a pool worker's handle channel is out of step with its tasks");
      handles.fds = std::move(message.fds);
      handles.taken.clear();
    }
    auto expected = task_ring::encode(task.id, task_ring::queued);
    if (task.slot < task_ring::depth)
      ring->started[task.slot].store(clock::now().time_since_epoch().count(),
                                     std::memory_order_relaxed);
    if (task.slot >= task_ring::depth ||
        !ring->slot[task.slot].compare_exchange_strong(
            expected, task_ring::encode(task.id, task_ring::running), std::memory_order_acq_rel)) {
      result.skipped = true;
      handles.fds.clear();  // closed now: a connection among them sees its peer go
      results.put(result);
      continue;
    }
    try {
      out.clear();
      invoke_call(task.payload.span(), task.fds != 0 ? &handles : nullptr, &out);
      std::swap(result.value, out);
    } catch (const std::exception& e) {
      result.failed = true;
      result.type = demangled(typeid(e));
      result.message = e.what();
    } catch (...) {
      result.failed = true;
      result.type = "unknown";
      result.message = "a task threw something that is not a std::exception";
    }
    handles.fds.clear();  // any the call did not take
    results.put(result);
  }
}

// A worker process: worker_main in a process of its own, which takes and
// returns buffers of the same sizes over and over. It keeps freed memory for
// reuse rather than unmapping it and faulting fresh pages in for the next
// task (glibc unmaps every freed block over 128 KiB at first, and trims the
// heap's top beyond 128 KiB).
void worker_process_main(mp::queue<pool_task> tasks, mp::queue<pool_result> results,
                         const shared_object<task_ring>& ring, const bound_call& initializer,
                         unsigned max_tasks, mp::connection& channel) {
  ::mallopt(M_MMAP_THRESHOLD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
  worker_main(std::move(tasks), std::move(results), ring, initializer, max_tasks, channel);
}

// A worker process started by spawn or forkserver: its initializer arrives encoded.
void worker_spawn_main(mp::queue<pool_task> tasks, mp::queue<pool_result> results,
                       const shared_object<task_ring>& ring, bound_call initializer,
                       unsigned max_tasks, mp::connection& channel) {
  worker_process_main(std::move(tasks), std::move(results), ring, initializer, max_tasks, channel);
}

std::string describe_end(std::optional<int> exitcode) {
  if (!exitcode) return "ended";
  if (*exitcode < 0) {
    const char* name = ::sigabbrev_np(-*exitcode);
    return "was killed by signal " + std::to_string(-*exitcode) +
           (name != nullptr ? std::string(" (SIG") + name + ")" : std::string());
  }
  return "exited with code " + std::to_string(*exitcode);
}

}  // namespace

task_handles copy_handles(const handle_sink& sink) {
  if (sink.fds.size() > max_handles)
    throw process_error("a task's arguments hold " + std::to_string(sink.fds.size()) +
                        " descriptors; a task can carry at most " + std::to_string(max_handles));
  auto copies = std::make_shared<std::vector<unique_fd>>();
  copies->reserve(sink.fds.size());
  for (const int fd : sink.fds) copies->push_back(os::duplicate(fd));
  return copies;
}

std::exception_ptr remote_exception(const std::string& type, const std::string& message) {
  // The standard exceptions and mp's own come back as themselves.
  if (type == "std::runtime_error") return std::make_exception_ptr(std::runtime_error(message));
  if (type == "std::logic_error") return std::make_exception_ptr(std::logic_error(message));
  if (type == "std::invalid_argument")
    return std::make_exception_ptr(std::invalid_argument(message));
  if (type == "std::domain_error") return std::make_exception_ptr(std::domain_error(message));
  if (type == "std::length_error") return std::make_exception_ptr(std::length_error(message));
  if (type == "std::out_of_range") return std::make_exception_ptr(std::out_of_range(message));
  if (type == "std::range_error") return std::make_exception_ptr(std::range_error(message));
  if (type == "std::overflow_error") return std::make_exception_ptr(std::overflow_error(message));
  if (type == "std::underflow_error") return std::make_exception_ptr(std::underflow_error(message));
  if (type == "mp::process_error") return std::make_exception_ptr(process_error(message));
  if (type == "mp::decode_error") return std::make_exception_ptr(decode_error(message));
  if (type == "mp::timeout_error") return std::make_exception_ptr(timeout_error(message));
  if (type == "mp::worker_died") return std::make_exception_ptr(worker_died(message));
  if (type == "mp::usage_error") return std::make_exception_ptr(usage_error(message));
  return std::make_exception_ptr(remote_error(type, message));
}

struct pool_core::impl {
  // One task a worker holds: running, or queued behind the running one.
  struct held_task {
    std::uint64_t id;
    std::uint32_t slot;
    // Cancelled or moved to another worker before it started: the worker
    // skips it, and its result (an acknowledgement) is dropped.
    bool skipped = false;
    // Failed already (a thread pool's task past its timeout): its result is dropped.
    bool abandoned = false;
    byte_buffer payload;  // to hand it to another worker
    task_handles handles;
  };
  struct worker {
    mp::queue<pool_task> tasks;
    detail::shared_object<task_ring> ring = detail::shared_object<task_ring>::make();
    mp::connection channel;  // the descriptors of tasks' arguments go this way
    mp::process process;     // or, in a thread pool:
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> exited;
    std::deque<held_task> held;  // in the order the worker runs them
    std::uint32_t next_slot = 0;
    std::uint64_t current = 0;  // the first held task not skipped: running or about to
    std::uint32_t current_slot = 0;
    std::chrono::nanoseconds limit = no_limit;  // of `current`, from when the worker starts it
    bool cancelled = false;                     // `current` was cancelled while it ran: stop it now
    std::uint64_t doomed = 0;                   // a running task cancelled with kill_running
    unsigned given = 0;                         // tasks handed to it
  };
  struct task_entry {
    completion done;
    std::chrono::nanoseconds limit;
    std::function<void()> started;
  };

  impl(pool_options options_in, bool threads_in)
      : options(std::move(options_in)),
        threads(threads_in),
        method(options.method.value_or(get_start_method())) {
    if (!threads && method != start_method::fork && options.initializer &&
        !options.initializer.portable())
      throw usage_error("a pool's initializer cannot travel to workers started by " +
                        std::string(to_string(method)) +
                        ": it captures state or takes arguments the codec cannot encode; pass a "
                        "function or capture-less lambda and its arguments, {init, args...}");
  }
  ~impl() {
    for (auto& w : workers)
      if (w && w->thread.joinable()) w->thread.join();
  }

  pool_options options;
  bool threads;
  start_method method;  // of the worker processes
  std::mutex mutex;
  mp::queue<pool_result> results;
  std::vector<std::unique_ptr<worker>> workers;
  std::deque<pool_task> pending;
  std::unordered_map<std::uint64_t, task_entry> waiting;  // by task id
  std::uint64_t next_id = 1;
  bool closed = false;
  bool terminated = false;
  std::thread thread;
  std::vector<std::pair<completion, pool_result>> ready;  // to call outside the mutex
  std::vector<pool_result> spare;  // results done with, for their buffers (pool's thread)

  void start_worker(std::size_t index) {
    if (workers[index] && workers[index]->thread.joinable()) workers[index]->thread.join();
    auto w = std::make_unique<worker>();
    auto ends = mp::pipe();
    w->channel = std::move(ends.first);
    if (threads) {
      w->exited = std::make_shared<std::atomic<bool>>(false);
      w->thread = std::thread([tasks = w->tasks, out = results, ring = w->ring,
                               init = options.initializer, max = options.maxtasksperchild,
                               exited = w->exited, channel = std::move(ends.second)]() mutable {
        try {
          worker_main(tasks, out, ring, init, max, channel);
        } catch (...) {
          // An initializer that threw: the thread ends and is replaced.
        }
        exited->store(true, std::memory_order_release);
      });
      workers[index] = std::move(w);
      return;
    }
    const process_options how{.name = "PoolWorker-" + std::to_string(index + 1),
                              .daemon = true,
                              .on_destroy = destroy_action::kill,
                              .method = method};
    if (method != start_method::fork)
      w->process =
          mp::process(how, &worker_spawn_main, w->tasks, results, w->ring, options.initializer,
                      options.maxtasksperchild, std::move(ends.second));
    else
      w->process =
          mp::process(how, &worker_process_main, w->tasks, results, w->ring, options.initializer,
                      options.maxtasksperchild, std::move(ends.second));
    w->process.start();
    workers[index] = std::move(w);
  }

  // A worker that has had its share of tasks exits on its own after the last.
  bool spent(const worker& w) const {
    return options.maxtasksperchild != 0 && w.given >= options.maxtasksperchild;
  }

  static std::size_t live_count(const worker& w) {
    std::size_t n = 0;
    for (const auto& h : w.held) n += !h.skipped;
    return n;
  }

  // Under the mutex: after `w.held` changed, starts the clock of its new
  // current task (the estimate: it starts when the one before it ended).
  void track_current(worker& w) {
    std::uint64_t first = 0;
    for (const auto& h : w.held)
      if (!h.skipped) {
        first = h.id;
        w.current_slot = h.slot;
        break;
      }
    if (first != 0 && first == w.doomed) {  // cancelled while it runs
      w.current = first;
      w.cancelled = true;
      return;
    }
    if (first == w.current) return;
    w.current = first;
    w.cancelled = false;
    w.limit = no_limit;
    if (first == 0) return;
    const auto found = waiting.find(first);
    if (found == waiting.end()) return;
    w.limit = found->second.limit;
    if (found->second.started) found->second.started();
  }

  // When `w` must be stopped: at once for a task cancelled while it runs;
  // for a task with a limit, that long after the worker started it (never,
  // while it has not started: it has not used any of its time).
  static clock::time_point deadline(const worker& w) {
    if (w.current == 0) return clock::time_point::max();
    if (w.cancelled) return clock::time_point::min();
    if (w.limit == no_limit) return clock::time_point::max();
    const auto state = w.ring->slot[w.current_slot].load(std::memory_order_acquire);
    if (state != task_ring::encode(w.current, task_ring::running)) return clock::time_point::max();
    const clock::time_point started{
        clock::duration(w.ring->started[w.current_slot].load(std::memory_order_relaxed))};
    return started + w.limit;
  }

  // Under the mutex: hands `task` to `w`, queued behind what it holds: first
  // the descriptors its arguments need, over w's channel, then the task.
  void give(worker& w, pool_task&& task) {
    bool reached = true;
    task.fds = task.handles ? static_cast<std::uint32_t>(task.handles->size()) : 0;
    if (task.fds != 0) {
      try {
        w.channel.send(handle_message{task.id, task.handles.get(), {}});
      } catch (const std::system_error& e) {
        if (e.code().value() != EPIPE && e.code().value() != ECONNRESET) {
          fail(task.id, "std::system_error",
               std::string("sending the descriptors of the task's arguments to a worker: ") +
                   e.what());
          return;
        }
        // The worker has died: it is noticed and replaced, and the task, not
        // started, goes to another worker.
        reached = false;
      } catch (const std::exception& e) {
        fail(task.id, "mp::process_error",
             std::string("sending the descriptors of the task's arguments to a worker: ") +
                 e.what());
        return;
      }
    }
    task.slot = w.next_slot++ % task_ring::depth;
    w.ring->slot[task.slot].store(task_ring::encode(task.id, task_ring::queued),
                                  std::memory_order_release);
    ++w.given;
    if (reached) w.tasks.put(task);
    w.held.push_back(held_task{task.id, task.slot, false, false, std::move(task.payload),
                               std::move(task.handles)});
    track_current(w);
  }

  // Under the mutex: takes back a task `w` holds but has not started, so it
  // never runs there. False if it has started.
  static bool take_back(worker& w, held_task& h) {
    auto expected = task_ring::encode(h.id, task_ring::queued);
    if (!w.ring->slot[h.slot].compare_exchange_strong(
            expected, task_ring::encode(h.id, task_ring::cancelled), std::memory_order_acq_rel))
      return false;
    h.skipped = true;
    return true;
  }

  // Hands pending tasks to the workers holding the fewest, up to
  // task_ring::depth each, so that a worker finds its next task in its queue
  // the moment it finishes one. A worker with nothing left to run takes a
  // queued task from the busiest one. Under the mutex.
  void dispatch() {
    while (!pending.empty()) {
      worker* best = nullptr;
      for (auto& w : workers)
        if (w->held.size() < task_ring::depth && !spent(*w) &&
            (best == nullptr || live_count(*w) < live_count(*best)))
          best = w.get();
      if (best == nullptr) return;
      pool_task task = std::move(pending.front());
      pending.pop_front();
      give(*best, std::move(task));
    }
    for (auto& idle : workers) {
      if (live_count(*idle) != 0 || idle->held.size() >= task_ring::depth || spent(*idle)) continue;
      // The busiest worker's last queued task, if it has not started.
      worker* busiest = nullptr;
      for (auto& w : workers)
        if (live_count(*w) > 1 && (busiest == nullptr || live_count(*w) > live_count(*busiest)))
          busiest = w.get();
      if (busiest == nullptr) return;
      for (auto h = busiest->held.rbegin(); h != busiest->held.rend(); ++h) {
        if (h->skipped || h->id == busiest->current) continue;
        if (!take_back(*busiest, *h)) break;  // it runs already, and so did all before it
        give(*idle, pool_task{h->id, 0, 0, std::move(h->payload), std::move(h->handles)});
        break;
      }
    }
  }

  void fail(std::uint64_t id, const char* type, std::string message) {
    auto found = waiting.find(id);
    if (found == waiting.end()) return;
    pool_result failure;
    failure.id = id;
    failure.failed = true;
    failure.type = type;
    failure.message = std::move(message);
    ready.emplace_back(std::move(found->second.done), std::move(failure));
    waiting.erase(found);
  }

  // Under the mutex: a worker's result (or acknowledgement of a skipped task)
  // arrived; it is the first task that worker holds.
  void finish(pool_result&& result) {
    for (auto& w : workers) {
      if (w->held.empty() || w->held.front().id != result.id ||
          w->held.front().skipped != result.skipped)
        continue;
      const bool abandoned = w->held.front().abandoned;
      w->held.pop_front();
      track_current(*w);
      if (result.skipped || abandoned) return;
      break;
    }
    auto found = waiting.find(result.id);
    if (found == waiting.end()) return;
    ready.emplace_back(std::move(found->second.done), std::move(result));
    waiting.erase(found);
  }

  // A result object to decode into, with the buffers of an earlier one.
  pool_result spare_result() {
    if (spare.empty()) return {};
    pool_result r = std::move(spare.back());
    spare.pop_back();
    return r;
  }

  void take_arrived() {
    for (pool_result r = spare_result(); results.try_get_into(r); r = spare_result())
      finish(std::move(r));
  }

  // Under the mutex: puts the tasks `w` holds (not skipped) for which
  // `requeue` says so back at the front of the pending tasks, in their order.
  template <class Requeue>
  void hand_back(worker& w, Requeue&& requeue) {
    std::deque<pool_task> again;
    for (auto& h : w.held)
      if (!h.skipped && requeue(h))
        again.push_back(pool_task{h.id, 0, 0, std::move(h.payload), std::move(h.handles)});
    pending.insert(pending.begin(), std::make_move_iterator(again.begin()),
                   std::make_move_iterator(again.end()));
  }

  // Under the mutex, once worker `w` is gone and its results are in: fails
  // the task it was running (the one its ring says started), with `type` and
  // `message`, and queues the tasks it had not started for other workers.
  void settle_lost_worker(worker& w, const char* type, const std::string& message) {
    hand_back(w, [&](held_task& h) {
      const auto state = w.ring->slot[h.slot].load(std::memory_order_acquire);
      if (state != task_ring::encode(h.id, task_ring::running)) return true;
      fail(h.id, type, message);
      return false;
    });
    w.held.clear();
  }

  // Under the mutex: kills workers past their task's deadline, replaces dead
  // and spent ones, failing the task a dead one held.
  void look_after_workers() {
    for (std::size_t i = 0; i < workers.size(); ++i) {
      worker& w = *workers[i];
      bool overdue = clock::now() >= deadline(w);
      if (overdue) {
        take_arrived();  // it may have finished just in time
        overdue = clock::now() >= deadline(w);
      }
      if (overdue && threads) {
        // A thread cannot be stopped: fail the task, let the thread run it to
        // the end (its result is dropped), and give what waits behind it to
        // other workers.
        const std::uint64_t id = w.current;
        fail(id, w.cancelled ? "mp::cancelled" : "mp::timeout_error",
             w.cancelled ? "the task was cancelled while it ran (its thread runs it to the end)"
                         : "the task ran past its timeout (its thread runs it to the end)");
        hand_back(w, [&](held_task& h) {
          if (h.id != id) return take_back(w, h);
          h.abandoned = true;
          return false;
        });
        w.limit = no_limit;
        w.cancelled = false;
        continue;
      }
      if (overdue) {
        // Out of time: stop the work itself, not only the wait for it.
        const bool cancelled = w.cancelled;
        w.process.kill();
        w.process.join();
        take_arrived();
        settle_lost_worker(
            w, cancelled ? "mp::cancelled" : "mp::timeout_error",
            cancelled ? "the task was cancelled while it ran; its worker was killed"
                      : "the task ran past its timeout; its worker was killed and replaced");
        start_worker(i);
        continue;
      }
      if (threads ? !w.exited->load(std::memory_order_acquire) : w.process.is_alive()) continue;
      take_arrived();  // its last results may have made it
      settle_lost_worker(w, "mp::worker_died",
                         "the pool worker running this task (" + w.process.name() + ", pid " +
                             std::to_string(w.process.pid().value_or(0)) + ") " +
                             describe_end(w.process.exitcode()) + "; the pool replaced it");
      start_worker(i);
    }
  }

  void call_ready(std::unique_lock<std::mutex>& lock) {
    auto calls = std::move(ready);
    ready.clear();
    lock.unlock();
    for (auto& [call, r] : calls) {
      call(std::move(r));
      // Kept for the next results (the completions only read them), unless
      // its buffer is large enough to be worth giving back.
      if (spare.size() < 64 && r.value.capacity() <= (std::size_t{16} << 20))
        spare.push_back(std::move(r));
    }
    lock.lock();
  }

  bool idle() const {
    for (const auto& w : workers)
      if (!w->held.empty()) return false;
    return true;
  }

  void run() {
    auto next_check = clock::now() + liveness_period;
    for (;;) {
      pool_result result = spare_result();
      const bool arrived = results.try_get_into(result, liveness_period);
      std::unique_lock lock(mutex);
      if (terminated) break;
      if (arrived) {
        finish(std::move(result));
        take_arrived();
      }
      if (clock::now() >= next_check) {
        next_check = clock::now() + liveness_period;
        look_after_workers();
      }
      dispatch();
      const bool done = closed && pending.empty() && waiting.empty() && idle();
      call_ready(lock);
      if (done) break;
    }
    std::unique_lock lock(mutex);
    if (terminated) {
      for (auto& w : workers)
        if (threads)
          w->tasks.put(pool_task{});  // a thread stops after the tasks it holds
        else
          w->process.kill();
      // Unfinished tasks fail rather than wait forever.
      std::vector<std::uint64_t> ids;
      for (const auto& entry : waiting) ids.push_back(entry.first);
      for (const auto id : ids)
        fail(id, "mp::process_error", "the pool was terminated before this task finished");
      pending.clear();
    } else {
      for (auto& w : workers)
        if (threads ? !w->exited->load() : w->process.is_alive())
          w->tasks.put(pool_task{});  // stop
    }
    call_ready(lock);
    lock.unlock();
    for (auto& w : workers)
      if (threads)
        w->thread.join();
      else
        w->process.join();
  }
};

pool_core::pool_core(pool_options options, bool threads)
    : processes_(options.processes == 0 ? mp::cpu_count() : options.processes),
      impl_(std::make_unique<impl>(std::move(options), threads)) {
  impl_->workers.resize(processes_);
  for (std::size_t i = 0; i < processes_; ++i) impl_->start_worker(i);
  impl_->thread = std::thread([this] {
    os::set_thread_name("mp-pool");  // as ps and perf show it
    impl_->run();
  });
}

pool_core::~pool_core() {
  close();
  join();
}

std::uint64_t pool_core::submit(task_payload payload, completion done, mp::timeout limit,
                                std::function<void()> started) {
  std::lock_guard lock(impl_->mutex);
  if (impl_->closed || impl_->terminated) throw usage_error("the pool is not running");
  const std::uint64_t id = impl_->next_id++;
  impl_->waiting.emplace(id,
                         impl::task_entry{std::move(done), limit.duration(), std::move(started)});
  impl_->pending.push_back(
      pool_task{id, 0, 0, std::move(payload.bytes), std::move(payload.handles)});
  impl_->dispatch();
  return id;
}

namespace {

pool_result cancellation(std::uint64_t id) {
  pool_result r;
  r.id = id;
  r.failed = true;
  r.type = "mp::cancelled";
  r.message = "the task was cancelled before it started";
  return r;
}

}  // namespace

bool pool_core::cancel(std::uint64_t id, bool kill_running) {
  std::unique_lock lock(impl_->mutex);
  const auto entry = impl_->waiting.find(id);
  if (entry == impl_->waiting.end()) return false;
  const auto settle = [&] {
    completion done = std::move(entry->second.done);
    impl_->waiting.erase(entry);
    lock.unlock();
    done(cancellation(id));
    return true;
  };
  auto& pending = impl_->pending;
  for (auto it = pending.begin(); it != pending.end(); ++it) {
    if (it->id != id) continue;
    pending.erase(it);
    return settle();
  }
  for (auto& w : impl_->workers) {
    for (auto& h : w->held) {
      if (h.id != id || h.skipped || h.abandoned) continue;
      // The current task counts as running from when its future says so,
      // but one to be killed is taken back if its worker has not started it.
      if ((w->current != id || kill_running) && impl::take_back(*w, h)) {  // not started
        impl_->track_current(*w);
        return settle();
      }
      if (!kill_running) return false;
      // Running: its deadline is now, so the pool's thread kills the worker
      // and fails the task at its next look (within 20 ms).
      // (If the result before it is still on its way, once it is current.)
      w->doomed = id;
      impl_->track_current(*w);
      return true;
    }
  }
  return false;
}

std::size_t pool_core::cancel_pending() {
  std::vector<std::pair<completion, std::uint64_t>> cancelled;
  {
    std::lock_guard lock(impl_->mutex);
    for (const auto& task : impl_->pending) {
      const auto entry = impl_->waiting.find(task.id);
      if (entry == impl_->waiting.end()) continue;
      cancelled.emplace_back(std::move(entry->second.done), task.id);
      impl_->waiting.erase(entry);
    }
    impl_->pending.clear();
  }
  for (auto& [done, id] : cancelled) done(cancellation(id));
  return cancelled.size();
}

void pool_core::close() {
  std::lock_guard lock(impl_->mutex);
  impl_->closed = true;
}

void pool_core::terminate() {
  std::lock_guard lock(impl_->mutex);
  impl_->closed = true;
  impl_->terminated = true;
}

void pool_core::join() {
  {
    std::lock_guard lock(impl_->mutex);
    if (!impl_->closed) throw usage_error("join() needs close() or terminate() first");
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace detail

progress_callback progress_bar() {
  using namespace std::chrono_literals;
  using clock = std::chrono::steady_clock;
  if (!os::is_terminal(STDERR_FILENO)) return [](std::size_t, std::size_t) {};
  struct bar {
    std::mutex mutex;
    clock::time_point start = clock::now();
    clock::time_point last_draw{};
  };
  auto state = std::make_shared<bar>();
  return [state](std::size_t done, std::size_t total) {
    std::lock_guard lock(state->mutex);
    const auto now = clock::now();
    const bool finished = total != 0 && done >= total;
    if (!finished && now - state->last_draw < 100ms) return;
    state->last_draw = now;
    const double seconds = std::chrono::duration<double>(now - state->start).count();
    const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    char line[160];
    if (total != 0) {
      constexpr int width = 30;
      const auto filled =
          static_cast<int>(width * static_cast<double>(done) / static_cast<double>(total));
      std::string drawn(static_cast<std::size_t>(filled), '=');
      drawn.resize(width, ' ');
      const double left = rate > 0 ? static_cast<double>(total - std::min(done, total)) / rate : 0;
      std::snprintf(line, sizeof line, "\r[%s] %zu/%zu  %.1f/s  ETA %.0fs ", drawn.c_str(), done,
                    total, rate, left);
    } else {
      std::snprintf(line, sizeof line, "\r%zu done  %.1f/s ", done, rate);
    }
    std::fputs(line, stderr);
    if (finished) std::fputc('\n', stderr);
    std::fflush(stderr);
  };
}

pool::pool(pool_options options) : core_(std::make_shared<detail::pool_core>(std::move(options))) {}

}  // namespace mp
