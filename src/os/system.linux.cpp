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

// ---- memory and files ----

#include <dirent.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>

namespace mp::os {

namespace {

file_status status_from(const struct stat& info) {
  return {static_cast<std::uint64_t>(info.st_dev), static_cast<std::uint64_t>(info.st_ino),
          static_cast<std::uint64_t>(info.st_size), static_cast<std::uint32_t>(info.st_uid),
          S_ISREG(info.st_mode)};
}

std::error_code last_error() noexcept {
  return {errno, std::system_category()};
}

off_t file_offset(std::uint64_t value, const char* call) {
  if (value > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()))
    throw std::system_error(EFBIG, std::system_category(), call);
  return static_cast<off_t>(value);
}

}  // namespace

file_status status(int fd) {
  struct stat info {};
  check("fstat", [&] { return ::fstat(fd, &info); });
  return status_from(info);
}

std::optional<file_status> status(const char* path) noexcept {
  struct stat info {};
  if (retry([&] { return ::lstat(path, &info); }) != 0) return std::nullopt;
  return status_from(info);
}

unique_fd open_file(const char* path, bool writable, std::error_code& error) noexcept {
  const int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
  const int fd = retry([&] { return ::open(path, flags); });
  error = fd < 0 ? last_error() : std::error_code{};
  return unique_fd(fd);
}

unique_fd create_unnamed_file(const char* directory) {
  return unique_fd(check("open(O_TMPFILE)",
                         [&] { return ::open(directory, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600); }));
}

void link_file(int fd, const char* path, std::error_code& error) noexcept {
  // Linking through /proc needs no privilege (open(2), O_TMPFILE). Without
  // /proc, AT_EMPTY_PATH works where the kernel allows it to the caller.
  char proc[32];
  std::snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  int r = retry([&] { return ::linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW); });
  if (r != 0 && errno == ENOENT && ::access("/proc/self/fd", F_OK) != 0)
    r = retry([&] { return ::linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH); });
  error = r != 0 ? last_error() : std::error_code{};
}

void remove_file(const char* path, std::error_code& error) noexcept {
  error = retry([&] { return ::unlink(path); }) != 0 ? last_error() : std::error_code{};
}

std::vector<std::string> regular_file_names(const char* directory) {
  std::unique_ptr<DIR, int (*)(DIR*)> listing(::opendir(directory), ::closedir);
  if (!listing) throw_errno("opendir");
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(listing.get());
    if (entry == nullptr) {
      if (errno != 0) throw_errno("readdir");
      return names;
    }
    const std::string_view name = entry->d_name;
    if (name == "." || name == ".." || (entry->d_type != DT_REG && entry->d_type != DT_UNKNOWN))
      continue;
    names.emplace_back(name);
  }
}

unique_fd memory_file(const char* name) {
  return unique_fd(check("memfd_create", [&] { return ::memfd_create(name, MFD_CLOEXEC); }));
}

void resize_file(int fd, std::uint64_t size) {
  const off_t length = file_offset(size, "ftruncate");
  check("ftruncate", [&] { return ::ftruncate(fd, length); });
}

void reserve_file(int fd, std::uint64_t size) {
  const off_t length = file_offset(size, "posix_fallocate");
  // posix_fallocate returns the error rather than setting errno. On tmpfs a
  // signal interrupts it with EINTR and undoes the partial allocation.
  int error = 0;
  do {
    error = ::posix_fallocate(fd, 0, length);
  } while (error == EINTR);
  if (error != 0) throw std::system_error(error, std::system_category(), "posix_fallocate");
}

bool punch_hole(int fd, std::uint64_t offset, std::uint64_t length) noexcept {
  return retry([&] {
           return ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              static_cast<off_t>(offset), static_cast<off_t>(length));
         }) == 0;
}

std::size_t read_at(int fd, void* data, std::size_t size, std::uint64_t offset) {
  const off_t at = file_offset(offset, "pread");
  return static_cast<std::size_t>(check("pread", [&] { return ::pread(fd, data, size, at); }));
}

void lock_file_shared(int fd) {
  check("flock", [&] { return ::flock(fd, LOCK_SH); });
}

bool try_lock_file_exclusive(int fd) {
  if (retry([&] { return ::flock(fd, LOCK_EX | LOCK_NB); }) == 0) return true;
  if (errno == EWOULDBLOCK) return false;
  throw_errno("flock");
}

std::byte* map_shared(int fd, std::size_t length, bool reserve) {
  void* at = ::mmap(nullptr, length, PROT_READ | PROT_WRITE,
                    MAP_SHARED | (reserve ? 0 : MAP_NORESERVE), fd, 0);
  if (at == MAP_FAILED) throw_errno("mmap");
  return static_cast<std::byte*>(at);
}

void unmap(void* at, std::size_t length) noexcept {
  if (at != nullptr) ::munmap(at, length);
}

bool populate(void* at, std::size_t length, bool for_write) noexcept {
#ifdef MADV_POPULATE_WRITE
  return retry([&] {
           return ::madvise(at, length, for_write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
         }) == 0;
#else
  (void)at, (void)length, (void)for_write;
  return false;
#endif
}

std::uint32_t effective_user() noexcept {
  return static_cast<std::uint32_t>(::geteuid());
}

unsigned affinity_cpu_count() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return static_cast<unsigned>(std::max(CPU_COUNT(&set), 1));
}

void yield_processor() noexcept {
  ::sched_yield();
}

void set_thread_name(const char* name) noexcept {
  char kept[16] = {};  // the kernel's limit, NUL included; longer names fail with ERANGE
  std::strncpy(kept, name, sizeof kept - 1);
  ::pthread_setname_np(::pthread_self(), kept);
}

}  // namespace mp::os
