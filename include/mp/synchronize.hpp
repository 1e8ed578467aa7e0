// SPDX-License-Identifier: MIT
// Synchronization across processes: Python's multiprocessing Lock, RLock,
// Semaphore, BoundedSemaphore, Event, Condition and Barrier.
//
// Only differences from Python are documented here; see
// https://docs.python.org/3/library/multiprocessing.html#synchronization-primitives
//
// Every primitive lives in anonymous shared memory (a memfd, never /dev/shm)
// and is shared with children of mp::process by fork: copy the object (copies
// refer to the same primitive) or pass it as an argument. The memory is freed
// when the last process holding a copy lets go, even after SIGKILL.
//
// Blocked waiters sleep on a futex and use no CPU, except that lock waiters wake
// every 100 ms to check whether the holder still lives. Memory ordering: a
// release (unlock, release, set, notify, barrier arrival) happens-before the
// acquire or wait it lets through, in any process.
//
// Holder death: if a process dies (even by SIGKILL) holding a lock, an rlock
// or a condition's lock, the next acquirer takes the lock over and is told by
// mp::owner_died, thrown with the lock held. The lock stays marked
// inconsistent, and every later acquirer is told too, until someone calls
// mark_consistent(). Semaphores, events and barriers have no owner: a waiter
// whose releaser died waits until its timeout.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <variant>

#include "mp/bound_call.hpp"
#include "mp/detail/codec.hpp"
#include "mp/detail/shared_region.hpp"
#include "mp/errors.hpp"
#include "mp/export.hpp"
#include "mp/timeout.hpp"

namespace mp {

/// The previous holder of a lock died holding it. The thread that catches this
/// holds the lock: repair the protected state, call mark_consistent(), then
/// unlock (pthread's EOWNERDEAD, made an exception).
class MP_EXPORT owner_died : public process_error {
 public:
  using process_error::process_error;
};

/// A barrier was aborted, reset while waited on, or its action failed, or a
/// wait on it timed out (Python's threading.BrokenBarrierError).
class MP_EXPORT broken_barrier : public process_error {
 public:
  using process_error::process_error;
};

namespace detail {

/// The shared state of a lock or rlock.
struct lock_state {
  std::atomic<std::uint32_t> word{0};  // 0 free, 1 held, 2 held with waiters
  std::atomic<std::int32_t> owner_pid{0};
  std::atomic<std::uint64_t> owner_start{0};  // with the pid: who holds it
  std::atomic<std::int32_t> owner_tid{0};
  std::atomic<std::uint32_t> depth{0};         // rlock recursion
  std::atomic<std::uint32_t> inconsistent{0};  // holder died; cleared by mark_consistent
};

/// Acquires `state` (recursively if `recursive`); false on timeout. Throws
/// mp::owner_died (with the lock held) if the state is inconsistent.
MP_EXPORT bool lock_acquire(lock_state& state, bool recursive, mp::timeout timeout);
/// lock_acquire without a timeout: the uncontended lock's fast path, with no
/// deadline to make.
MP_EXPORT void lock_acquire_blocking(lock_state& state, bool recursive);
MP_EXPORT void lock_release(lock_state& state, bool recursive);

}  // namespace detail

namespace detail {

/// The standard TimedLockable members (lock, try_lock, try_lock_for,
/// try_lock_until, unlock) in terms of Derived's Python-style
/// acquire(blocking, timeout) and release(), so std::scoped_lock,
/// std::unique_lock and std::condition_variable_any work. Derived may hide
/// lock() with a faster one. Const, as every operation on a handle is
/// (docs/conventions.md): copies name the same lock.
template <class Derived>
class timed_lockable {
 public:
  void lock() const { self().acquire(); }
  bool try_lock() const { return self().acquire(false); }
  bool try_lock_for(mp::timeout timeout) const { return self().acquire(true, timeout); }
  template <class Clock, class Duration>
  bool try_lock_until(std::chrono::time_point<Clock, Duration> deadline) const {
    return try_lock_for(deadline - Clock::now());
  }
  void unlock() const { self().release(); }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
};

}  // namespace detail

namespace detail {

/// What Lock and RLock share: the state in shared memory and the calls on it;
/// they differ only in whether ownership is recursive and per thread.
/// Copies refer to the same lock. Thread-safe and fork-safe.
template <class Derived, bool Recursive>
class basic_lock : public timed_lockable<Derived> {
 public:
  /// Python's acquire(block, timeout): blocks at most `timeout` (forever if
  /// unset); with `blocking` false, does not wait at all. True if acquired.
  /// Throws mp::owner_died (holding the lock) if a holder died.
  bool acquire(bool blocking = true, mp::timeout timeout = {}) const {
    if (!blocking) timeout = std::chrono::nanoseconds::zero();
    return lock_acquire(*state_, Recursive, timeout);
  }
  /// Blocks until acquired; throws as acquire().
  void lock() const { lock_acquire_blocking(*state_, Recursive); }
  /// Throws mp::usage_error if the lock is not held (for an rlock: by this thread).
  void release() const { lock_release(*state_, Recursive); }
  /// Clears the inconsistent mark left by a dead holder.
  void mark_consistent() const { state_->inconsistent.store(0, std::memory_order_release); }
  /// True while the lock is marked inconsistent after a holder died.
  bool inconsistent() const { return state_->inconsistent.load(std::memory_order_acquire) != 0; }

  lock_state& state() const { return *state_; }

  /// The codec's form: the lock's shared memory travels as a descriptor, so a
  /// lock passed over a connection or to a spawned child is the same lock.
  template <class Archive>
  void serialize(Archive& archive) {
    archive(state_);
  }

  /// A new, unlocked lock in shared memory. Throws std::system_error if the
  /// memory cannot be created.
  basic_lock() : state_(shared_object<lock_state>::make()) {}

 private:
  shared_object<lock_state> state_;
};

}  // namespace detail

/// Python's Lock: a non-recursive lock any thread of any process may release
/// (as in Python). Satisfies the standard TimedLockable requirements. Spelled
/// `mp::lock`: the class has another name only because a C++ class cannot
/// have a member function named like itself, and std::scoped_lock needs lock().
class process_lock : public detail::basic_lock<process_lock, false> {};

/// Python's Lock (see process_lock).
using lock = process_lock;

/// Python's RLock: recursive, owned by one thread of one process; release by
/// any other thread or process throws mp::usage_error. TimedLockable.
class rlock : public detail::basic_lock<rlock, true> {};

namespace detail {
struct condition_state {
  std::atomic<std::uint32_t> sequence{0};  // bumped by every notify
  std::atomic<std::uint32_t> waiters{0};
};
}  // namespace detail

/// Python's Condition over a lock or an rlock (a new rlock by default, as in
/// Python). wait() releases the lock completely, even an rlock held
/// recursively, and restores it before returning. Copies refer to the same
/// condition. notify(n) may wake more than n waiters, like a spurious wake-up:
/// wait in a loop or use wait_for with a predicate.
class MP_EXPORT condition : public detail::timed_lockable<condition> {
 public:
  condition();
  explicit condition(mp::lock lock);
  explicit condition(mp::rlock lock);

  bool acquire(bool blocking = true, mp::timeout timeout = {}) const;
  void release() const;
  void lock() const { detail::lock_acquire_blocking(lock_state(), recursive_); }

  /// Releases the lock, sleeps until notified or `timeout`, then reacquires.
  /// Requires: the caller holds the lock (for an rlock: this thread), or
  /// mp::usage_error is thrown. Returns false on timeout. Throws
  /// mp::owner_died (holding the lock) if a holder died meanwhile.
  bool wait(mp::timeout timeout = {}) const;
  /// Waits until `predicate()` is true or `timeout` passes; returns the last
  /// value of the predicate (Python's wait_for).
  template <class Predicate>
  bool wait_for(Predicate predicate, mp::timeout timeout = {}) const {
    const detail::deadline deadline(timeout);
    bool result = predicate();
    while (!result) {
      const mp::timeout left = deadline.left();
      if (left.zero()) break;
      wait(left);
      result = predicate();
    }
    return result;
  }
  /// Wakes up to `n` waiters. Requires the lock held (else mp::usage_error).
  void notify(unsigned n = 1) const;
  void notify_all() const;

  /// The codec's form: the condition and its lock travel as descriptors.
  template <class Archive>
  void serialize(Archive& archive) {
    archive(lock_, recursive_, state_);
  }

 private:
  detail::lock_state& lock_state() const;
  bool recursive() const noexcept { return recursive_; }
  bool held_by_caller() const;
  std::variant<mp::lock, mp::rlock> lock_;
  bool recursive_;
  detail::shared_object<detail::condition_state> state_;
};

/// Python's SEM_VALUE_MAX: the largest value a semaphore may hold.
inline constexpr unsigned sem_value_max = 0x7fffffff;

namespace detail {

/// The shared state of a semaphore or bounded_semaphore.
struct semaphore_state {
  semaphore_state(std::uint32_t initial, std::uint32_t maximum) noexcept
      : value(initial), max_value(maximum) {}
  std::atomic<std::uint32_t> value;       // futex word: the count
  std::atomic<std::uint32_t> waiters{0};  // threads that may sleep on `value`
  const std::uint32_t max_value;          // release() beyond it throws
};

/// The shared state of an event.
struct event_state {
  std::atomic<std::uint32_t> word{0};  // futex word: (number of sets << 1) | flag
  std::atomic<std::uint32_t> waiters{0};
};

/// The shared state of a barrier (its encoding is in src/synchronize_barrier.cpp).
struct barrier_state {
  static constexpr std::uint32_t history = 32;
  explicit barrier_state(std::uint32_t party_count) noexcept;
  std::atomic<std::uint64_t> word{0};     // generation, arrivals, phase
  std::atomic<std::uint32_t> changes{0};  // futex word: bumped when the generation changes
  const std::uint32_t parties;
  std::atomic<std::uint64_t> outcomes[history];  // how recent generations ended
};

}  // namespace detail

/// Python's Semaphore. Copies refer to the same semaphore. Meets the standard
/// TimedLockable requirements, so `std::scoped_lock guard(sem);` is Python's
/// `with sem:`. Thread-safe and fork-safe.
class MP_EXPORT semaphore : public detail::timed_lockable<semaphore> {
 public:
  /// Throws mp::usage_error if `value` exceeds sem_value_max.
  explicit semaphore(unsigned value = 1);

  /// Python's acquire(block, timeout): blocks at most `timeout` (forever if
  /// unset) while the value is zero; with `blocking` false, does not wait at
  /// all. True if acquired. Throws only std::system_error.
  bool acquire(bool blocking = true, mp::timeout timeout = {}) const;
  /// Adds `n` and wakes up to `n` waiters (threading.Semaphore's release(n)).
  /// Never blocks. Throws mp::usage_error, changing nothing, if `n` is 0 or
  /// the value would exceed the maximum (sem_value_max, or for a
  /// bounded_semaphore its initial value).
  void release(unsigned n = 1) const;
  /// The current value (it may change at once). Never blocks or throws.
  unsigned get_value() const;

  /// The codec's form: the semaphore's shared memory travels as a descriptor
  /// (its bound too, for a bounded_semaphore).
  template <class Archive>
  void serialize(Archive& archive) {
    archive(state_);
  }

 protected:
  semaphore(unsigned value, unsigned max_value);

 private:
  detail::shared_object<detail::semaphore_state> state_;
};

/// Python's BoundedSemaphore: release() above the initial value throws
/// mp::usage_error and changes nothing. The bound lives in shared memory, so a
/// copy sliced to mp::semaphore keeps it.
class MP_EXPORT bounded_semaphore : public semaphore {
 public:
  /// Throws mp::usage_error if `value` exceeds sem_value_max.
  explicit bounded_semaphore(unsigned value = 1);
};

/// Python's Event. Copies refer to the same event. Thread-safe and fork-safe.
class MP_EXPORT event {
 public:
  event();
  /// Never blocks or throws.
  bool is_set() const;
  /// Sets the flag and wakes every waiter. Never blocks.
  void set() const;
  /// Clears the flag. Never blocks or throws.
  void clear() const;
  /// Blocks until the flag is set, or at most `timeout` (forever if unset),
  /// and returns the flag on exit. As in Python, a set() undone by clear()
  /// before a waiter runs still wakes it, and it returns false.
  /// Throws only std::system_error.
  bool wait(mp::timeout timeout = {}) const;

  /// The codec's form: the event's shared memory travels as a descriptor.
  template <class Archive>
  void serialize(Archive& archive) {
    archive(state_);
  }

 private:
  detail::shared_object<detail::event_state> state_;
};

/// Python's Barrier (threading.Barrier, shared across processes). Copies refer
/// to the same barrier; each copy carries its own copy of the action, and the
/// process that arrives last runs its copy. Thread-safe and fork-safe.
///
/// Differences from Python: a timeout, abort() or reset() while the action
/// runs breaks the cycle (Python waits for the action first), and the
/// arriving process then throws mp::broken_barrier after its action returns.
/// Processes leaving a completed cycle need not drain before the next cycle
/// fills. A process killed while waiting still counts as arrived: the others
/// are released early or time out, and reset() starts afresh.
class MP_EXPORT barrier {
 public:
  /// `timeout` is the default for wait(). Throws mp::usage_error unless
  /// 1 <= parties <= 2^29 - 1.
  explicit barrier(unsigned parties, bound_call action = {}, mp::timeout timeout = {});

  /// Arrives and blocks until `parties` processes or threads have arrived, or
  /// at most `timeout` (the constructor's if unset; forever if both are).
  /// Returns the arrival index, 0 to parties() - 1; the last to arrive runs
  /// the action before anyone is released. Arrivals while the action runs
  /// wait for the next cycle. Throws mp::broken_barrier if the barrier is or
  /// becomes broken, or if the wait times out (which breaks it for everyone);
  /// an exception from the action breaks the barrier and propagates.
  unsigned wait(mp::timeout timeout = {}) const;
  /// Breaks the barrier: current and later waits throw mp::broken_barrier
  /// until reset(). Never blocks.
  void abort() const;
  /// Returns the barrier to its initial state; current waiters throw
  /// mp::broken_barrier. Never blocks.
  void reset() const;
  /// Never blocks or throws.
  bool broken() const;
  /// The number of arrivals in the current cycle (0 while broken).
  unsigned n_waiting() const;
  unsigned parties() const;

  /// The codec's form: the barrier's shared memory travels as a descriptor,
  /// so a barrier passed to a spawned child is the same barrier. Its action
  /// travels if it is portable (see bound_call); otherwise encoding throws
  /// mp::usage_error.
  template <class Archive>
  void save(Archive& archive) const {
    if constexpr (std::same_as<Archive, detail::output_archive>)
      if (action_ && !action_.portable())
        throw usage_error(
            "a barrier's action cannot travel to another process: it captures state or takes "
            "arguments the codec cannot encode; use a function or capture-less lambda");
    const std::int64_t timeout = timeout_.limited() ? timeout_.duration().count() : -1;
    archive(state_, action_, timeout);
  }
  template <class Archive>
  void load(Archive& archive) {
    std::int64_t timeout = -1;
    archive(state_, action_, timeout);
    timeout_ = timeout >= 0 ? mp::timeout(std::chrono::nanoseconds(timeout)) : mp::timeout();
  }
  /// For the codec only: a barrier to load into.
  barrier() = default;

 private:
  detail::shared_object<detail::barrier_state> state_;
  bound_call action_;
  mp::timeout timeout_;
};

}  // namespace mp
