// SPDX-License-Identifier: MIT
// Anonymous shared memory for the objects mp places there (locks, semaphores,
// shared values): memfd mappings that children inherit across fork and that the
// kernel frees when the last process lets go, even after SIGKILL.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "mp/detail/unique_fd.hpp"
#include "mp/export.hpp"

namespace mp::detail {

/// One memfd mapping, MAP_SHARED. Nothing in it is ever written to /dev/shm.
class MP_EXPORT shared_region {
 public:
  /// Creates and maps a zero-filled region of `size` bytes.
  /// Throws std::system_error if memfd_create, ftruncate or mmap fails.
  static std::shared_ptr<shared_region> create(std::size_t size);
  /// Maps a region another process sent (its memfd and size). Throws
  /// mp::decode_error if the descriptor is not a region of at least `size`
  /// bytes; std::system_error if mmap fails.
  static std::shared_ptr<shared_region> adopt(unique_fd fd, std::size_t size);
  shared_region(const shared_region&) = delete;
  shared_region& operator=(const shared_region&) = delete;
  ~shared_region();

  std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  /// The memfd, for passing the region to another process.
  int fd() const noexcept { return fd_; }

 private:
  shared_region(int fd, std::byte* data, std::size_t size) noexcept
      : fd_(fd), data_(data), size_(size) {}
  int fd_;
  std::byte* data_;
  std::size_t size_;
};

/// Carves `size` bytes aligned to `align` out of this process's shared arena
/// (regions of 64 KiB, or one region for a larger request). The bytes are zero.
/// The region stays mapped while the returned owner lives. Thread-safe; after
/// fork a child carves from fresh regions, never from its parent's.
MP_EXPORT std::pair<std::shared_ptr<shared_region>, std::byte*> shared_allocate(std::size_t size,
                                                                                std::size_t align);

/// Throws mp::usage_error: an mp object was used after it was moved from.
[[noreturn]] MP_EXPORT void throw_moved_from();
/// Throws mp::decode_error: a received object does not fit in its region.
[[noreturn]] MP_EXPORT void throw_bad_object_offset(std::uint64_t offset, std::uint64_t size,
                                                    std::uint64_t object_size);

/// The codec's form of a piece of a region, for a process that does not share
/// our memory: the region's memfd travels beside the message (SCM_RIGHTS),
/// with the region's size and the piece's offset. Encoding throws
/// mp::process_error where no descriptor can travel (encode(), a queue).
template <class Archive>
void save_place(Archive& archive, const shared_region& region, const void* at) {
  const std::uint32_t index = archive.add_handle(region.fd());
  archive(index, static_cast<std::uint64_t>(region.size()),
          static_cast<std::uint64_t>(static_cast<const std::byte*>(at) - region.data()));
}

/// Maps the region save_place named and returns it with the piece's address.
/// Throws mp::decode_error unless a piece of `bytes` bytes aligned to `align`
/// fits there.
template <class Archive>
std::pair<std::shared_ptr<shared_region>, std::byte*> load_place(Archive& archive,
                                                                 std::uint64_t bytes,
                                                                 std::size_t align) {
  std::uint32_t index = 0;
  std::uint64_t size = 0;
  std::uint64_t offset = 0;
  archive(index, size, offset);
  if (offset > size || size - offset < bytes || offset % align != 0)
    throw_bad_object_offset(offset, size, bytes);
  auto region = shared_region::adopt(archive.take_handle(index), static_cast<std::size_t>(size));
  std::byte* at = region->data() + offset;
  return {std::move(region), at};
}

/// A T constructed in shared memory, kept alive (with its region) by this owner
/// and its copies. T must be trivially destructible: objects in shared memory
/// outlive any one process, so none of them runs a destructor.
template <class T>
class shared_object {
  static_assert(std::is_trivially_destructible_v<T>,
                "objects in shared memory must be trivially destructible");

 public:
  shared_object() = default;
  shared_object(const shared_object&) = default;
  shared_object& operator=(const shared_object&) = default;
  /// A moved-from owner is empty: it no longer points into a region it does
  /// not keep mapped.
  shared_object(shared_object&& other) noexcept
      : region_(std::move(other.region_)), object_(std::exchange(other.object_, nullptr)) {}
  shared_object& operator=(shared_object&& other) noexcept {
    region_ = std::move(other.region_);
    object_ = std::exchange(other.object_, nullptr);
    return *this;
  }
  ~shared_object() = default;

  template <class... Args>
  static shared_object make(Args&&... args) {
    auto [region, at] = shared_allocate(sizeof(T), alignof(T));
    shared_object out;
    out.object_ = ::new (static_cast<void*>(at)) T(std::forward<Args>(args)...);
    out.region_ = std::move(region);
    return out;
  }
  /// An owner of the T at `at` in `region` (which must hold one), for a region
  /// another process sent.
  static shared_object attach(std::shared_ptr<shared_region> region, std::byte* at) {
    shared_object out;
    out.object_ = std::launder(reinterpret_cast<T*>(at));
    out.region_ = std::move(region);
    return out;
  }

  /// The codec's form (see save_place): what arrives is the same T.
  template <class Archive>
  void save(Archive& archive) const {
    const T* object = checked();
    save_place(archive, *region_, object);
  }
  template <class Archive>
  void load(Archive& archive) {
    auto [region, at] = load_place(archive, sizeof(T), alignof(T));
    *this = attach(std::move(region), at);
  }

  T* get() const noexcept { return object_; }
  /// Throw mp::usage_error on a moved-from (empty) owner instead of
  /// dereferencing null; a noexcept caller then terminates with that message.
  T& operator*() const { return *checked(); }
  T* operator->() const { return checked(); }
  explicit operator bool() const noexcept { return object_ != nullptr; }
  const std::shared_ptr<shared_region>& region() const noexcept { return region_; }

 private:
  T* checked() const {
    if (object_ == nullptr) [[unlikely]]
      throw_moved_from();
    return object_;
  }
  std::shared_ptr<shared_region> region_;
  T* object_ = nullptr;
};

}  // namespace mp::detail
