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
