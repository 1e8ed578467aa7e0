// SPDX-License-Identifier: MIT
#include "slab_arena.hpp"

#include <pthread.h>

#include <cstdint>
#include <new>
#include <utility>

#include "mp/detail/state_allocator.hpp"
#include "os/system.hpp"

// AddressSanitizer: GCC says so with __SANITIZE_ADDRESS__, clang with __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define MP_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MP_ADDRESS_SANITIZER 1
#endif
#endif

#if defined(MP_ADDRESS_SANITIZER)
#include <sanitizer/asan_interface.h>
#define MP_POISON(at, size) ASAN_POISON_MEMORY_REGION(at, size)
#define MP_UNPOISON(at, size) ASAN_UNPOISON_MEMORY_REGION(at, size)
#else
#define MP_POISON(at, size) static_cast<void>(0)
#define MP_UNPOISON(at, size) static_cast<void>(0)
#endif

namespace mp::detail {

// A slab's header, in its first granule; its blocks follow. A free block holds
// the next free one in its first bytes.
struct slab_arena::slab {
  slab* prev = nullptr;
  slab* next = nullptr;
  bool listed = false;  // in its class's partial list
  void* free = nullptr;
  std::byte* bump = nullptr;  // the first block never handed out
  std::size_t live = 0;
  std::size_t block = 0;

  bool has_room() const noexcept {
    return free != nullptr || static_cast<std::size_t>(reinterpret_cast<const std::byte*>(this) +
                                                       slab_size - bump) >= block;
  }
};

namespace {

template <class Slab>
void push_front(Slab*& head, Slab* s) noexcept {
  s->prev = nullptr;
  s->next = head;
  if (head != nullptr) head->prev = s;
  head = s;
  s->listed = true;
}

template <class Slab>
void unlink(Slab*& head, Slab* s) noexcept {
  if (s->prev != nullptr)
    s->prev->next = s->next;
  else
    head = s->next;
  if (s->next != nullptr) s->next->prev = s->prev;
  s->prev = s->next = nullptr;
  s->listed = false;
}

}  // namespace

slab_arena::~slab_arena() {
  for (auto& c : classes_) {
    // Every block is free: the slabs are the spare and those in the partial list.
    while (c.partial != nullptr) {
      slab* s = c.partial;
      unlink(c.partial, s);
      if (s != c.spare) os::unmap(s, slab_size);
    }
    if (c.spare != nullptr) os::unmap(c.spare, slab_size);
  }
}

void* slab_arena::allocate(std::size_t size) {
  static_assert(sizeof(slab) <= granule, "a slab's header fits its first granule");
  if (size == 0 || size > largest) throw std::bad_alloc();
  size_class& c = classes_[class_of(size)];
  const std::size_t block = (class_of(size) + 1) * granule;
  std::lock_guard lock(c.mutex);
  slab* s = c.partial;
  if (s == nullptr) {
    if (c.spare != nullptr) {
      s = std::exchange(c.spare, nullptr);
    } else {
      std::byte* at = os::map_aligned_private(slab_size);
      if (at == nullptr) throw std::bad_alloc();
      s = new (at) slab;
      s->block = block;
      s->bump = at + granule;
      MP_POISON(s->bump, slab_size - granule);
      ++c.mapped;
    }
    push_front(c.partial, s);
  }
  void* out = nullptr;
  if (s->free != nullptr) {
    out = s->free;
    MP_UNPOISON(out, sizeof(void*));
    s->free = *static_cast<void**>(out);
  } else {
    out = s->bump;
    s->bump += block;
  }
  MP_UNPOISON(out, size);
  ++s->live;
  if (!s->has_room()) unlink(c.partial, s);
  return out;
}

void slab_arena::deallocate(void* at, std::size_t size) noexcept {
  size_class& c = classes_[class_of(size)];
  auto* s = reinterpret_cast<slab*>(reinterpret_cast<std::uintptr_t>(at) &
                                    ~(std::uintptr_t{slab_size} - 1));
  slab* unmapped = nullptr;
  {
    std::lock_guard lock(c.mutex);
    MP_POISON(at, s->block);
    MP_UNPOISON(at, sizeof(void*));
    *static_cast<void**>(at) = s->free;
    MP_POISON(at, sizeof(void*));
    s->free = at;
    if (--s->live == 0) {
      // Empty: kept as the spare, or given back.
      if (s->listed) unlink(c.partial, s);
      if (c.spare == nullptr) {
        c.spare = s;
      } else {
        unmapped = s;
        --c.mapped;
      }
    } else if (!s->listed) {
      push_front(c.partial, s);  // it was full
    }
  }
  if (unmapped != nullptr) os::unmap(unmapped, slab_size);
}

std::size_t slab_arena::slabs() const {
  std::size_t n = 0;
  for (const auto& c : classes_) {
    std::lock_guard lock(c.mutex);
    n += c.mapped;
  }
  return n;
}

void slab_arena::lock_all() noexcept {
  for (auto& c : classes_) c.mutex.lock();
}

void slab_arena::unlock_all() noexcept {
  for (auto& c : classes_) c.mutex.unlock();
}

namespace {

// The arena of task states: constant-initialized, so that no thread is ever
// inside its initialization when another forks (a child would wait for that
// initialization for ever), and never destroyed, as a future may outlive
// static destruction.
union arena_holder {
  constexpr arena_holder() : arena() {}
  ~arena_holder() {}
  slab_arena arena;
};
constinit arena_holder holder;

// Fork takes every size class's lock first, so that the child's are free.
[[maybe_unused]] const int fork_handlers =
    ::pthread_atfork([] { holder.arena.lock_all(); }, [] { holder.arena.unlock_all(); },
                     [] { holder.arena.unlock_all(); });

}  // namespace

// Under AddressSanitizer the states come from the program's heap, so that a
// leaked or overrun one is reported (the arena itself is tested directly).
void* allocate_state(std::size_t size) {
#if defined(MP_ADDRESS_SANITIZER)
  return ::operator new(size);
#else
  if (size > slab_arena::largest) return ::operator new(size);
  return holder.arena.allocate(size);
#endif
}

void deallocate_state(void* at, std::size_t size) noexcept {
  // (Unsized: clang declares the sized one only with -fsized-deallocation.)
#if defined(MP_ADDRESS_SANITIZER)
  static_cast<void>(size);
  ::operator delete(at);
#else
  if (size > slab_arena::largest)
    ::operator delete(at);
  else
    holder.arena.deallocate(at, size);
#endif
}

}  // namespace mp::detail
