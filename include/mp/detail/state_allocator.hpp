// SPDX-License-Identifier: MIT
// state_allocator: where the pool keeps its task states (futures, async results).
#pragma once

#include <cstddef>
#include <new>

#include "mp/export.hpp"

namespace mp::detail {

/// Memory for one task state of `size` bytes, 64-byte aligned, from mp's
/// arena of task states (src/slab_arena.hpp); throws std::bad_alloc.
MP_EXPORT void* allocate_state(std::size_t size);
/// Gives back what allocate_state(size) returned, from any thread.
MP_EXPORT void deallocate_state(void* at, std::size_t size) noexcept;

/// The allocator of task states (std::allocate_shared): a program that submits
/// a burst of tasks holds a state per task, and taking them from reused,
/// huge-page-backed slabs rather than from fresh heap pages, one page fault
/// per 4 KiB, makes submit several times faster (bench: executor-submit).
template <class T>
struct state_allocator {
  using value_type = T;
  state_allocator() = default;
  template <class U>
  state_allocator(const state_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if constexpr (alignof(T) > 64)
      return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{alignof(T)}));
    else
      return static_cast<T*>(allocate_state(n * sizeof(T)));
  }
  void deallocate(T* at, std::size_t n) noexcept {
    if constexpr (alignof(T) > 64)
      ::operator delete (at, std::align_val_t{alignof(T)});
    else
      deallocate_state(at, n * sizeof(T));
  }
  template <class U>
  friend bool operator==(const state_allocator&, const state_allocator<U>&) noexcept {
    return true;
  }
};

}  // namespace mp::detail
