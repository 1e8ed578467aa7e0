// SPDX-License-Identifier: MIT
// Python's concurrent.futures.ProcessPoolExecutor, its Future, and the free
// functions wait and as_completed, on mp's process pool (mp/pool.hpp).
//
// Only differences from Python are documented here; see
// https://docs.python.org/3/library/concurrent.futures.html
//
// Callables and arguments follow mp::pool's rules. A worker that dies while it
// runs a task fails that task only, with mp::broken_process_pool; the executor
// replaces the worker and stays usable. Python's executor breaks entirely:
// every pending future fails and no more can be submitted.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mp/errors.hpp"
#include "mp/pool.hpp"
#include "mp/timeout.hpp"

namespace mp {

/// Python's concurrent.futures.Future. Copies refer to the same future.
template <class R>
class future {
 public:
  /// A pending future of no executor, which the program completes itself
  /// (Python's Future(), for those who build on the waiting tools):
  /// set_running_or_notify_cancel(), set_result(), set_exception().
  future() : state_(std::make_shared<detail::task_state<R>>()) {}
  explicit future(std::shared_ptr<detail::task_state<R>> state) : state_(std::move(state)) {}

  /// The task's return value, waiting at most `timeout` (no limit if left
  /// out); rethrows its exception; mp::cancelled_error if it was cancelled,
  /// mp::timeout_error if it was not done in time.
  R result(mp::timeout timeout = {}) const {
    if (!wait_for(timeout)) throw timeout_error("the future was not done in time");
    std::lock_guard lock(state_->mutex);
    if (state_->error) std::rethrow_exception(state_->error);
    if (state_->now == detail::task_state_base::stage::cancelled)
      throw cancelled_error("the future was cancelled");
    if constexpr (!std::is_void_v<R>) return *state_->value;
  }
  /// The task's exception, or null if it returned (Python's exception()),
  /// waiting as result() does.
  std::exception_ptr exception(mp::timeout timeout = {}) const {
    if (!wait_for(timeout)) throw timeout_error("the future was not done in time");
    std::lock_guard lock(state_->mutex);
    if (state_->now == detail::task_state_base::stage::cancelled)
      throw cancelled_error("the future was cancelled");
    return state_->error;
  }
  bool done() const {
    std::lock_guard lock(state_->mutex);
    return state_->done_locked();
  }
  bool running() const {
    std::lock_guard lock(state_->mutex);
    return state_->now == detail::task_state_base::stage::running;
  }
  bool cancelled() const {
    std::lock_guard lock(state_->mutex);
    return state_->now == detail::task_state_base::stage::cancelled;
  }
  /// Python's cancel(): succeeds only before the task starts. With
  /// `kill_running`, a running task is stopped too: its worker is killed and
  /// replaced (no Python executor can do this). True if the future is, or
  /// will shortly be, cancelled.
  bool cancel(bool kill_running = false) const {
    std::unique_lock lock(state_->mutex);
    if (state_->now == detail::task_state_base::stage::cancelled) return true;
    if (state_->done_locked()) return false;
    if (state_->id == 0) {  // a future the program completes: Python's rule
      if (state_->now == detail::task_state_base::stage::running) return false;
      state_->settle(lock, detail::task_state_base::stage::cancelled);
      return true;
    }
    auto core = state_->core.lock();
    lock.unlock();
    // A task not started is settled as cancelled before this returns; a
    // running one once its worker has been stopped.
    return core && core->cancel(state_->id, kill_running);
  }
  /// Calls `callback(future)` when the future is done, at once if it is
  /// already (Python's add_done_callback). Runs on the pool's thread otherwise.
  void add_done_callback(std::function<void(future<R>)> callback) const {
    std::unique_lock lock(state_->mutex);
    if (!state_->done_locked()) {
      state_->on_done.push_back(
          [callback = std::move(callback), state = state_] { callback(future<R>(state)); });
      return;
    }
    lock.unlock();
    detail::task_state_base::run_callback([&] { callback(*this); });
  }

  /// Python's set_running_or_notify_cancel(), for a future the program
  /// completes: false if it was cancelled (its waiters are told), true if it
  /// is now running; mp::invalid_state_error if it was running or done.
  bool set_running_or_notify_cancel() const {
    std::lock_guard lock(state_->mutex);
    using stage = detail::task_state_base::stage;
    if (state_->now == stage::cancelled) return false;
    if (state_->now != stage::pending)
      throw invalid_state_error("set_running_or_notify_cancel() on a future that is " +
                                std::string(state_->now == stage::running ? "running" : "done"));
    state_->now = stage::running;
    return true;
  }
  /// Python's set_result(): completes the future with `value`;
  /// mp::invalid_state_error if it is done already.
  template <class... V>
  requires(sizeof...(V) == (std::is_void_v<R> ? 0 : 1)) void set_result(V&&... value) const {
    std::unique_lock lock(state_->mutex);
    check_not_done();
    if constexpr (!std::is_void_v<R>) state_->value.emplace(std::forward<V>(value)...);
    state_->settle(lock, detail::task_state_base::stage::finished);
  }
  /// Python's set_exception(): completes the future with `error`;
  /// mp::invalid_state_error if it is done already.
  void set_exception(std::exception_ptr error) const {
    std::unique_lock lock(state_->mutex);
    check_not_done();
    state_->error = std::move(error);
    state_->settle(lock, detail::task_state_base::stage::finished);
  }

  /// Blocks until done, at most `timeout` (no limit if left out); true if done.
  bool wait_for(mp::timeout timeout = {}) const { return state_->await_done(timeout); }
  const std::shared_ptr<detail::task_state<R>>& state() const noexcept { return state_; }

 private:
  void check_not_done() const {
    if (state_->done_locked())
      throw invalid_state_error(state_->now == detail::task_state_base::stage::cancelled
                                    ? "the future was cancelled"
                                    : "the future is done already");
  }
  std::shared_ptr<detail::task_state<R>> state_;
};

/// Python's ProcessPoolExecutor keyword arguments.
struct executor_options {
  /// 0: mp::cpu_count(), as Python's None; past INT_MAX (a negative number
  /// converted): std::invalid_argument.
  unsigned max_workers = 0;
  /// Python's initializer and initargs: `{init, args...}` (see mp::bound_call).
  bound_call initializer{};
  /// Python's max_tasks_per_child; 0: no limit.
  unsigned max_tasks_per_child = 0;
  /// How the workers start (Python's mp_context); unset: mp::get_start_method().
  std::optional<start_method> method{};
};

/// Python's concurrent.futures.ProcessPoolExecutor. Thread-safe. The
/// destructor is shutdown(true), as Python's `with` block.
class process_pool_executor {
 public:
  explicit process_pool_executor(executor_options options = {})
      : core_(std::make_shared<detail::pool_core>(
            pool_options{.processes = options.max_workers,
                         .initializer = std::move(options.initializer),
                         .maxtasksperchild = options.max_tasks_per_child,
                         .method = options.method},
            detail::worker_kind::processes, detail::worker_start::on_demand)) {}
  explicit process_pool_executor(unsigned max_workers)
      : process_pool_executor(executor_options{.max_workers = max_workers}) {}
  process_pool_executor(const process_pool_executor&) = delete;
  process_pool_executor& operator=(const process_pool_executor&) = delete;
  ~process_pool_executor() { shutdown(true); }

  unsigned max_workers() const noexcept { return core_->processes(); }

  /// Schedules f(args...); throws mp::process_error ("cannot schedule new
  /// futures after shutdown", Python's RuntimeError) after shutdown, and the
  /// pool's mp::broken_process_pool once a worker's initializer has failed.
  template <class Fn, class... Args>
  auto submit(Fn fn, Args&&... args) {
    using R = detail::stored_result_t<Fn, detail::stored_t<Args>...>;
    if constexpr (!detail::check_task<Fn, detail::stored_t<Args>...>())
      return future<R>(nullptr);
    else
      return submit_checked(fn, std::forward<Args>(args)...);
  }

  /// Python's Executor.map: a range of f over `input`, in input order. As in
  /// Python, the whole input is read and submitted at the call, so the results
  /// are kept whatever comes first, the iteration or shutdown(); an exception
  /// from reading the input comes after the results before it. If a result is
  /// not ready `timeout` after this call, the iteration throws
  /// mp::timeout_error.
  template <class Fn, std::ranges::input_range Range>
  requires std::ranges::viewable_range<Range>
  auto map(Fn fn, Range&& input, mp::timeout timeout = {}, std::size_t chunksize = 1) {
    if constexpr (!detail::check_map<false, Fn, std::ranges::range_value_t<Range>>()) {
      return detail::not_invocable{};
    } else {
      auto results = pool_view().imap(fn, std::forward<Range>(input), chunksize);
      results.set_timeout(timeout);
      results.submit_all();
      return results;
    }
  }

 protected:
  /// An executor over workers of another kind (mp::mpi::pool_executor).
  explicit process_pool_executor(std::shared_ptr<detail::pool_core> core)
      : core_(std::move(core)) {}

 private:
  template <class Fn, class... Args>
  auto submit_checked(Fn fn, Args&&... args) {
    using R = detail::stored_result_t<Fn, detail::stored_t<Args>...>;
    auto state = detail::make_task_state<R>();
    state->core = core_;
    detail::task_handles handles = state->call.encode(fn, std::forward<Args>(args)...);
    state->id = submit_to_core(std::move(handles), state);
    return future<R>(state);
  }

  std::uint64_t submit_to_core(detail::task_handles handles,
                               const std::shared_ptr<detail::task_state_base>& state) {
    try {
      return core_->submit(state->call.share(state), std::move(handles), state);
    } catch (const usage_error&) {
      throw process_error("cannot schedule new futures after shutdown");
    }
  }

 public:
  /// Python's shutdown: no more submissions; with `cancel_futures`, futures
  /// not yet started are cancelled; with `wait`, returns when the running and
  /// pending ones are done and the workers have exited.
  void shutdown(bool wait = true, bool cancel_futures = false) {
    if (cancel_futures) core_->cancel_pending();
    core_->close();
    if (wait) core_->join();
  }

 private:
  // A pool that shares this executor's workers, for map.
  pool& pool_view() {
    std::lock_guard lock(view_mutex_);
    if (!view_) view_.reset(new pool(core_));
    return *view_;
  }

  std::shared_ptr<detail::pool_core> core_;
  std::mutex view_mutex_;
  std::unique_ptr<pool> view_;
};

/// Python's FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED.
enum class return_when { first_completed, first_exception, all_completed };

/// What wait returns: the futures done and those not.
template <class R>
struct wait_result {
  std::vector<future<R>> done;
  std::vector<future<R>> not_done;
};

namespace detail {
// Counts the futures done (and failed) so far; woken by each.
struct any_waiter {
  std::mutex mutex;
  std::condition_variable changed;
  std::size_t finished = 0;
  std::size_t failed = 0;
  std::vector<std::size_t> order;  // indices in completion order
};
}  // namespace detail

namespace detail {
// The futures, each once (copies of one future count once, as in Python's sets).
template <class R>
std::vector<future<R>> distinct(const std::vector<future<R>>& futures) {
  std::vector<future<R>> out;
  out.reserve(futures.size());
  std::unordered_set<const void*> seen;
  seen.reserve(futures.size());
  for (const auto& f : futures)
    if (seen.insert(f.state().get()).second) out.push_back(f);
  return out;
}
}  // namespace detail

/// Python's concurrent.futures.wait. A future given more than once is
/// reported once.
template <class R>
wait_result<R> wait(const std::vector<future<R>>& given, mp::timeout timeout = {},
                    return_when when = return_when::all_completed) {
  const std::vector<future<R>> futures = detail::distinct(given);
  const detail::deadline deadline(timeout);
  auto waiter = std::make_shared<detail::any_waiter>();
  for (std::size_t i = 0; i < futures.size(); ++i) {
    future<R> f = futures[i];
    f.add_done_callback([waiter, i](future<R> done) {
      const bool failed = !done.cancelled() && done.exception() != nullptr;
      std::lock_guard lock(waiter->mutex);
      ++waiter->finished;
      if (failed) ++waiter->failed;
      waiter->order.push_back(i);
      waiter->changed.notify_all();
    });
  }
  const auto enough = [&] {
    if (waiter->finished == futures.size()) return true;
    if (when == return_when::first_completed) return waiter->finished > 0;
    if (when == return_when::first_exception) return waiter->failed > 0;
    return false;
  };
  {
    std::unique_lock lock(waiter->mutex);
    detail::wait_until(waiter->changed, lock, deadline, enough);
  }
  wait_result<R> out;
  for (const auto& f : futures) (f.done() ? out.done : out.not_done).push_back(f);
  return out;
}

/// Python's concurrent.futures.as_completed: a range of the futures in the
/// order they complete (those already done first), each yielded as soon as it
/// is done, and once however often it was given; a yielded future is let go.
/// The iteration throws mp::timeout_error if they are not all done within
/// `timeout` of the call.
template <class R>
class as_completed {
 public:
  explicit as_completed(const std::vector<future<R>>& futures, mp::timeout timeout = {})
      : waiter_(std::make_shared<detail::any_waiter>()), deadline_(timeout) {
    for (auto& f : detail::distinct(futures)) futures_.emplace_back(std::move(f));
    for (std::size_t i = 0; i < futures_.size(); ++i)
      futures_[i]->add_done_callback([waiter = waiter_, i](future<R>) {
        std::lock_guard lock(waiter->mutex);
        ++waiter->finished;
        waiter->order.push_back(i);
        waiter->changed.notify_all();
      });
  }

  using iterator = detail::pull_iterator<as_completed, future<R>>;
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  friend iterator;
  std::optional<future<R>> next() {
    if (yielded_ == futures_.size()) return std::nullopt;
    std::unique_lock lock(waiter_->mutex);
    const auto ready = [&] { return waiter_->order.size() > yielded_; };
    if (!detail::wait_until(waiter_->changed, lock, deadline_, ready))
      throw timeout_error(std::to_string(futures_.size() - yielded_) + " of " +
                          std::to_string(futures_.size()) + " futures unfinished");
    // Yielded, and let go: the caller holds it as long as it needs.
    auto& slot = futures_[waiter_->order[yielded_++]];
    future<R> out = std::move(*slot);
    slot.reset();
    return out;
  }

  std::vector<std::optional<future<R>>> futures_;
  std::shared_ptr<detail::any_waiter> waiter_;
  detail::deadline deadline_;
  std::size_t yielded_ = 0;
};

}  // namespace mp
