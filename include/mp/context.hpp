// SPDX-License-Identifier: MIT
// Start methods and contexts: Python's get_context, set_start_method,
// get_start_method and get_all_start_methods.
//
// The default start method is fork, as Python's on Linux before 3.14: it is
// the fastest, and the only one under which any callable works (a lambda that
// captures, say). Choose spawn for a program whose other threads may hold
// locks when it starts a child: a forked child inherits those locks held, by
// threads it does not have. See docs/start-methods.md.
#pragma once

#include <concepts>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/connection.hpp"
#include "mp/executor.hpp"
#include "mp/export.hpp"
#include "mp/pool.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "mp/synchronize.hpp"

namespace mp {

/// Python's context object: the library's factories bound to one start method.
class context {
 public:
  explicit context(start_method method) noexcept : method_(method) {}

  start_method get_start_method() const noexcept { return method_; }

  /// ctx.Process(target, args): a process that starts with this method.
  template <class Fn, class... Args>
  requires(!std::same_as<std::remove_cvref_t<Fn>, process_options>) mp::process
      process(Fn&& fn, Args&&... args)
  const { return process(process_options{}, std::forward<Fn>(fn), std::forward<Args>(args)...); }
  template <class Fn, class... Args>
  mp::process process(process_options options, Fn&& fn, Args&&... args) const {
    options.method = method_;
    return mp::process(std::move(options), std::forward<Fn>(fn), std::forward<Args>(args)...);
  }

  /// ctx.Pool(...): a pool whose workers start with this method.
  mp::pool pool(pool_options options = {}) const {
    options.method = method_;
    return mp::pool(std::move(options));
  }
  /// ProcessPoolExecutor(mp_context=ctx).
  mp::process_pool_executor process_pool_executor(executor_options options = {}) const {
    options.method = method_;
    return mp::process_pool_executor(std::move(options));
  }

  // Python's ctx.Queue(), ctx.Lock() and the rest: the same objects under any
  // method (they reach a child of any method as themselves), here so that
  // code written against a context reads as Python's.
  template <class T, class... A>
  mp::queue<T> queue(A&&... a) const {
    return mp::queue<T>(std::forward<A>(a)...);
  }
  template <class T, class... A>
  mp::simple_queue<T> simple_queue(A&&... a) const {
    return mp::simple_queue<T>(std::forward<A>(a)...);
  }
  template <class T, class... A>
  mp::joinable_queue<T> joinable_queue(A&&... a) const {
    return mp::joinable_queue<T>(std::forward<A>(a)...);
  }
  mp::lock lock() const { return mp::lock(); }
  mp::rlock rlock() const { return mp::rlock(); }
  mp::condition condition() const { return mp::condition(); }
  mp::semaphore semaphore(unsigned value = 1) const { return mp::semaphore(value); }
  mp::bounded_semaphore bounded_semaphore(unsigned value = 1) const {
    return mp::bounded_semaphore(value);
  }
  mp::event event() const { return mp::event(); }
  template <class... A>
  mp::barrier barrier(A&&... a) const {
    return mp::barrier(std::forward<A>(a)...);
  }
  std::pair<connection, connection> pipe(bool duplex = true) const { return mp::pipe(duplex); }

 private:
  start_method method_;
};

/// Python's forkserver.ensure_running(): starts this process's fork server
/// unless it runs (otherwise it starts on first use) and returns its pid. The
/// server is a child of this process, but not one of active_children().
MP_EXPORT pid_t ensure_forkserver_running();

/// Python's set_forkserver_preload: functions the fork server calls once,
/// after the program's static initializers and before it forks any child,
/// so that every child starts with what they load or compute (an exception
/// is reported and ignored, as Python ignores a preload that fails). Takes
/// effect when the server starts.
MP_EXPORT void set_forkserver_preload(std::vector<void (*)()> functions);

/// Python's get_context(method): the context of `method`, or of the default.
MP_EXPORT context get_context(std::optional<start_method> method = std::nullopt);

}  // namespace mp
