// SPDX-License-Identifier: MIT
// Values and arrays in shared memory: Python's multiprocessing.sharedctypes
// RawValue, RawArray, Value and Array, as raw_value<T>, raw_array<T>,
// shared_value<T> and shared_array<T>.
//
// Only differences from Python are documented here; see
// https://docs.python.org/3/library/multiprocessing.html#module-multiprocessing.sharedctypes
//
// Types: a C++ type replaces Python's typecode ('i' is int, 'd' is double, a
// ctypes Structure is a struct) and must be trivially copyable: only its bytes
// are shared, and no constructor or destructor runs in the other processes. A
// pointer stored in T means something only in the process that stored it.
//
// Sharing: the storage is anonymous shared memory (a memfd, never /dev/shm),
// like the locks of mp/synchronize.hpp. Each object is a handle: copies refer
// to the same memory, and a forked child of mp::process gets it by copy (pass
// it as an argument or capture it). The memory is freed when the last process
// holding a handle lets go, even after SIGKILL. Constness is shallow, as for
// std::span and std::atomic_ref: a const handle still writes the shared T. A
// moved-from handle may only be assigned to or destroyed.
//
// Thread- and process-safety: raw_value and raw_array have no lock; their
// get()/set() are atomic (sequentially consistent) when T is lock-free atomic
// (below) and plain copies otherwise. shared_value and shared_array add a lock,
// by default a new mp::rlock as in Python, that get() and set() take around
// each copy. Direct access (operator[], at(), get_obj(), data(), span(),
// iterators) takes no lock: concurrent access with a write is a data race
// unless you hold get_lock() or use the atomic operations.
//
// Atomic operations: when std::atomic_ref<T> is always lock-free (int, long,
// double, pointers, small structs; not long double), load, store, exchange,
// compare_exchange_weak/strong, atomic() and, for integral and floating-point
// T, fetch_add and fetch_sub work on the shared T across processes; array
// elements are reached with atomic(i). They never take the lock. Types whose
// atomic_ref needs libatomic's lock table are refused, since those locks are
// private to one process. Memory ordering is std::atomic's, across processes;
// a lock release happens-before the next acquire in any process.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mp/detail/shared_region.hpp"
#include "mp/synchronize.hpp"

namespace mp {

namespace detail {

/// T's std::atomic_ref works across processes: lock-free without libatomic's
/// per-process lock table.
template <class T>
concept process_atomic = std::atomic_ref<T>::is_always_lock_free;

/// process_atomic, and std::atomic_ref<T> has fetch_add and fetch_sub.
template <class T>
concept process_atomic_arithmetic = process_atomic<T> &&
    (std::floating_point<T> || (std::integral<T> && !std::same_as<T, bool>));

/// process_atomic, and every element of a T[] is aligned for std::atomic_ref.
template <class T>
concept process_atomic_element =
    process_atomic<T> && sizeof(T) % std::atomic_ref<T>::required_alignment == 0;

template <class T>
inline constexpr bool shareable_v =
    std::is_trivially_copyable_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>;

/// Alignment of shared storage for T: enough for std::atomic_ref<T>.
template <class T>
inline constexpr std::size_t shared_alignment = std::max(alignof(T),
                                                         std::atomic_ref<T>::required_alignment);

/// `n` Ts in shared memory, every byte zero (no constructor runs, as Python's
/// memset), owned together with their region.
template <class T>
struct shared_block {
  std::shared_ptr<shared_region> region;  // for sending the Ts to another process
  std::shared_ptr<T> first;               // owns the region too
};

template <class T>
shared_block<T> shared_allocate_zeroed(std::size_t n) {
  if (n > std::numeric_limits<std::size_t>::max() / sizeof(T))
    throw std::length_error("mp: shared array too large");
  const std::size_t bytes = n * sizeof(T);
  auto [region, at] = shared_allocate(bytes, shared_alignment<T>);
  // memmove implicitly creates objects of implicit-lifetime types (every
  // trivially copyable type is one) in its destination, so the zero bytes
  // become Ts without running a constructor ([cstring.syn], P0593).
  T* first = static_cast<T*>(std::memmove(at, at, bytes));
  return {region, std::shared_ptr<T>(region, first)};
}

/// The codec's form of `n` Ts in a shared region: the count, then where they
/// are (save_place: the region's memfd travels beside the message).
template <class Archive, class T>
void save_block(Archive& archive, const shared_block<T>& block, std::size_t n) {
  if (!block.region) throw_moved_from();
  archive(static_cast<std::uint64_t>(n));
  save_place(archive, *block.region, block.first.get());
}
template <class Archive, class T>
void load_block(Archive& archive, shared_block<T>& block, std::size_t& n) {
  std::uint64_t count = 0;
  archive(count);
  if (count > std::numeric_limits<std::uint64_t>::max() / sizeof(T))
    throw_bad_length(count, sizeof(T), 0);
  auto [region, at] = load_place(archive, count * sizeof(T), shared_alignment<T>);
  block.first = std::shared_ptr<T>(region, std::launder(reinterpret_cast<T*>(at)));
  block.region = std::move(region);
  n = static_cast<std::size_t>(count);
}

/// Reads `object` under a lock the caller holds: a relaxed atomic load when T
/// allows, so that lock-free atomic writers elsewhere do not race with it.
template <class T>
T locked_read(T& object) noexcept {
  if constexpr (process_atomic<T>)
    return std::atomic_ref<T>(object).load(std::memory_order_relaxed);
  else
    return object;
}

template <class T>
void locked_write(T& object, const T& value) noexcept {
  if constexpr (process_atomic<T>)
    std::atomic_ref<T>(object).store(value, std::memory_order_relaxed);
  else
    object = value;
}

}  // namespace detail

/// Either an mp::lock or an mp::rlock: the lock of a shared_value or
/// shared_array (Python accepts any lock there). Forwards Python's
/// acquire/release and the standard TimedLockable members to the one it holds,
/// so `std::scoped_lock guard(value.get_lock());` works. Copies refer to the
/// same lock. Thread-safe and fork-safe as the lock it holds.
class any_lock : public detail::timed_lockable<any_lock> {
 public:
  /// Holds `primitive`, an mp::lock. Implicit: an mp::lock can be passed for an any_lock.
  any_lock(process_lock primitive) noexcept : lock_(std::move(primitive)) {}
  /// Holds `primitive`, an mp::rlock. Implicit, as the above.
  any_lock(rlock primitive) noexcept : lock_(std::move(primitive)) {}

  /// See process_lock::acquire and rlock::acquire. Throws mp::owner_died
  /// (holding the lock) if a holder died.
  bool acquire(bool blocking = true, mp::timeout timeout = {}) const {
    return std::visit([&](const auto& l) { return l.acquire(blocking, timeout); }, lock_);
  }
  /// Throws mp::usage_error if not held (by this thread, for an rlock).
  void release() const {
    std::visit([](const auto& l) { l.release(); }, lock_);
  }
  /// The fast blocking path of the lock it holds.
  void lock() const {
    std::visit([](const auto& l) { l.lock(); }, lock_);
  }
  /// Clears the inconsistent mark left by a holder that died.
  void mark_consistent() const {
    std::visit([](const auto& l) { l.mark_consistent(); }, lock_);
  }
  /// True while the lock is marked inconsistent after a holder died.
  bool inconsistent() const {
    return std::visit([](const auto& l) { return l.inconsistent(); }, lock_);
  }
  /// The lock itself: `std::get<mp::rlock>(value.get_lock().variant())`.
  std::variant<process_lock, rlock>& variant() noexcept { return lock_; }
  const std::variant<process_lock, rlock>& variant() const noexcept { return lock_; }

  /// The codec's form: the lock it holds.
  template <class Archive>
  void serialize(Archive& archive) {
    archive(lock_);
  }

 private:
  std::variant<process_lock, rlock> lock_;
};

/// Python's RawValue: one T in shared memory, without a lock.
/// Copies refer to the same T (see the file comment).
template <class T>
class raw_value {
  static_assert(detail::shareable_v<T>,
                "mp::raw_value<T>: T must be a trivially copyable, non-const, non-volatile type "
                "(only its bytes are shared between processes)");

 public:
  using value_type = T;

  /// Places `initial` in new shared memory (Python's RawValue(typecode, initial)).
  /// Throws std::system_error if the memory cannot be created.
  explicit raw_value(const T& initial = T{}) : block_(detail::shared_allocate_zeroed<T>(1)) {
    ::new (static_cast<void*>(block_.first.get())) T(initial);
  }

  /// The codec's form: the T's shared memory travels as a descriptor (over a
  /// connection, or to a spawned child), and what arrives is the same T.
  /// (Free functions: load() is the atomic load.)
  template <class Archive>
  friend void save(Archive& archive, const raw_value& value) {
    detail::save_block(archive, value.block_, 1);
  }
  template <class Archive>
  friend void load(Archive& archive, raw_value& value) {
    std::size_t n = 0;
    detail::load_block(archive, value.block_, n);
    if (n != 1) detail::throw_bad_object_offset(0, n, sizeof(T));
  }

  /// Python's `.value`: a copy of the T. Atomic (seq_cst) if T is lock-free
  /// atomic, otherwise a plain copy that races with concurrent writes.
  T get() const noexcept {
    if constexpr (detail::process_atomic<T>)
      return load();
    else
      return *block_.first;
  }
  /// Python's `.value = v`: atomic (seq_cst) if T is lock-free atomic,
  /// otherwise a plain copy that races with concurrent access.
  void set(const T& value) const noexcept {
    if constexpr (detail::process_atomic<T>)
      store(value);
    else
      *block_.first = value;
  }
  /// The shared T itself; access through it is unsynchronized.
  T* get_obj() const noexcept { return block_.first.get(); }
  /// Same as get_obj().
  T* data() const noexcept { return block_.first.get(); }

  /// A std::atomic_ref to the shared T, for operations not listed here.
  std::atomic_ref<T> atomic() const noexcept requires detail::process_atomic<T> {
    return std::atomic_ref<T>(*block_.first);
  }
  /// Atomic load across processes; never blocks.
  T load(std::memory_order order =
             std::memory_order_seq_cst) const noexcept requires detail::process_atomic<T> {
    return atomic().load(order);
  }
  /// Atomic store across processes; never blocks.
  void store(T value, std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic<T> {
    atomic().store(value, order);
  }
  /// Atomically replaces the value; returns the previous one.
  T exchange(T value, std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic<T> {
    return atomic().exchange(value, order);
  }
  /// As std::atomic_ref<T>::compare_exchange_weak (may fail spuriously).
  bool compare_exchange_weak(T& expected, T desired,
                             std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic<T> {
    return atomic().compare_exchange_weak(expected, desired, order);
  }
  bool compare_exchange_weak(
      T& expected, T desired, std::memory_order success,
      std::memory_order failure) const noexcept requires detail::process_atomic<T> {
    return atomic().compare_exchange_weak(expected, desired, success, failure);
  }
  /// As std::atomic_ref<T>::compare_exchange_strong.
  bool compare_exchange_strong(T& expected, T desired,
                               std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic<T> {
    return atomic().compare_exchange_strong(expected, desired, order);
  }
  bool compare_exchange_strong(
      T& expected, T desired, std::memory_order success,
      std::memory_order failure) const noexcept requires detail::process_atomic<T> {
    return atomic().compare_exchange_strong(expected, desired, success, failure);
  }
  /// Atomically adds `arg`; returns the previous value. Integers wrap; floats
  /// round as `+` does.
  T fetch_add(T arg, std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic_arithmetic<T> {
    return atomic().fetch_add(arg, order);
  }
  /// Atomically subtracts `arg`; returns the previous value.
  T fetch_sub(T arg, std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic_arithmetic<T> {
    return atomic().fetch_sub(arg, order);
  }

 private:
  detail::shared_block<T> block_;
};

/// Python's RawArray: a fixed number of Ts in shared memory, without a lock.
/// A contiguous range of T& (begin() and end() are pointers). Copies refer to
/// the same elements (see the file comment).
template <class T>
class raw_array {
  static_assert(detail::shareable_v<T>,
                "mp::raw_array<T>: T must be a trivially copyable, non-const, non-volatile type "
                "(only its bytes are shared between processes)");

 public:
  using value_type = T;
  using size_type = std::size_t;
  using reference = T&;
  using iterator = T*;

  /// `n` elements with every byte zero, as Python's RawArray(typecode, n): no
  /// constructor of T runs. Throws std::system_error if the memory cannot be
  /// created, std::length_error if n * sizeof(T) overflows.
  explicit raw_array(std::size_t n) : block_(detail::shared_allocate_zeroed<T>(n)), size_(n) {}
  /// No elements (what a decoded array starts as).
  raw_array() : raw_array(std::size_t{0}) {}
  /// The given elements: `raw_array<int>{1, 2, 3}`. Note that
  /// `raw_array<int>{5}` holds one 5, and `raw_array<int>(5)` five zeros.
  raw_array(std::initializer_list<T> init) : raw_array(std::span<const T>(init)) {}
  /// The elements of `range`, each converted to T with static_cast, as
  /// Python's RawArray(typecode, sequence): `raw_array<int>(std::views::iota(0, 10))`.
  template <std::ranges::input_range R>
  requires(
      !std::same_as<std::remove_cvref_t<R>, raw_array> &&
      std::convertible_to<std::ranges::range_reference_t<R>, T>) explicit raw_array(R&& range) {
    if constexpr (std::ranges::sized_range<R>) {
      fill(range, static_cast<std::size_t>(std::ranges::size(range)));
    } else {
      std::vector<T> elements;
      for (auto&& element : range) elements.push_back(static_cast<T>(element));
      fill(elements, elements.size());
    }
  }

  raw_array(const raw_array&) = default;
  raw_array& operator=(const raw_array&) = default;
  raw_array(raw_array&& other) noexcept
      : block_(std::move(other.block_)), size_(std::exchange(other.size_, 0)) {}
  raw_array& operator=(raw_array&& other) noexcept {
    block_ = std::move(other.block_);
    size_ = std::exchange(other.size_, 0);
    return *this;
  }
  ~raw_array() = default;

  /// The codec's form: the elements' shared memory travels as a descriptor
  /// (over a connection, or to a spawned child), and what arrives is the same
  /// elements.
  template <class Archive>
  void save(Archive& archive) const {
    detail::save_block(archive, block_, size_);
  }
  template <class Archive>
  void load(Archive& archive) {
    detail::load_block(archive, block_, size_);
  }

  /// The number of elements (Python's len()).
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  /// Element `i`, unchecked: requires i < size(). Unsynchronized.
  T& operator[](std::size_t i) const noexcept { return block_.first.get()[i]; }
  /// Element `i`; throws std::out_of_range if i >= size() (Python's IndexError).
  /// Negative indices from the end, as in Python, do not exist. Unsynchronized.
  T& at(std::size_t i) const {
    if (i >= size_)
      throw std::out_of_range("mp::raw_array::at: index " + std::to_string(i) +
                              " out of range for size " + std::to_string(size_));
    return block_.first.get()[i];
  }
  T* begin() const noexcept { return block_.first.get(); }
  T* end() const noexcept { return block_.first.get() + size_; }
  T* data() const noexcept { return block_.first.get(); }
  /// All elements as a span (Python's slice `a[:]` without the copy).
  std::span<T> span() const noexcept { return {block_.first.get(), size_}; }

  /// A std::atomic_ref to element `i`, unchecked: requires i < size(). Its
  /// operations are atomic across processes and never block.
  std::atomic_ref<T> atomic(
      std::size_t i) const noexcept requires detail::process_atomic_element<T> {
    return std::atomic_ref<T>(block_.first.get()[i]);
  }

 private:
  template <class R>
  void fill(R& range, std::size_t n) {
    block_ = detail::shared_allocate_zeroed<T>(n);
    size_ = n;
    T* out = block_.first.get();
    for (auto&& element : range) ::new (static_cast<void*>(out++)) T(static_cast<T>(element));
  }

  detail::shared_block<T> block_;
  std::size_t size_ = 0;
};

/// Python's Value: one T in shared memory with a lock, by default a new
/// mp::rlock as in Python. get() and set() take the lock; the atomic
/// operations do not. Copies refer to the same T and the same lock.
///
/// With an mp::lock (not recursive), calling get() or set() while holding
/// get_lock() deadlocks, as `with v.get_lock(): v.value += 1` does in Python:
/// use get_obj() under the lock.
template <class T>
class shared_value {
  static_assert(detail::shareable_v<T>,
                "mp::shared_value<T>: T must be a trivially copyable, non-const, non-volatile type "
                "(only its bytes are shared between processes)");

 public:
  using value_type = T;

  /// `initial` in new shared memory with a new mp::rlock (Python's
  /// Value(typecode, initial)). Throws std::system_error if the memory cannot
  /// be created.
  explicit shared_value(const T& initial = T{}) : shared_value(initial, rlock{}) {}
  /// `initial` guarded by `guarded_by`, an mp::lock or mp::rlock shared with other
  /// objects if you like (Python's Value(typecode, initial, lock=lock)). For
  /// no lock at all (lock=False), use raw_value.
  shared_value(const T& initial, any_lock guarded_by)
      : value_(initial), lock_(std::move(guarded_by)) {}

  /// Python's `.value`: a copy of the T, taken under the lock. Blocks while
  /// another thread or process holds the lock. Throws mp::owner_died (holding
  /// the lock) if a holder died.
  T get() const {
    std::scoped_lock guard(lock_);
    return detail::locked_read(*value_.get_obj());
  }
  /// Python's `.value = v`: stores a copy under the lock. Blocks and throws as
  /// get().
  void set(const T& value) const {
    std::scoped_lock guard(lock_);
    detail::locked_write(*value_.get_obj(), value);
  }
  /// Python's get_lock(): the lock that get() and set() take, for
  /// `std::scoped_lock guard(v.get_lock());`.
  any_lock& get_lock() const noexcept { return lock_; }
  /// Python's get_obj(): the shared T itself, without the lock.
  T* get_obj() const noexcept { return value_.get_obj(); }
  /// Same as get_obj().
  T* data() const noexcept { return value_.data(); }

  /// A std::atomic_ref to the shared T (no lock taken).
  std::atomic_ref<T> atomic() const noexcept requires detail::process_atomic<T> {
    return value_.atomic();
  }
  /// Atomic load; does not take the lock.
  T load(std::memory_order order =
             std::memory_order_seq_cst) const noexcept requires detail::process_atomic<T> {
    return value_.load(order);
  }
  /// Atomic store; does not take the lock.
  void store(T value, std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic<T> {
    value_.store(value, order);
  }
  /// Atomic exchange; does not take the lock.
  T exchange(T value, std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic<T> {
    return value_.exchange(value, order);
  }
  /// As std::atomic_ref<T>::compare_exchange_weak; does not take the lock.
  bool compare_exchange_weak(T& expected, T desired,
                             std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic<T> {
    return value_.compare_exchange_weak(expected, desired, order);
  }
  bool compare_exchange_weak(
      T& expected, T desired, std::memory_order success,
      std::memory_order failure) const noexcept requires detail::process_atomic<T> {
    return value_.compare_exchange_weak(expected, desired, success, failure);
  }
  /// As std::atomic_ref<T>::compare_exchange_strong; does not take the lock.
  bool compare_exchange_strong(T& expected, T desired,
                               std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic<T> {
    return value_.compare_exchange_strong(expected, desired, order);
  }
  bool compare_exchange_strong(
      T& expected, T desired, std::memory_order success,
      std::memory_order failure) const noexcept requires detail::process_atomic<T> {
    return value_.compare_exchange_strong(expected, desired, success, failure);
  }
  /// Atomically adds `arg`, returning the previous value; does not take the lock.
  T fetch_add(T arg, std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic_arithmetic<T> {
    return value_.fetch_add(arg, order);
  }
  /// Atomically subtracts `arg`, returning the previous value; does not take the lock.
  T fetch_sub(T arg, std::memory_order order = std::memory_order_seq_cst)
      const noexcept requires detail::process_atomic_arithmetic<T> {
    return value_.fetch_sub(arg, order);
  }

  /// The codec's form: the T and its lock travel as descriptors (over a
  /// connection, or to a spawned child) and arrive as themselves.
  template <class Archive>
  void serialize(Archive& archive) {
    archive(value_, lock_);
  }

 private:
  raw_value<T> value_;
  // The lock is shared memory too; mutable because a const handle may lock it.
  mutable any_lock lock_;
};

/// Python's Array: a fixed number of Ts in shared memory with a lock, by
/// default a new mp::rlock as in Python. get(i) and set(i, v) take the lock
/// (Python's `a[i]` and `a[i] = v`); operator[], at(), the iterators and
/// span() do not: hold get_lock() around them. Copies refer to the same
/// elements and the same lock.
template <class T>
class shared_array {
  static_assert(detail::shareable_v<T>,
                "mp::shared_array<T>: T must be a trivially copyable, non-const, non-volatile type "
                "(only its bytes are shared between processes)");

 public:
  using value_type = T;
  using size_type = std::size_t;
  using reference = T&;
  using iterator = T*;

  /// `n` zero-filled elements with a new mp::rlock (Python's Array(typecode, n)).
  /// Throws as raw_array(n).
  explicit shared_array(std::size_t n) : shared_array(n, rlock{}) {}
  /// No elements (what a decoded array starts as).
  shared_array() : shared_array(std::size_t{0}) {}
  /// `n` zero-filled elements guarded by `guarded_by` (Python's lock=lock).
  shared_array(std::size_t n, any_lock guarded_by) : array_(n), lock_(std::move(guarded_by)) {}
  /// The given elements, with a new mp::rlock.
  shared_array(std::initializer_list<T> init) : shared_array(init, rlock{}) {}
  /// The given elements, guarded by `guarded_by`.
  shared_array(std::initializer_list<T> init, any_lock guarded_by)
      : array_(init), lock_(std::move(guarded_by)) {}
  /// The elements of `range`, converted to T, with a new mp::rlock (Python's
  /// Array(typecode, sequence)).
  template <std::ranges::input_range R>
  requires(
      !std::same_as<std::remove_cvref_t<R>, shared_array> &&
      std::convertible_to<std::ranges::range_reference_t<R>, T>) explicit shared_array(R&& range)
      : shared_array(std::forward<R>(range), rlock{}) {}
  /// The elements of `range`, converted to T, guarded by `guarded_by`.
  template <std::ranges::input_range R>
  requires(!std::same_as<std::remove_cvref_t<R>, shared_array> &&
           std::convertible_to<std::ranges::range_reference_t<R>, T>)
      shared_array(R&& range, any_lock guarded_by)
      : array_(std::forward<R>(range)), lock_(std::move(guarded_by)) {}

  /// Python's `a[i]`: a copy of element `i`, taken under the lock. Throws
  /// std::out_of_range if i >= size(); blocks and throws mp::owner_died as
  /// shared_value::get().
  T get(std::size_t i) const {
    T& element = array_.at(i);
    std::scoped_lock guard(lock_);
    return detail::locked_read(element);
  }
  /// Python's `a[i] = v`: stores a copy under the lock. Throws as get(i).
  void set(std::size_t i, const T& value) const {
    T& element = array_.at(i);
    std::scoped_lock guard(lock_);
    detail::locked_write(element, value);
  }
  /// Python's get_lock(): the lock that get(i) and set(i, v) take, for
  /// `std::scoped_lock guard(a.get_lock());`.
  any_lock& get_lock() const noexcept { return lock_; }
  /// Python's get_obj(): the elements themselves, without the lock.
  std::span<T> get_obj() const noexcept { return array_.span(); }

  /// The number of elements (Python's len()).
  std::size_t size() const noexcept { return array_.size(); }
  bool empty() const noexcept { return array_.empty(); }
  /// Element `i`, unchecked (requires i < size()) and without the lock.
  T& operator[](std::size_t i) const noexcept { return array_[i]; }
  /// Element `i` without the lock; throws std::out_of_range if i >= size().
  T& at(std::size_t i) const { return array_.at(i); }
  T* begin() const noexcept { return array_.begin(); }
  T* end() const noexcept { return array_.end(); }
  T* data() const noexcept { return array_.data(); }
  /// All elements as a span, without the lock.
  std::span<T> span() const noexcept { return array_.span(); }
  /// A std::atomic_ref to element `i`, unchecked (requires i < size()); its
  /// operations do not take the lock.
  std::atomic_ref<T> atomic(
      std::size_t i) const noexcept requires detail::process_atomic_element<T> {
    return array_.atomic(i);
  }

  /// The codec's form: the elements and their lock travel as descriptors
  /// (over a connection, or to a spawned child) and arrive as themselves.
  template <class Archive>
  void serialize(Archive& archive) {
    archive(array_, lock_);
  }

 private:
  raw_array<T> array_;
  // The lock is shared memory too; mutable because a const handle may lock it.
  mutable any_lock lock_;
};

}  // namespace mp
