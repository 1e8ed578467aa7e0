// SPDX-License-Identifier: MIT
// Event on one futex word holding the flag and a count of set() calls, so that
// a waiter woken by a set() that was undone before it ran still returns (with
// the flag, false), as Python's does, instead of sleeping again.
#include <climits>

#include "mp/synchronize.hpp"
#include "os/futex.hpp"

namespace mp {
namespace {

constexpr std::uint32_t flag_bit = 1;
// Adding this to a word with the flag clear sets it and counts one more set().
constexpr std::uint32_t set_step = 3;

}  // namespace

event::event() : state_(detail::shared_object<detail::event_state>::make()) {}

bool event::is_set() const {
  return (state_->word.load(std::memory_order_acquire) & flag_bit) != 0;
}

void event::set() const {
  detail::event_state& state = *state_;
  std::uint32_t word = state.word.load(std::memory_order_relaxed);
  std::uint32_t desired = 0;
  // Always a read-modify-write, even when the flag is already set, so that
  // this set() happens-before any wait() that sees the flag afterwards.
  do {
    desired = (word & flag_bit) != 0 ? word : word + set_step;
  } while (!state.word.compare_exchange_weak(word, desired, std::memory_order_seq_cst,
                                             std::memory_order_relaxed));
  // Pairs with the sleeper count in wait(): see semaphore::acquire.
  if (desired != word && state.waiters.load(std::memory_order_seq_cst) != 0)
    os::futex_wake(state.word, INT_MAX);
}

void event::clear() const {
  state_->word.fetch_and(~flag_bit, std::memory_order_release);
}

bool event::wait(mp::timeout timeout) const {
  detail::event_state& state = *state_;
  const std::uint32_t start = state.word.load(std::memory_order_acquire);
  if ((start & flag_bit) != 0) return true;
  if (timeout.zero()) return false;
  const detail::deadline deadline(timeout);
  state.waiters.fetch_add(1, std::memory_order_seq_cst);
  struct leave {
    std::atomic<std::uint32_t>& waiters;
    ~leave() { waiters.fetch_sub(1, std::memory_order_relaxed); }
  } const registered{state.waiters};
  for (;;) {
    const std::uint32_t word = state.word.load(std::memory_order_seq_cst);
    if ((word & flag_bit) != 0) return true;
    // clear() leaves a clear word alone, so a different clear word means a
    // set() came and went: Python wakes and returns the flag.
    if (word != start) return false;
    const mp::timeout left = deadline.left();
    if (left.zero()) return false;
    os::futex_wait(state.word, word, left);
  }
}

}  // namespace mp
