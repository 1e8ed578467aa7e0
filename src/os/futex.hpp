// SPDX-License-Identifier: MIT
// Futex waits and wakes on 32-bit words in shared memory (not process-private,
// so they work across processes), plus process liveness checks used to detect
// a dead lock holder.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "mp/timeout.hpp"
#include "os/system.hpp"

namespace mp::os {

/// Sleeps while `*word == expected`, at most `timeout`.
/// Returns false on timeout; true when woken, interrupted, or the value differs
/// (callers re-check their condition in a loop).
bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                mp::timeout timeout);

/// Wakes up to `count` waiters on `word` (INT_MAX: all).
void futex_wake(const std::atomic<std::uint32_t>& word, int count);

/// Asymmetric fences (membarrier(2)), for a Dekker handshake whose one side
/// runs often and the other rarely: "publish, then check for sleepers" against
/// "announce a sleeper, then check for work". The frequent side calls
/// light_fence() between the two: if it returns true, that compiler barrier
/// was enough, provided the rare side calls heavy_fence() between its two and
/// it returns true. If light_fence() returns false (membarrier unavailable),
/// the frequent side must check with a read-modify-write instead; if
/// heavy_fence() returns false, the rare side must not sleep without a timeout.
bool light_fence() noexcept;
bool heavy_fence() noexcept;

/// A process identity that survives pid reuse: the pid and its start time in
/// clock ticks since boot (field 22 of /proc/<pid>/stat).
struct process_identity {
  std::int32_t pid = 0;
  std::uint64_t start_time = 0;
};

/// This process's identity (cached per process; correct after fork). Inline:
/// lock fast paths read it on every acquire.
process_identity self_identity_slow();
extern std::atomic<std::int32_t> cached_pid;
extern std::atomic<std::uint64_t> cached_start;
inline process_identity self_identity() {
  const std::int32_t pid = cached_pid.load(std::memory_order_acquire);
  if (pid == 0) [[unlikely]]
    return self_identity_slow();
  return {pid, cached_start.load(std::memory_order_relaxed)};
}

/// The caller's thread id (cached per thread, and fetched again in a forked
/// child, whose pid differs).
inline std::int32_t self_thread_id() {
  thread_local std::int32_t pid = 0, tid = 0;
  const std::int32_t now = self_identity().pid;
  if (pid != now) [[unlikely]] {
    pid = now;
    tid = static_cast<std::int32_t>(thread_id());
  }
  return tid;
}

/// True if the process `id` names is still running (a zombie counts as dead).
bool is_running(const process_identity& id);

}  // namespace mp::os
