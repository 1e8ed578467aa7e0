// SPDX-License-Identifier: MIT
// Linux implementation of src/os/futex.hpp.
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

#include "os/futex.hpp"
#include "os/system.hpp"

namespace mp::os {

bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                mp::timeout timeout) {
  timespec ts{};
  if (timeout.limited()) {
    const std::int64_t ns = timeout.duration().count();
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  }
  // Shared futex (no FUTEX_PRIVATE_FLAG): the word is in memory other
  // processes map. The timeout is relative, on CLOCK_MONOTONIC.
  const long r = ::syscall(SYS_futex, &word, FUTEX_WAIT, expected,
                           timeout.limited() ? &ts : nullptr, nullptr, 0);
  if (r == 0) return true;
  if (errno == ETIMEDOUT) return false;
  if (errno == EAGAIN || errno == EINTR) return true;
  throw_errno("futex(FUTEX_WAIT)");
}

void futex_wake(const std::atomic<std::uint32_t>& word, int count) {
  if (::syscall(SYS_futex, &word, FUTEX_WAKE, count, nullptr, nullptr, 0) < 0)
    throw_errno("futex(FUTEX_WAKE)");
}

namespace {

// Whether this process registered for membarrier's global expedited command:
// 0 not yet asked, 1 registered, -1 unavailable. Asked again in a forked child.
std::atomic<int> fence_registration{0};
void forget_identity() noexcept {
  cached_pid.store(0, std::memory_order_relaxed);
  fence_registration.store(0, std::memory_order_relaxed);
}
[[maybe_unused]] const int fork_handler = pthread_atfork(nullptr, nullptr, forget_identity);

}  // namespace

// getpid() is a system call; lock fast paths need our identity for free.
// Cleared in a forked child, which has another.
std::atomic<std::int32_t> cached_pid{0};
std::atomic<std::uint64_t> cached_start{0};

process_identity self_identity_slow() {
  std::int32_t pid = cached_pid.load(std::memory_order_acquire);
  if (pid == 0) {
    pid = static_cast<std::int32_t>(::getpid());
    const auto stat = read_task_stat(pid);
    cached_start.store(stat ? stat->start_time : 0, std::memory_order_relaxed);
    cached_pid.store(pid, std::memory_order_release);
  }
  return {pid, cached_start.load(std::memory_order_relaxed)};
}

bool light_fence() noexcept {
  int state = fence_registration.load(std::memory_order_relaxed);
  if (state == 0) {
    state = ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0 ? 1 : -1;
    fence_registration.store(state, std::memory_order_relaxed);
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  return state > 0;
}

bool heavy_fence() noexcept {
  return ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
}

bool is_running(const process_identity& id) {
  if (id.pid <= 0) return false;
  const auto stat = read_task_stat(id.pid);
  if (!stat || stat->start_time == 0) return false;  // no such process
  if (stat->state == 'Z' || stat->state == 'X') return false;
  // Unknown start time (the holder died before recording it): the pid alone.
  return id.start_time == 0 || stat->start_time == id.start_time;  // otherwise the pid was reused
}

}  // namespace mp::os
