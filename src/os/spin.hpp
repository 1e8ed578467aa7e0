// SPDX-License-Identifier: MIT
// Waiting awake for a moment before sleeping: the queues' sides and the
// thread pool's workers do it, so that back-to-back traffic never pays for a
// kernel wake-up. And the CPU hints such loops use.
#pragma once

#include <pthread.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

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

/// Asks the CPU to bring the cache line at `p` here for writing, without
/// waiting for it: the line then travels while the caller works, instead of
/// holding up the store that needs it. A hint: it never faults, and it does
/// nothing where the CPU has no such prefetch.
inline void prefetch_for_write(const void* p) noexcept {
#if defined(__x86_64__) || defined(__i386__)
  // PREFETCHW: every AMD64 CPU and Intel's since Broadwell; CPUID says.
  static const bool supported = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(0x80000001, &a, &b, &c, &d) != 0 && (c & bit_PRFCHW) != 0;
  }();
  if (supported) asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1, 3);
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

/// How a wait_awake spin shares its CPU.
enum class spin_kind {
  plain,     // pauses only
  yielding,  // gives the CPU away every 32 pauses too
};

/// Waits for `ready()` awake: spins for `spin` where spinning helps, then
/// gives the CPU away `yields` times (with more threads than CPUs, the one
/// we wait for may be waiting for ours). True once ready; false means the
/// caller should sleep.
///
/// A yielding spin is for a wait whose peers are threads of this process,
/// which the scheduler likes to put on our CPU: there a plain spin holds off
/// the very thread it waits for (a worker thread spinning for its next task,
/// beside the pool's thread that must first pass on its result).
/// mp::thread_pool's apply() round trip took 12-40 us with a plain spin,
/// 8-12 us with a yielding one, on 2 CPUs. Where nothing else wants the CPU,
/// a yield returns at once and the spin looks a little less often.
template <class Ready>
bool wait_awake(Ready&& ready, std::chrono::nanoseconds spin, int yields,
                spin_kind kind = spin_kind::plain) {
  using clock = std::chrono::steady_clock;
  if (spinning_helps()) {
    const auto spin_end = clock::now() + spin;
    const unsigned pauses = kind == spin_kind::yielding ? 32 : 16;
    for (unsigned i = 1;; ++i) {
      if (ready()) return true;
      cpu_relax();
      if (i % pauses == 0) {
        if (kind == spin_kind::yielding) yield_processor();
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
