// SPDX-License-Identifier: MIT
// unique_fd: the single owner of a file descriptor.
#pragma once

#include <utility>

#include "mp/export.hpp"

namespace mp::detail {

/// Closes `fd`, retrying nothing (close must not be retried on Linux) and
/// ignoring errors, as a destructor must.
MP_EXPORT void close_fd(int fd) noexcept;

/// Move-only owner of one file descriptor; a moved-from or default one is empty (-1).
class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Gives up ownership without closing.
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) close_fd(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace mp::detail
