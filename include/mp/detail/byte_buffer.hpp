// SPDX-License-Identifier: MIT
// byte_buffer: a growable byte array that does not zero what it is about to overwrite.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <utility>

namespace mp::detail {

/// std::vector<std::byte> zero-fills on resize; encoding then writes every byte
/// again. This buffer grows without initialising, which matters for large messages.
///
/// A buffer made by window() writes into memory the caller owns instead (a
/// queue record in shared memory) and never grows: appends past its end are
/// only counted, so one encoding pass either fits or says how much room it needs.
class byte_buffer {
 public:
  byte_buffer() = default;
  byte_buffer(byte_buffer&& other) noexcept { *this = std::move(other); }
  byte_buffer& operator=(byte_buffer&& other) noexcept {
    owned_ = std::move(other.owned_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    overflow_ = std::exchange(other.overflow_, 0);
    window_ = std::exchange(other.window_, false);
    return *this;
  }

  /// A buffer over `capacity` bytes at `at`, which must outlive it.
  static byte_buffer window(std::byte* at, std::size_t capacity) noexcept {
    byte_buffer out;
    out.data_ = at;
    out.capacity_ = capacity;
    out.window_ = true;
    return out;
  }

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  std::span<const std::byte> span() const noexcept { return {data_, size_}; }
  void clear() noexcept { size_ = 0; }
  /// For a window: true if appends did not fit, and the size they needed.
  bool overflowed() const noexcept { return overflow_ != 0; }
  std::size_t needed() const noexcept { return size_ + overflow_; }

  /// Appends `n` uninitialised bytes and returns where they start.
  std::byte* grow(std::size_t n) {
    if (n > capacity_ - size_) reserve(grown(n));
    std::byte* at = data_ + size_;
    size_ += n;
    return at;
  }
  void append(const void* bytes, std::size_t n) {
    if (n > capacity_ - size_) [[unlikely]] {
      if (window_) {
        // Later appends must not land in the room left, out of order.
        capacity_ = size_;
        overflow_ += n;
        return;
      }
      reserve(grown(n));
    }
    if (n != 0) std::memcpy(data_ + size_, bytes, n);
    size_ += n;
  }
  /// Sets the size to `n`, keeping the first min(n, size()) bytes.
  void resize(std::size_t n) {
    if (n > capacity_) reserve(n);
    size_ = n;
  }
  /// Grows by realloc: a large block (malloc maps those on its own) moves by
  /// remapping its pages, so growing a buffer of a gibibyte neither copies it
  /// nor faults its pages in a second time.
  void reserve(std::size_t n) {
    if (n <= capacity_) return;
    if (window_) throw std::length_error("a byte_buffer window cannot grow");
    void* bigger = std::realloc(owned_.get(), n);
    if (bigger == nullptr) throw std::bad_alloc();
    (void)owned_.release();
    owned_.reset(static_cast<std::byte*>(bigger));
    data_ = owned_.get();
    capacity_ = n;
  }
  /// Frees the memory if it grew beyond `limit`, so one huge message does not pin it.
  void shrink_if_above(std::size_t limit) noexcept {
    if (!window_ && capacity_ > limit && size_ == 0) {
      owned_.reset();
      data_ = nullptr;
      capacity_ = 0;
    }
  }

 private:
  // The capacity for `n` more bytes: at least double, and 256 at first.
  std::size_t grown(std::size_t n) const noexcept {
    std::size_t want = capacity_ * 2 > size_ + n ? capacity_ * 2 : size_ + n;
    return want > 256 ? want : 256;
  }
  struct free_bytes {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<std::byte, free_bytes> owned_;
  std::byte* data_ = nullptr;  // owned_, or the window
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::size_t overflow_ = 0;  // window only: bytes that did not fit
  bool window_ = false;
};

}  // namespace mp::detail
