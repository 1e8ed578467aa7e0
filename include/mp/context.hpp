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

#include "mp/export.hpp"
#include "mp/process.hpp"

namespace mp {

// What a context makes, declared only: a context's factory for a type needs that type's header
// where it is called (ctx.pool() needs <mp/pool.hpp>), so that <mp/context.hpp> costs a program
// only <mp/process.hpp>.
class pool;
struct pool_options;
class process_pool_executor;
struct executor_options;
template <class T>
class queue;
template <class T>
class simple_queue;
template <class T>
class joinable_queue;
class process_lock;  // mp::lock, which <mp/synchronize.hpp> declares
class rlock;
class condition;
class semaphore;
class bounded_semaphore;
class event;
class barrier;
class connection;
MP_EXPORT std::pair<connection, connection> pipe(bool duplex);

namespace detail {

/// T, named so that it depends on `Dummy`: a member template of mp::context whose types are
/// spelled through it is checked only when called, when the caller has included their header.
template <class T, class Dummy>
struct deferred {
  using type = T;
};
template <class T, class Dummy>
using deferred_t = typename deferred<T, Dummy>::type;

template <class T>
concept complete_type = requires {
  sizeof(T);
};

}  // namespace detail

/// Python's context object: the library's factories bound to one start method.
/// Each factory needs the header of what it makes: <mp/pool.hpp> for pool(),
/// <mp/executor.hpp>, <mp/queues.hpp>, <mp/synchronize.hpp>, <mp/connection.hpp>
/// for the others (<mp/mp.hpp> has them all).
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
  template <class Dummy = void>
  auto pool() const {
    static_assert(detail::complete_type<detail::deferred_t<mp::pool, Dummy>>,
                  "mp::context::pool() makes an mp::pool: #include <mp/pool.hpp>");
    return pool<Dummy>(detail::deferred_t<pool_options, Dummy>{});
  }
  template <class Dummy = void>
  detail::deferred_t<mp::pool, Dummy> pool(detail::deferred_t<pool_options, Dummy> options) const {
    options.method = method_;
    return detail::deferred_t<mp::pool, Dummy>(std::move(options));
  }
  /// ProcessPoolExecutor(mp_context=ctx).
  template <class Dummy = void>
  auto process_pool_executor() const {
    static_assert(
        detail::complete_type<detail::deferred_t<mp::process_pool_executor, Dummy>>,
        "mp::context::process_pool_executor() makes an executor: #include <mp/executor.hpp>");
    return process_pool_executor<Dummy>(detail::deferred_t<executor_options, Dummy>{});
  }
  template <class Dummy = void>
  detail::deferred_t<mp::process_pool_executor, Dummy> process_pool_executor(
      detail::deferred_t<executor_options, Dummy> options) const {
    options.method = method_;
    return detail::deferred_t<mp::process_pool_executor, Dummy>(std::move(options));
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
  template <class Dummy = void>
  detail::deferred_t<mp::process_lock, Dummy> lock() const {
    return detail::deferred_t<mp::process_lock, Dummy>();
  }
  template <class Dummy = void>
  detail::deferred_t<mp::rlock, Dummy> rlock() const {
    return detail::deferred_t<mp::rlock, Dummy>();
  }
  template <class Dummy = void>
  detail::deferred_t<mp::condition, Dummy> condition() const {
    return detail::deferred_t<mp::condition, Dummy>();
  }
  template <class Dummy = void>
  detail::deferred_t<mp::semaphore, Dummy> semaphore(unsigned value = 1) const {
    return detail::deferred_t<mp::semaphore, Dummy>(value);
  }
  template <class Dummy = void>
  detail::deferred_t<mp::bounded_semaphore, Dummy> bounded_semaphore(unsigned value = 1) const {
    return detail::deferred_t<mp::bounded_semaphore, Dummy>(value);
  }
  template <class Dummy = void>
  detail::deferred_t<mp::event, Dummy> event() const {
    return detail::deferred_t<mp::event, Dummy>();
  }
  template <class... A>
  detail::deferred_t<mp::barrier, void(A...)> barrier(A&&... a) const {
    return detail::deferred_t<mp::barrier, void(A...)>(std::forward<A>(a)...);
  }
  /// ctx.Pipe(duplex).
  template <class Duplex = bool>
  std::pair<detail::deferred_t<connection, Duplex>, detail::deferred_t<connection, Duplex>> pipe(
      Duplex duplex = true) const {
    return mp::pipe(duplex);
  }

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
