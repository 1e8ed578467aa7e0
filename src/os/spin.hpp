// SPDX-License-Identifier: MIT
// Waiting awake for a moment before sleeping: the queues' sides and the
// thread pool's workers do it, so that back-to-back traffic never pays for a
// kernel wake-up.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>

#include "os/system.hpp"

namespace mp::os {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// Spinning helps only if whoever we wait for can run meanwhile: not when
/// this process may use a single CPU.
inline bool spinning_helps() noexcept {
  static std::atomic<int> cached{-1};
  int value = cached.load(std::memory_order_relaxed);
  if (value < 0) {
    value = affinity_cpu_count() > 1 ? 1 : 0;
    cached.store(value, std::memory_order_relaxed);
  }
  return value != 0;
}

/// Waits for `ready()` awake: spins for `spin` where spinning helps, then
/// gives the CPU away `yields` times (with more threads than CPUs, the one
/// we wait for may be waiting for ours). True once ready; false means the
/// caller should sleep.
template <class Ready>
bool wait_awake(Ready&& ready, std::chrono::nanoseconds spin, int yields) {
  using clock = std::chrono::steady_clock;
  if (spinning_helps()) {
    const auto spin_end = clock::now() + spin;
    for (unsigned i = 1;; ++i) {
      if (ready()) return true;
      cpu_relax();
      if (i % 16 == 0 && clock::now() >= spin_end) break;
    }
  }
  for (int i = 0; i < yields; ++i) {
    if (ready()) return true;
    yield_processor();
  }
  return ready();
}

/// As wait_awake, but gives the CPU away every few dozen pauses of the spin
/// too: for a wait whose peers are threads of this process, which the
/// scheduler likes to put on our CPU. There a plain spin holds off the very
/// thread it waits for (a worker thread spinning for its next task, beside
/// the pool's thread that must first pass on its result): mp::thread_pool's
/// apply() round trip took 12-40 us with wait_awake, 8-12 us with this, on 2
/// CPUs. Where nothing else wants the CPU, a yield returns at once and the
/// wait is a spin that looks a little less often.
template <class Ready>
bool wait_awake_yielding(Ready&& ready, std::chrono::nanoseconds spin, int yields) {
  using clock = std::chrono::steady_clock;
  constexpr unsigned pauses_per_yield = 32;
  if (spinning_helps()) {
    const auto spin_end = clock::now() + spin;
    for (unsigned i = 1;; ++i) {
      if (ready()) return true;
      cpu_relax();
      if (i % pauses_per_yield == 0) {
        yield_processor();
        if (clock::now() >= spin_end) break;
      }
    }
  }
  for (int i = 0; i < yields; ++i) {
    if (ready()) return true;
    yield_processor();
  }
  return ready();
}

/// A mutex that spins a little before it sleeps (glibc's adaptive kind):
/// for a lock two threads take often and hold briefly, as the pool's, where
/// a sleep and a wake-up cost far more than the wait.
class adaptive_mutex {
 public:
  adaptive_mutex() noexcept {
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_settype(&attributes, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&mutex_, &attributes);
    pthread_mutexattr_destroy(&attributes);
  }
  adaptive_mutex(const adaptive_mutex&) = delete;
  adaptive_mutex& operator=(const adaptive_mutex&) = delete;
  ~adaptive_mutex() { pthread_mutex_destroy(&mutex_); }
  void lock() noexcept { pthread_mutex_lock(&mutex_); }
  bool try_lock() noexcept { return pthread_mutex_trylock(&mutex_) == 0; }
  void unlock() noexcept { pthread_mutex_unlock(&mutex_); }

 private:
  pthread_mutex_t mutex_;
};

}  // namespace mp::os
