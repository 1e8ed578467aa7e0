// SPDX-License-Identifier: MIT
// mp::unique_fd: the single owner of a file descriptor, for handing an existing
// descriptor to mp (an mp::connection over a socket you made yourself).
#pragma once

#include <utility>

#include "mp/export.hpp"

namespace mp {

namespace detail {
/// Closes `fd`, retrying nothing (close must not be retried on Linux) and
/// ignoring errors, as a destructor must.
MP_EXPORT void close_fd(int fd) noexcept;
}  // namespace detail

/// Move-only owner of one file descriptor: closes it when destroyed or reset.
/// A default-constructed or moved-from one is empty (get() is -1). Not
/// thread-safe; a descriptor must have one owner, so never wrap one that
/// something else will close.
class unique_fd {
 public:
  unique_fd() noexcept = default;
  /// Takes ownership of `fd` (-1 for none).
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  /// The descriptor, still owned (-1 if empty).
  int get() const noexcept { return fd_; }
  /// True if it holds a descriptor.
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Gives up ownership without closing; returns the descriptor.
  int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the descriptor held, if any, and takes `fd` instead.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) detail::close_fd(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace mp
