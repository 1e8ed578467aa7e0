// SPDX-License-Identifier: MIT
// The thin OS layer: every system call mp makes goes through here. One file per
// platform implements this contract (system.linux.cpp); nothing above this
// header includes platform headers except for plain POSIX types.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <span>
#include <system_error>

#include "mp/detail/unique_fd.hpp"

namespace mp::os {

using detail::unique_fd;

/// Throws std::system_error(errno, "<call>").
[[noreturn]] void throw_errno(const char* call);

/// Calls `f` until it does not fail with EINTR; throws std::system_error named
/// after `call` if it fails otherwise. Returns f's result.
template <class F>
auto check(const char* call, F&& f) {
  for (;;) {
    auto result = f();
    if (result != -1) return result;
    if (errno != EINTR) throw_errno(call);
  }
}

/// Like check, but returns -1 with errno set instead of throwing (for callers
/// that map some errnos to library errors).
template <class F>
auto retry(F&& f) {
  for (;;) {
    auto result = f();
    if (result != -1 || errno != EINTR) return result;
  }
}

/// Milliseconds for poll(): -1 for "no timeout", rounded up otherwise.
int poll_timeout(std::optional<std::chrono::nanoseconds> timeout);

/// Waits until `fd` is readable or the timeout passes; true if readable.
/// Retries EINTR with the remaining time.
bool wait_readable(int fd, std::optional<std::chrono::nanoseconds> timeout);

/// A pidfd for a child that is not yet reaped (so the pid cannot be reused).
unique_fd pidfd_open(pid_t pid);
/// Sends `signal` through the pidfd; false if the process already ended.
bool pidfd_signal(int pidfd, int signal);
/// Reaps the child if it ended: its Python-style exit code (negative signal
/// number), or nullopt if it is still running. `block` waits for the end.
std::optional<int> reap(int pidfd, bool block);

/// Reads until `size` bytes or the end of the stream; returns how many it
/// read. Throws on error.
std::size_t read_full(int fd, void* data, std::size_t size);
/// Writes all `size` bytes; false if the reader is gone (EPIPE). Throws on
/// other errors.
bool write_full(int fd, const void* data, std::size_t size);

/// A second descriptor (CLOEXEC) for what `fd` refers to.
unique_fd duplicate(int fd);

/// A connected pair of CLOEXEC Unix stream sockets.
std::pair<unique_fd, unique_fd> socket_pair();

/// The number of CPUs this process may use: the affinity mask, further limited
/// by a cgroup CPU quota (v2 cpu.max or v1 cfs quota), at least 1.
unsigned usable_cpu_count();

/// Thread id of the caller (gettid).
pid_t thread_id() noexcept;

}  // namespace mp::os
