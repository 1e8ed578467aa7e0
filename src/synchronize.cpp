// SPDX-License-Identifier: MIT
// Lock and RLock on a futex word that holds the owner's pid, so that a waiter
// can tell whether the holder still lives (the robust-futex idea, checked by
// the waiter on its slow path instead of by the kernel, which keeps the fast
// path a bare compare-and-swap).
#include <climits>
#include <thread>

#include "mp/synchronize.hpp"
#include "os/futex.hpp"
#include "os/system.hpp"

namespace mp {
namespace detail {
namespace {

using namespace std::chrono_literals;

// The lock word: the holder's pid (pid_max is at most 2^22), and a bit that
// says someone may be sleeping on it.
constexpr std::uint32_t pid_mask = (1U << 30) - 1;
constexpr std::uint32_t waiters_bit = 1U << 30;
// How often a sleeping waiter checks that the holder still lives.
constexpr std::chrono::nanoseconds liveness_period = 100ms;
constexpr int spin_iterations = 100;

std::uint32_t self_word() {
  return static_cast<std::uint32_t>(os::self_identity().pid) & pid_mask;
}

void record_owner(lock_state& state, bool recursive) {
  state.owner_start.store(os::self_identity().start_time, std::memory_order_relaxed);
  if (recursive) {
    state.owner_tid.store(os::self_thread_id(), std::memory_order_relaxed);
    state.depth.store(1, std::memory_order_relaxed);
  }
}

[[noreturn]] void throw_owner_died() {
  throw owner_died(
      "a process died holding this lock; you hold it now, but what it protects may be "
      "inconsistent: repair it, call mark_consistent(), then release");
}

// Runs after every successful acquire: the holder is us from here on.
bool acquired(lock_state& state, bool recursive) {
  record_owner(state, recursive);
  if (state.inconsistent.load(std::memory_order_acquire) != 0) throw_owner_died();
  return true;
}

bool try_take(lock_state& state, std::uint32_t with) {
  std::uint32_t expected = 0;
  return state.word.compare_exchange_strong(expected, with, std::memory_order_acquire,
                                            std::memory_order_relaxed);
}

}  // namespace

void lock_acquire_blocking(lock_state& state, bool recursive) {
  if (!recursive && try_take(state, self_word())) {
    acquired(state, false);
    return;
  }
  lock_acquire(state, recursive, {});
}

bool lock_acquire(lock_state& state, bool recursive, mp::timeout timeout) {
  const std::uint32_t me = self_word();
  if (recursive && (state.word.load(std::memory_order_relaxed) & pid_mask) == me &&
      state.owner_tid.load(std::memory_order_relaxed) == os::self_thread_id()) {
    state.depth.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  if (try_take(state, me)) return acquired(state, recursive);
  if (timeout.zero()) return false;

  // Back-to-back hand-offs should not pay for a sleep and a wake-up.
  for (int i = 0; i < spin_iterations; ++i) {
    if (state.word.load(std::memory_order_relaxed) == 0 && try_take(state, me))
      return acquired(state, recursive);
    std::this_thread::yield();
  }

  const deadline deadline(timeout);
  for (;;) {
    std::uint32_t current = state.word.load(std::memory_order_relaxed);
    if (current == 0) {
      // Others may sleep here too: keep the waiters bit so release wakes one.
      if (try_take(state, me | waiters_bit)) return acquired(state, recursive);
      continue;
    }
    if ((current & waiters_bit) == 0 &&
        !state.word.compare_exchange_weak(current, current | waiters_bit,
                                          std::memory_order_relaxed))
      continue;
    current |= waiters_bit;
    auto slice = liveness_period;
    if (deadline.limited()) {
      const mp::timeout left = deadline.left();
      if (left.zero()) return false;
      slice = std::min(slice, left.duration());
    }
    if (os::futex_wait(state.word, current, slice)) continue;
    // A quiet period: is the holder still alive?
    const os::process_identity holder{static_cast<std::int32_t>(current & pid_mask),
                                      state.owner_start.load(std::memory_order_relaxed)};
    if (!os::is_running(holder) &&
        state.word.compare_exchange_strong(current, me | waiters_bit, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
      state.inconsistent.store(1, std::memory_order_release);
      record_owner(state, recursive);
      throw_owner_died();
    }
  }
}

void lock_release(lock_state& state, bool recursive) {
  const std::uint32_t current = state.word.load(std::memory_order_relaxed);
  if (current == 0) throw usage_error("release of an unlocked lock");
  if (recursive) {
    if ((current & pid_mask) != self_word() ||
        state.owner_tid.load(std::memory_order_relaxed) != os::self_thread_id())
      throw usage_error("cannot release an rlock held by another thread or process");
    if (state.depth.fetch_sub(1, std::memory_order_relaxed) > 1) return;
    state.owner_tid.store(0, std::memory_order_relaxed);
  }
  state.owner_start.store(0, std::memory_order_relaxed);
  if ((state.word.exchange(0, std::memory_order_release) & waiters_bit) != 0)
    os::futex_wake(state.word, 1);
}

}  // namespace detail

condition::condition() : condition(mp::rlock{}) {}

condition::condition(mp::lock lock)
    : lock_(std::move(lock)),
      recursive_(false),
      state_(detail::shared_object<detail::condition_state>::make()) {}

condition::condition(mp::rlock lock)
    : lock_(std::move(lock)),
      recursive_(true),
      state_(detail::shared_object<detail::condition_state>::make()) {}

detail::lock_state& condition::lock_state() const {
  return std::visit([](const auto& l) -> detail::lock_state& { return l.state(); }, lock_);
}

bool condition::acquire(bool blocking, mp::timeout timeout) const {
  if (!blocking) timeout = std::chrono::nanoseconds::zero();
  return detail::lock_acquire(lock_state(), recursive_, timeout);
}

void condition::release() const {
  detail::lock_release(lock_state(), recursive_);
}

bool condition::held_by_caller() const {
  const detail::lock_state& s = lock_state();
  const std::uint32_t word = s.word.load(std::memory_order_relaxed);
  if (!recursive_) return word != 0;  // a Lock has no owning thread (Python)
  return (word & detail::pid_mask) == detail::self_word() &&
         s.owner_tid.load(std::memory_order_relaxed) == os::self_thread_id();
}

bool condition::wait(mp::timeout timeout) const {
  if (!held_by_caller()) throw usage_error("cannot wait on an un-acquired condition");
  detail::lock_state& lock = lock_state();
  // Read the sequence before releasing: a notify between the release and the
  // sleep changes it, and the futex then does not sleep.
  const std::uint32_t sequence = state_->sequence.load(std::memory_order_acquire);
  state_->waiters.fetch_add(1, std::memory_order_relaxed);
  std::uint32_t depth = 1;
  if (recursive_) {
    depth = lock.depth.load(std::memory_order_relaxed);
    lock.depth.store(1, std::memory_order_relaxed);  // so one release frees it
  }
  detail::lock_release(lock, recursive_);
  bool notified = true;
  const detail::deadline deadline(timeout);
  while (state_->sequence.load(std::memory_order_acquire) == sequence) {
    const mp::timeout left = deadline.left();
    if (left.zero()) {
      notified = false;
      break;
    }
    os::futex_wait(state_->sequence, sequence, left);
  }
  state_->waiters.fetch_sub(1, std::memory_order_relaxed);
  try {
    detail::lock_acquire(lock, recursive_, {});
  } catch (const owner_died&) {
    if (recursive_) lock.depth.store(depth, std::memory_order_relaxed);
    throw;
  }
  if (recursive_) lock.depth.store(depth, std::memory_order_relaxed);
  return notified;
}

void condition::notify(unsigned n) const {
  if (!held_by_caller()) throw usage_error("cannot notify on an un-acquired condition");
  if (state_->waiters.load(std::memory_order_relaxed) == 0 || n == 0) return;
  state_->sequence.fetch_add(1, std::memory_order_release);
  os::futex_wake(state_->sequence, static_cast<int>(std::min<unsigned>(n, INT_MAX)));
}

void condition::notify_all() const {
  notify(UINT_MAX);
}

}  // namespace mp
