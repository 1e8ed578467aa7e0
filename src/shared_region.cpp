// SPDX-License-Identifier: MIT
// memfd regions and the per-process bump arena that hands out pieces of them.
#include "mp/detail/shared_region.hpp"

#include <pthread.h>

#include <mutex>
#include <optional>
#include <string>
#include <system_error>

#include "mp/errors.hpp"
#include "os/futex.hpp"
#include "os/system.hpp"

namespace mp::detail {

void throw_moved_from() {
  throw usage_error("this mp object was moved from: assign a new one before using it");
}

std::shared_ptr<shared_region> shared_region::create(std::size_t size) {
  os::unique_fd fd = os::memory_file("mp");
  os::resize_file(fd.get(), size);
  std::byte* at = os::map_shared(fd.get(), size);
  return std::shared_ptr<shared_region>(new shared_region(fd.release(), at, size));
}

std::shared_ptr<shared_region> shared_region::adopt(unique_fd fd, std::size_t size) {
  std::optional<os::file_status> file;
  try {
    file = os::status(fd.get());
  } catch (const std::system_error&) {
    // Not a descriptor we can look at: no region either.
  }
  if (!file || !file->regular || file->size < size || size == 0)
    throw decode_error("a received shared object's descriptor is not a region of " +
                       std::to_string(size) + " bytes");
  std::byte* at = os::map_shared(fd.get(), size);
  return std::shared_ptr<shared_region>(new shared_region(fd.release(), at, size));
}

void throw_bad_object_offset(std::uint64_t offset, std::uint64_t size, std::uint64_t object_size) {
  throw decode_error("a received shared object of " + std::to_string(object_size) +
                     " bytes at offset " + std::to_string(offset) +
                     " does not fit in its region of " + std::to_string(size) + " bytes");
}

shared_region::~shared_region() {
  os::unmap(data_, size_);
  close_fd(fd_);
}

namespace {

constexpr std::size_t arena_region_size = std::size_t{64} << 10;

struct arena {
  std::mutex mutex;
  pid_t owner = 0;  // the process whose regions these are
  // Weak: a region lives only as long as objects in it, so no descriptor or
  // mapping stays behind once they are gone.
  std::weak_ptr<shared_region> current;
  std::size_t used = 0;
};

arena& the_arena() {
  static arena* instance = new arena;  // never destroyed: owners may outlive statics
  return *instance;
}

// A fork while another thread holds the arena lock would leave the child's
// copy locked forever.
void lock_arena() noexcept {
  the_arena().mutex.lock();
}
void unlock_arena() noexcept {
  the_arena().mutex.unlock();
}
[[maybe_unused]] const int fork_handlers = pthread_atfork(lock_arena, unlock_arena, unlock_arena);

}  // namespace

std::pair<std::shared_ptr<shared_region>, std::byte*> shared_allocate(std::size_t size,
                                                                      std::size_t align) {
  if (size > arena_region_size / 4) {
    auto region = shared_region::create(size);
    std::byte* at = region->data();
    return {std::move(region), at};
  }
  arena& a = the_arena();
  std::lock_guard lock(a.mutex);
  // A forked child shares its parent's regions: carving more from them would
  // hand both processes the same bytes.
  const pid_t self = os::self_identity().pid;
  std::shared_ptr<shared_region> region = a.current.lock();
  std::size_t offset = (a.used + align - 1) / align * align;
  if (!region || a.owner != self || offset + size > region->size()) {
    region = shared_region::create(arena_region_size);
    a.current = region;
    a.owner = self;
    offset = 0;
  }
  a.used = offset + size;
  std::byte* at = region->data() + offset;
  return {std::move(region), at};
}

}  // namespace mp::detail
