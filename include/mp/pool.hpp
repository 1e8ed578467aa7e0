// SPDX-License-Identifier: MIT
// Process pools: Python's multiprocessing.Pool (apply, apply_async, map,
// map_async, starmap, imap, imap_unordered, close, terminate, join).
//
// Only differences from Python are documented here; see
// https://docs.python.org/3/library/multiprocessing.html#module-multiprocessing.pool
//
// Workers are forked when the pool starts. Tasks reach them as encoded calls
// (mp/serialization.hpp, detail/code_identity.hpp): the callable must be a
// function pointer or a capture-less lambda or empty function object, and
// the arguments and results codec types. Tasks go to one worker at a time over
// a queue of its own, results come back over a shared queue.
//
// A worker that dies while it runs a task (a signal, exit(), an abort) fails
// that task only: its result throws mp::worker_died, naming the signal or exit
// code. The pool starts a replacement and every other task completes. Python's
// Pool waits forever for such a task.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mp/bound_call.hpp"
#include "mp/detail/checks.hpp"
#include "mp/detail/code_identity.hpp"
#include "mp/detail/codec.hpp"
#include "mp/detail/state_allocator.hpp"
#include "mp/errors.hpp"
#include "mp/export.hpp"
#include "mp/process.hpp"
#include "mp/timeout.hpp"

namespace mp {

/// A pool or executor cannot run a task as asked: its worker died, or the
/// pool broke (Python's concurrent.futures.BrokenExecutor).
class MP_EXPORT broken_executor : public process_error {
 public:
  using process_error::process_error;
};

/// The worker running a task died before it finished (a signal, exit(), an
/// abort, the OOM killer). The pool replaced the worker; other tasks go on.
class MP_EXPORT worker_died : public broken_executor {
 public:
  using broken_executor::broken_executor;
};

/// A task of a process pool or executor failed because its worker process
/// died (Python's BrokenProcessPool, raised here for that task only), or the
/// pool broke: a worker's initializer failed, so no task can run. A
/// worker_died, so one handler catches both.
class MP_EXPORT broken_process_pool : public worker_died {
 public:
  using worker_died::worker_died;
};

/// A thread pool broke: a worker's initializer failed (Python's BrokenThreadPool).
class MP_EXPORT broken_thread_pool : public broken_executor {
 public:
  using broken_executor::broken_executor;
};

/// A task was cancelled: before it started, or stopped while it ran (Python's
/// CancelledError).
class MP_EXPORT cancelled_error : public process_error {
 public:
  using process_error::process_error;
};

/// An operation on a future that its state does not allow: setting the
/// result of one that is done (Python's concurrent.futures.InvalidStateError).
class MP_EXPORT invalid_state_error : public process_error {
 public:
  using process_error::process_error;
};

namespace detail {

/// Reports on stderr the exception being handled, thrown by a callback
/// (`what` says which kind): Python logs such an exception and goes on.
MP_EXPORT void report_callback_error(const char* what) noexcept;

// A task state's done word (see task_state_base::done): waits until it reads
// done_value, at most `timeout` (true if so); wakes every waiter.
MP_EXPORT bool await_done_word(std::atomic<std::uint32_t>& word, mp::timeout timeout);
MP_EXPORT void wake_done_word(std::atomic<std::uint32_t>& word) noexcept;

}  // namespace detail

/// Python's Pool keyword arguments.
struct pool_options {
  /// Worker processes; 0: mp::cpu_count(), as Python's None. A count past
  /// INT_MAX (a negative number converted) is refused with std::invalid_argument.
  unsigned processes = 0;
  /// Runs in each worker before its first task (Python's initializer and
  /// initargs: `{init, args...}`). If it throws, the pool is broken: every
  /// task fails with mp::broken_process_pool, saying why. Under spawn or
  /// forkserver it must be portable (see bound_call).
  bound_call initializer{};
  /// Tasks a worker runs before it is replaced by a fresh one; 0: no limit.
  /// Past INT_MAX: std::invalid_argument, as for `processes`.
  unsigned maxtasksperchild = 0;
  /// How the workers start (Python's context= argument); unset:
  /// mp::get_start_method().
  std::optional<start_method> method{};
  /// What the pool's destructor does: `join` finishes the submitted work
  /// (close() and join()); `terminate` or `kill` drops it (terminate() and
  /// join()), as Python's `with Pool() as p:` does.
  destroy_action on_destroy = destroy_action::join;
};

/// What imap yields for each item of a callable that returns void (Python's
/// None); map over such a callable returns void.
struct none {
  // One byte on the wire: a count of elements is checked against the bytes
  // that follow it.
  template <class Archive>
  void serialize(Archive& archive) {
    std::uint8_t mark = 0;
    archive(mark);
  }
  friend bool operator==(none, none) = default;
};

namespace detail {

/// What map returns for a callable returning Element.
template <class Element>
using map_result_t = std::conditional_t<std::is_void_v<Element>, void, std::vector<Element>>;

/// The result of a map over no items.
template <class Out>
auto empty_map_result() {
  if constexpr (std::is_void_v<Out>)
    return true;
  else
    return Out{};
}

/// The descriptors of the resources (queues, locks, connections, ...) among a
/// task's arguments: the pool's own copies, which travel to the worker that
/// takes the task beside it, over that worker's handle channel.
using task_handles = std::shared_ptr<const std::vector<unique_fd>>;

/// Copies of the descriptors `sink` borrowed (null if none), which outlive
/// the arguments they came from. Throws std::system_error, or
/// mp::process_error if there are more than a message carries (253).
MP_EXPORT task_handles copy_handles(const handle_sink& sink);

/// An encoded call and the descriptors it refers to.
struct task_payload {
  byte_buffer bytes;
  task_handles handles;
};

/// A task's outcome, as the engine hands it to the task's completion: the
/// encoded return value, or the exception the task failed with.
struct task_outcome {
  std::span<const std::byte> value;
  std::exception_ptr error;
  bool cancelled = false;  // error is an mp::cancelled_error
};

/// A task's outcome: its failure, or null with the decoded return value in
/// `value` (left empty for R = void). The failure is moved out of `result`:
/// the pool's thread keeps no reference to an exception it handed on, so the
/// thread that last uses it also frees it.
template <class R, class Value>
std::exception_ptr outcome(task_outcome& result, Value& value) {
  if (result.error) return std::move(result.error);
  if constexpr (!std::is_void_v<R>) {
    try {
      value = mp::decode<R>(result.value);
    } catch (...) {
      return std::current_exception();
    }
  }
  return nullptr;
}

class worker_backend;

/// Where the engine hands a task's outcome: a future, an async result, the
/// gathering of a map's chunks. `tag` is what the task was submitted with (a
/// chunk's index, say), so one sink serves many tasks without an allocation
/// per task.
class task_sink {
 public:
  /// On the pool's thread (or, for a task cancelled before it started, on
  /// the cancelling thread), once per task.
  virtual void complete(std::uint64_t tag, task_outcome&& outcome) = 0;
  /// Under the pool's lock, when a worker is about to run the task: keep it short.
  virtual void started(std::uint64_t tag) { static_cast<void>(tag); }

 protected:
  ~task_sink() = default;
};

/// The kinds of worker mp builds in.
enum class worker_kind { processes, threads };

/// When workers start: all with the pool (Python's Pool), or one at a time
/// as tasks arrive and no worker is idle, up to the count (Python 3.9's
/// ProcessPoolExecutor), each then kept for the tasks after.
enum class worker_start { all_at_once, on_demand };

/// The type-erased pool: tasks, dispatch and the pool's thread, over workers
/// of one kind (src/pool_engine.hpp).
class MP_EXPORT pool_core {
 public:
  /// Worker processes, or worker threads of this process.
  pool_core(pool_options options, worker_kind kind, worker_start when = worker_start::all_at_once);
  /// Workers of another kind (the MPI backend).
  pool_core(pool_options options, std::unique_ptr<worker_backend> workers);
  pool_core(const pool_core&) = delete;
  pool_core& operator=(const pool_core&) = delete;
  /// Finishes the submitted tasks, then stops the workers (or with
  /// pool_options::on_destroy, drops them).
  ~pool_core();

  /// No time limit for a task (mp::timeout's duration when it has none).
  static constexpr std::chrono::nanoseconds no_limit = std::chrono::nanoseconds::max();

  /// Queues an encoded call and returns its id; its outcome goes to
  /// `sink->complete(tag, ...)`, and `sink->started(tag)` is called when a
  /// worker takes it. A task that runs longer than `limit` fails with
  /// mp::timeout_error and its worker is killed and replaced. Throws
  /// mp::usage_error once closed or terminated, the pool's broken_executor
  /// once broken.
  std::uint64_t submit(task_payload payload, std::shared_ptr<task_sink> sink, std::uint64_t tag = 0,
                       mp::timeout limit = {});
  /// submit() of a call encoded in memory the caller shares (a task state's
  /// call_bytes, through an aliasing pointer): no copy, no allocation.
  std::uint64_t submit(std::shared_ptr<const byte_buffer> call, task_handles handles,
                       std::shared_ptr<task_sink> sink, std::uint64_t tag = 0,
                       mp::timeout limit = {});
  /// Queues many calls at once, as submit() each (task i's tag is
  /// `first_tag + i`), under one lock; returns the first id (the ids follow
  /// each other). Refused as a whole, or queued as a whole.
  std::uint64_t submit_all(std::vector<task_payload> payloads, std::shared_ptr<task_sink> sink,
                           std::uint64_t first_tag, mp::timeout limit = {});
  /// submit_all() of calls encoded one after another into `bytes`, call i
  /// from `bounds[i]` to `bounds[i + 1]`: one buffer for them all.
  std::uint64_t submit_slices(std::shared_ptr<const byte_buffer> bytes,
                              std::span<const std::size_t> bounds, std::shared_ptr<task_sink> sink,
                              std::uint64_t first_tag, mp::timeout limit = {});
  /// Cancels a task that has not started, or with `kill_running` one that is
  /// running (its worker is killed and replaced): its sink gets an
  /// mp::cancelled_error, at once for a task not started. False if
  /// the task has finished (or runs, without kill_running).
  bool cancel(std::uint64_t id, bool kill_running);
  /// Cancels every task that has not started, as cancel(); returns how many.
  std::size_t cancel_pending();
  void close();
  void terminate();
  void join();
  unsigned processes() const noexcept { return processes_; }

 private:
  struct impl;
  void start();
  unsigned processes_;
  std::unique_ptr<impl> impl_;
};

/// Runs `fn` over a chunk of arguments in a worker (map, imap). For `Star`,
/// each argument is a tuple spread over fn's parameters (starmap).
template <class Fn, class Arg, bool Star>
struct chunk_call {
  Fn fn{};

  auto operator()(const std::vector<Arg>& args) const {
    std::vector<result> out;
    out.reserve(args.size());
    for (const Arg& a : args) {
      if constexpr (std::is_void_v<called>) {
        call(a);
        out.emplace_back();
      } else {
        out.push_back(call(a));
      }
    }
    return out;
  }
  decltype(auto) call(const Arg& a) const {
    if constexpr (Star)
      return std::apply(fn, a);
    else
      return std::invoke(fn, a);
  }
  using called = decltype(std::declval<const chunk_call&>().call(std::declval<const Arg&>()));
  using result = std::conditional_t<std::is_void_v<called>, none, std::decay_t<called>>;

  // A chunk of memcpy-able arguments with memcpy-able results runs over the
  // arguments as they lie in the encoded task and writes the results as
  // operator() and their encoding would (see portable_entry): no vector of
  // either is built, which halves what a worker copies.
  using encoded_element = Arg;
  static constexpr bool runs_on_encoded =
      memcpy_element<Arg> && std::is_default_constructible_v<Arg> && memcpy_element<result> &&
      !std::is_void_v<called> && !std::is_same_v<result, bool>;
  void run_on_encoded(const std::byte* args, std::size_t count,
                      byte_buffer* out) const requires runs_on_encoded {
    const auto element = [args](std::size_t i) {
      Arg a;
      std::memcpy(static_cast<void*>(std::addressof(a)), args + i * sizeof(Arg), sizeof(Arg));
      return a;
    };
    if (out == nullptr) {
      for (std::size_t i = 0; i < count; ++i) (void)call(element(i));
      return;
    }
    const std::uint64_t fingerprint = type_fingerprint<std::vector<result>>;
    const auto n = static_cast<std::uint64_t>(count);
    out->append(&fingerprint, sizeof fingerprint);
    out->append(&n, sizeof n);
    std::byte* const to = out->grow(count * sizeof(result));
    for (std::size_t i = 0; i < count; ++i) {
      const result r = call(element(i));
      std::memcpy(to + i * sizeof(result), std::addressof(r), sizeof(result));
    }
  }

  template <class Archive>
  void save(Archive& archive) const {
    if constexpr (is_function_pointer_v<Fn> && std::same_as<Archive, output_archive>)
      save_code(archive, reinterpret_cast<const void*>(fn));
  }
  template <class Archive>
  void load(Archive& archive) {
    if constexpr (is_function_pointer_v<Fn>)
      fn = reinterpret_cast<Fn>(const_cast<void*>(load_code(archive)));
  }
};

/// Encodes a task: the call, and copies of the descriptors of the resources
/// among its arguments (taken before the arguments go).
template <class Fn, class... Args>
task_payload encode_task(const Fn& fn, Args&&... args) {
  task_payload task;
  handle_sink handles;
  output_archive out(task.bytes, &handles);
  const std::tuple<stored_t<Args>...> stored(std::forward<Args>(args)...);
  encode_call(out, fn, stored);
  if (!handles.fds.empty()) task.handles = copy_handles(handles);
  return task;
}

/// Asks for huge pages for the whole 2 MiB pages inside [at, at + bytes), a
/// fresh allocation of at least 4 MiB not yet touched (madvise MADV_HUGEPAGE);
/// a hint, without effect on smaller ranges or where it is refused.
MP_EXPORT void advise_huge_pages(void* at, std::size_t bytes) noexcept;

/// A task's encoded call, kept in the state of the task it makes (see
/// task_state_base) when it is small, so that it needs no allocation of its
/// own; a larger one gets a buffer of its exact size, which the pool frees
/// once the task is done (the state may be kept much longer). Not movable:
/// `bytes` may point into `room`.
struct call_bytes {
  call_bytes() = default;
  call_bytes(const call_bytes&) = delete;
  call_bytes& operator=(const call_bytes&) = delete;

  /// Encodes fn(args...); returns copies of the descriptors among the
  /// arguments, as encode_task.
  template <class Fn, class... Args>
  task_handles encode(const Fn& fn, Args&&... args) {
    const std::tuple<stored_t<Args>...> stored(std::forward<Args>(args)...);
    handle_sink handles;
    bytes = byte_buffer::window(room.data(), room.size());
    {
      output_archive out(bytes, &handles);
      encode_call(out, fn, stored);
    }
    if (bytes.overflowed()) {  // too large for the room: once more, into a buffer that fits
      auto own = std::make_shared<byte_buffer>();
      own->reserve(bytes.needed());
      bytes = byte_buffer();
      handles = handle_sink();
      output_archive out(*own, &handles);
      encode_call(out, fn, stored);
      large = std::move(own);
    }
    return handles.fds.empty() ? nullptr : copy_handles(handles);
  }

  /// The encoded call, for the pool, once: the room's bytes through `owner`
  /// (the state that holds them), or a large call's own buffer.
  template <class Owner>
  std::shared_ptr<const byte_buffer> share(const std::shared_ptr<Owner>& owner) {
    if (large) return std::move(large);
    return std::shared_ptr<const byte_buffer>(owner, &bytes);
  }

  alignas(std::uint64_t) std::array<std::byte, 96> room;
  byte_buffer bytes;                         // a window on `room`
  std::shared_ptr<const byte_buffer> large;  // or this, until shared
};

/// A run of memcpy-able elements on the wire exactly as a std::vector of them
/// (the count, then the bytes), so a chunk of a contiguous input is encoded
/// straight from the caller's range.
template <class T>
struct elements_wire {
  std::span<const T> items;
  template <class Archive>
  void save(Archive& archive) const {
    const auto count = static_cast<std::uint64_t>(items.size());
    archive.save_binary(&count, sizeof count);
    archive.save_binary(items.data(), items.size_bytes());
  }
};

/// Decodes an encoded std::vector<T> of exactly `out.size()` memcpy-able
/// elements straight into `out`; throws mp::decode_error on any mismatch.
template <class T>
void decode_elements_into(std::span<const std::byte> in, std::span<T> out) {
  check_fingerprint(in, type_fingerprint<std::vector<T>>, type_name<std::vector<T>>());
  in = in.subspan(sizeof(std::uint64_t));
  std::uint64_t count = 0;
  if (in.size() >= sizeof count) std::memcpy(&count, in.data(), sizeof count);
  if (in.size() < sizeof count || count != out.size() ||
      in.size() - sizeof count != out.size_bytes())
    throw_decode("a chunk's results do not match its arguments");
  // An empty chunk's span may hold a null pointer, which memcpy must not get even for 0 bytes.
  if (!out.empty()) std::memcpy(out.data(), in.data() + sizeof count, out.size_bytes());
}

/// A task's state, as its handle (mp::future, mp::async_result) and the
/// pool's thread share it: one machine for both.
struct task_state_base : task_sink {
  std::mutex mutex;
  enum class stage { pending, running, finished, cancelled } now = stage::pending;
  std::exception_ptr error;
  // Run once done (a future's done callbacks, Python's order: after).
  std::vector<std::function<void()>> on_done;
  std::uint64_t id = 0;           // in its pool, for cancel (0: completed by the program)
  std::weak_ptr<pool_core> core;  // for cancel
  call_bytes call;                // what the task runs, while the pool needs it

  // Whether the task is done, read without the lock by waiters, who sleep on
  // it (a futex word: 4 bytes where a condition variable took 48, of a state
  // that a burst of 100,000 submits holds 100,000 of; 320 bytes each, not
  // 384, with the allocator's block). 0: not done; 1: not done, and waited
  // for; done_value: done.
  static constexpr std::uint32_t done_value = 2;
  std::atomic<std::uint32_t> done{0};

  bool done_locked() const { return now == stage::finished || now == stage::cancelled; }
  // Waits until done, at most `timeout`; true if done. A state already done
  // is seen without a call. (Waiting awake a moment before sleeping was
  // measured: it slowed the round trip 3x on 2 CPUs, where the waiter's spin
  // takes the CPU the pool's thread and the worker need.)
  bool await_done(mp::timeout timeout) {
    if (done.load(std::memory_order_acquire) == done_value) return true;
    return await_done_word(done, timeout);
  }
  void started(std::uint64_t) override {
    std::lock_guard lock(mutex);
    if (now == stage::pending) now = stage::running;
  }
  // Marks the state done and runs the done callbacks (outside the lock).
  void settle(std::unique_lock<std::mutex>& lock, stage end) {
    now = end;
    const bool waited = done.exchange(done_value, std::memory_order_acq_rel) != 0;
    auto callbacks = std::move(on_done);
    on_done.clear();
    lock.unlock();
    if (waited) wake_done_word(done);
    for (auto& callback : callbacks) run_callback(callback);
  }
  // Python logs and ignores an exception from a done callback: so here, on stderr.
  static void run_callback(const std::function<void()>& callback) noexcept {
    try {
      callback();
    } catch (...) {
      report_callback_error("a future's done callback");
    }
  }

 protected:
  ~task_state_base() = default;
};

template <class R>
struct task_state final : task_state_base {
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value{};
  // Python's AsyncResult callbacks, if any: run before the result is marked
  // ready. Behind a pointer: most tasks have none, and a burst of 100,000
  // submits holds 100,000 states (two std::function members cost 64 bytes of
  // each, a size class of the arena).
  struct result_callbacks {
    std::function<void(const R*)> on_value;  // R = void: called with nullptr
    std::function<void(std::exception_ptr)> on_error;
  };
  std::unique_ptr<result_callbacks> callbacks;

  // On the pool's thread.
  void complete(std::uint64_t, task_outcome&& result) override {
    decltype(value) decoded{};
    std::exception_ptr failure = outcome<R>(result, decoded);
    finish(std::move(decoded), std::move(failure), result.cancelled);
  }

  // Stores the outcome, runs the callbacks, then marks the state done. The
  // failure is moved in: the caller keeps no reference to it (see outcome()).
  void finish(decltype(value) decoded, std::exception_ptr failure, bool cancelled = false) {
    std::unique_lock lock(mutex);
    value = std::move(decoded);
    error = std::move(failure);
    if (callbacks) {
      lock.unlock();
      // Python runs an AsyncResult's callbacks before the result is ready
      // (no handle reads the state before then).
      try {
        if (error) {
          if (callbacks->on_error) callbacks->on_error(error);
        } else if (callbacks->on_value) {
          if constexpr (std::is_void_v<R>)
            callbacks->on_value(nullptr);
          else
            callbacks->on_value(&*value);
        }
      } catch (...) {
        // A callback that throws must not take the pool's thread down.
        report_callback_error("a pool result's callback");
      }
      lock.lock();
    }
    settle(lock, cancelled ? stage::cancelled : stage::finished);
  }

  template <class Options>
  void set_callbacks(Options& options) {
    if (!options.callback && !options.error_callback) return;
    callbacks = std::make_unique<result_callbacks>();
    if constexpr (std::is_void_v<R>) {
      if (options.callback)
        callbacks->on_value = [cb = std::move(options.callback)](const void*) { cb(); };
    } else if (options.callback) {
      callbacks->on_value = [cb = std::move(options.callback)](const R* v) { cb(*v); };
    }
    callbacks->on_error = std::move(options.error_callback);
  }
};

/// A new task state, from the arena of task states (state_allocator).
template <class R>
std::shared_ptr<task_state<R>> make_task_state() {
  return std::allocate_shared<task_state<R>>(state_allocator<task_state<R>>());
}

}  // namespace detail

class pool;

/// Python's AsyncResult.
template <class R>
class async_result {
 public:
  explicit async_result(std::shared_ptr<detail::task_state<R>> state) : state_(std::move(state)) {}

  /// The result, waiting at most `timeout` (no limit if left out) for it;
  /// rethrows the task's exception (mp::worker_died if its worker died);
  /// throws mp::timeout_error if it is not ready in time.
  R get(mp::timeout timeout = {}) const {
    if (!wait(timeout)) throw timeout_error("the result was not ready in time");
    return take();
  }
  /// True if ready within `timeout` (Python's wait returns None).
  bool wait(mp::timeout timeout = {}) const { return state_->await_done(timeout); }
  bool ready() const {
    std::lock_guard lock(state_->mutex);
    return state_->done_locked();
  }
  /// Whether the task returned without an exception; mp::usage_error if it is
  /// not ready yet (Python's ValueError).
  bool successful() const {
    std::lock_guard lock(state_->mutex);
    if (!state_->done_locked()) throw usage_error("the result is not ready");
    return !state_->error;
  }

 private:
  friend class pool;

  R take() const {
    std::lock_guard lock(state_->mutex);
    if (state_->error) std::rethrow_exception(state_->error);
    if constexpr (!std::is_void_v<R>) return *state_->value;
  }
  // get() for the pool's own waiting calls (map, apply), whose result no one
  // else can see: the value is moved out rather than copied (the callbacks,
  // the only others to see it, ran before it was ready).
  R get_once() && {
    wait();
    std::exception_ptr error;
    {
      std::lock_guard lock(state_->mutex);
      // Taken, as the value is: the exception is then freed by the thread
      // that catches it, not by whichever thread lets go of the state last.
      error = std::exchange(state_->error, nullptr);
      if (!error) {
        if constexpr (!std::is_void_v<R>)
          return std::move(*state_->value);
        else
          return;
      }
    }
    std::rethrow_exception(std::move(error));
  }
  std::shared_ptr<detail::task_state<R>> state_;
};

/// The options of apply_async, for a function returning R: Python's callback
/// and error_callback keywords, and a time limit. The callbacks run on the
/// pool's own thread: keep them short.
template <class R>
struct apply_options {
  std::function<void(const R&)> callback{};
  std::function<void(std::exception_ptr)> error_callback{};
  /// A limit on the task's running time (from when a worker starts it): when
  /// it passes, the worker is killed and replaced and the task fails with
  /// mp::timeout_error. No Python pool can stop a running task.
  mp::timeout timeout{};
};
template <>
struct apply_options<void> {
  std::function<void()> callback{};
  std::function<void(std::exception_ptr)> error_callback{};
  mp::timeout timeout{};
};
namespace detail {
template <class T>
inline constexpr bool is_apply_options_v = false;
template <class R>
inline constexpr bool is_apply_options_v<apply_options<R>> = true;
}  // namespace detail

template <class R>
class imap_range;

/// Progress of map, starmap, imap and imap_unordered: items done so far and
/// the total (0 while unknown, as for an imap over an unsized range). Called
/// on the pool's thread for map, on the iterating thread for imap.
using progress_callback = std::function<void(std::size_t done, std::size_t total)>;

/// The options of map, map_async, starmap and starmap_async, for a function
/// returning R, given as their last argument
/// (`pool.map(f, items, {.chunksize = 8, .callback = ...})`): Python's chunksize,
/// callback and error_callback, our progress report, and a time limit on each
/// chunk (from when a worker starts it) that kills and replaces the worker
/// when it passes; the map then fails with mp::timeout_error.
template <class R>
struct map_options {
  std::size_t chunksize = 0;  // 0: Python's rule
  progress_callback progress{};
  std::function<void(const std::vector<R>&)> callback{};
  std::function<void(std::exception_ptr)> error_callback{};
  mp::timeout timeout{};
};
/// For a function returning void (the map returns void): the callback takes nothing.
template <>
struct map_options<void> {
  std::size_t chunksize = 0;
  progress_callback progress{};
  std::function<void()> callback{};
  std::function<void(std::exception_ptr)> error_callback{};
  mp::timeout timeout{};
};

/// A ready-made progress_callback: a bar on stderr with the count, the rate
/// and the time left, redrawn at most ten times a second, and only when
/// stderr is a terminal (so logs and pipes stay clean).
MP_EXPORT progress_callback progress_bar();

class process_pool_executor;

/// Python's multiprocessing.Pool. Thread-safe. The destructor finishes the
/// submitted tasks (close() and join()); terminate() drops them. Copies refer
/// to the same pool, as Python names do: the destructor's policy
/// (pool_options::on_destroy) applies when the last copy goes.
class pool {
 public:
  explicit pool(pool_options options = {});
  explicit pool(unsigned processes) : pool(pool_options{.processes = processes}) {}

  unsigned processes() const noexcept { return core_->processes(); }

  /// The result of f(args...) as a worker calls it (detail::not_invocable if
  /// it cannot be called so: the call then fails to compile with mp's message).
  template <class Fn, class... Args>
  using result_of = detail::stored_result_t<Fn, detail::stored_t<Args>...>;

  /// Runs f(args...) in a worker and returns its result (Python's apply).
  template <class Fn, class... Args>
  auto apply(Fn fn, Args&&... args) {
    return apply_async(fn, std::forward<Args>(args)...).get_once();
  }

  /// Python's apply_async.
  template <class Fn, class... Args>
  requires(!detail::is_apply_options_v<Fn>)
      async_result<result_of<Fn, Args...>> apply_async(Fn fn, Args&&... args) {
    return apply_async(apply_options<result_of<Fn, Args...>>{}, fn, std::forward<Args>(args)...);
  }

  /// apply_async with options first, as Python's keywords:
  /// `pool.apply_async({.callback = c, .error_callback = e, .timeout = 5s}, f, x)`.
  template <class Fn, class... Args>
  async_result<result_of<Fn, Args...>> apply_async(apply_options<result_of<Fn, Args...>> options,
                                                   Fn fn, Args&&... args) {
    using R = result_of<Fn, Args...>;
    if constexpr (!detail::check_task<Fn, detail::stored_t<Args>...>())
      return async_result<R>(nullptr);
    else
      return submit_task(std::move(options), fn, std::forward<Args>(args)...);
  }

  /// The result type of Fn over an element of Range (spread, for Star).
  template <class Fn, class Range, bool Star = false>
  using element_result_of = detail::element_result_t<Star, Fn, std::ranges::range_value_t<Range>>;

  /// Python's map: f over every element, results in input order. Throws the
  /// first failed chunk's exception, after all chunks have finished; the pool
  /// stays usable. chunksize 0: Python's rule (len / (4 * processes), rounded up).
  template <class Fn, std::ranges::input_range Range>
  auto map(Fn fn, Range&& input, std::size_t chunksize = 0, progress_callback progress = {}) {
    return map_async(fn, std::forward<Range>(input), chunksize, std::move(progress)).get_once();
  }
  /// map with options last: `pool.map(f, items, {.chunksize = 8, .timeout = 1s})`.
  template <class Fn, std::ranges::input_range Range>
  auto map(Fn fn, Range&& input, map_options<element_result_of<Fn, Range>> options) {
    return run_map<false>(std::move(options), fn, std::forward<Range>(input)).get_once();
  }

  /// Python's map_async(f, it, chunksize, callback, error_callback): callbacks
  /// and a time limit per chunk through the options form.
  template <class Fn, std::ranges::input_range Range>
  auto map_async(Fn fn, Range&& input, std::size_t chunksize = 0, progress_callback progress = {}) {
    return run_map<false>(
        map_options<element_result_of<Fn, Range>>{.chunksize = chunksize,
                                                  .progress = std::move(progress)},
        fn, std::forward<Range>(input));
  }
  template <class Fn, std::ranges::input_range Range>
  auto map_async(Fn fn, Range&& input, map_options<element_result_of<Fn, Range>> options) {
    return run_map<false>(std::move(options), fn, std::forward<Range>(input));
  }

  /// Python's starmap: each element a tuple spread over f's parameters.
  template <class Fn, std::ranges::input_range Range>
  auto starmap(Fn fn, Range&& input, std::size_t chunksize = 0, progress_callback progress = {}) {
    return starmap_async(fn, std::forward<Range>(input), chunksize, std::move(progress)).get_once();
  }
  template <class Fn, std::ranges::input_range Range>
  auto starmap(Fn fn, Range&& input, map_options<element_result_of<Fn, Range, true>> options) {
    return run_map<true>(std::move(options), fn, std::forward<Range>(input)).get_once();
  }

  template <class Fn, std::ranges::input_range Range>
  auto starmap_async(Fn fn, Range&& input, std::size_t chunksize = 0,
                     progress_callback progress = {}) {
    return run_map<true>(
        map_options<element_result_of<Fn, Range, true>>{.chunksize = chunksize,
                                                        .progress = std::move(progress)},
        fn, std::forward<Range>(input));
  }
  template <class Fn, std::ranges::input_range Range>
  auto starmap_async(Fn fn, Range&& input,
                     map_options<element_result_of<Fn, Range, true>> options) {
    return run_map<true>(std::move(options), fn, std::forward<Range>(input));
  }

  /// Python's imap: a lazy range of f over `input`, in input order. Unlike
  /// Python's, it reads the input only as workers free up (at most two chunks
  /// per worker in flight), so an endless input works in bounded memory. A
  /// range passed as an lvalue must outlive the iteration; a temporary
  /// (`pool.imap(f, std::views::iota(0, 10))`, a returned vector) is kept by
  /// the returned range. If reading the input throws, the results of what was
  /// read before come first, then the exception.
  template <class Fn, std::ranges::input_range Range>
  requires std::ranges::viewable_range<Range>
  auto imap(Fn fn, Range&& input, std::size_t chunksize = 1, progress_callback progress = {}) {
    if constexpr (!detail::check_map<false, Fn, std::ranges::range_value_t<Range>>())
      return detail::not_invocable{};
    else
      return make_imap<false>(fn, std::forward<Range>(input), chunksize, std::move(progress));
  }

  /// Python's imap_unordered: as imap, results in the order they complete.
  template <class Fn, std::ranges::input_range Range>
  requires std::ranges::viewable_range<Range>
  auto imap_unordered(Fn fn, Range&& input, std::size_t chunksize = 1,
                      progress_callback progress = {}) {
    if constexpr (!detail::check_map<false, Fn, std::ranges::range_value_t<Range>>())
      return detail::not_invocable{};
    else
      return make_imap<true>(fn, std::forward<Range>(input), chunksize, std::move(progress));
  }

  /// No more tasks may be submitted; the workers exit once the work is done.
  void close() { core_->close(); }
  /// Stops the workers at once; unfinished tasks fail with mp::process_error.
  void terminate() { core_->terminate(); }
  /// Waits for the workers to exit; mp::usage_error unless closed or terminated.
  void join() { core_->join(); }

 protected:
  // A pool over an existing engine (a thread pool's, the executor's).
  explicit pool(std::shared_ptr<detail::pool_core> core) : core_(std::move(core)) {}

 private:
  friend class process_pool_executor;

  template <class Fn, class... Args>
  auto submit_task(apply_options<result_of<Fn, Args...>> callbacks, Fn fn, Args&&... args) {
    using R = result_of<Fn, Args...>;
    auto state = detail::make_task_state<R>();
    state->set_callbacks(callbacks);
    detail::task_handles handles = state->call.encode(fn, std::forward<Args>(args)...);
    core_->submit(state->call.share(state), std::move(handles), state, 0, callbacks.timeout);
    return async_result<R>(std::move(state));
  }

  // Checks the map at compile time (so that a mistake gets mp's message
  // first), then runs it.
  template <bool Star, class Fn, class Range, class Element>
  auto run_map(map_options<Element> options, Fn fn, Range&& input) {
    if constexpr (!detail::check_map<Star, Fn, std::ranges::range_value_t<Range>>())
      return async_result<detail::map_result_t<Element>>(nullptr);
    else
      return run_checked_map<Star>(std::move(options), fn, std::forward<Range>(input));
  }

  template <bool Star, class Fn, class Range, class Element>
  auto run_checked_map(map_options<Element> options, Fn fn, Range&& input) {
    using arg = std::ranges::range_value_t<Range>;
    using call = detail::chunk_call<Fn, arg, Star>;
    // What the chunks carry (mp::none for a function returning void), and
    // what the map returns (void then).
    using wire = std::conditional_t<std::is_void_v<Element>, none, Element>;
    using R = std::vector<wire>;
    using Out = detail::map_result_t<Element>;
    // A contiguous input of memcpy-able elements is encoded chunk by chunk
    // straight from the caller's memory; memcpy-able results are decoded
    // straight into the joined vector. Anything else goes through vectors.
    constexpr bool from_span =
        std::ranges::contiguous_range<Range> && detail::memcpy_element<arg> &&
        std::is_same_v<std::remove_cvref_t<std::ranges::range_reference_t<Range>>, arg>;
    constexpr bool into_place = detail::memcpy_element<wire> &&
                                std::is_default_constructible_v<wire> &&
                                !std::is_same_v<wire, none> && !std::is_same_v<wire, bool>;
    std::vector<arg> copied;
    std::span<const arg> items;
    if constexpr (from_span) {
      items = std::span<const arg>(std::ranges::data(input), std::ranges::size(input));
    } else {
      for (auto&& a : input) copied.push_back(static_cast<arg>(a));
      items = copied;
    }
    std::size_t chunksize = options.chunksize;
    if (chunksize == 0) {
      const std::size_t per = 4 * processes();
      chunksize = (items.size() + per - 1) / per;
      if (chunksize == 0) chunksize = 1;
    }
    const std::size_t chunks = (items.size() + chunksize - 1) / chunksize;
    // The chunks' outcomes, gathered on the pool's thread (tag: the chunk's index).
    struct gather final : detail::task_sink {
      std::mutex mutex;
      std::vector<std::optional<R>> parts;  // unless into_place
      R joined;                             // into_place: sized at once
      std::exception_ptr error;
      std::size_t chunksize = 0;
      std::size_t left = 0;
      std::size_t items_done = 0;
      std::size_t items = 0;
      bool refused = false;       // some chunks were never handed to the pool
      bool sized_lazily = false;  // into_place: `joined` is sized by the first chunk in
      progress_callback progress;
      std::shared_ptr<detail::task_state<Out>> state;

      // A large result vector asks for huge pages before it is first
      // touched: its fresh pages then fault in 2 MiB at a time, not 4 KiB.
      void size_joined() {
        if constexpr (into_place) {
          joined.reserve(items);
          detail::advise_huge_pages(joined.data(), items * sizeof(wire));
          joined.resize(items);
        }
      }

      void complete(std::uint64_t tag, detail::task_outcome&& r) override {
        const auto c = static_cast<std::size_t>(tag);
        const std::size_t first = c * chunksize;
        const std::size_t count = std::min(items, first + chunksize) - first;
        std::exception_ptr failure;
        if constexpr (into_place) {
          if (r.error) {
            failure = std::move(r.error);
          } else {
            try {
              // Chunks handed over one by one as they are encoded leave the
              // sizing to the first chunk in, rather than keep the first from
              // starting. Chunks complete one at a time on the pool's thread;
              // once sized, each writes its own part.
              if (sized_lazily) {
                std::lock_guard lock(mutex);
                if (joined.size() != items) size_joined();
              }
              detail::decode_elements_into<wire>(r.value,
                                                 std::span<wire>(joined).subspan(first, count));
            } catch (...) {
              failure = std::current_exception();
            }
          }
        }
        bool last = false;
        std::size_t done_now = 0;
        {
          std::lock_guard lock(mutex);
          if constexpr (!into_place) {
            std::optional<R> decoded;
            failure = detail::outcome<R>(r, decoded);
            parts[c] = std::move(decoded);
          }
          if (!failure) items_done += count;
          // Moved, not copied: the pool's thread keeps no reference to it.
          if (failure && !error) error = std::move(failure);
          failure = nullptr;
          done_now = items_done;
          last = --left == 0;
        }
        if (progress) progress(done_now, items);
        if (last) finish();
      }

      // `count` chunks will never complete (the pool refused them, and the
      // caller gets the error): the map ends once the others have, without
      // its callbacks, as a map the pool refuses at once calls none.
      void abandon(std::size_t count, std::exception_ptr why) {
        bool last = false;
        {
          std::lock_guard lock(mutex);
          if (!error) error = std::move(why);
          refused = true;
          left -= count;
          last = left == 0;
        }
        if (last) finish();
      }

      // Once, by whoever ended the last chunk.
      void finish() {
        if (refused) state->callbacks.reset();
        if (error) {
          state->finish({}, std::move(error));
        } else if constexpr (std::is_void_v<Out>) {
          state->finish(true, nullptr);
        } else if constexpr (into_place) {
          state->finish(std::move(joined), nullptr);
        } else {
          R all;
          all.reserve(items);
          for (auto& p : parts)
            for (auto&& v : *p) all.push_back(std::move(v));
          state->finish(std::move(all), nullptr);
        }
      }
    };
    auto shared = std::make_shared<gather>();
    if constexpr (!into_place) shared->parts.resize(chunks);
    shared->chunksize = chunksize;
    shared->left = chunks;
    shared->items = items.size();
    shared->progress = std::move(options.progress);
    shared->state = std::make_shared<detail::task_state<Out>>();
    shared->state->set_callbacks(options);
    if (chunks == 0) shared->state->finish(detail::empty_map_result<Out>(), nullptr);
    // Large chunks go to the pool one by one as they are encoded, so that
    // the workers start on the first while the rest are encoded; small ones
    // all at once, under one lock.
    const std::size_t batch = chunksize * sizeof(arg) >= (std::size_t{64} << 10) ? 1 : chunks;
    if constexpr (into_place) {
      if (batch == 1)
        shared->sized_lazily = true;
      else if (chunks != 0)
        shared->size_joined();
    }
    if constexpr (from_span) {
      // A contiguous input: every chunk's call is encoded into one buffer,
      // one allocation rather than two per chunk (which the pool's thread
      // would free one by one), sized exactly up front (a call's own bytes,
      // measured once, and its elements), so that a chunk handed over never
      // moves while the next ones are written, and asking for huge pages when
      // large. The chunks are its slices.
      const auto encode = [&](detail::byte_buffer& into, std::span<const arg> part) {
        detail::output_archive out(into);
        detail::encode_call_as<std::vector<arg>>(out, call{fn}, detail::elements_wire<arg>{part});
      };
      detail::byte_buffer measured = detail::byte_buffer::window(nullptr, 0);
      encode(measured, {});
      auto calls = std::make_shared<detail::byte_buffer>();
      calls->reserve(chunks * measured.needed() + items.size_bytes());
      detail::advise_huge_pages(calls->data(), calls->capacity());
      std::vector<std::size_t> bounds{0};
      bounds.reserve(chunks + 1);
      for (std::size_t c = 0; c < chunks; ++c) {
        detail::byte_buffer part = detail::byte_buffer::window(calls->data() + calls->size(),
                                                               calls->capacity() - calls->size());
        const std::size_t first = c * chunksize;
        encode(part, items.subspan(first, std::min(items.size(), first + chunksize) - first));
        if (part.overflowed())
          throw std::logic_error("mp: a map's chunk encoded larger than measured");
        calls->resize(calls->size() + part.size());
        bounds.push_back(calls->size());
        if (batch != 1 && c + 1 != chunks) continue;
        // All at once (small chunks), or this one now (large ones).
        const std::size_t from = batch == 1 ? c : 0;
        try {
          core_->submit_slices(calls, std::span<const std::size_t>(bounds).subspan(from), shared,
                               from, options.timeout);
        } catch (...) {
          shared->abandon(chunks - from, std::current_exception());
          throw;
        }
      }
    } else {
      // Anything else: each chunk's arguments copied into a vector and
      // encoded with it.
      std::vector<detail::task_payload> payloads;
      std::size_t sent = 0;
      const auto send = [&] {
        const std::size_t count = payloads.size();
        try {
          core_->submit_all(std::move(payloads), shared, sent, options.timeout);
        } catch (...) {
          // The chunks not handed over never complete: the map ends with
          // those that were, and the caller gets this error now.
          shared->abandon(chunks - sent, std::current_exception());
          throw;
        }
        payloads.clear();
        sent += count;
      };
      for (std::size_t c = 0; c < chunks; ++c) {
        const std::size_t first = c * chunksize;
        const std::size_t count = std::min(items.size(), first + chunksize) - first;
        const auto from = copied.begin() + static_cast<std::ptrdiff_t>(first);
        payloads.push_back(detail::encode_task(
            call{fn},
            std::vector<arg>(std::make_move_iterator(from),
                             std::make_move_iterator(from + static_cast<std::ptrdiff_t>(count)))));
        if (payloads.size() == batch || c + 1 == chunks) send();
      }
    }
    return async_result<Out>(shared->state);
  }

  template <bool Unordered, class Fn, class Range>
  auto make_imap(Fn fn, Range&& input, std::size_t chunksize, progress_callback progress);

  std::shared_ptr<detail::pool_core> core_;
};

namespace detail {

/// An input iterator over what its source's next() returns, until nullopt.
template <class Source, class T>
class pull_iterator {
 public:
  using value_type = T;
  using difference_type = std::ptrdiff_t;
  pull_iterator() = default;
  explicit pull_iterator(Source* source) : source_(source) { advance(); }
  const T& operator*() const { return *current_; }
  pull_iterator& operator++() {
    advance();
    return *this;
  }
  void operator++(int) { advance(); }
  friend bool operator==(const pull_iterator& it, std::default_sentinel_t) { return !it.current_; }

 private:
  void advance() { current_ = source_->next(); }
  Source* source_ = nullptr;
  std::optional<T> current_;
};

/// What an imap range shares with the pool's thread, which hands it each
/// chunk's outcome (tag: the chunk's index).
template <class R>
struct imap_state final : task_sink {
  explicit imap_state(bool unordered_in) : unordered(unordered_in) {}
  const bool unordered;
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::size_t, std::vector<R>> ordered;  // by chunk index (imap)
  std::deque<std::vector<R>> arrived;             // in completion order (imap_unordered)
  std::map<std::size_t, std::exception_ptr> failed;
  std::deque<std::exception_ptr> failed_unordered;
  std::size_t in_flight = 0;

  void complete(std::uint64_t tag, task_outcome&& r) override {
    const auto index = static_cast<std::size_t>(tag);
    std::vector<R> values;
    std::exception_ptr failure = outcome<std::vector<R>>(r, values);
    {
      std::lock_guard lock(mutex);
      --in_flight;
      if (unordered) {
        if (failure)
          failed_unordered.push_back(std::move(failure));
        else
          arrived.push_back(std::move(values));
      } else if (failure) {
        failed.emplace(index, std::move(failure));
      } else {
        ordered.emplace(index, std::move(values));
      }
    }
    changed.notify_all();
  }
};

}  // namespace detail

/// The lazy range imap and imap_unordered return: iterate it once.
template <class R>
class imap_range {
 public:
  using next_chunk_fn = std::function<bool(std::size_t index)>;  // submits chunk `index`

  imap_range(std::shared_ptr<detail::imap_state<R>> state, next_chunk_fn submit_next,
             std::size_t max_in_flight, bool unordered, progress_callback progress = {},
             std::size_t total = 0)
      : state_(std::move(state)),
        submit_next_(std::move(submit_next)),
        max_in_flight_(max_in_flight),
        unordered_(unordered),
        progress_(std::move(progress)),
        total_(total) {}

  using iterator = detail::pull_iterator<imap_range, R>;
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  friend iterator;
  // The next result, or nullopt at the end; rethrows a failed task's exception
  // at its place, and an exception from reading the input after every result
  // of what was read before it.
  std::optional<R> next() {
    for (;;) {
      if (!buffer_.empty()) {
        R out = std::move(buffer_.front());
        buffer_.pop_front();
        if (progress_) progress_(++yielded_, total_);
        return out;
      }
      top_up();
      std::unique_lock lock(state_->mutex);
      if (unordered_) {
        if (!state_->failed_unordered.empty()) {
          auto error = state_->failed_unordered.front();
          state_->failed_unordered.pop_front();
          std::rethrow_exception(error);
        }
        if (!state_->arrived.empty()) {
          for (auto&& v : state_->arrived.front()) buffer_.push_back(std::move(v));
          state_->arrived.pop_front();
          continue;
        }
      } else {
        if (auto f = state_->failed.find(next_index_); f != state_->failed.end()) {
          auto error = f->second;
          state_->failed.erase(f);
          ++next_index_;
          std::rethrow_exception(error);
        }
        if (auto o = state_->ordered.find(next_index_); o != state_->ordered.end()) {
          for (auto&& v : o->second) buffer_.push_back(std::move(v));
          state_->ordered.erase(o);
          ++next_index_;
          continue;
        }
      }
      if (input_done_ && state_->in_flight == 0) {
        if (input_error_) std::rethrow_exception(std::exchange(input_error_, nullptr));
        return std::nullopt;
      }
      if (!deadline_.limited()) {
        state_->changed.wait(lock);
      } else if (state_->changed.wait_until(lock, deadline_.when()) == std::cv_status::timeout) {
        throw timeout_error("the next result was not ready within the map's timeout");
      }
    }
  }
  // Reads and submits input while fewer than max_in_flight_ chunks are out.
  // The input's exception (or the pool's refusal) ends the input; it is
  // thrown once the results before it are out.
  void top_up() {
    while (!input_done_) {
      {
        std::lock_guard lock(state_->mutex);
        if (state_->in_flight >= max_in_flight_) return;
        ++state_->in_flight;
      }
      bool more = false;
      try {
        more = submit_next_(submitted_);
      } catch (...) {
        input_error_ = std::current_exception();
      }
      if (!more) {
        std::lock_guard lock(state_->mutex);
        --state_->in_flight;
        input_done_ = true;
        return;
      }
      ++submitted_;
    }
  }

  std::shared_ptr<detail::imap_state<R>> state_;
  next_chunk_fn submit_next_;
  std::size_t max_in_flight_;
  bool unordered_;
  bool input_done_ = false;
  std::size_t submitted_ = 0;
  std::size_t next_index_ = 0;
  std::deque<R> buffer_;
  progress_callback progress_;
  std::size_t total_;
  std::size_t yielded_ = 0;
  detail::deadline deadline_{mp::timeout()};
  std::exception_ptr input_error_;

 public:
  /// Results not ready `timeout` after this call make the iteration throw
  /// mp::timeout_error (Executor.map's timeout).
  void set_timeout(mp::timeout timeout) { deadline_ = detail::deadline(timeout); }
  /// Reads the whole input and submits every chunk now, as Python's
  /// Executor.map does: the results are kept whatever comes first, the
  /// iteration or the pool's shutdown, and the input need not outlive this.
  void submit_all() {
    max_in_flight_ = static_cast<std::size_t>(-1);
    top_up();
  }
};

template <bool Unordered, class Fn, class Range>
auto pool::make_imap(Fn fn, Range&& input, std::size_t chunksize, progress_callback progress) {
  using arg = std::ranges::range_value_t<Range>;
  // The input as a view: a reference to an lvalue range, the range itself
  // if it was a temporary (kept here, for as long as the iteration).
  using view = std::views::all_t<Range>;
  struct source {
    explicit source(view v) : items(std::move(v)) {}
    view items;
    std::optional<std::ranges::iterator_t<view>> it;
    std::optional<std::ranges::sentinel_t<view>> end;
  };
  using call = detail::chunk_call<Fn, arg, false>;
  using chunk_result =
      decltype(std::declval<const call&>()(std::declval<const std::vector<arg>&>()));
  using R = typename chunk_result::value_type;
  if (chunksize == 0) chunksize = 1;
  static_assert(std::is_same_v<chunk_result, std::vector<R>>);
  auto state = std::make_shared<detail::imap_state<R>>(Unordered);
  std::size_t total = 0;
  if constexpr (std::ranges::sized_range<Range>) total = std::ranges::size(input);
  auto from = std::make_shared<source>(std::views::all(std::forward<Range>(input)));
  from->it.emplace(std::ranges::begin(from->items));
  from->end.emplace(std::ranges::end(from->items));
  auto core = core_;
  auto submit = [state, from, core, fn, chunksize](std::size_t index) -> bool {
    std::vector<arg> part;
    auto& it = *from->it;
    while (part.size() < chunksize && it != *from->end) {
      part.push_back(static_cast<arg>(*it));
      ++it;
    }
    if (part.empty()) return false;
    core->submit(detail::encode_task(call{fn}, std::move(part)), state, index);
    return true;
  };
  return imap_range<R>(std::move(state), std::move(submit), 2 * processes(), Unordered,
                       std::move(progress), total);
}

/// Python's multiprocessing.pool.ThreadPool: mp::pool's interface on worker
/// threads of this process. Callables follow the same rules (tasks are
/// encoded calls, so that code written for one pool runs on the other). A
/// task past its timeout, or cancelled while it runs, fails at once, but its
/// thread runs it to the end (a thread cannot be stopped); terminate() lets
/// running tasks finish.
class thread_pool : public pool {
 public:
  explicit thread_pool(pool_options options = {})
      : pool(std::make_shared<detail::pool_core>(std::move(options),
                                                 detail::worker_kind::threads)) {}
  explicit thread_pool(unsigned threads) : thread_pool(pool_options{.processes = threads}) {}
};

}  // namespace mp
