// SPDX-License-Identifier: MIT
// Linux implementation of src/os/system.hpp.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

#include "os/system.hpp"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace mp::detail {
void close_fd(int fd) noexcept {
  ::close(fd);
}
}  // namespace mp::detail

namespace mp::os {

void throw_errno(const char* call) {
  throw std::system_error(errno, std::system_category(), call);
}

int poll_timeout(std::optional<std::chrono::nanoseconds> timeout) {
  if (!timeout) return -1;
  if (*timeout <= std::chrono::nanoseconds::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(*timeout).count();
  return static_cast<int>(std::min<long long>(ms, 0x7fffffff));
}

bool wait_readable(int fd, std::optional<std::chrono::nanoseconds> timeout) {
  using clock = std::chrono::steady_clock;
  const auto deadline = timeout ? clock::now() + *timeout : clock::time_point::max();
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    std::optional<std::chrono::nanoseconds> left;
    if (timeout) left = deadline - clock::now();
    const int n = ::poll(&p, 1, poll_timeout(left));
    if (n > 0) return true;  // POLLIN, POLLHUP or POLLERR: a read will not block
    if (n == 0) return false;
    if (errno != EINTR) throw_errno("poll");
  }
}

unique_fd pidfd_open(pid_t pid) {
  return unique_fd(
      static_cast<int>(check("pidfd_open", [&] { return ::syscall(SYS_pidfd_open, pid, 0); })));
}

bool pidfd_signal(int pidfd, int signal) {
  if (::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0) == 0) return true;
  if (errno == ESRCH) return false;
  throw_errno("pidfd_send_signal");
}

std::optional<int> reap(int pidfd, bool block) {
  siginfo_t info{};
  const int options = WEXITED | (block ? 0 : WNOHANG);
  check("waitid", [&] {
    return ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, options);
  });
  if (info.si_pid == 0) return std::nullopt;
  if (info.si_code == CLD_EXITED) return info.si_status;
  return -info.si_status;
}

std::size_t read_full(int fd, void* data, std::size_t size) {
  auto* at = static_cast<char*>(data);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = check("read", [&] { return ::read(fd, at + done, size - done); });
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

bool write_full(int fd, const void* data, std::size_t size) {
  const auto* at = static_cast<const char*>(data);
  while (size != 0) {
    const ssize_t n = retry([&] { return ::write(fd, at, size); });
    if (n < 0 && errno == EPIPE) return false;
    if (n < 0) throw_errno("write");
    at += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

unique_fd duplicate(int fd) {
  return unique_fd(
      check("fcntl(F_DUPFD_CLOEXEC)", [&] { return ::fcntl(fd, F_DUPFD_CLOEXEC, 0); }));
}

std::pair<unique_fd, unique_fd> socket_pair() {
  int fds[2];
  check("socketpair", [&] { return ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); });
  return {unique_fd(fds[0]), unique_fd(fds[1])};
}

namespace {

// cgroup v2: "max 100000" or "200000 100000"; v1: two files. Returns the quota
// in CPUs, or 0 if unlimited or unknown.
double cgroup_cpu_limit() {
  std::string quota, period;
  if (std::ifstream v2("/sys/fs/cgroup/cpu.max"); v2 >> quota >> period) {
    if (quota != "max") return std::stod(quota) / std::stod(period);
    return 0;
  }
  std::ifstream q("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), p("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  long long quota_us = -1, period_us = 0;
  if (q >> quota_us && p >> period_us && quota_us > 0 && period_us > 0)
    return static_cast<double>(quota_us) / static_cast<double>(period_us);
  return 0;
}

}  // namespace

unsigned usable_cpu_count() {
  unsigned count = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0)
    count = static_cast<unsigned>(CPU_COUNT(&set));
  else
    count = static_cast<unsigned>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  try {
    if (const double limit = cgroup_cpu_limit(); limit > 0)
      count = std::min(count, static_cast<unsigned>(std::ceil(limit)));
  } catch (const std::exception&) {
    // An unreadable or odd cgroup file: fall back to the affinity count.
  }
  return std::max(count, 1U);
}

pid_t thread_id() noexcept {
  return static_cast<pid_t>(::syscall(SYS_gettid));
}

}  // namespace mp::os

// ---- sockets ----
// (Its own includes, so that this section only adds to the file.)
#include <sys/uio.h>

#include <cstring>
#include <stdexcept>

namespace mp::os {

socket_kind socket_kind_of(int fd) {
  int type = 0;
  socklen_t size = sizeof type;
  // One call tells a closed descriptor (EBADF) and a non-socket (ENOTSOCK) apart.
  check("getsockopt(SO_TYPE)", [&] { return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size); });
  int family = 0;
  size = sizeof family;
  check("getsockopt(SO_DOMAIN)",
        [&] { return ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &size); });
  return {type == SOCK_STREAM, family == AF_UNIX};
}

void shut_down_sending(int fd) {
  check("shutdown", [&] { return ::shutdown(fd, SHUT_WR); });
}

void shut_down_receiving(int fd) {
  check("shutdown", [&] { return ::shutdown(fd, SHUT_RD); });
}

std::vector<std::size_t> wait_any_readable(std::span<const int> fds,
                                           std::optional<std::chrono::nanoseconds> timeout) {
  std::vector<pollfd> polled;
  polled.reserve(fds.size());
  for (const int fd : fds) {
    // poll() skips a negative descriptor silently: waiting on it would never end.
    if (fd < 0) throw std::system_error(EBADF, std::system_category(), "poll: descriptor -1");
    polled.push_back({fd, POLLIN, 0});
  }
  using clock = std::chrono::steady_clock;
  const auto deadline = timeout ? clock::now() + *timeout : clock::time_point::max();
  for (;;) {
    std::optional<std::chrono::nanoseconds> left;
    if (timeout) left = std::max(deadline - clock::now(), clock::duration::zero());
    if (::poll(polled.data(), polled.size(), poll_timeout(left)) >= 0) break;
    if (errno != EINTR) throw_errno("poll");
  }
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < polled.size(); ++i) {
    if ((polled[i].revents & POLLNVAL) != 0)
      throw std::system_error(EBADF, std::system_category(),
                              "poll: descriptor " + std::to_string(polled[i].fd) + " is not open");
    if ((polled[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) ready.push_back(i);
  }
  return ready;
}

namespace {

// Room for the most descriptors one message can carry.
constexpr std::size_t control_room = CMSG_SPACE(sizeof(int) * max_fds_per_message);

void wait_for(int fd, short events) {
  pollfd p{fd, events, 0};
  check("poll", [&] { return ::poll(&p, 1, -1); });
}

}  // namespace

void send_with_fds(int fd, std::span<const std::span<const std::byte>> pieces,
                   std::span<const int> fds) {
  constexpr std::size_t max_pieces = 8;
  if (pieces.size() > max_pieces) throw std::invalid_argument("send_with_fds: more than 8 pieces");
  if (fds.size() > max_fds_per_message)
    throw std::invalid_argument("send_with_fds: more than " + std::to_string(max_fds_per_message) +
                                " descriptors in one message");
  iovec iov[max_pieces];
  std::size_t count = 0;
  std::size_t left = 0;
  for (const auto& piece : pieces) {
    if (piece.empty()) continue;
    iov[count++] = {const_cast<std::byte*>(piece.data()), piece.size()};
    left += piece.size();
  }
  // On a stream socket descriptors ride on a byte; with none they would vanish.
  if (left == 0 && !fds.empty())
    throw std::invalid_argument("send_with_fds: descriptors need at least one byte to carry them");
  msghdr message{};
  message.msg_iov = iov;
  message.msg_iovlen = count;
  alignas(cmsghdr) char control[control_room];
  if (!fds.empty()) {
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  while (left != 0) {
    const ssize_t sent = retry([&] { return ::sendmsg(fd, &message, MSG_NOSIGNAL); });
    if (sent < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {  // a non-blocking socket: wait for room
        wait_for(fd, POLLOUT);
        continue;
      }
      throw_errno("sendmsg");
    }
    left -= static_cast<std::size_t>(sent);
    // The descriptors went with the first byte: never send them again.
    message.msg_control = nullptr;
    message.msg_controllen = 0;
    auto done = static_cast<std::size_t>(sent);
    while (message.msg_iovlen != 0 && done >= message.msg_iov->iov_len) {
      done -= message.msg_iov->iov_len;
      ++message.msg_iov;
      --message.msg_iovlen;
    }
    if (message.msg_iovlen != 0) {
      message.msg_iov->iov_base = static_cast<std::byte*>(message.msg_iov->iov_base) + done;
      message.msg_iov->iov_len -= done;
    }
  }
}

received receive_with_fds(int fd, std::span<std::byte> buffer, std::size_t max_fds) {
  max_fds = std::min(max_fds, max_fds_per_message);
  iovec iov{buffer.data(), buffer.size()};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[control_room];
  // The kernel fits as many as the room holds, which rounding can make a few
  // more than max_fds.
  std::size_t room = 0;
  if (max_fds != 0) {
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * max_fds);
    room = (message.msg_controllen - CMSG_LEN(0)) / sizeof(int);
  }
  ssize_t got = 0;
  for (;;) {
    got = retry([&] { return ::recvmsg(fd, &message, MSG_CMSG_CLOEXEC); });
    if (got >= 0) break;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {  // a non-blocking socket: wait for bytes
      wait_for(fd, POLLIN);
      continue;
    }
    if (errno == ECONNRESET) return {};  // the peer closed with bytes unread: the end
    throw_errno("recvmsg");
  }
  received out;
  out.size = static_cast<std::size_t>(got);
  // Take ownership of every descriptor that arrived before judging anything,
  // so that none leaks whatever happens next.
  for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int received_fd = -1;
      std::memcpy(&received_fd, CMSG_DATA(c) + i * sizeof(int), sizeof received_fd);
      out.fds.emplace_back(received_fd);
    }
  }
  if ((message.msg_flags & MSG_CTRUNC) != 0 || out.fds.size() > max_fds) {
    // The kernel stops installing descriptors at the first it cannot (this
    // process's limit); fewer than the room held means that is what happened.
    const bool at_limit = (message.msg_flags & MSG_CTRUNC) != 0 && out.fds.size() < room;
    const std::size_t arrived = out.fds.size();
    out.fds.clear();  // closes them
    if (at_limit)
      throw descriptors_lost(EMFILE, std::system_category(),
                             "recvmsg: descriptors sent with the bytes were lost (" +
                                 std::to_string(arrived) +
                                 " arrived before this process reached its descriptor limit)");
    throw descriptors_lost(EMSGSIZE, std::system_category(),
                           "recvmsg: more descriptors came with the bytes than the " +
                               std::to_string(max_fds) + " expected; all were closed");
  }
  return out;
}

}  // namespace mp::os
