// SPDX-License-Identifier: MIT
// The pool's engine: tasks, dispatch, deadlines, cancellation, and the thread
// that collects results and notices dead workers, over workers of any kind
// (src/pool_engine.hpp).
//
// Each worker holds up to its backend's depth() tasks (128 for processes and
// threads, fewer large ones), so that it never waits for the pool between two
// of them, and a ring of task states says which of them it has started. When
// a worker dies, the task it started fails with mp::broken_process_pool and
// the rest go to other workers: nothing else is lost. An idle worker takes
// queued tasks from a busy one the same way. The pool's thread waits for
// results, and at least every 20 ms looks at the workers' liveness.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <bitset>
#include <climits>
#include <cstdio>
#include <deque>
#include <limits>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>

#include "mp/pool.hpp"
#include "os/futex.hpp"
#include "os/spin.hpp"
#include "os/system.hpp"
#include "pool_engine.hpp"

namespace mp {

namespace detail {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

constexpr auto liveness_period = 20ms;

// Workers in a row that may die before they are ready (their initializer
// has not returned) before the pool counts itself broken.
constexpr unsigned failed_starts_allowed = 3;

// About how many bytes of tasks a worker holds at most (see dispatch).
constexpr std::size_t held_bytes = std::size_t{8} << 20;

pool_result failure_result(std::uint64_t id, task_failure failure, std::string message) {
  pool_result r;
  r.id = id;
  r.failure = failure;
  r.fault.message = std::move(message);
  r.fault.pid = static_cast<std::int32_t>(::getpid());
  return r;
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

bool run_task(task_ring& ring, std::uint64_t id, std::uint32_t slot,
              std::span<const std::byte> payload, handle_source* handles, pool_result& result,
              byte_buffer& scratch) {
  result.id = id;
  result.failure = task_failure::none;
  result.skipped = false;
  result.value.clear();
  result.fault = {};
  auto expected = task_ring::encode(id, task_ring::queued);
  const std::int64_t now = clock::now().time_since_epoch().count();
  if (slot < task_ring::depth) ring.started[slot].store(now, std::memory_order_relaxed);
  if (slot >= task_ring::depth ||
      !ring.slot[slot].compare_exchange_strong(expected, task_ring::encode(id, task_ring::running),
                                               std::memory_order_acq_rel)) {
    result.skipped = true;
    return false;
  }
  ring.cpu.store(os::current_cpu() + 1, std::memory_order_relaxed);
  ring.running_since.store(now, std::memory_order_relaxed);
  try {
    scratch.clear();
    invoke_call(payload, handles, &scratch);
    std::swap(result.value, scratch);
  } catch (...) {
    result.failure = task_failure::raised;
    capture_fault(result.fault);
  }
  ring.running_since.store(0, std::memory_order_relaxed);
  return true;
}

std::vector<std::pair<std::size_t, int>> spread_over_cpus(std::span<const worker_place> workers) {
  std::vector<std::pair<std::size_t, int>> moves;
  std::vector<int> where;  // where each worker runs, after the moves so far
  for (const auto& w : workers) where.push_back(w.cpu);
  for (std::size_t i = 0; i < workers.size(); ++i) {
    // Each worker after the first on its CPU goes to a CPU it may use that
    // none of them runs on, if there is one.
    const auto before = where.begin() + static_cast<std::ptrdiff_t>(i);
    if (where[i] < 0 || std::find(where.begin(), before, where[i]) == before) continue;
    for (const int cpu : workers[i].allowed) {
      if (std::find(where.begin(), where.end(), cpu) != where.end()) continue;
      moves.emplace_back(i, cpu);
      where[i] = cpu;
      break;
    }
  }
  return moves;
}

struct pool_core::impl {
  // One task a worker holds: running, or queued behind the running one.
  struct held_task {
    job task;
    std::uint32_t slot = 0;
    // Cancelled or moved to another worker before it started: the worker
    // skips it, and its result (an acknowledgement) is dropped.
    bool skipped = false;
    // Failed already (a thread's task past its timeout): its result is dropped.
    bool abandoned = false;
  };
  struct worker {
    std::unique_ptr<worker_site> site;
    std::deque<held_task> held;  // in the order the worker runs them
    std::size_t live = 0;        // of them, those not skipped
    std::uint32_t next_slot = 0;
    std::uint64_t current = 0;  // the first held task not skipped: running or about to
    std::uint32_t current_slot = 0;
    std::chrono::nanoseconds limit = no_limit;  // of `current`, from when the worker starts it
    bool cancelled = false;                     // `current` was cancelled while it ran: stop it now
    std::uint64_t doomed = 0;                   // a running task cancelled with kill_running
    unsigned given = 0;                         // tasks handed to it
    bool ran = false;                           // it has run a task (a result came back)
    std::size_t unsent = 0;                     // delivered in this dispatch, not yet flushed
  };
  struct task_entry {
    std::shared_ptr<task_sink> sink;
    std::uint64_t tag = 0;
    std::chrono::nanoseconds limit;
  };
  // The tasks not finished, by id. Ids are handed out one after another, so
  // this is a window from the oldest unfinished one: no allocation per task
  // (a long task keeps the window open behind it; its entries are small).
  class task_table {
   public:
    task_entry* find(std::uint64_t id) {
      if (id < base_ || id - base_ >= entries_.size()) return nullptr;
      task_entry& e = entries_[static_cast<std::size_t>(id - base_)];
      return e.sink ? &e : nullptr;
    }
    // `id` follows the last one added.
    void add(std::uint64_t id, task_entry entry) {
      if (entries_.empty()) base_ = id;
      entries_.push_back(std::move(entry));
      ++count_;
    }
    // Removes the entry `find(id)` gave.
    task_entry take(task_entry& entry) {
      task_entry out = std::move(entry);
      entry.sink.reset();
      --count_;
      while (!entries_.empty() && !entries_.front().sink) {
        entries_.pop_front();
        ++base_;
      }
      return out;
    }
    bool empty() const { return count_ == 0; }
    std::vector<std::uint64_t> ids() const {
      std::vector<std::uint64_t> out;
      out.reserve(count_);
      for (std::size_t i = 0; i < entries_.size(); ++i)
        if (entries_[i].sink) out.push_back(base_ + i);
      return out;
    }

   private:
    std::deque<task_entry> entries_;
    std::uint64_t base_ = 0;
    std::size_t count_ = 0;
  };
  // A task's outcome, to hand to its sink outside the mutex.
  struct ready_call {
    std::shared_ptr<task_sink> sink;
    std::uint64_t tag = 0;
    pool_result result;
  };

  impl(pool_options options_in, std::unique_ptr<worker_backend> backend_in, worker_start when)
      : options(std::move(options_in)), backend(std::move(backend_in)), start_when(when) {}

  pool_options options;
  std::unique_ptr<worker_backend> backend;
  worker_start start_when;
  os::adaptive_mutex mutex;
  std::vector<std::unique_ptr<worker>> workers;
  std::deque<job> pending;
  task_table waiting;
  std::uint64_t next_id = 1;
  bool closed = false;
  bool terminated = false;
  std::optional<std::string> broken;  // why, once the pool can run no task
  unsigned failed_starts = 0;         // workers in a row that died before they were ready
  std::thread thread;
  std::vector<ready_call> ready;   // to hand out outside the mutex
  std::vector<pool_result> spare;  // results done with, for their buffers (pool's thread)
  std::size_t spare_bytes = 0;     // their buffers' capacity
  static constexpr std::size_t spare_budget = std::size_t{64} << 20;

  void start_worker(std::size_t index) {
    auto w = std::make_unique<worker>();
    w->site = backend->start(index);
    workers[index] = std::move(w);
  }

  // A worker that has had its share of tasks exits on its own after the last.
  bool spent(const worker& w) const {
    return options.maxtasksperchild != 0 && w.given >= options.maxtasksperchild;
  }

  static std::size_t live_count(const worker& w) { return w.live; }

  // Under the mutex: after `w.held` changed, starts the clock of its new
  // current task (the estimate: it starts when the one before it ended).
  void track_current(worker& w) {
    std::uint64_t first = 0;
    for (const auto& h : w.held)
      if (!h.skipped) {
        first = h.task.id;
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
    task_entry* found = waiting.find(first);
    if (found == nullptr) return;
    w.limit = found->limit;
    found->sink->started(found->tag);
  }

  // When `w` must be stopped: at once for a task cancelled while it runs;
  // for a task with a limit, that long after the worker started it (never,
  // while it has not started: it has not used any of its time).
  static clock::time_point deadline(worker& w) {
    if (w.current == 0) return clock::time_point::max();
    if (w.cancelled) return clock::time_point::min();
    if (w.limit == no_limit) return clock::time_point::max();
    task_ring& ring = w.site->ring();
    const auto state = ring.slot[w.current_slot].load(std::memory_order_acquire);
    if (state != task_ring::encode(w.current, task_ring::running)) return clock::time_point::max();
    const clock::time_point started{
        clock::duration(ring.started[w.current_slot].load(std::memory_order_relaxed))};
    return started + w.limit;
  }

  // Under the mutex: hands `task` to `w`, queued behind what it holds.
  void give(worker& w, job&& task) {
    const std::uint32_t slot = w.next_slot++ % task_ring::depth;
    w.site->ring().slot[slot].store(task_ring::encode(task.id, task_ring::queued),
                                    std::memory_order_release);
    try {
      // Not delivered: the worker has died. It is noticed and replaced, and
      // the task, held but not started, goes to another worker.
      (void)w.site->deliver(task, slot);
    } catch (...) {
      pool_result failed = failure_result(task.id, task_failure::raised, {});
      capture_fault(failed.fault);
      fail(std::move(failed));
      return;
    }
    ++w.given;
    ++w.unsent;
    w.held.push_back(held_task{std::move(task), slot});
    ++w.live;
    track_current(w);
  }

  // Under the mutex, at the end of a dispatch: sends each worker the tasks
  // it was given, at once. Those a worker could not be sent fail with why,
  // as a task its worker could not be handed does.
  void flush_all() {
    for (auto& w : workers) {
      if (w->unsent == 0) continue;
      const std::size_t n = std::exchange(w->unsent, 0);
      try {
        w->site->flush();
      } catch (...) {
        remote_fault fault;
        capture_fault(fault);
        // The last n it holds never reached it: it neither runs nor
        // acknowledges them.
        for (auto h = w->held.end() - static_cast<std::ptrdiff_t>(n); h != w->held.end(); ++h) {
          if (h->skipped) continue;  // (taken back: moved to another worker)
          --w->live;
          pool_result failed = failure_result(h->task.id, task_failure::raised, {});
          failed.fault = fault;
          fail(std::move(failed));
        }
        w->held.erase(w->held.end() - static_cast<std::ptrdiff_t>(n), w->held.end());
        w->next_slot -= static_cast<std::uint32_t>(n);
        w->given -= static_cast<unsigned>(n);
        track_current(*w);
      }
    }
  }

  // Under the mutex: takes back a task `w` holds but has not started, so it
  // never runs there. False if it has started.
  static bool take_back(worker& w, held_task& h) {
    auto expected = task_ring::encode(h.task.id, task_ring::queued);
    if (!w.site->ring().slot[h.slot].compare_exchange_strong(
            expected, task_ring::encode(h.task.id, task_ring::cancelled),
            std::memory_order_acq_rel))
      return false;
    h.skipped = true;
    --w.live;
    return true;
  }

  bool usable(const worker& w) const { return w.site != nullptr && !spent(w); }

  // Under the mutex, for a pool whose workers start on demand: starts one
  // worker for each pending task that no idle worker is there for, while
  // there is room. A start that fails breaks the pool, as a replacement's.
  void start_on_demand() {
    if (start_when != worker_start::on_demand || broken || terminated) return;
    std::size_t idle_workers = 0;
    for (const auto& w : workers) idle_workers += usable(*w) && live_count(*w) == 0;
    for (auto& w : workers) {
      if (pending.size() <= idle_workers) return;
      if (w->site) continue;
      try {
        w->site = backend->start(static_cast<std::size_t>(&w - workers.data()));
        ++idle_workers;
      } catch (const std::exception& e) {
        break_pool(std::string("the pool could not start a worker: ") + e.what());
        return;
      }
    }
  }

  // Hands pending tasks to the workers holding the fewest, up to the
  // backend's depth() each, so that a worker finds its next task in its
  // queue the moment it finishes one. A worker with nothing left to run takes a
  // queued task from the busiest one. Under the mutex.
  //
  // A worker is refilled once it holds half its depth or less, and then up
  // to its depth: its tasks go to it in bursts, each one message.
  //
  // Large tasks count for more: a worker holds about held_bytes of them (at
  // least two, the one it runs and the next), so that a map of megabyte
  // chunks does not fill a worker's queue with a hundred of them.
  void dispatch() {
    start_on_demand();
    const std::size_t depth = backend->depth();
    // Open to refills with tasks of which it may hold `most`: what it held
    // when this dispatch began (its tasks not yet sent came in this one) was
    // half that or less.
    const auto open = [&](const worker& w, std::size_t most) {
      return usable(w) && w.held.size() - w.unsent <= most / 2 && w.held.size() < most;
    };
    while (!pending.empty()) {
      const std::size_t size = pending.front().payload ? pending.front().payload->size() : 0;
      const std::size_t most =
          size == 0 ? depth
                    : std::max(std::min(held_bytes / size, depth), std::min<std::size_t>(2, depth));
      worker* best = nullptr;
      for (auto& w : workers)
        if (open(*w, most) && (best == nullptr || live_count(*w) < live_count(*best)))
          best = w.get();
      if (best == nullptr) break;
      job task = std::move(pending.front());
      pending.pop_front();
      give(*best, std::move(task));
    }
    for (auto& idle : workers) {
      if (live_count(*idle) != 0 || idle->held.size() >= depth || !usable(*idle)) continue;
      // The busiest worker's last queued task, if it has not started.
      worker* busiest = nullptr;
      for (auto& w : workers)
        if (live_count(*w) > 1 && (busiest == nullptr || live_count(*w) > live_count(*busiest)))
          busiest = w.get();
      if (busiest == nullptr) break;
      for (auto h = busiest->held.rbegin(); h != busiest->held.rend(); ++h) {
        if (h->skipped || h->task.id == busiest->current) continue;
        if (!take_back(*busiest, *h)) break;  // it runs already, and so did all before it
        give(*idle, std::move(h->task));
        break;
      }
    }
    flush_all();
  }

  // Under the mutex: the task's sink is to get `failure`.
  void fail(pool_result&& failure) {
    task_entry* found = waiting.find(failure.id);
    if (found == nullptr) return;
    task_entry entry = waiting.take(*found);
    ready.push_back(ready_call{std::move(entry.sink), entry.tag, std::move(failure)});
  }
  void fail(std::uint64_t id, task_failure failure, std::string message) {
    fail(failure_result(id, failure, std::move(message)));
  }

  // Under the mutex: no task can run any more (a worker's initializer
  // failed): every task waiting fails, later submissions are refused.
  void break_pool(std::string why) {
    if (broken) return;
    broken = std::move(why);
    closed = true;
    for (const auto id : waiting.ids()) fail(id, task_failure::broken, *broken);
    pending.clear();
    for (auto& w : workers)
      for (auto& h : w->held) (void)take_back(*w, h);
  }

  // Under the mutex: a worker's result (or acknowledgement of a skipped task)
  // arrived; it is the first task that worker holds.
  void finish(pool_result&& result) {
    if (result.id == 0) {  // a worker's initializer failed
      break_pool("a worker's initializer failed with " + result.fault.type + ": " +
                 result.fault.message + "; the pool can run no task");
      return;
    }
    for (auto& w : workers) {
      if (w->held.empty() || w->held.front().task.id != result.id ||
          w->held.front().skipped != result.skipped)
        continue;
      const bool abandoned = w->held.front().abandoned;
      if (!w->held.front().skipped) --w->live;
      w->held.pop_front();
      w->ran = w->ran || !result.skipped;
      track_current(*w);
      if (result.skipped || abandoned) return;
      break;
    }
    fail(std::move(result));
  }

  // A result object to decode into, with the buffers of an earlier one.
  pool_result spare_result() {
    if (spare.empty()) return {};
    pool_result r = std::move(spare.back());
    spare.pop_back();
    spare_bytes -= r.value.capacity();
    return r;
  }

  // Keeps a result done with for the next (the sinks only read it): at most
  // 64 of them, holding at most 64 MiB of buffers together.
  void keep_spare(pool_result&& r) {
    const std::size_t bytes = r.value.capacity();
    if (spare.size() >= 64 || bytes > spare_budget - spare_bytes) return;
    spare_bytes += bytes;
    spare.push_back(std::move(r));
  }

  void take_arrived() {
    pool_result r = spare_result();
    while (backend->next_result(r, {})) {
      finish(std::move(r));
      r = spare_result();
    }
    // (A look that found nothing keeps the buffers: dropping them here, as
    // once, freed a spare on almost every look, so a map's 1 MB results were
    // decoded into fresh pages each time: a third of its page faults.)
    keep_spare(std::move(r));
  }

  // Under the mutex: puts the tasks `w` holds (not skipped) for which
  // `requeue` says so back at the front of the pending tasks, in their order.
  template <class Requeue>
  void hand_back(worker& w, Requeue&& requeue) {
    std::deque<job> again;
    for (auto& h : w.held)
      if (!h.skipped && requeue(h)) again.push_back(std::move(h.task));
    pending.insert(pending.begin(), std::make_move_iterator(again.begin()),
                   std::make_move_iterator(again.end()));
  }

  // Under the mutex, once worker `w` is gone and its results are in: fails
  // the task it was running (the one its ring says started), with `failure`
  // and `message`, and queues the tasks it had not started for other workers.
  // True if it was running one.
  bool settle_lost_worker(worker& w, task_failure failure, const std::string& message) {
    bool was_running = false;
    hand_back(w, [&](held_task& h) {
      const auto state = w.site->ring().slot[h.slot].load(std::memory_order_acquire);
      if (state != task_ring::encode(h.task.id, task_ring::running)) return true;
      fail(h.task.id, failure, message);
      was_running = true;
      return false;
    });
    w.held.clear();
    w.live = 0;
    return was_running;
  }

  // Under the mutex: replaces worker `i`, unless the pool is broken or
  // finished (a worker is not started for nothing). A replacement that
  // cannot start (the program is exiting, fork fails) breaks the pool, saying
  // why: the pool's thread must not die of it, nor try again for ever.
  void replace_worker(std::size_t i) {
    if (!broken && !terminated && !backend->replaceable(i)) {
      const std::string last = workers[i]->site->who() + ", " + workers[i]->site->how_it_ended();
      workers[i]->site->join();
      workers[i] = std::make_unique<worker>();  // no site: never given a task
      for (const auto& w : workers)
        if (w->site) return;
      break_pool("every worker of the pool has gone (the last, " + last +
                 "); the pool can run no task");
      return;
    }
    if (!broken && !terminated) {
      try {
        start_worker(i);
        return;
      } catch (const std::exception& e) {
        break_pool(std::string("the pool could not start a worker in place of one that ended: ") +
                   e.what());
      }
    }
    workers[i]->site->join();
    workers[i] = std::make_unique<worker>();  // no site: never given a task
  }

  // Under the mutex: kills workers past their task's deadline, replaces dead
  // and spent ones, failing the task a dead one held.
  void look_after_workers() {
    for (std::size_t i = 0; i < workers.size(); ++i) {
      worker& w = *workers[i];
      if (!w.site) continue;
      bool overdue = clock::now() >= deadline(w);
      if (overdue) {
        take_arrived();  // it may have finished just in time
        overdue = clock::now() >= deadline(w);
      }
      if (overdue) {
        const bool cancelled = w.cancelled;
        if (w.site->stop_now()) {
          // Out of time: the work itself is stopped, not only the wait for it.
          take_arrived();
          settle_lost_worker(
              w, cancelled ? task_failure::cancelled : task_failure::timed_out,
              cancelled ? "the task was cancelled while it ran; its worker was killed"
                        : "the task ran past its timeout; its worker was killed and replaced");
          replace_worker(i);
          continue;
        }
        // A thread cannot be stopped: fail the task, let the thread run it to
        // the end (its result is dropped), and give what waits behind it to
        // other workers.
        const std::uint64_t id = w.current;
        fail(id, cancelled ? task_failure::cancelled : task_failure::timed_out,
             cancelled ? "the task was cancelled while it ran (its worker, which cannot be "
                         "stopped, runs it to the end)"
                       : "the task ran past its timeout (its worker, which cannot be stopped, runs "
                         "it to the end)");
        hand_back(w, [&](held_task& h) {
          if (h.task.id != id) return take_back(w, h);
          h.abandoned = true;
          return false;
        });
        w.limit = no_limit;
        w.cancelled = false;
        continue;
      }
      if (w.site->alive()) continue;
      take_arrived();  // its last results may have made it
      if (broken) {
        settle_lost_worker(w, task_failure::broken, *broken);
        replace_worker(i);
        continue;
      }
      const std::string ended = w.site->how_it_ended();
      const bool was_running =
          settle_lost_worker(w, task_failure::worker_died,
                             "the pool worker running this task (" + w.site->who() + ") " + ended +
                                 (backend->replaceable(i) ? "; the pool replaced it"
                                                          : "; the pool goes on without it"));
      // A worker that dies before it is ready, by its own hand, is a start
      // that fails; a few in a row and the pool is broken rather than
      // replacing workers forever.
      const bool failed_start = !w.ran && !was_running &&
                                w.site->ring().ready.load(std::memory_order_acquire) == 0 &&
                                !w.site->killed_from_outside();
      failed_starts = failed_start ? failed_starts + 1 : 0;
      if (failed_starts >= failed_starts_allowed)
        break_pool(std::to_string(failed_starts) +
                   " pool workers in a row died before they could run a task (the last, " +
                   w.site->who() + ", " + ended + "); the pool can run no task");
      replace_worker(i);  // (not, once broken)
    }
  }

  void call_ready(std::unique_lock<os::adaptive_mutex>& lock) {
    auto calls = std::move(ready);
    ready.clear();
    lock.unlock();
    for (auto& [sink, tag, r] : calls) {
      task_outcome outcome{r.value.span(), nullptr, r.failure == task_failure::cancelled};
      if (r.failure != task_failure::none) {
        outcome.value = {};
        outcome.error = failure_exception(r.failure, r.fault, backend->processes());
      }
      sink->complete(tag, std::move(outcome));
      sink.reset();
      keep_spare(std::move(r));
    }
    lock.lock();
  }

  // Queues `jobs` (their ids set here, consecutive; task i's tag is
  // first_tag + i) and hands out what the workers have room for; returns the
  // first id. Refuses them all once the pool is broken, closed or terminated.
  std::uint64_t accept(std::span<job> jobs, const std::shared_ptr<task_sink>& sink,
                       std::uint64_t first_tag, mp::timeout limit) {
    if (!sink) throw std::invalid_argument("a task submitted to the pool needs a sink");
    std::lock_guard lock(mutex);
    if (broken)
      std::rethrow_exception(failure_exception(
          task_failure::broken, remote_fault{.message = *broken}, backend->processes()));
    if (closed || terminated) throw usage_error("the pool is not running");
    const std::uint64_t first = next_id;
    next_id += jobs.size();
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      jobs[i].id = first + i;
      waiting.add(first + i, task_entry{sink, first_tag + i, limit.duration()});
      pending.push_back(std::move(jobs[i]));
    }
    dispatch();
    return first;
  }

  // Busy workers are spread over CPUs (see spread_over_cpus). At most every
  // spread_after, the pool's thread reads in each busy worker's ring the CPU
  // it began its last task on. Only if a task has run that long (shorter ones
  // sleep and wake too often for where they run to matter) and two workers
  // seem to share a CPU does it read where they run from /proc, at most every
  // spread_period, and move apart those that do.
  static constexpr auto spread_after = 1ms;
  static constexpr auto spread_period = 10ms;
  struct busy_worker {
    worker* w;
    int cpu;  // as its ring says
  };
  clock::time_point next_spread{};
  std::vector<busy_worker> busy;
  std::vector<worker_place> places;
  std::vector<pid_t> threads;

  void spread_workers(clock::time_point now) {
    if (now < next_spread) return;
    next_spread = now + spread_after;
    busy.clear();
    bool long_task = false;
    bool shared = false;
    std::bitset<CPU_SETSIZE> taken;
    for (auto& w : workers) {
      if (!w->site || w->current == 0) continue;
      task_ring& ring = w->site->ring();
      const int cpu = ring.cpu.load(std::memory_order_relaxed) - 1;
      if (cpu < 0 || cpu >= CPU_SETSIZE) continue;
      busy.push_back({w.get(), cpu});
      shared = shared || taken.test(static_cast<std::size_t>(cpu));
      taken.set(static_cast<std::size_t>(cpu));
      const std::int64_t since = ring.running_since.load(std::memory_order_relaxed);
      if (since != 0 && now - clock::time_point{clock::duration(since)} >= spread_after)
        long_task = true;
    }
    if (!long_task || !shared) return;
    next_spread = now + spread_period;
    places.clear();
    threads.clear();
    for (const auto& b : busy) {
      const pid_t tid = b.w->site->task_thread();
      threads.push_back(tid);
      places.push_back(tid == 0 ? worker_place{}
                                : worker_place{os::thread_cpu(tid), os::thread_allowed_cpus(tid)});
    }
    for (const auto& [i, cpu] : spread_over_cpus(places))
      if (os::move_thread(threads[i], cpu))
        busy[i].w->site->ring().cpu.store(cpu + 1, std::memory_order_relaxed);
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
      const bool arrived = backend->next_result(result, liveness_period);
      std::unique_lock lock(mutex);
      if (terminated || broken) break;
      if (arrived) {
        finish(std::move(result));
        take_arrived();
      } else {
        keep_spare(std::move(result));
      }
      const auto now = clock::now();
      if (now >= next_check) {
        next_check = now + liveness_period;
        look_after_workers();
      }
      spread_workers(now);
      if (broken) break;
      dispatch();
      const bool done = closed && pending.empty() && waiting.empty() && idle();
      call_ready(lock);
      if (done) break;
    }
    std::unique_lock lock(mutex);
    if (terminated || broken) {
      // Nothing queued starts; what runs is stopped where it can be (a
      // thread runs its task to the end).
      for (auto& w : workers) {
        if (!w->site) continue;
        for (auto& h : w->held) (void)take_back(*w, h);
        if (!w->site->stop_now()) w->site->finish();
      }
      // Unfinished tasks fail rather than wait forever.
      for (const auto id : waiting.ids())
        fail(id, task_failure::terminated, "the pool was terminated before this task finished");
      pending.clear();
    } else {
      for (auto& w : workers)
        if (w->site && w->site->alive()) w->site->finish();
    }
    call_ready(lock);
    lock.unlock();
    for (auto& w : workers)
      if (w->site) w->site->join();
  }
};

namespace {

// The pool's size, after checking its options as Python's Pool does.
unsigned checked_size(const pool_options& options) {
  constexpr unsigned most = std::numeric_limits<int>::max();
  if (options.processes > most)
    throw std::invalid_argument("a pool of " + std::to_string(options.processes) +
                                " workers: a negative count? Pass at least 1, or 0 for "
                                "mp::cpu_count()");
  if (options.maxtasksperchild > most)
    throw std::invalid_argument("maxtasksperchild " + std::to_string(options.maxtasksperchild) +
                                ": a negative count? Pass at least 1, or 0 for no limit");
  return options.processes == 0 ? mp::cpu_count() : options.processes;
}

}  // namespace

pool_core::pool_core(pool_options options, worker_kind kind, worker_start when)
    : processes_(checked_size(options)) {
  auto workers =
      kind == worker_kind::threads ? make_thread_workers(options) : make_process_workers(options);
  impl_ = std::make_unique<impl>(std::move(options), std::move(workers), when);
  start();
}

pool_core::pool_core(pool_options options, std::unique_ptr<worker_backend> workers)
    : processes_(checked_size(options)),
      impl_(std::make_unique<impl>(std::move(options), std::move(workers),
                                   worker_start::all_at_once)) {
  start();
}

void pool_core::start() {
  impl_->workers.resize(processes_);
  for (std::size_t i = 0; i < processes_; ++i) {
    if (impl_->start_when == worker_start::all_at_once)
      impl_->start_worker(i);
    else
      impl_->workers[i] = std::make_unique<impl::worker>();  // no site: started when needed
  }
  impl_->thread = std::thread([this] {
    os::set_thread_name("mp-pool");  // as ps and perf show it
    impl_->run();
  });
}

pool_core::~pool_core() {
  if (impl_->options.on_destroy == destroy_action::join)
    close();
  else
    terminate();
  join();
}

std::uint64_t pool_core::submit(task_payload payload, std::shared_ptr<task_sink> sink,
                                std::uint64_t tag, mp::timeout limit) {
  job task{0, std::make_shared<const byte_buffer>(std::move(payload.bytes)),
           std::move(payload.handles)};
  return impl_->accept(std::span<job>(&task, 1), sink, tag, limit);
}

std::uint64_t pool_core::submit(std::shared_ptr<const byte_buffer> call, task_handles handles,
                                std::shared_ptr<task_sink> sink, std::uint64_t tag,
                                mp::timeout limit) {
  job task{0, std::move(call), std::move(handles)};
  return impl_->accept(std::span<job>(&task, 1), sink, tag, limit);
}

std::uint64_t pool_core::submit_slices(std::shared_ptr<const byte_buffer> bytes,
                                       std::span<const std::size_t> bounds,
                                       std::shared_ptr<task_sink> sink, std::uint64_t first_tag,
                                       mp::timeout limit) {
  // Each call a view of the one buffer, all owned together: the engine's
  // jobs hold a buffer each, here aliases into this block.
  struct sliced {
    std::shared_ptr<const byte_buffer> all;
    std::vector<byte_buffer> views;
  };
  if (bounds.empty()) throw std::invalid_argument("a pool submission of slices without bounds");
  auto block = std::make_shared<sliced>();
  block->views.reserve(bounds.size() - 1);
  std::size_t begin = bounds[0];
  for (const std::size_t end : bounds.subspan(1)) {
    if (end < begin || end > bytes->size())
      throw std::invalid_argument("the slices of a pool submission are out of order");
    // A window never writes through its pointer unless appended to, which a const view is not.
    byte_buffer view =
        byte_buffer::window(const_cast<std::byte*>(bytes->data()) + begin, end - begin);
    view.resize(end - begin);
    block->views.push_back(std::move(view));
    begin = end;
  }
  block->all = std::move(bytes);
  std::vector<job> jobs;
  jobs.reserve(block->views.size());
  for (const byte_buffer& view : block->views)
    jobs.push_back(job{0, std::shared_ptr<const byte_buffer>(block, &view), nullptr});
  return impl_->accept(jobs, sink, first_tag, limit);
}

void advise_huge_pages(void* at, std::size_t bytes) noexcept {
  if (bytes >= (std::size_t{4} << 20)) os::advise_huge_pages(at, bytes);
}

std::uint64_t pool_core::submit_all(std::vector<task_payload> payloads,
                                    std::shared_ptr<task_sink> sink, std::uint64_t first_tag,
                                    mp::timeout limit) {
  // Made outside the lock: the engine's shared copies of the calls.
  std::vector<job> jobs;
  jobs.reserve(payloads.size());
  for (task_payload& p : payloads)
    jobs.push_back(
        job{0, std::make_shared<const byte_buffer>(std::move(p.bytes)), std::move(p.handles)});
  return impl_->accept(jobs, sink, first_tag, limit);
}

namespace {

task_outcome cancellation() {
  return task_outcome{
      {},
      std::make_exception_ptr(cancelled_error("the task was cancelled before it started")),
      true};
}

}  // namespace

bool pool_core::cancel(std::uint64_t id, bool kill_running) {
  std::unique_lock lock(impl_->mutex);
  impl::task_entry* entry = impl_->waiting.find(id);
  if (entry == nullptr) return false;
  const auto settle = [&] {
    impl::task_entry cancelled = impl_->waiting.take(*entry);
    lock.unlock();
    cancelled.sink->complete(cancelled.tag, cancellation());
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
      if (h.task.id != id || h.skipped || h.abandoned) continue;
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
  std::vector<impl::task_entry> cancelled;
  {
    std::lock_guard lock(impl_->mutex);
    for (const auto& task : impl_->pending) {
      impl::task_entry* entry = impl_->waiting.find(task.id);
      if (entry == nullptr) continue;
      cancelled.push_back(impl_->waiting.take(*entry));
    }
    impl_->pending.clear();
    // And those handed to a worker that has not started them (not its
    // current task, which its future already reports as running).
    for (auto& w : impl_->workers)
      for (auto& h : w->held) {
        if (h.skipped || h.abandoned || h.task.id == w->current) continue;
        impl::task_entry* entry = impl_->waiting.find(h.task.id);
        if (entry == nullptr || !impl::take_back(*w, h)) continue;
        cancelled.push_back(impl_->waiting.take(*entry));
      }
  }
  for (auto& entry : cancelled) entry.sink->complete(entry.tag, cancellation());
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

pool::pool(pool_options options)
    : core_(std::make_shared<detail::pool_core>(std::move(options),
                                                detail::worker_kind::processes)) {}

}  // namespace mp

namespace mp::detail {

bool await_done_word(std::atomic<std::uint32_t>& word, mp::timeout timeout) {
  const deadline until(timeout);
  for (;;) {
    std::uint32_t seen = word.load(std::memory_order_acquire);
    if (seen == task_state_base::done_value) return true;
    // Marked waited for first, so that the settler knows to wake us.
    if (seen == 0 && !word.compare_exchange_weak(seen, 1, std::memory_order_acq_rel)) continue;
    const mp::timeout left = until.left();
    if (left.zero()) return false;
    (void)os::futex_wait(word, 1, left);
  }
}

void wake_done_word(std::atomic<std::uint32_t>& word) noexcept {
  try {
    os::futex_wake(word, INT_MAX);
  } catch (...) {
    // FUTEX_WAKE fails only on an address that is not mapped, which this is.
  }
}

void report_callback_error(const char* what) noexcept {
  try {
    remote_fault fault;
    capture_fault(fault);
    const std::string line = "mp: exception in " + std::string(what) + " (ignored): " + fault.type +
                             ": " + fault.message + "\n";
    std::fputs(line.c_str(), stderr);
  } catch (...) {
    std::fputs("mp: exception in a callback (ignored)\n", stderr);
  }
}

std::exception_ptr failure_exception(task_failure failure, const remote_fault& fault,
                                     bool processes) {
  const std::string& message = fault.message;
  switch (failure) {
    case task_failure::none:
      return nullptr;
    case task_failure::raised:
      return rebuild_fault(fault);
    case task_failure::worker_died:
      if (processes) return std::make_exception_ptr(broken_process_pool(message));
      return std::make_exception_ptr(worker_died(message));
    case task_failure::timed_out:
      return std::make_exception_ptr(timeout_error(message));
    case task_failure::cancelled:
      return std::make_exception_ptr(cancelled_error(message));
    case task_failure::broken:
      if (processes) return std::make_exception_ptr(broken_process_pool(message));
      return std::make_exception_ptr(broken_thread_pool(message));
    case task_failure::terminated:
    case task_failure::refused:
      break;
  }
  return std::make_exception_ptr(process_error(message));
}

}  // namespace mp::detail
