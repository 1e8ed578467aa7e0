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

int poll_timeout(mp::timeout timeout) {
  if (!timeout.limited()) return -1;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(timeout.duration()).count();
  return static_cast<int>(std::min<long long>(ms, 0x7fffffff));
}

bool wait_readable(int fd, mp::timeout timeout) {
  const mp::detail::deadline deadline(timeout);
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(&p, 1, poll_timeout(deadline.left()));
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
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>
#include <vector>

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

std::byte* map_aligned_private(std::size_t length) noexcept {
  // Twice the length, so that an aligned run of it lies inside; the rest is given back.
  void* mapped =
      ::mmap(nullptr, 2 * length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<std::uintptr_t>(mapped);
  const std::uintptr_t aligned = (start + length - 1) & ~(std::uintptr_t{length} - 1);
  if (aligned != start) ::munmap(mapped, aligned - start);
  if (const std::uintptr_t tail = start + 2 * length - (aligned + length); tail != 0)
    ::munmap(reinterpret_cast<void*>(aligned + length), tail);
  auto* at = reinterpret_cast<std::byte*>(aligned);
#ifdef MADV_HUGEPAGE
  ::madvise(at, length, MADV_HUGEPAGE);  // a hint: without it, 4 KiB pages
#endif
  return at;
}

void advise_huge_pages(void* at, std::size_t length) noexcept {
#ifdef MADV_HUGEPAGE
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  const auto start = reinterpret_cast<std::uintptr_t>(at);
  const std::uintptr_t first = (start + huge - 1) & ~(huge - 1);
  const std::uintptr_t last = (start + length) & ~(huge - 1);
  if (at != nullptr && last > first)
    ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)at, (void)length;
#endif
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

int current_cpu() noexcept {
  return ::sched_getcpu();
}

std::optional<task_stat> read_task_stat(pid_t id) noexcept {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(id));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char text[1024];
  const ssize_t got = retry([&] { return ::read(fd, text, sizeof text - 1); });
  ::close(fd);
  if (got <= 0) return std::nullopt;
  text[got] = '\0';
  // "pid (comm) state ...": the comm (field 2) may hold spaces and
  // parentheses, so the fields are counted from its last ')'.
  const char* at = std::strrchr(text, ')');
  if (at == nullptr || at[1] != ' ' || at[2] == '\0') return std::nullopt;
  task_stat stat;
  stat.state = at[2];
  auto field_after = [&at](int from, int to) {  // from the space before field `from` to `to`'s
    for (; at != nullptr && from < to; ++from) at = std::strchr(at + 1, ' ');
    return at != nullptr;
  };
  at += 1;  // the space before field 3
  if (!field_after(3, 22)) return stat;
  stat.start_time = std::strtoull(at + 1, nullptr, 10);
  if (!field_after(22, 39)) return stat;
  char* end = nullptr;
  const long cpu = std::strtol(at + 1, &end, 10);
  if (end != at + 1 && cpu >= 0 && cpu < CPU_SETSIZE) stat.cpu = static_cast<int>(cpu);
  return stat;
}

int thread_cpu(pid_t tid) noexcept {
  const auto stat = read_task_stat(tid);
  return stat ? stat->cpu : -1;
}

std::vector<int> thread_allowed_cpus(pid_t tid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (::sched_getaffinity(tid, sizeof set, &set) != 0) return cpus;
  for (std::size_t cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) cpus.push_back(static_cast<int>(cpu));
  return cpus;
}

bool move_thread(pid_t tid, int cpu) noexcept {
  if (cpu < 0 || cpu >= CPU_SETSIZE) return false;
  const auto at = static_cast<std::size_t>(cpu);
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (::sched_getaffinity(tid, sizeof mask, &mask) != 0 || !CPU_ISSET(at, &mask)) return false;
  cpu_set_t only;
  CPU_ZERO(&only);
  CPU_SET(at, &only);
  // The kernel migrates a thread at once when its CPU leaves its mask; with
  // the mask restored, where it now runs is allowed, so it stays.
  if (::sched_setaffinity(tid, sizeof only, &only) != 0) return false;
  return ::sched_setaffinity(tid, sizeof mask, &mask) == 0;
}

void set_thread_name(const char* name) noexcept {
  char kept[16] = {};  // the kernel's limit, NUL included; longer names fail with ERANGE
  std::strncpy(kept, name, sizeof kept - 1);
  ::pthread_setname_np(::pthread_self(), kept);
}

}  // namespace mp::os

// ---- terminals ----

namespace mp::os {

bool is_terminal(int fd) noexcept {
  return ::isatty(fd) == 1;
}

}  // namespace mp::os

// ---- processes and signals ----

#include <spawn.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace mp::os {
namespace {

// The child path's one way into the kernel, taken at load time: a first call
// through the PLT would run the dynamic linker in every child (lazy binding)
// for functions the parent never calls itself. Volatile, or the compiler
// calls the PLT anyway.
long (*volatile raw_syscall)(long, ...) = ::syscall;
void (*volatile raw_exit)(int) = ::_exit;

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) {
    errno = ENAMETOOLONG;
    throw_errno(("Unix socket path " + path).c_str());
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

}  // namespace

pid_t process_id() noexcept {
  return ::getpid();
}

pid_t parent_process_id() noexcept {
  return ::getppid();
}

uid_t user_id() noexcept {
  return ::getuid();
}

sigset_t signal_mask() noexcept {
  sigset_t mask;
  ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  return mask;
}

sigset_t set_signal_mask(const sigset_t& mask) noexcept {
  sigset_t old;
  ::pthread_sigmask(SIG_SETMASK, &mask, &old);
  return old;
}

sigset_t block_all_signals() noexcept {
  sigset_t all;
  ::sigfillset(&all);
  return set_signal_mask(all);
}

void block_signal(int signal) noexcept {
  sigset_t one;
  ::sigemptyset(&one);
  ::sigaddset(&one, signal);
  ::pthread_sigmask(SIG_BLOCK, &one, nullptr);
}

void ignore_signal(int signal) noexcept {
  ::signal(signal, SIG_IGN);
}

void default_signal(int signal) noexcept {
  ::signal(signal, SIG_DFL);
}

unique_fd signal_fd(int signal) {
  sigset_t one;
  ::sigemptyset(&one);
  ::sigaddset(&one, signal);
  return unique_fd(
      check("signalfd", [&] { return ::signalfd(-1, &one, SFD_CLOEXEC | SFD_NONBLOCK); }));
}

void drain_signal_fd(int fd) noexcept {
  signalfd_siginfo info;
  while (retry([&] { return ::read(fd, &info, sizeof info); }) > 0) {
  }
}

pid_t fork_process() {
  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  return pid;
}

pid_t spawn(const char* path, char* const argv[], char* const envp[], int start, int start_as,
            const sigset_t& mask) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawnattr_init(&attributes);
  int rc = ::posix_spawn_file_actions_adddup2(&actions, start, start_as);
  if (rc == 0) rc = ::posix_spawn_file_actions_addclosefrom_np(&actions, start_as + 1);
  if (rc == 0) rc = ::posix_spawnattr_setsigmask(&attributes, &mask);
  if (rc == 0) rc = ::posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  if (rc == 0) rc = ::posix_spawn(&pid, path, &actions, &attributes, argv, envp);
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attributes);
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn");
  return pid;
}

void kill_and_reap(pid_t pid) noexcept {
  ::kill(pid, SIGKILL);
  retry([&] { return ::waitpid(pid, nullptr, 0); });
}

bool signal_process(pid_t pid, int signal) noexcept {
  return ::kill(pid, signal) == 0;
}

bool reap_if_ended(pid_t pid) noexcept {
  return retry([&] { return ::waitpid(pid, nullptr, WNOHANG); }) != 0;
}

std::optional<std::pair<pid_t, int>> reap_any_ended() noexcept {
  int status = 0;
  const pid_t pid = retry([&] { return ::waitpid(-1, &status, WNOHANG); });
  if (pid <= 0) return std::nullopt;
  return std::pair{pid, WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status)};
}

std::pair<unique_fd, unique_fd> pipe() {
  int ends[2];
  check("pipe2", [&] { return ::pipe2(ends, O_CLOEXEC); });
  return {unique_fd(ends[0]), unique_fd(ends[1])};
}

std::optional<std::string> make_private_directory(std::string pattern) {
  if (::mkdtemp(pattern.data()) == nullptr) return std::nullopt;
  return pattern;
}

void remove_file(const std::string& path) noexcept {
  ::unlink(path.c_str());
}

void remove_directory(const std::string& path) noexcept {
  ::rmdir(path.c_str());
}

unique_fd listen_unix(const std::string& path) {
  const sockaddr_un address = unix_address(path);
  unique_fd socket(
      check("socket", [] { return ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); }));
  check("bind", [&] {
    return ::bind(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  });
  check("chmod", [&] { return ::chmod(path.c_str(), 0600); });
  check("listen", [&] { return ::listen(socket.get(), SOMAXCONN); });
  return socket;
}

unique_fd connect_unix(const std::string& path) {
  const sockaddr_un address = unix_address(path);
  unique_fd socket(
      check("socket", [] { return ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); }));
  if (retry([&] {
        return ::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
      }) == 0)
    return socket;
  if (errno == ECONNREFUSED || errno == ENOENT) return {};
  throw_errno("connect");
}

unique_fd accept_connection(int listener) noexcept {
  return unique_fd(retry([&] { return ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC); }));
}

std::optional<peer_credentials> peer_of(int socket) noexcept {
  ucred peer{};
  socklen_t size = sizeof peer;
  if (::getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0) return std::nullopt;
  return peer_credentials{peer.pid, peer.uid};
}

bool shutdown_sending(int socket) noexcept {
  return ::shutdown(socket, SHUT_WR) == 0;
}

bool shutdown_both(int socket) noexcept {
  return ::shutdown(socket, SHUT_RDWR) == 0;
}

void set_receive_timeout(int socket, mp::timeout timeout) {
  timeval limit{};  // zero: no bound
  if (timeout.limited()) {
    const auto micros = std::max<long long>(
        std::chrono::ceil<std::chrono::microseconds>(timeout.duration()).count(), 1);
    limit.tv_sec = static_cast<time_t>(micros / 1000000);
    limit.tv_usec = static_cast<suseconds_t>(micros % 1000000);
  }
  check("setsockopt(SO_RCVTIMEO)",
        [&] { return ::setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit); });
}

void set_parent_death_signal(int signal) noexcept {
  raw_syscall(SYS_prctl, PR_SET_PDEATHSIG, signal, 0, 0, 0);
}

pid_t current_parent_id() noexcept {
  return static_cast<pid_t>(raw_syscall(SYS_getppid));
}

void restore_signal_mask(const sigset_t& mask) noexcept {
  raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, nullptr, _NSIG / 8);
}

void stdin_from_null() noexcept {
  // Not CLOEXEC: if it lands on 0 itself, it stays our stdin across exec.
  const long null = raw_syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY);
  if (null > STDIN_FILENO) {
    raw_syscall(SYS_dup3, null, STDIN_FILENO, 0);
    raw_syscall(SYS_close, null);
  }
}

void close_now(int fd) noexcept {
  raw_syscall(SYS_close, fd);
}

std::optional<std::pair<dev_t, ino_t>> file_identity(int fd) noexcept {
  struct stat info {};
  if (::fstat(fd, &info) != 0) return std::nullopt;
  return std::pair{info.st_dev, info.st_ino};
}

void write_now(int fd, const void* data, std::size_t size) noexcept {
  raw_syscall(SYS_write, fd, data, size);
}

void exit_now(int code) noexcept {
  raw_exit(code);
  __builtin_unreachable();
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

std::vector<std::size_t> wait_any_readable(std::span<const int> fds, mp::timeout timeout) {
  std::vector<pollfd> polled;
  polled.reserve(fds.size());
  for (const int fd : fds) {
    // poll() skips a negative descriptor silently: waiting on it would never end.
    if (fd < 0) throw std::system_error(EBADF, std::system_category(), "poll: descriptor -1");
    polled.push_back({fd, POLLIN, 0});
  }
  const mp::detail::deadline deadline(timeout);
  for (;;) {
    if (::poll(polled.data(), polled.size(), poll_timeout(deadline.left())) >= 0) break;
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
