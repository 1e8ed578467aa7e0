// SPDX-License-Identifier: MIT
// byte_buffer: a growable byte array that does not zero what it is about to overwrite.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>

namespace mp::detail {

/// std::vector<std::byte> zero-fills on resize; encoding then writes every byte
/// again. This buffer grows without initialising, which matters for large messages.
class byte_buffer {
 public:
  byte_buffer() = default;
  byte_buffer(byte_buffer&&) noexcept = default;
  byte_buffer& operator=(byte_buffer&&) noexcept = default;

  std::byte* data() noexcept { return data_.get(); }
  const std::byte* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  std::span<const std::byte> span() const noexcept { return {data_.get(), size_}; }
  void clear() noexcept { size_ = 0; }

  /// Appends `n` uninitialised bytes and returns where they start.
  std::byte* grow(std::size_t n) {
    if (n > capacity_ - size_) reserve(std::max({capacity_ * 2, size_ + n, std::size_t{256}}));
    std::byte* at = data_.get() + size_;
    size_ += n;
    return at;
  }
  void append(const void* bytes, std::size_t n) {
    if (n != 0) std::memcpy(grow(n), bytes, n);
  }
  /// Sets the size to `n`, keeping the first min(n, size()) bytes.
  void resize(std::size_t n) {
    if (n > capacity_) reserve(n);
    size_ = n;
  }
  void reserve(std::size_t n) {
    if (n <= capacity_) return;
    auto bigger = std::make_unique_for_overwrite<std::byte[]>(n);
    if (size_ != 0) std::memcpy(bigger.get(), data_.get(), size_);
    data_ = std::move(bigger);
    capacity_ = n;
  }
  /// Frees the memory if it grew beyond `limit`, so one huge message does not pin it.
  void shrink_if_above(std::size_t limit) noexcept {
    if (capacity_ > limit && size_ == 0) {
      data_.reset();
      capacity_ = 0;
    }
  }

 private:
  std::unique_ptr<std::byte[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace mp::detail
