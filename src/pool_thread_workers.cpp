// SPDX-License-Identifier: MIT
// Worker threads for the pool engine (src/pool_engine.hpp): mp::thread_pool.
//
// Plain memory: a task goes to its thread as the engine's own job (the
// encoded call is shared, not copied), results come back as objects in a
// list, and the descriptors of a task's arguments are duplicated in place.
// No shared-memory queue, no socket, no descriptor of the pool's own.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "os/spin.hpp"
#include "os/system.hpp"
#include "pool_engine.hpp"

namespace mp::detail {
namespace {

using namespace std::chrono_literals;

// Before a worker thread or the pool's thread sleeps on its condition
// variable, it waits a little while awake, as a queue's side does
// (src/queues.cpp, with the same spin and yields): back-to-back tasks then
// never pay for a wake-up. Its spin gives the CPU away every few dozen
// pauses (os::spin_kind::yielding): the thread it waits for is often on the
// same CPU, and on a busy machine it does not take the time of the thread
// it waits for.
constexpr std::chrono::nanoseconds spin_time = 5us;
constexpr int yield_rounds = 4;

// The results of every worker thread of a pool, in the order they came.
//
// Their buffers go round: the pool's thread hands back the spent result it
// passed in for each one it takes, and a worker takes one of those with each
// result it adds, to write its next result into. A worker thread that
// allocated every result and the pool's thread that freed it made the two
// take turns on the worker's malloc arena lock (a third of map's time with
// chunksize 1). The lists are vectors swapped whole for the same reason: a
// deque's blocks were allocated on one thread and freed on the other.
class result_list {
 public:
  // Adds `result`, and leaves in it a spent one (or an empty one) for the
  // worker's next result.
  void push(pool_result& result) {
    {
      std::lock_guard lock(mutex_);
      results_.push_back(std::move(result));
      count_.store(results_.size(), std::memory_order_release);
      if (spent_.empty()) {
        result = pool_result{};
      } else {
        result = std::move(spent_.back());
        spent_.pop_back();
      }
    }
    arrived_.notify_one();
  }
  // Takes the first result into `out`, waiting at most `wait` for one, and
  // keeps what `out` held for a worker to reuse. On the pool's thread only:
  // it takes every result there is at once, under one lock, and hands them
  // out one by one from its own list.
  bool pop(pool_result& out, std::chrono::nanoseconds wait) {
    if (next_ == taken_.size()) {
      if (wait.count() > 0)
        os::wait_awake([&] { return count_.load(std::memory_order_acquire) != 0; }, spin_time,
                       yield_rounds, os::spin_kind::yielding);
      std::unique_lock lock(mutex_);
      if (results_.empty() &&
          (wait.count() <= 0 || !arrived_.wait_for(lock, wait, [&] { return !results_.empty(); })))
        return false;
      taken_.clear();
      next_ = 0;
      std::swap(taken_, results_);
      count_.store(0, std::memory_order_release);
      for (pool_result& r : returned_)
        if (spent_.size() < max_spent) spent_.push_back(std::move(r));
      returned_.clear();
    }
    std::swap(out, taken_[next_]);
    // (An empty buffer is not worth passing, and a large one not worth
    // holding: at most max_spent of max_kept_bytes, 16 MiB, wait here.)
    pool_result& old = taken_[next_++];
    if (old.value.capacity() != 0 && old.value.capacity() <= max_kept_bytes)
      returned_.push_back(std::move(old));
    return true;
  }

 private:
  static constexpr std::size_t max_spent = 256;
  static constexpr std::size_t max_kept_bytes = std::size_t{64} << 10;

  std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<pool_result> results_;
  std::atomic<std::size_t> count_{0};  // results_.size(), to look at without the lock
  std::vector<pool_result> spent_;     // for the workers' next results
  // The pool's thread's own: taken (handed out up to next_), and spent ones
  // to give back under the next lock.
  std::vector<pool_result> taken_;
  std::size_t next_ = 0;
  std::vector<pool_result> returned_;
};

// A task on its way to a thread (id 0: stop).
struct thread_task {
  std::uint64_t id = 0;
  std::uint32_t slot = 0;
  std::shared_ptr<const byte_buffer> payload;
  task_handles handles;
};

// What a worker thread shares with its site.
struct thread_state {
  task_ring ring{};
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<thread_task> tasks;
  std::atomic<std::size_t> count{0};  // tasks.size(), to look at without the lock
  std::atomic<bool> exited{false};
  std::atomic<pid_t> tid{0};  // the worker's thread, once it runs

  // Queues `more` (emptied), one lock and one wake-up for them all; all of
  // them or, if memory runs out, none (the engine then fails them as never
  // delivered, so none may reach the thread).
  void push(std::vector<thread_task>& more) {
    if (more.empty()) return;
    {
      std::lock_guard lock(mutex);
      if (tasks.empty()) {
        std::swap(tasks, more);  // the usual case: the thread took all there was
      } else {
        tasks.reserve(tasks.size() + more.size());  // the one step that can fail
        for (auto& task : more) tasks.push_back(std::move(task));
      }
      count.store(tasks.size(), std::memory_order_release);
    }
    more.clear();
    changed.notify_one();
  }
  void push(thread_task&& task) {
    std::vector<thread_task> one;
    one.push_back(std::move(task));
    push(one);
  }
  // The next task. On the worker's thread only: it takes every task queued
  // at once, under one lock, into `taken`. (Taken is not started: the ring
  // still says which task runs, and the pool can take back the others.)
  thread_task pop() {
    if (next_taken == taken.size()) {
      os::wait_awake([&] { return count.load(std::memory_order_acquire) != 0; }, spin_time,
                     yield_rounds, os::spin_kind::yielding);
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return !tasks.empty(); });
      taken.clear();
      next_taken = 0;
      std::swap(taken, tasks);
      count.store(0, std::memory_order_release);
    }
    return std::move(taken[next_taken++]);
  }

  // The worker's own: taken, and run up to next_taken.
  std::vector<thread_task> taken;
  std::size_t next_taken = 0;
};

void worker_thread_main(thread_state& state, result_list& results, const bound_call& initializer,
                        unsigned max_tasks) {
  if (!initialize_worker(initializer, state.ring, [&](pool_result& r) { results.push(r); })) return;
  pool_result result;
  byte_buffer scratch;
  handle_source handles;
  for (unsigned done = 0; max_tasks == 0 || done < max_tasks; ++done) {
    thread_task task = state.pop();
    if (task.id == 0) return;
    handle_source* given = nullptr;
    if (task.handles && !task.handles->empty()) {
      // The call takes the descriptors it decodes: it gets copies, as a
      // worker process does, and the engine keeps its own.
      try {
        handles.fds.clear();
        for (const unique_fd& fd : *task.handles) handles.fds.push_back(os::duplicate(fd.get()));
        given = &handles;
      } catch (...) {
        result = pool_result{};
        result.id = task.id;
        result.failure = task_failure::raised;
        capture_fault(result.fault);
        results.push(result);
        continue;
      }
    }
    run_task(state.ring, task.id, task.slot, task.payload->span(), given, result, scratch);
    handles.fds.clear();
    results.push(result);
  }
}

class thread_site final : public worker_site {
 public:
  thread_site(const pool_options& options, std::size_t index,
              const std::shared_ptr<result_list>& results)
      : state_(std::make_shared<thread_state>()), name_("PoolThread-" + std::to_string(index + 1)) {
    thread_ = std::thread([state = state_, results, init = options.initializer,
                           max = options.maxtasksperchild, name = name_] {
      os::set_thread_name(name.c_str());
      state->tid.store(os::thread_id(), std::memory_order_relaxed);
      try {
        worker_thread_main(*state, *results, init, max);
      } catch (...) {
        // Nothing in the loop throws but a failure to allocate: the thread
        // ends, and the pool notices and replaces it.
      }
      state->exited.store(true, std::memory_order_release);
    });
  }
  ~thread_site() override {
    finish();
    join();
  }

  task_ring& ring() override { return state_->ring; }

  // Kept until flush(), so that a refill is one lock and one wake-up.
  bool deliver(const job& task, std::uint32_t slot) override {
    outgoing_.push_back(thread_task{task.id, slot, task.payload, task.handles});
    return true;
  }

  void flush() override {
    try {
      state_->push(outgoing_);
    } catch (...) {
      outgoing_.clear();  // as a process worker's: failed by the engine, never sent later
      throw;
    }
  }

  bool alive() override { return !state_->exited.load(std::memory_order_acquire); }

  bool stop_now() override { return false; }

  void finish() override {
    flush();
    state_->push(thread_task{});
  }

  void join() override {
    if (thread_.joinable()) thread_.join();
  }

  std::string who() override { return name_; }

  pid_t task_thread() override { return state_->tid.load(std::memory_order_relaxed); }

  std::string how_it_ended() override { return "ended"; }

  bool killed_from_outside() override { return false; }

 private:
  std::shared_ptr<thread_state> state_;
  std::string name_;
  std::thread thread_;
  std::vector<thread_task> outgoing_;  // delivered, not yet flushed
};

class thread_workers final : public worker_backend {
 public:
  explicit thread_workers(const pool_options& options) : options_(options) {}

  std::unique_ptr<worker_site> start(std::size_t index) override {
    return std::make_unique<thread_site>(options_, index, results_);
  }

  bool next_result(pool_result& out, std::chrono::nanoseconds wait) override {
    return results_->pop(out, wait);
  }

  bool processes() const override { return false; }

 private:
  pool_options options_;
  std::shared_ptr<result_list> results_ = std::make_shared<result_list>();
};

}  // namespace

std::unique_ptr<worker_backend> make_thread_workers(const pool_options& options) {
  return std::make_unique<thread_workers>(options);
}

}  // namespace mp::detail
