// SPDX-License-Identifier: MIT
// Queues between processes: Python's multiprocessing Queue, SimpleQueue and
// JoinableQueue.
//
// Only differences from Python are documented here; see
// https://docs.python.org/3/library/multiprocessing.html#pipes-and-queues
//
// Items live in shared memory (an anonymous memfd), not in a pipe, and there
// is no feeder thread: put() has written the item into shared memory when it
// returns. So a producer may exit right after put() and nothing is lost, and
// joining a child that put items never deadlocks. Items are any codec type
// (mp/serialization.hpp) of any size; each is encoded straight into the queue
// and decoded straight out of it.
//
// The queue grows as needed: records sit in chained segments of 256 KiB, and a
// larger item gets a segment of its own (a power of two that fits it). Freed
// large segments give their pages back to the system. Each process maps the
// queue's memory as far as it is used (4 MiB at first, doubling as segments are
// handed out), up to 64 GiB: the limit on the bytes one queue can hold at once.
//
// Processes share a queue by fork: copy the object (copies refer to the same
// queue) or pass it as an argument of mp::process.
//
// Blocked producers and consumers spin for a few microseconds and then sleep on
// a futex, waking every 100 ms to re-check (which is how they carry on when a
// process that should have woken them died).
//
// Crash safety: a process killed inside put() (even by SIGKILL) leaves no
// trace: its half-written item is discarded. A process killed inside get()
// leaves the item it was taking in the queue for the next consumer. Either way
// the others carry on: the next producer or consumer notices the dead holder
// of the side's lock within 100 ms and repairs the queue.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/detail/byte_buffer.hpp"
#include "mp/detail/checks.hpp"
#include "mp/detail/codec.hpp"
#include "mp/errors.hpp"
#include "mp/export.hpp"
#include "mp/timeout.hpp"

namespace mp {

/// get() found nothing in time: Python's queue.Empty.
class MP_EXPORT queue_empty : public process_error {
 public:
  using process_error::process_error;
};

/// put() found no room in time (only a queue with a maxsize fills up):
/// Python's queue.Full.
class MP_EXPORT queue_full : public process_error {
 public:
  using process_error::process_error;
};

namespace detail {

struct queue_control;
struct side_bias;
struct lock_state;

/// The shared state of a queue, without its item type: a memfd holding a
/// control block and chained segments of variable-size records.
class MP_EXPORT queue_core {
 public:
  using encoder = void (*)(const void* item, byte_buffer& out);
  using decoder = void (*)(std::span<const std::byte> in, void* out);

  /// A new, empty queue of at most `max_items` items (0: unbounded).
  /// Throws std::system_error if the memory cannot be reserved.
  queue_core(std::uint64_t fingerprint, std::size_t max_items);
  /// Maps a queue another process sent: its memfd. Throws mp::decode_error if
  /// the memory is not a queue of items with `fingerprint`.
  queue_core(unique_fd fd, std::uint64_t fingerprint);
  /// The queue behind a received descriptor: the core this process already
  /// has for that memory if it received it before and still holds it (one
  /// mapping per queue, however often it arrives), else a new one.
  /// Throws as the constructor. Thread-safe.
  static std::shared_ptr<queue_core> received(unique_fd fd, std::uint64_t fingerprint);
  queue_core(const queue_core&) = delete;
  queue_core& operator=(const queue_core&) = delete;
  ~queue_core();

  /// Encodes `*item` with `encode` into the queue. False if there was no room
  /// within `timeout` (or at once if `block` is false). Throws what `encode`
  /// throws, mp::usage_error after close(), mp::process_error if the item does
  /// not fit in the queue's address space.
  bool put(const void* item, encoder encode, bool block, mp::timeout timeout);
  /// Takes the oldest item and decodes it with `decode` into `out`. False if
  /// none came within `timeout`. If decoding throws, the item is consumed and
  /// the exception propagates.
  bool get(void* out, decoder decode, bool block, mp::timeout timeout);

  std::size_t qsize() const noexcept;
  std::size_t max_items() const noexcept;

  /// JoinableQueue: marks one item done; mp::usage_error if more than were put.
  void task_done();
  /// Waits until every item put has been marked done; false on timeout.
  bool join(mp::timeout timeout);

  void close() noexcept { closed_ = true; }
  bool closed() const noexcept { return closed_; }
  /// The memfd, for sending the queue to another process.
  int fd() const noexcept { return fd_; }

  /// For the fuzz target: the shared memory, where the first segment starts
  /// (the second follows it), and where its first record goes.
  std::byte* memory_for_testing() const noexcept { return view_.load()->base; }
  /// For tests: the bytes of the queue's memory this process has mapped.
  std::uint64_t mapped_for_testing() const noexcept { return view_.load()->length; }
  static constexpr std::uint64_t first_segment = std::uint64_t{256} << 10;
  static constexpr std::uint64_t first_record = first_segment + 64;

 private:
  // One mapping of the queue's memory, from its start. A larger one replaces
  // it as the queue grows; the older ones stay mapped (they total less than
  // the newest), so a thread still using one is never left pointing at
  // nothing, and every offset below a view's length is valid in all later ones.
  struct view {
    std::byte* base;
    std::uint64_t length;
    view* older;
  };

  // Maps the queue's memory, `fd`, which this object then owns.
  void map(unique_fd fd);
  // Makes [0, end) addressable in this process (end is clamped to the
  // queue's size). Throws std::system_error if it cannot be mapped.
  void map_through(std::uint64_t end) {
    if (end > mapped()) grow(end);
  }
  static view* map_view(int fd, std::uint64_t length, view* older);
  void grow(std::uint64_t end);
  std::uint64_t mapped() const noexcept { return view_.load(std::memory_order_acquire)->length; }
  void unmap_all() noexcept;
  queue_control& control() const noexcept;
  std::byte* at(std::uint64_t offset) const noexcept {
    return view_.load(std::memory_order_acquire)->base + offset;
  }
  void check_open() const;
  bool lock_side(lock_state& lock, mp::timeout timeout, void (queue_core::*repair)());
  // How a side was entered (see "Biased sides" in queues.cpp).
  enum class entry : unsigned char { none, biased, locked };
  entry enter_side(lock_state& lock, side_bias& bias, mp::timeout timeout,
                   void (queue_core::*repair)());
  void leave_side(lock_state& lock, side_bias& bias, entry how);
  bool wait_out_owner(side_bias& bias, mp::timeout timeout, void (queue_core::*repair)(),
                      bool fenced);
  void trim_free_list(std::size_t size_class, std::uint32_t keep);
  // The large records' pages one side of this process has mapped in lately
  // (each side's own, used only by the thread inside that side).
  struct mapped_pages {
    struct entry {
      const std::byte* base = nullptr;  // the view they were mapped in
      std::uint64_t segment = 0, punches = 0, from = 0, to = 0;
    };
    std::array<entry, 4> entries{};
    std::size_t next = 0;
  };
  void populate_record(mapped_pages& mapped, std::uint64_t segment, std::uint64_t from,
                       std::uint64_t to, bool for_write);
  void put_locked(const void* item, encoder encode);
  bool take_locked(void* out, decoder decode);
  void repair_put();
  void repair_get();
  void reclaim();
  std::uint64_t allocate(std::uint64_t bytes);
  void release_segment(std::uint64_t segment);
  std::uint64_t segment_capacity(std::uint64_t segment) const noexcept;
  [[noreturn]] void corrupt(const char* what) const;

  std::atomic<view*> view_{nullptr};
  // The producers' `bump` as this process last read it (consumers only).
  std::atomic<std::uint64_t> handed_out_seen_{0};
  mapped_pages put_mapped_, get_mapped_;
  // Whether this process's last get took its item without waiting (a hint,
  // for queues.cpp's stream_backoff).
  std::atomic<bool> streaming_{false};
  std::uint64_t size_ = 0;
  int fd_ = -1;
  bool closed_ = false;
};

template <class T>
struct is_plain_vector : std::false_type {};
template <class E>
struct is_plain_vector<std::vector<E>> : std::bool_constant<memcpy_element<E>> {};

// Items the queue copies without building a cereal archive (whose set-up costs
// more than moving a small item): plain values, vectors of them and strings,
// in the codec's own layout (a 64-bit count, then the bytes).
template <class T>
inline constexpr bool direct_item =
    memcpy_element<T> || is_plain_vector<T>::value || std::is_same_v<T, std::string>;

template <class T>
void encode_item(const void* item, byte_buffer& out) {
  const T& value = *static_cast<const T*>(item);
  if constexpr (memcpy_element<T>) {
    out.append(std::addressof(value), sizeof(T));
  } else if constexpr (direct_item<T>) {
    const auto count = static_cast<std::uint64_t>(value.size());
    out.append(&count, sizeof count);
    out.append(value.data(), value.size() * sizeof(typename T::value_type));
  } else {
    output_archive archive(out);
    archive(value);
  }
}

[[noreturn]] MP_EXPORT void throw_bad_item_size(std::size_t size, std::string_view type);

// Decodes into an existing T (reusing its memory where the type allows).
template <class T>
void decode_item_into(std::span<const std::byte> in, T& value) {
  if constexpr (memcpy_element<T>) {
    if (in.size() != sizeof(T)) throw_bad_item_size(in.size(), type_name<T>());
    std::memcpy(std::addressof(value), in.data(), sizeof(T));
  } else if constexpr (direct_item<T>) {
    using element = typename T::value_type;
    std::uint64_t count = 0;
    if (in.size() < sizeof count) throw_bad_item_size(in.size(), type_name<T>());
    std::memcpy(&count, in.data(), sizeof count);
    if (count != (in.size() - sizeof count) / sizeof(element) ||
        (in.size() - sizeof count) % sizeof(element) != 0)
      throw_bad_item_size(in.size(), type_name<T>());
    const std::byte* bytes = in.data() + sizeof count;
    if constexpr (sizeof(element) == 1) {
      // One copy, no zero-filling first.
      const auto* first = reinterpret_cast<const element*>(bytes);
      value.assign(first, first + count);
    } else {
      value.resize(static_cast<std::size_t>(count));
      std::memcpy(value.data(), bytes, value.size() * sizeof(element));
    }
  } else {
    try {
      input_archive archive(in);
      archive(value);
      check_consumed(archive.remaining());
    } catch (const process_error&) {
      throw;
    } catch (...) {
      rethrow_as_decode_error(type_name<T>());
    }
  }
}

// Decodes into a std::optional<T>, so that get() constructs the result once.
template <class T>
void decode_item(std::span<const std::byte> in, void* out) {
  decode_item_into(in, static_cast<std::optional<T>*>(out)->emplace());
}

template <class T>
void decode_item_reusing(std::span<const std::byte> in, void* out) {
  decode_item_into(in, *static_cast<T*>(out));
}

}  // namespace detail

/// Python's multiprocessing.Queue: any number of producers and consumers in
/// any processes, FIFO (per producer, and overall in commit order).
/// Thread-safe; copies refer to the same queue.
///
/// Timeouts follow Python: put and get with `block` false fail at once even if
/// a timeout is given; with a timeout they wait at most that long; otherwise
/// they wait as long as it takes.
template <class T>
class queue {
  static_assert(detail::reported(detail::check_item<T>()));

 public:
  using value_type = T;

  /// A new queue holding at most `maxsize` items (0: no limit, as in Python).
  explicit queue(std::size_t maxsize = 0)
      : core_(std::make_shared<detail::queue_core>(type_fingerprint<T>, maxsize)) {}

  /// The codec's form: the queue's memory (a memfd) travels as a descriptor
  /// beside the message, over a connection or to a spawned child, and what
  /// arrives is the same queue. (Not inside another queue: queues carry no
  /// descriptors.)
  template <class Archive>
  void save(Archive& archive) const {
    archive(archive.add_handle(core().fd()));
  }
  template <class Archive>
  void load(Archive& archive) {
    std::uint32_t index = 0;
    archive(index);
    core_ = detail::queue_core::received(archive.take_handle(index), type_fingerprint<T>);
  }

  /// Puts `item`, waiting at most `timeout` (no limit if left out) for room;
  /// throws mp::queue_full when there was none.
  void put(const T& item, mp::timeout timeout = {}) const { put(item, true, timeout); }
  /// Python's put(obj, block, timeout); throws mp::queue_full when there was
  /// no room (at once if `block` is false).
  void put(const T& item, bool block, mp::timeout timeout = {}) const {
    if (!core().put(&item, &detail::encode_item<T>, block, timeout)) throw_full();
  }
  void put_nowait(const T& item) const { put(item, false); }

  /// Removes and returns the oldest item, waiting at most `timeout` (no limit
  /// if left out); throws mp::queue_empty when none came.
  T get(mp::timeout timeout = {}) const { return get(true, timeout); }
  /// Python's get(block, timeout); throws mp::queue_empty when nothing came
  /// (at once if `block` is false), mp::decode_error if the item cannot be
  /// decoded (it is consumed, as Python consumes an item it cannot unpickle).
  T get(bool block, mp::timeout timeout = {}) const {
    std::optional<T> out;
    if (!core().get(&out, &detail::decode_item<T>, block, timeout))
      throw queue_empty("the queue is empty");
    return std::move(*out);
  }
  T get_nowait() const { return get(false); }
  /// get() into an existing `out`, reusing its memory where the type allows
  /// (a vector or string keeps its capacity, so a large item costs one copy
  /// and no fresh pages). Waits at most `timeout` if given; throws
  /// mp::queue_empty as get(). Python has no such call; recv_bytes_into is
  /// the nearest.
  void get_into(T& out, mp::timeout timeout = {}) const {
    if (!core().get(&out, &detail::decode_item_reusing<T>, true, timeout))
      throw queue_empty("the queue is empty");
  }
  /// get_into() that returns false rather than throwing queue_empty: at once
  /// if there is no item now, or, given a timeout, if none comes within it.
  bool try_get_into(T& out) const {
    return core().get(&out, &detail::decode_item_reusing<T>, false, {});
  }
  bool try_get_into(T& out, mp::timeout timeout) const {
    return core().get(&out, &detail::decode_item_reusing<T>, true, timeout);
  }
  /// The oldest item if there is one now; never throws queue_empty.
  std::optional<T> try_get() const { return try_get_impl(false, {}); }
  /// The oldest item if one comes within `timeout`.
  std::optional<T> try_get(mp::timeout timeout) const { return try_get_impl(true, timeout); }

  /// The number of items in the queue: exact when nobody is putting or
  /// getting, a snapshot otherwise (Python calls it unreliable).
  std::size_t qsize() const { return core().qsize(); }
  bool empty() const { return qsize() == 0; }
  bool full() const {
    const std::size_t max = core().max_items();
    return max != 0 && qsize() >= max;
  }
  std::size_t maxsize() const { return core().max_items(); }

  /// This process will put and get no more through this queue (and its copies
  /// here): both then throw mp::usage_error. Other processes are unaffected.
  void close() const { core().close(); }
  /// Python waits here for the feeder thread to flush; mp has none (put has
  /// already written the item to shared memory), so this only checks that
  /// close() was called, as Python does (mp::usage_error otherwise).
  void join_thread() const {
    if (!core().closed()) throw usage_error("join_thread() requires close() first");
  }
  /// Python's way to let a process exit without flushing; nothing to cancel here.
  void cancel_join_thread() const noexcept {}

 protected:
  detail::queue_core& core() const {
    if (!core_) throw usage_error("this queue was moved from");
    return *core_;
  }

 private:
  [[noreturn]] void throw_full() const {
    throw queue_full("the queue is full (maxsize " + std::to_string(core().max_items()) + ")");
  }
  std::optional<T> try_get_impl(bool block, mp::timeout timeout) const {
    std::optional<T> out;
    if (!core().get(&out, &detail::decode_item<T>, block, timeout)) return std::nullopt;
    return out;
  }

  std::shared_ptr<detail::queue_core> core_;
};

/// Python's multiprocessing.SimpleQueue: put, get, empty and close, nothing
/// else. Unbounded. In mp it is the same machine as mp::queue.
template <class T>
class simple_queue {
 public:
  using value_type = T;

  simple_queue() = default;
  void put(const T& item) const { queue_.put(item); }
  T get() const { return queue_.get(); }
  bool empty() const { return queue_.empty(); }
  /// put and get through this object (and its copies here) then throw
  /// mp::usage_error, as Python's raise after close().
  void close() const { queue_.close(); }

  /// The codec's form: as mp::queue's.
  template <class Archive>
  void serialize(Archive& archive) {
    archive(queue_);
  }

 private:
  queue<T> queue_;
};

/// Python's multiprocessing.JoinableQueue: a queue whose consumers call
/// task_done() for each item they finish, so that join() can wait for all.
template <class T>
class joinable_queue : public queue<T> {
 public:
  using queue<T>::queue;

  /// Marks one item as processed. Throws mp::usage_error if called more times
  /// than items were put (Python's ValueError).
  void task_done() const { this->core().task_done(); }
  /// Blocks until every item ever put has been marked done, or at most
  /// `timeout`; false if items were still unfinished.
  bool join(mp::timeout timeout = {}) const { return this->core().join(timeout); }
};

}  // namespace mp
