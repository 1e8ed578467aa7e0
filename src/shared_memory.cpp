// SPDX-License-Identifier: MIT
// Named and anonymous shared memory blocks, their crash-safe naming, and the
// shareable list stored in one.
//
// Named blocks are files in /dev/shm, which is what glibc's shm_open uses. A
// block is built in an unnamed O_TMPFILE file and only then linked under its
// name, so nobody ever sees a half-initialised block, and a creator killed
// while building one leaves nothing behind. Its memory is allocated when it is
// made (posix_fallocate): a full /dev/shm then fails create() with ENOSPC,
// where a sparse file would pass and a later write into a hole get SIGBUS.
//
// Liveness: each process holding a named mp block has it open with a shared
// flock. The kernel drops a process's flocks when it dies, and keeps one while
// any descriptor for that open file remains (a forked child, a descriptor sent
// over a socket). An orphan sweep takes an exclusive flock without waiting: it
// succeeds only if nobody holds the block, and while the sweep holds it no
// opener can get its shared lock, so "check, then unlink" cannot race an open.
// The header also names the creator (pid and start time, which survive pid
// reuse): a creator that closed its block but still lives will unlink it.
//
// Every process that links this file sweeps once when it starts (a static
// initializer), so a block whose creator was killed is gone once the next
// program using named blocks has started, with no call from the user. That
// sweep is kept cheap: it lists /dev/shm and opens only the entries that this
// user owns and that are large enough to hold an mp header.
#include "mp/shared_memory.hpp"

#include <array>
#include <atomic>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "os/futex.hpp"
#include "os/system.hpp"

namespace mp {

namespace detail {

/// The start of every named mp block. The user's bytes start at data_offset.
/// Plain fields (trivially copyable, so a sweep can pread it); `kept` is only
/// ever accessed through std::atomic_ref in the mapping.
struct shared_memory_header {
  std::array<char, 8> magic;
  std::uint32_t version;
  std::uint32_t data_offset;
  std::uint64_t size;
  std::int32_t creator_pid;  // with creator_start_time: os::process_identity
  std::uint32_t kept;        // release_name() was called: never an orphan
  std::uint64_t creator_start_time;
};

}  // namespace detail

namespace {

using detail::shared_memory_header;
using os::unique_fd;

constexpr std::array<char, 8> header_magic{'m', 'p', '.', 's', 'h', 'm', '\0', '\1'};
constexpr std::uint32_t header_version = 1;
// A whole (4 KiB) page, so the user's bytes are as aligned as an mmap.
constexpr std::size_t header_size = 4096;
constexpr const char* shm_directory = "/dev/shm/";

static_assert(sizeof(shared_memory_header) <= header_size);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);

/// Python's names have no leading '/', shm_open's have one: accept both, and
/// return the name without it. Throws std::invalid_argument.
std::string normalized(std::string name) {
  if (!name.empty() && name.front() == '/') name.erase(0, 1);
  if (name.empty() || name == "." || name == ".." ||
      name.find_first_of(std::string_view("/\0", 2)) != std::string::npos || name.size() > 255)
    throw std::invalid_argument("mp::shared_memory: invalid name '" + name +
                                "' (expected one non-empty file name of at most 255 bytes)");
  return name;
}

std::string path_of(const std::string& name) {
  return shm_directory + name;
}

void check_size(std::size_t size, std::size_t overhead) {
  if (size == 0) throw std::invalid_argument("mp::shared_memory: 'size' must be a positive number");
  if (size > static_cast<std::size_t>(std::numeric_limits<off_t>::max()) - overhead)
    throw std::invalid_argument("mp::shared_memory: 'size' is too large");
}

/// True if `path` names the file (device, inode) right now.
bool names_file(const std::string& path, std::uint64_t device, std::uint64_t inode) noexcept {
  const auto now = os::status(path.c_str());
  return now && now->device == device && now->inode == inode;
}

/// Reads the header of an open file; nullopt if it is not an mp block.
std::optional<shared_memory_header> read_header(int fd, const os::file_status& file) {
  if (!file.regular || file.size < header_size) return std::nullopt;
  shared_memory_header header{};
  if (os::read_at(fd, &header, sizeof header, 0) != sizeof header || header.magic != header_magic)
    return std::nullopt;
  return header;
}

/// Unlinks the block named `name` if it is an mp block that nobody holds and
/// nobody kept. Never throws: an entry it cannot inspect is not an orphan.
bool remove_if_orphan(const std::string& name) noexcept {
  try {
    const std::string path = path_of(name);
    std::error_code error;
    const unique_fd fd = os::open_file(path.c_str(), false, error);
    if (error) return false;
    const os::file_status file = os::status(fd.get());
    const auto header = read_header(fd.get(), file);
    if (!header || header->kept != 0) return false;
    if (!os::try_lock_file_exclusive(fd.get())) return false;
    // Only now is `kept` final: whoever set it held the shared lock until then.
    const auto settled = read_header(fd.get(), file);
    if (!settled || settled->kept != 0) return false;
    // A living creator will unlink the name itself, even if it closed the block.
    if (os::is_running({settled->creator_pid, settled->creator_start_time})) return false;
    // The name may have been unlinked and reused since we opened it.
    if (!names_file(path, file.device, file.inode)) return false;
    os::remove_file(path.c_str(), error);
    return !error;
  } catch (...) {
    return false;
  }
}

/// The sweep every process makes when it starts: remove_orphans, restricted to
/// what can be an orphan of ours before anything is opened (this user's
/// regular files of at least a header's size). Never throws.
void sweep_own_orphans() noexcept {
  try {
    const std::uint32_t user = os::effective_user();
    for (const std::string& name : os::regular_file_names(shm_directory)) {
      const auto file = os::status(path_of(name).c_str());
      if (!file || !file->regular || file->owner != user || file->size < header_size) continue;
      remove_if_orphan(name);
    }
  } catch (...) {
    // No /dev/shm, or it cannot be read: nothing to sweep.
  }
}

// Runs before main (and in every spawned child, which starts as a fresh run of
// the program). A static initializer, rather than a call on first use, so that
// a program that restarts after a crash cleans up even if it never creates a
// block again.
[[maybe_unused]] const bool swept_at_start = (sweep_own_orphans(), true);

}  // namespace

// ---- shared_memory ---------------------------------------------------------

shared_memory shared_memory::create(std::string name, std::size_t size) {
  return create(std::move(name), size, nullptr, nullptr);
}

shared_memory shared_memory::create(std::string name, std::size_t size,
                                    void (*init)(std::span<std::byte>, const void*),
                                    const void* context) {
  name = normalized(std::move(name));
  check_size(size, header_size);
  shared_memory block;  // its destructor releases whatever a failure leaves
  block.fd_ = os::create_unnamed_file(shm_directory).release();
  const std::size_t length = header_size + size;
  // All of it now, while the file has no name: ENOSPC here rather than SIGBUS
  // at a later write; a failure leaves nothing behind, as the file is unnamed.
  os::reserve_file(block.fd_, length);
  // Held for as long as the descriptor is open, anywhere: this is what tells
  // an orphan sweep that the block is in use.
  os::lock_file_shared(block.fd_);
  block.base_ = os::map_shared(block.fd_, length);
  block.mapped_ = length;
  block.data_ = block.base_ + header_size;
  block.size_ = size;
  shared_memory_header header{};
  header.magic = header_magic;
  header.version = header_version;
  header.data_offset = static_cast<std::uint32_t>(header_size);
  header.size = size;
  const os::process_identity self = os::self_identity();
  header.creator_pid = self.pid;
  header.creator_start_time = self.start_time;
  std::memcpy(block.base_, &header, sizeof header);
  block.header_ = reinterpret_cast<shared_memory_header*>(block.base_);
  if (init != nullptr) init(block.bytes(), context);

  const std::string path = path_of(name);
  bool reclaimed = false;
  for (;;) {
    std::error_code error;
    os::link_file(block.fd_, path.c_str(), error);
    if (!error) break;
    if (error != std::errc::file_exists) throw std::system_error(error, "linkat");
    // The name is taken; an orphan's name is free for the taking, once.
    if (reclaimed || !remove_if_orphan(name))
      throw shared_memory_exists("mp::shared_memory: a block named '" + name + "' exists");
    reclaimed = true;
  }
  const os::file_status file = os::status(block.fd_);
  block.device_ = file.device;
  block.inode_ = file.inode;
  block.name_ = std::move(name);
  block.owns_name_ = true;
  block.creator_pid_ = self.pid;
  return block;
}

shared_memory shared_memory::create(std::size_t size) {
  check_size(size, 0);
  shared_memory block;
  block.fd_ = os::memory_file("mp-shared-memory").release();
  // Sparse, unlike a named block: a memfd lives on the kernel's internal mount,
  // which has no size limit, so a write into it never gets SIGBUS for want of
  // space; it takes memory as a heap page does. Allocating it all here would
  // commit the memory up front and turn a request for too much into an OOM
  // kill now instead of an error.
  os::resize_file(block.fd_, size);
  block.base_ = os::map_shared(block.fd_, size);
  block.mapped_ = size;
  block.data_ = block.base_;
  block.size_ = size;
  return block;
}

shared_memory shared_memory::open(std::string name) {
  name = normalized(std::move(name));
  const std::string path = path_of(name);
  // Retried only if an orphan sweep removed the name between our open and our
  // lock; the name may have been created again since.
  for (int attempt = 0; attempt < 8; ++attempt) {
    shared_memory block;
    std::error_code error;
    block.fd_ = os::open_file(path.c_str(), true, error).release();
    if (error) {
      if (error == std::errc::no_such_file_or_directory)
        throw shared_memory_not_found("mp::shared_memory: no block named '" + name + "'");
      throw std::system_error(error, "shm_open");
    }
    const os::file_status file = os::status(block.fd_);
    if (!file.regular) throw std::system_error(EINVAL, std::system_category(), "shm_open");
    if (read_header(block.fd_, file)) {
      // A sweep holds its exclusive lock only between two system calls.
      os::lock_file_shared(block.fd_);
      if (!names_file(path, file.device, file.inode)) continue;
    }
    block.map_open_file("block '" + name + "'", false);
    block.name_ = std::move(name);
    return block;
  }
  throw shared_memory_not_found("mp::shared_memory: no block named '" + name + "'");
}

void shared_memory::map_open_file(const std::string& label, bool received) {
  const os::file_status file = os::status(fd_);
  if (received && (!file.regular || file.size == 0))
    throw decode_error("mp::shared_memory: " + label + " is not a shared memory block");
  const auto map_all = [&] {
    if (!received) return os::map_shared(fd_, mapped_);
    try {
      return os::map_shared(fd_, mapped_);
    } catch (const std::system_error& e) {
      throw decode_error("mp::shared_memory: " + label + " cannot be mapped read-write (" +
                         e.what() + ")");
    }
  };
  const bool anonymous = received && name_.empty();
  const auto header = anonymous ? std::nullopt : read_header(fd_, file);
  if (header) {
    // Held for as long as the descriptor is open (a no-op if an opener's
    // lock already covers this open file).
    os::lock_file_shared(fd_);
    if (header->version != header_version)
      throw decode_error("mp::shared_memory: " + label + " has header version " +
                         std::to_string(header->version) + ", this mp reads version " +
                         std::to_string(header_version));
    if (header->data_offset < sizeof(shared_memory_header) || header->data_offset % 64 != 0 ||
        header->data_offset > file.size || header->size > file.size - header->data_offset ||
        header->size == 0)
      throw decode_error("mp::shared_memory: " + label + " has a corrupt header");
    mapped_ = static_cast<std::size_t>(file.size);
    base_ = map_all();
    header_ = reinterpret_cast<shared_memory_header*>(base_);
    data_ = base_ + header->data_offset;
    size_ = static_cast<std::size_t>(header->size);
  } else {
    // Not ours (Python's, or anonymous): plain bytes from offset 0, no crash safety.
    mapped_ = static_cast<std::size_t>(file.size);
    base_ = map_all();
    data_ = base_;
    size_ = mapped_;
  }
  device_ = file.device;
  inode_ = file.inode;
}

shared_memory shared_memory::received(detail::unique_fd fd, std::string name) {
  if (!name.empty()) {
    try {
      name = normalized(std::move(name));
    } catch (const std::invalid_argument& e) {
      throw decode_error(std::string("mp::shared_memory: a received block has an ") + e.what());
    }
  }
  shared_memory block;
  block.fd_ = fd.release();
  block.name_ = std::move(name);
  block.map_open_file(block.name_.empty() ? std::string("a received anonymous block")
                                          : "received block '" + block.name_ + "'",
                      true);
  return block;
}

shared_memory::shared_memory(shared_memory&& other) noexcept
    : name_(std::move(other.name_)),
      base_(std::exchange(other.base_, nullptr)),
      mapped_(std::exchange(other.mapped_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      fd_(std::exchange(other.fd_, -1)),
      owns_name_(std::exchange(other.owns_name_, false)),
      creator_pid_(std::exchange(other.creator_pid_, 0)),
      device_(std::exchange(other.device_, 0)),
      inode_(std::exchange(other.inode_, 0)),
      header_(std::exchange(other.header_, nullptr)) {
  other.name_.clear();
}

shared_memory& shared_memory::operator=(shared_memory&& other) noexcept {
  if (this != &other) {
    unlink_if_owner();
    close();
    name_ = std::move(other.name_);
    other.name_.clear();
    base_ = std::exchange(other.base_, nullptr);
    mapped_ = std::exchange(other.mapped_, 0);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    fd_ = std::exchange(other.fd_, -1);
    owns_name_ = std::exchange(other.owns_name_, false);
    creator_pid_ = std::exchange(other.creator_pid_, 0);
    device_ = std::exchange(other.device_, 0);
    inode_ = std::exchange(other.inode_, 0);
    header_ = std::exchange(other.header_, nullptr);
  }
  return *this;
}

shared_memory::~shared_memory() {
  unlink_if_owner();
  close();
}

void shared_memory::close() noexcept {
  os::unmap(base_, mapped_);
  base_ = nullptr;
  data_ = nullptr;
  header_ = nullptr;
  mapped_ = 0;
  if (fd_ >= 0) detail::close_fd(fd_);
  fd_ = -1;
}

void shared_memory::unlink() {
  if (name_.empty()) return;
  owns_name_ = false;
  std::error_code error;
  os::remove_file(path_of(name_).c_str(), error);
  if (error == std::errc::no_such_file_or_directory)
    throw shared_memory_not_found("mp::shared_memory: no block named '" + name_ + "'");
  if (error) throw std::system_error(error, "shm_unlink");
}

void shared_memory::release_name() {
  if (closed()) throw usage_error("mp::shared_memory: release_name() on a closed block");
  owns_name_ = false;
  if (header_ != nullptr) std::atomic_ref<std::uint32_t>(header_->kept).store(1);
}

void shared_memory::unlink_if_owner() noexcept {
  if (!owns_name_) return;
  owns_name_ = false;
  // A forked child's copy of the creator must not remove its parent's name;
  // and if someone unlinked the name and another block took it, it is not ours.
  if (creator_pid_ != os::self_identity().pid) return;
  const std::string path = path_of(name_);
  std::error_code ignored;
  if (names_file(path, device_, inode_)) os::remove_file(path.c_str(), ignored);
}

std::size_t shared_memory::remove_orphans() {
  std::size_t removed = 0;
  for (const std::string& name : os::regular_file_names(shm_directory))
    if (remove_if_orphan(name)) ++removed;
  return removed;
}

// ---- shareable_list --------------------------------------------------------

namespace {

using item = shareable_list::item;

constexpr std::array<char, 8> list_magic{'m', 'p', '.', 's', 'l', 'i', 's', 't'};
constexpr std::uint32_t list_version = 1;

// The list header and each slot, as stored. The type code is the item's
// variant index.
struct list_header {
  std::array<char, 8> magic;
  std::uint32_t version;
  std::uint32_t reserved;
  std::uint64_t count;
  std::uint64_t data_size;
};
struct list_slot {
  std::uint32_t type;
  std::uint32_t reserved;
  std::uint64_t offset;  // into the data area
  std::uint64_t capacity;
  std::uint64_t length;  // of a string or bytes
};
static_assert(sizeof(list_header) == 32 && sizeof(list_slot) == 32);

constexpr std::size_t type_none = 0, type_int = 1, type_double = 2, type_bool = 3, type_string = 4,
                      type_bytes = 5;
static_assert(std::variant_size_v<item> == 6 &&
              std::is_same_v<std::variant_alternative_t<type_int, item>, std::int64_t> &&
              std::is_same_v<std::variant_alternative_t<type_double, item>, double> &&
              std::is_same_v<std::variant_alternative_t<type_bool, item>, bool> &&
              std::is_same_v<std::variant_alternative_t<type_string, item>, std::string> &&
              std::is_same_v<std::variant_alternative_t<type_bytes, item>, std::vector<std::byte>>);

constexpr std::size_t scalar_size = 8;

/// The bytes a string or bytes item needs; scalar_size for the others.
std::size_t length_of(const item& value) {
  if (const auto* s = std::get_if<std::string>(&value)) return s->size();
  if (const auto* b = std::get_if<std::vector<std::byte>>(&value)) return b->size();
  return scalar_size;
}

/// A slot's room, fixed at creation: Python's rule, the first length rounded
/// up to the next multiple of 8 above it (so at least one more byte fits).
std::size_t capacity_for(const item& value) {
  if (value.index() == type_string || value.index() == type_bytes)
    return scalar_size * (length_of(value) / scalar_size + 1);
  return scalar_size;
}

std::size_t data_start(std::size_t count) {
  return sizeof(list_header) + count * sizeof(list_slot);
}

std::size_t block_size_for(const std::vector<item>& items) {
  std::size_t size = data_start(items.size());
  for (const item& value : items) size += capacity_for(value);
  return size;
}

template <class T>
T read_at(std::span<const std::byte> bytes, std::size_t at) {
  T value;
  std::memcpy(&value, bytes.data() + at, sizeof value);
  return value;
}

template <class T>
void store(std::span<std::byte> bytes, std::size_t at, const T& value) {
  std::memcpy(bytes.data() + at, &value, sizeof value);
}

/// Writes the payload of `value` at `at` (room checked by the caller).
void store_item(std::span<std::byte> bytes, std::size_t at, const item& value) {
  switch (value.index()) {
    case type_none:
      store(bytes, at, std::uint64_t{0});
      break;
    case type_int:
      store(bytes, at, std::get<std::int64_t>(value));
      break;
    case type_double:
      store(bytes, at, std::get<double>(value));
      break;
    case type_bool:
      store(bytes, at, std::uint64_t{std::get<bool>(value) ? 1u : 0u});
      break;
    case type_string: {
      const auto& s = std::get<std::string>(value);
      if (!s.empty()) std::memcpy(bytes.data() + at, s.data(), s.size());
      break;
    }
    default: {
      const auto& b = std::get<std::vector<std::byte>>(value);
      if (!b.empty()) std::memcpy(bytes.data() + at, b.data(), b.size());
      break;
    }
  }
}

void write_list(std::span<std::byte> bytes, const void* context) {
  const auto& items = *static_cast<const std::vector<item>*>(context);
  const std::size_t start = data_start(items.size());
  std::size_t offset = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const item& value = items[i];
    const std::size_t capacity = capacity_for(value);
    store_item(bytes, start + offset, value);
    const list_slot slot{static_cast<std::uint32_t>(value.index()), 0, offset, capacity,
                         value.index() >= type_string ? length_of(value) : 0};
    store(bytes, sizeof(list_header) + i * sizeof(list_slot), slot);
    offset += capacity;
  }
  // The header last: a list is valid once its magic is there.
  store(bytes, 0, list_header{list_magic, list_version, 0, items.size(), offset});
}

[[noreturn]] void corrupt(const std::string& what) {
  throw decode_error("mp::shareable_list: corrupt block: " + what);
}

/// Slot `index`, read once and checked against the sizes fixed when the list
/// was opened, so that no later use of it can leave the block.
list_slot read_slot(std::span<const std::byte> bytes, std::size_t index, std::size_t data_size) {
  const auto slot = read_at<list_slot>(bytes, sizeof(list_header) + index * sizeof(list_slot));
  const std::string which = "item " + std::to_string(index);
  if (slot.type >= std::variant_size_v<item>)
    corrupt(which + " has type code " + std::to_string(slot.type));
  if (slot.offset > data_size || slot.capacity > data_size - slot.offset)
    corrupt(which + " lies outside the data area");
  if (slot.capacity < scalar_size) corrupt(which + " has room for less than 8 bytes");
  if ((slot.type == type_string || slot.type == type_bytes) && slot.length > slot.capacity)
    corrupt(which + " is longer than its room");
  return slot;
}

shared_memory create_anonymous_list(const std::vector<item>& items) {
  shared_memory block = shared_memory::create(block_size_for(items));
  write_list(block.bytes(), &items);
  return block;
}

}  // namespace

shareable_list::shareable_list(const std::vector<item>& items)
    : shareable_list(adopt{}, create_anonymous_list(items)) {}

shareable_list::shareable_list(const std::vector<item>& items, std::string name)
    : shareable_list(adopt{}, shared_memory::create(std::move(name), block_size_for(items),
                                                    write_list, &items)) {}

shareable_list shareable_list::open(std::string name) {
  return shareable_list(adopt{}, shared_memory::open(std::move(name)));
}

shareable_list shareable_list::open(shared_memory block) {
  return shareable_list(adopt{}, std::move(block));
}

shareable_list::shareable_list(adopt, shared_memory block) : block_(std::move(block)) {
  const std::span<const std::byte> bytes = block_.bytes();
  if (bytes.size() < sizeof(list_header)) corrupt("smaller than a list header");
  const auto header = read_at<list_header>(bytes, 0);
  if (header.magic != list_magic) corrupt("no list header");
  if (header.version != list_version)
    throw decode_error("mp::shareable_list: list version " + std::to_string(header.version) +
                       ", this mp reads version " + std::to_string(list_version));
  if (header.count > (bytes.size() - sizeof(list_header)) / sizeof(list_slot))
    corrupt("more items than the block holds");
  count_ = static_cast<std::size_t>(header.count);
  if (header.data_size > bytes.size() - data_start(count_)) corrupt("data area too large");
  data_size_ = static_cast<std::size_t>(header.data_size);
  for (std::size_t i = 0; i < count_; ++i) read_slot(bytes, i, data_size_);
}

shareable_list::item shareable_list::get(std::size_t index) const {
  if (index >= count_)
    throw std::out_of_range("mp::shareable_list: index " + std::to_string(index) + " out of range");
  const std::span<const std::byte> bytes = block_.bytes();
  if (bytes.empty()) throw usage_error("mp::shareable_list: the block is closed");
  const list_slot slot = read_slot(bytes, index, data_size_);
  const std::size_t at = data_start(count_) + static_cast<std::size_t>(slot.offset);
  switch (slot.type) {
    case type_none:
      return std::monostate{};
    case type_int:
      return read_at<std::int64_t>(bytes, at);
    case type_double:
      return read_at<double>(bytes, at);
    case type_bool: {
      const auto value = read_at<std::uint64_t>(bytes, at);
      if (value > 1) corrupt("item " + std::to_string(index) + " is a bool other than 0 or 1");
      return value == 1;
    }
    case type_string: {
      const auto* first = reinterpret_cast<const char*>(bytes.data() + at);
      return std::string(first, static_cast<std::size_t>(slot.length));
    }
    default: {
      const auto first = bytes.begin() + static_cast<std::ptrdiff_t>(at);
      return std::vector<std::byte>(first, first + static_cast<std::ptrdiff_t>(slot.length));
    }
  }
}

void shareable_list::set(std::size_t index, const item& value) {
  if (index >= count_)
    throw std::out_of_range("mp::shareable_list: index " + std::to_string(index) + " out of range");
  const std::span<std::byte> bytes = block_.bytes();
  if (bytes.empty()) throw usage_error("mp::shareable_list: the block is closed");
  list_slot slot = read_slot(bytes, index, data_size_);
  const std::size_t length = length_of(value);
  if (length > slot.capacity)
    throw std::invalid_argument("mp::shareable_list: item " + std::to_string(index) + " holds " +
                                std::to_string(slot.capacity) + " bytes, not " +
                                std::to_string(length));
  store_item(bytes, data_start(count_) + static_cast<std::size_t>(slot.offset), value);
  slot.type = static_cast<std::uint32_t>(value.index());
  slot.length = value.index() >= type_string ? length : 0;
  store(bytes, sizeof(list_header) + index * sizeof(list_slot), slot);
}

std::size_t shareable_list::count(const item& value) const {
  std::size_t found = 0;
  for (std::size_t i = 0; i < count_; ++i)
    if (get(i) == value) ++found;
  return found;
}

std::size_t shareable_list::index(const item& value) const {
  for (std::size_t i = 0; i < count_; ++i)
    if (get(i) == value) return i;
  throw std::invalid_argument("mp::shareable_list: the item is not in the list");
}

}  // namespace mp
