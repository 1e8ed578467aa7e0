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

// ---- sockets ----
// (Its own includes, so that this section only adds to the file.)
#include <cstddef>
#include <vector>

namespace mp::os {

/// What kind of socket a descriptor is.
struct socket_kind {
  bool stream = false;       ///< SOCK_STREAM: a byte stream (not datagrams or records)
  bool unix_domain = false;  ///< AF_UNIX: can carry descriptors (SCM_RIGHTS)
};
/// The kind of socket `fd` is. Throws std::system_error: EBADF if `fd` is not
/// open, ENOTSOCK if it is not a socket.
socket_kind socket_kind_of(int fd);

/// Shuts down the sending side of socket `fd` (the peer then reads EOF).
void shut_down_sending(int fd);
/// Shuts down the receiving side of socket `fd`.
void shut_down_receiving(int fd);

/// Waits until at least one of `fds` is readable, at its end or in error (a read
/// would not block), or the timeout passes (nullopt: no limit); returns the
/// indices of those ready, in order, none on timeout. Retries EINTR with the
/// remaining time. Throws std::system_error(EBADF) naming the first descriptor
/// that is not open (or negative).
std::vector<std::size_t> wait_any_readable(std::span<const int> fds,
                                           std::optional<std::chrono::nanoseconds> timeout);

/// The most descriptors one message carries (the kernel's SCM_MAX_FD); callers
/// name their own limit, at most this (mp's is detail::max_handles).
inline constexpr std::size_t max_fds_per_message = 253;

/// Sends all of `pieces`, in order, as one run of bytes on stream socket `fd`,
/// with `fds` attached to the first byte (SCM_RIGHTS; they stay open here).
/// Blocks until the kernel has taken every byte, waiting also on a
/// non-blocking socket; retries EINTR and partial writes; never raises
/// SIGPIPE. Throws std::invalid_argument for more than max_fds_per_message
/// descriptors, or descriptors with no byte to carry them; std::system_error
/// ("sendmsg") on failure, EPIPE or ECONNRESET when the peer is gone (how much
/// went out is then unknown). At most 8 pieces.
void send_with_fds(int fd, std::span<const std::span<const std::byte>> pieces,
                   std::span<const int> fds = {});
/// The same for one run of bytes.
inline void send_with_fds(int fd, std::span<const std::byte> bytes, std::span<const int> fds = {}) {
  const std::span<const std::byte> pieces[] = {bytes};
  send_with_fds(fd, std::span<const std::span<const std::byte>>(pieces), fds);
}

/// What one receive_with_fds got.
struct received {
  std::size_t size = 0;        ///< bytes received; 0 at the end of the stream
  std::vector<unique_fd> fds;  ///< the descriptors that came with them (CLOEXEC)
};

/// Thrown by receive_with_fds when descriptors that came with the bytes were
/// lost (the kernel truncated the control data, MSG_CTRUNC). The ones that did
/// arrive are closed, and the bytes received are dropped: the stream is out of
/// step, so the caller gives it up. code() is EMFILE when this process could
/// not take them all (its descriptor limit), EMSGSIZE when more than `max_fds`
/// came.
class descriptors_lost : public std::system_error {
 public:
  using std::system_error::system_error;
};

/// Receives at most `buffer.size()` (at least 1) bytes from stream socket `fd`
/// into `buffer`, with the descriptors that came with them, at most `max_fds`
/// (at most max_fds_per_message). Blocks until at least one byte arrives or the
/// stream ends, waiting also on a non-blocking socket; retries EINTR. The end
/// of the stream is size 0, also after ECONNRESET (a peer that closed with
/// bytes unread). Throws descriptors_lost (see there), std::system_error
/// ("recvmsg") on other failures.
received receive_with_fds(int fd, std::span<std::byte> buffer, std::size_t max_fds);

}  // namespace mp::os
