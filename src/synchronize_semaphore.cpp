// SPDX-License-Identifier: MIT
// Semaphore and BoundedSemaphore on one futex word holding the value, with a
// count of possible sleepers so that release() makes no system call when no
// one waits.
#include <climits>

#include "mp/synchronize.hpp"
#include "os/futex.hpp"

namespace mp {
namespace {

bool try_take(detail::semaphore_state& state) {
  std::uint32_t value = state.value.load(std::memory_order_relaxed);
  while (value > 0)
    if (state.value.compare_exchange_weak(value, value - 1, std::memory_order_acquire,
                                          std::memory_order_relaxed))
      return true;
  return false;
}

// Counts the caller among the possible sleepers while it lives. A waiter
// killed meanwhile stays counted; that only costs releasers a needless wake.
class sleeper {
 public:
  explicit sleeper(std::atomic<std::uint32_t>& waiters) : waiters_(waiters) {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
  }
  sleeper(const sleeper&) = delete;
  sleeper& operator=(const sleeper&) = delete;
  ~sleeper() { waiters_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  std::atomic<std::uint32_t>& waiters_;
};

void check_initial_value(unsigned value) {
  if (value > sem_value_max) throw usage_error("semaphore initial value exceeds sem_value_max");
}

}  // namespace

semaphore::semaphore(unsigned value) : semaphore(value, sem_value_max) {}

semaphore::semaphore(unsigned value, unsigned max_value) {
  check_initial_value(value);
  state_ = detail::shared_object<detail::semaphore_state>::make(value, max_value);
}

bool semaphore::acquire(bool blocking, mp::timeout timeout) const {
  detail::semaphore_state& state = *state_;
  if (try_take(state)) return true;
  if (!blocking || timeout.zero()) return false;
  const detail::deadline deadline(timeout);
  // Registering as a sleeper before re-reading the value pairs with release(),
  // which adds to the value before reading the sleeper count (both seq_cst):
  // either it sees us and wakes us, or we see its value (the kernel re-checks
  // the word before sleeping).
  const sleeper registered(state.waiters);
  for (;;) {
    if (try_take(state)) return true;
    const mp::timeout left = deadline.left();
    if (left.zero()) return false;
    os::futex_wait(state.value, 0, left);
  }
}

void semaphore::release(unsigned n) const {
  if (n == 0) throw usage_error("semaphore release count must be at least 1");
  detail::semaphore_state& state = *state_;
  std::uint32_t value = state.value.load(std::memory_order_relaxed);
  do {
    if (n > state.max_value - value) throw usage_error("semaphore or lock released too many times");
  } while (!state.value.compare_exchange_weak(value, value + n, std::memory_order_seq_cst,
                                              std::memory_order_relaxed));
  if (state.waiters.load(std::memory_order_seq_cst) != 0)
    os::futex_wake(state.value, n > INT_MAX ? INT_MAX : static_cast<int>(n));
}

unsigned semaphore::get_value() const {
  return state_->value.load(std::memory_order_acquire);
}

bounded_semaphore::bounded_semaphore(unsigned value) : semaphore(value, value) {}

}  // namespace mp
