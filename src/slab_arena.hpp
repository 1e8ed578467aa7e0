// SPDX-License-Identifier: MIT
// slab_arena: fixed-size blocks carved from large aligned slabs, for the pool's task states.
#pragma once

#include <array>
#include <cstddef>
#include <mutex>

#include "mp/export.hpp"

namespace mp::detail {

/// Blocks of up to `largest` bytes in size classes of `granule` bytes, each
/// class carving its blocks from slabs of `slab_size` bytes aligned to their
/// size (so a block finds its slab by masking its address), mapped with a
/// request for huge pages. Thread-safe; a block may be freed by any thread.
/// A slab no block is taken from any more is unmapped, but for one per class
/// kept for the next burst. Safe across fork (the locks are held around it).
///
/// Written here rather than taken from a library: the point is huge-page,
/// reused memory for one kind of object, which the program's own malloc
/// (glibc: a fresh 4 KiB page per fault, trimmed back between bursts) cannot
/// be asked for, and a general allocator (jemalloc, tcmalloc) would replace
/// the program's malloc, which a library must not do.
class MP_EXPORT slab_arena {
 public:
  static constexpr std::size_t slab_size = std::size_t{2} << 20;
  static constexpr std::size_t granule = 64;
  static constexpr std::size_t largest = 1024;

  slab_arena() = default;
  slab_arena(const slab_arena&) = delete;
  slab_arena& operator=(const slab_arena&) = delete;
  /// Unmaps every slab: every block must have been freed.
  ~slab_arena();

  /// A block of at least `size` bytes (1 to `largest`), `granule`-aligned;
  /// throws std::bad_alloc if no slab can be mapped.
  void* allocate(std::size_t size);
  /// Frees a block allocate(size) returned, with the same `size`.
  void deallocate(void* at, std::size_t size) noexcept;

  /// Slabs mapped now (for tests).
  std::size_t slabs() const;

  /// Around fork: lock every class before, unlock after (both sides).
  void lock_all() noexcept;
  void unlock_all() noexcept;

 private:
  struct slab;
  struct size_class {
    mutable std::mutex mutex;
    slab* partial = nullptr;  // slabs with a free block, or room to carve one
    slab* spare = nullptr;    // an empty slab kept for the next burst
    std::size_t mapped = 0;
  };
  static std::size_t class_of(std::size_t size) noexcept { return (size - 1) / granule; }
  std::array<size_class, largest / granule> classes_;
};

}  // namespace mp::detail
