// SPDX-License-Identifier: MIT
// Shared memory blocks and lists in them: Python's multiprocessing.shared_memory
// (SharedMemory, ShareableList).
//
// Only differences from Python are documented here; see
// https://docs.python.org/3/library/multiprocessing.shared_memory.html
//
// Lifetime of names: the process that creates a named block owns its name, and
// the creator's object unlinks it when destroyed or moved over (unless
// release_name() was called); openers never unlink. Python leaves unlinking to
// the user, and its resource tracker unlinks (with a "leaked" warning) what is
// left at exit. The memory itself lives until the last process unmaps it.
//
// Crash safety: every process that has a named block open holds a shared
// flock(2) on it, which the kernel drops when the process dies, even by
// SIGKILL. A block is an orphan once its creator has ended without unlinking
// it and no process holds it any more. Every process of a program that uses
// mp::shared_memory removes this user's orphans when it starts (before main),
// so nothing a killed creator left stays once its holders have let go and the
// next such process has started; remove_orphans() does the same on demand,
// and create() reclaims an orphan's name. A block is never removed while a
// process that opened it through mp (or inherited it across fork) still runs.
//
// Thread-safety: an object may be used from one thread at a time; the static
// functions are thread-safe. The bytes of a block are not synchronised: guard
// them with a lock, as in Python.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mp/detail/unique_fd.hpp"
#include "mp/errors.hpp"
#include "mp/export.hpp"

namespace mp {

namespace detail {
struct shared_memory_header;
}  // namespace detail

/// No block has this name (Python raises FileNotFoundError).
class MP_EXPORT shared_memory_not_found : public process_error {
 public:
  using process_error::process_error;
};

/// A block with this name exists and is in use (Python raises FileExistsError).
class MP_EXPORT shared_memory_exists : public process_error {
 public:
  using process_error::process_error;
};

/// Python's SharedMemory: a block of memory shared between processes, mapped
/// read-write. Move-only owner of the mapping and its descriptor.
///
/// Named blocks live in /dev/shm, as Python's do, so each can open the other's.
/// An mp block starts with a 4 KiB header (magic, version, sizes) that data()
/// skips, so data() is 4096-byte aligned and a Python process sees the user's
/// bytes from offset 4096. A block without that header (one Python created) is
/// opened as plain bytes from offset 0, but is not covered by crash safety.
///
/// Anonymous blocks (create(size)) have no name and no header: a memfd the
/// kernel frees when the last process lets go. Children started by fork share
/// the mapping (capture the object by reference); fd() can be passed too.
///
/// Fork: a child inherits the mapping and the descriptor, so the block counts
/// as in use while the child runs. A copy of a creator in a forked child never
/// unlinks the name; only the creating process does.
///
/// The codec's form: a block travels as its descriptor (SCM_RIGHTS), as a
/// process argument, a pool task's argument or over a connection, and arrives
/// mapped: the same memory, named or anonymous. The receiver holds it as an
/// opener does (never unlinks the name), and keeps it in use while it has it.
class MP_EXPORT shared_memory {
 public:
  /// An empty, closed block (a moved-from one is the same).
  shared_memory() noexcept = default;

  /// Creates a named block of `size` zero bytes. `name` may start with one '/'
  /// (as shm_open names do) or not (as Python's do); the rest must be a
  /// non-empty file name of at most 255 bytes. The block appears under its name
  /// fully initialised or not at all. If a block with this name exists but is
  /// an orphan (see remove_orphans), it is removed and the name reused. Its
  /// memory is allocated here (posix_fallocate), so writing to it never fails
  /// for want of space, and creating it takes time in proportion to `size`.
  /// Throws std::invalid_argument if `size` is 0 or the name is invalid;
  /// mp::shared_memory_exists if the name is in use; std::system_error for a
  /// failed system call: ENOSPC if /dev/shm has no room for `size` bytes (then
  /// nothing is left behind), ENOMEM, EMFILE, ...
  static shared_memory create(std::string name, std::size_t size);

  /// Creates an anonymous block of `size` zero bytes (memfd_create); name() is
  /// empty. Its memory is taken page by page as it is written, like heap
  /// memory: a memfd has no size limit of its own, so too large a block meets
  /// the system's memory limits (the OOM killer), never SIGBUS.
  /// Throws std::invalid_argument if `size` is 0; std::system_error.
  static shared_memory create(std::size_t size);

  /// Opens the named block (with or without a leading '/'). Never unlinks it.
  /// Throws mp::shared_memory_not_found if it does not exist;
  /// std::invalid_argument for an invalid name; mp::decode_error if it has an
  /// mp header that is corrupt or of another version; std::system_error.
  static shared_memory open(std::string name);

  shared_memory(shared_memory&& other) noexcept;
  /// Closes this block first, unlinking its name if this object created it.
  shared_memory& operator=(shared_memory&& other) noexcept;
  shared_memory(const shared_memory&) = delete;
  shared_memory& operator=(const shared_memory&) = delete;
  /// Closes; if this object created the name in this process and neither
  /// unlink() nor release_name() was called, unlinks it too (only if the name
  /// still refers to this block). Never throws.
  ~shared_memory();

  /// The name without its leading '/', as Python reports it; empty if anonymous.
  const std::string& name() const noexcept { return name_; }
  /// The size the block was created with (stays readable after close()).
  std::size_t size() const noexcept { return size_; }
  /// The first byte of the block (Python's buf); nullptr if closed.
  std::byte* data() const noexcept { return data_; }
  /// The block's bytes; empty if closed.
  std::span<std::byte> bytes() const noexcept {
    return data_ == nullptr ? std::span<std::byte>{} : std::span<std::byte>{data_, size_};
  }
  /// The block's descriptor (CLOEXEC), for passing it to another process; -1
  /// if closed. Still owned by this object.
  int fd() const noexcept { return fd_; }
  bool closed() const noexcept { return data_ == nullptr; }
  /// True if this object will unlink the name when destroyed.
  bool owns_name() const noexcept { return owns_name_; }

  /// Unmaps the block and closes its descriptor; idempotent, never throws.
  /// Unlike Python's close(), a creator still unlinks the name when destroyed.
  void close() noexcept;

  /// Removes the name (Python's unlink): later open() calls fail, while every
  /// process that has the block mapped keeps it. Any holder may call it, even
  /// after close(). Does nothing for an anonymous block.
  /// Throws mp::shared_memory_not_found if the name is already gone.
  void unlink();

  /// Keeps the name after this object: the destructor will not unlink it, and
  /// remove_orphans() will not remove the block once no process uses it, so it
  /// waits, like a Python block, for someone to unlink() it. Does nothing for
  /// an anonymous block. Throws mp::usage_error if the block is closed.
  void release_name();

  /// Unlinks every orphan in /dev/shm: an mp block whose creator process has
  /// ended without unlinking it and that no running process holds open. Skips
  /// blocks without an mp header, blocks kept with release_name(), and entries
  /// this process may not open. Returns how many it removed. Thread-safe.
  /// Every process already does this once when it starts, for its user's
  /// blocks; call it to sweep again (in a long-running program) or, as root,
  /// for every user. Throws std::system_error if /dev/shm cannot be read.
  static std::size_t remove_orphans();

  /// Codec hooks (see the class comment). Sending a closed block throws
  /// mp::usage_error; receiving a descriptor that is not a block (or holds a
  /// corrupt mp header) throws mp::decode_error.
  template <class Archive>
  void save(Archive& archive) const {
    if (closed()) throw usage_error("mp::shared_memory: cannot send a closed block");
    archive(name_, archive.add_handle(fd_));
  }
  template <class Archive>
  void load(Archive& archive) {
    std::string name;
    std::uint32_t index = 0;
    archive(name, index);
    *this = received(archive.take_handle(index), std::move(name));
  }

 private:
  friend class shareable_list;
  // The block behind a descriptor that came from another process.
  static shared_memory received(detail::unique_fd fd, std::string name);
  // Maps the whole of the open file fd_: after its mp header if it has one
  // (checked and locked shared; a received block without a name_ has none),
  // from offset 0 if not. `label` names the block in errors; a `received`
  // file that is no block, or cannot be mapped, throws mp::decode_error.
  void map_open_file(const std::string& label, bool received);
  // Creates a named block and runs `init` on its zeroed bytes before the name
  // appears, so no opener ever sees them half written.
  static shared_memory create(std::string name, std::size_t size,
                              void (*init)(std::span<std::byte>, const void*), const void* context);
  void unlink_if_owner() noexcept;

  std::string name_;           // without the leading '/'
  std::byte* base_ = nullptr;  // the whole mapping, header included
  std::size_t mapped_ = 0;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  int fd_ = -1;
  bool owns_name_ = false;
  int creator_pid_ = 0;       // unlinking is for the creating process only, never a forked copy
  std::uint64_t device_ = 0;  // with inode_: which file the name referred to
  std::uint64_t inode_ = 0;
  detail::shared_memory_header* header_ = nullptr;  // a named block's mp header, if it has one
};

/// Python's ShareableList: a list of fixed length whose items live in one
/// shared memory block, anonymous or named. Move-only; owns its block.
///
/// Items are 64-bit integers, doubles, bools, strings, byte strings or none.
/// As in Python, a slot first holding a string or bytes of n bytes can later
/// hold up to 8 * (n / 8 + 1) bytes, and any slot can hold any number, bool or
/// none; set() may change an item's type within these limits. Unlike Python,
/// trailing NUL bytes of strings and bytes are kept, and count() and index()
/// compare type and value (1, 1.0 and true are three different items).
///
/// Layout (native byte order, every field 8-byte aligned, in the block's bytes):
/// a 32-byte list header (magic "mp.slist", version, item count, data size),
/// then one 32-byte slot per item (type, offset into the data area, capacity,
/// length), then the data area. A block Python's ShareableList wrote is not
/// readable here, nor the other way round.
///
/// Not synchronised, as in Python: concurrent set() and get() on one item from
/// different processes may read a mix of old and new; guard them with a lock.
/// Reading is defensive: a corrupt block throws mp::decode_error, and no read
/// leaves the block.
class MP_EXPORT shareable_list {
 public:
  /// One item. The last alternative is mp::bytes.
  using item =
      std::variant<std::monostate, std::int64_t, double, bool, std::string, std::vector<std::byte>>;

  /// Stores `items` in a new anonymous block (shared with children by fork).
  explicit shareable_list(const std::vector<item>& items);
  /// Stores `items` in a new named block that this list owns (see
  /// shared_memory::create for the name rules and what it throws).
  shareable_list(const std::vector<item>& items, std::string name);
  /// Opens the list stored in the named block (Python's ShareableList(name=...)).
  /// Throws mp::shared_memory_not_found, or mp::decode_error if the block does
  /// not hold a valid list.
  static shareable_list open(std::string name);
  /// Takes over a block that holds a list (one received as a descriptor, say).
  /// Throws mp::decode_error if it does not hold a valid list.
  static shareable_list open(shared_memory block);

  /// An empty list with no block, for the codec to decode into.
  shareable_list() noexcept = default;
  shareable_list(shareable_list&&) noexcept = default;
  shareable_list& operator=(shareable_list&&) noexcept = default;
  shareable_list(const shareable_list&) = delete;
  shareable_list& operator=(const shareable_list&) = delete;
  ~shareable_list() = default;

  /// The number of items (Python's len).
  std::size_t size() const noexcept { return count_; }
  /// The item at `index`. Throws std::out_of_range for a bad index;
  /// mp::decode_error if the slot is corrupt.
  item get(std::size_t index) const;
  item operator[](std::size_t index) const { return get(index); }
  /// Replaces the item at `index`. Throws std::out_of_range for a bad index;
  /// std::invalid_argument if a string or bytes is longer than the slot holds
  /// (Python's ValueError); mp::decode_error if the slot is corrupt.
  void set(std::size_t index, const item& value);
  /// How many items equal `value`.
  std::size_t count(const item& value) const;
  /// The index of the first item equal to `value`. Throws std::invalid_argument
  /// if there is none (Python's ValueError).
  std::size_t index(const item& value) const;
  /// The block holding the list (Python's shm attribute).
  shared_memory& shm() noexcept { return block_; }
  const shared_memory& shm() const noexcept { return block_; }

  /// Codec hooks: a list travels as its block (see shared_memory), and what
  /// arrives is the same list. A block that does not hold a valid list throws
  /// mp::decode_error.
  template <class Archive>
  void save(Archive& archive) const {
    archive(block_);
  }
  template <class Archive>
  void load(Archive& archive) {
    shared_memory block;
    archive(block);
    *this = shareable_list(adopt{}, std::move(block));
  }

 private:
  struct adopt {};
  shareable_list(adopt, shared_memory block);

  shared_memory block_;
  std::size_t count_ = 0;  // read once when opened: a corrupt block cannot change them
  std::size_t data_size_ = 0;
};

}  // namespace mp
