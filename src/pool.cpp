// SPDX-License-Identifier: MIT
// The pool's engine: worker processes, dispatch, and the thread that collects
// results and notices dead workers.
//
// Each worker has a queue of its own and runs one task at a time, so the pool
// always knows which task a worker holds: when a worker dies, that task fails
// with mp::worker_died and nothing else is lost. Results come back over one
// shared queue. The pool's thread waits on it, and at least every 20 ms looks
// at the workers' liveness.
#include <cxxabi.h>
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

#include "mp/pool.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"

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

// A worker: runs the tasks of its queue until the stop task, or until it has
// run `max_tasks` (0: no limit).
void worker_main(mp::queue<pool_task> tasks, mp::queue<pool_result> results,
                 const std::function<void()>& initializer, unsigned max_tasks) {
  if (initializer) initializer();
  for (unsigned done = 0; max_tasks == 0 || done < max_tasks; ++done) {
    pool_task task = tasks.get();
    if (task.id == 0) return;
    pool_result result;
    result.id = task.id;
    try {
      byte_buffer out;
      invoke_call(task.payload, nullptr, &out);
      result.value.assign(out.data(), out.data() + out.size());
    } catch (const std::exception& e) {
      result.failed = true;
      result.type = demangled(typeid(e));
      result.message = e.what();
    } catch (...) {
      result.failed = true;
      result.type = "unknown";
      result.message = "a task threw something that is not a std::exception";
    }
    results.put(result);
  }
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
  struct worker {
    mp::queue<pool_task> tasks;
    mp::process process;  // or, in a thread pool:
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> exited;
    std::uint64_t running = 0;                              // the task it holds, 0 if idle
    clock::time_point deadline = clock::time_point::max();  // of that task
    unsigned given = 0;                                     // tasks handed to it
    bool cancelled = false;  // its task was cancelled: stop it at the deadline
  };
  struct task_entry {
    completion done;
    std::chrono::nanoseconds limit;
    std::function<void()> started;
  };

  impl(pool_options options_in, bool threads_in)
      : options(std::move(options_in)), threads(threads_in) {}
  ~impl() {
    for (auto& w : workers)
      if (w && w->thread.joinable()) w->thread.join();
  }

  pool_options options;
  bool threads;
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

  void start_worker(std::size_t index) {
    if (workers[index] && workers[index]->thread.joinable()) workers[index]->thread.join();
    auto w = std::make_unique<worker>();
    if (threads) {
      w->exited = std::make_shared<std::atomic<bool>>(false);
      w->thread = std::thread([tasks = w->tasks, out = results, init = options.initializer,
                               max = options.maxtasksperchild, exited = w->exited] {
        try {
          worker_main(tasks, out, init, max);
        } catch (...) {
          // An initializer that threw: the thread ends and is replaced.
        }
        exited->store(true, std::memory_order_release);
      });
      workers[index] = std::move(w);
      return;
    }
    w->process =
        mp::process({.name = "PoolWorker-" + std::to_string(index + 1),
                     .daemon = true,
                     .on_destroy = destroy_action::kill},
                    &worker_main, w->tasks, results, options.initializer, options.maxtasksperchild);
    w->process.start();
    workers[index] = std::move(w);
  }

  // A worker that has had its share of tasks exits on its own after the last.
  bool spent(const worker& w) const {
    return options.maxtasksperchild != 0 && w.given >= options.maxtasksperchild;
  }

  // Hands pending tasks to idle workers. Under the mutex.
  void dispatch() {
    for (auto& w : workers) {
      if (pending.empty()) return;
      if (w->running != 0 || spent(*w)) continue;
      pool_task task = std::move(pending.front());
      pending.pop_front();
      w->running = task.id;
      ++w->given;
      const auto found = waiting.find(task.id);
      w->deadline = found != waiting.end() && found->second.limit != no_limit
                        ? clock::now() + found->second.limit
                        : clock::time_point::max();
      if (found != waiting.end() && found->second.started) found->second.started();
      w->tasks.put(task);
    }
  }

  // Under the mutex: the worker holding `id` is idle again; queues the task's
  // completion with its result.
  void finish(pool_result&& result) {
    for (auto& w : workers)
      if (w->running == result.id) w->running = 0;
    auto found = waiting.find(result.id);
    if (found == waiting.end()) return;
    ready.emplace_back(std::move(found->second.done), std::move(result));
    waiting.erase(found);
  }

  void fail(std::uint64_t id, const char* type, std::string message) {
    pool_result failure;
    failure.id = id;
    failure.failed = true;
    failure.type = type;
    failure.message = std::move(message);
    finish(std::move(failure));
  }

  void take_arrived() {
    while (auto late = results.try_get()) finish(std::move(*late));
  }

  // Under the mutex: kills workers past their task's deadline, replaces dead
  // and spent ones, failing the task a dead one held.
  void look_after_workers() {
    const auto now = clock::now();
    for (std::size_t i = 0; i < workers.size(); ++i) {
      worker& w = *workers[i];
      if (w.running != 0 && now >= w.deadline && threads) {
        // A thread cannot be stopped: fail the task, and keep the worker busy
        // (its eventual result is dropped) until it is done.
        const std::uint64_t id = w.running;
        fail(id, w.cancelled ? "mp::cancelled" : "mp::timeout_error",
             w.cancelled ? "the task was cancelled while it ran (its thread runs it to the end)"
                         : "the task ran past its timeout (its thread runs it to the end)");
        w.running = id;
        w.deadline = clock::time_point::max();
        w.cancelled = false;
        continue;
      }
      if (w.running != 0 && now >= w.deadline) {
        // Out of time: stop the work itself, not only the wait for it.
        w.process.kill();
        w.process.join();
        take_arrived();  // it may have finished just in time
        if (w.running != 0 && w.cancelled)
          fail(w.running, "mp::cancelled",
               "the task was cancelled while it ran; its worker was killed");
        else if (w.running != 0)
          fail(w.running, "mp::timeout_error",
               "the task ran past its timeout; its worker was killed and replaced");
        start_worker(i);
        continue;
      }
      if (threads ? !w.exited->load(std::memory_order_acquire) : w.process.is_alive()) continue;
      take_arrived();  // its result may have made it
      if (w.running != 0)
        fail(w.running, "mp::worker_died",
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
    for (auto& [call, r] : calls) call(std::move(r));
    lock.lock();
  }

  void run() {
    auto next_check = clock::now() + liveness_period;
    for (;;) {
      std::optional<pool_result> result = results.try_get(liveness_period);
      std::unique_lock lock(mutex);
      if (terminated) break;
      if (result) {
        finish(std::move(*result));
        take_arrived();
      }
      if (clock::now() >= next_check) {
        next_check = clock::now() + liveness_period;
        look_after_workers();
      }
      dispatch();
      const bool done = closed && pending.empty() && waiting.empty();
      call_ready(lock);
      if (done) break;
    }
    std::unique_lock lock(mutex);
    if (terminated) {
      for (auto& w : workers)
        if (threads)
          w->tasks.put(pool_task{});  // a thread stops after its current task
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
  impl_->thread = std::thread([this] { impl_->run(); });
}

pool_core::~pool_core() {
  close();
  join();
}

std::uint64_t pool_core::submit(std::vector<std::byte> payload, completion done,
                                std::chrono::nanoseconds limit, std::function<void()> started) {
  std::lock_guard lock(impl_->mutex);
  if (impl_->closed || impl_->terminated) throw usage_error("the pool is not running");
  const std::uint64_t id = impl_->next_id++;
  impl_->waiting.emplace(id, impl::task_entry{std::move(done), limit, std::move(started)});
  impl_->pending.push_back(pool_task{id, std::move(payload)});
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
  auto& pending = impl_->pending;
  for (auto it = pending.begin(); it != pending.end(); ++it) {
    if (it->id != id) continue;
    pending.erase(it);
    completion done = std::move(entry->second.done);
    impl_->waiting.erase(entry);
    lock.unlock();
    done(cancellation(id));
    return true;
  }
  if (!kill_running) return false;
  // Running: its deadline is now, so the pool's thread kills the worker and
  // fails the task at its next look (within 20 ms).
  for (auto& w : impl_->workers)
    if (w->running == id) {
      w->deadline = clock::time_point::min();
      w->cancelled = true;
    }
  return true;
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
  if (::isatty(STDERR_FILENO) == 0) return [](std::size_t, std::size_t) {};
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
