// SPDX-License-Identifier: MIT
// Child roles: the registry behind MP_TEST_ROLE, the role side of test_main(), and run_role(),
// which re-executes the test binary as a role and captures its output.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <system_error>
#include <utility>

#include "internal.hpp"

namespace mp::testing {
namespace {

std::map<std::string, role_function, std::less<>>& registry() {
  static std::map<std::string, role_function, std::less<>> roles;
  return roles;
}

std::string& role_of_this_process() {
  static std::string role;
  return role;
}

[[noreturn]] void throw_errno(const char* call) {
  throw std::system_error(errno, std::system_category(), call);
}

class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  void reset() noexcept {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
};

std::pair<unique_fd, unique_fd> make_pipe() {
  std::array<int, 2> fds{};
  if (::pipe2(fds.data(), O_CLOEXEC) != 0) throw_errno("pipe2");
  return {unique_fd{fds[0]}, unique_fd{fds[1]}};
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) throw_errno("fcntl");
}

// Owns a spawned child until it is reaped: an exception on the way kills and reaps it, so a
// failing run_role() leaves no zombie behind.
class child_guard {
 public:
  explicit child_guard(pid_t pid) noexcept : pid_(pid) {}
  child_guard(const child_guard&) = delete;
  child_guard& operator=(const child_guard&) = delete;
  ~child_guard() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }

  // Blocks until the child is reaped and returns the Python-style exit code.
  int wait() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0) {
      if (errno != EINTR) throw_errno("waitpid");
    }
    pid_ = -1;
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return WEXITSTATUS(status);
  }

 private:
  pid_t pid_;
};

class spawn_setup {
 public:
  spawn_setup() {
    if (const int rc = ::posix_spawn_file_actions_init(&actions_); rc != 0) {
      throw std::system_error(rc, std::system_category(), "posix_spawn_file_actions_init");
    }
    if (const int rc = ::posix_spawnattr_init(&attributes_); rc != 0) {
      ::posix_spawn_file_actions_destroy(&actions_);
      throw std::system_error(rc, std::system_category(), "posix_spawnattr_init");
    }
  }
  spawn_setup(const spawn_setup&) = delete;
  spawn_setup& operator=(const spawn_setup&) = delete;
  ~spawn_setup() {
    ::posix_spawnattr_destroy(&attributes_);
    ::posix_spawn_file_actions_destroy(&actions_);
  }

  posix_spawn_file_actions_t actions_{};
  posix_spawnattr_t attributes_{};
};

void check_spawn(int rc, const char* call) {
  if (rc != 0) throw std::system_error(rc, std::system_category(), call);
}

// Appends whatever `fd` has to offer without blocking; returns true at end of file.
bool read_available(int fd, std::string& sink) {
  std::array<char, 65536> buffer;
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n > 0) {
      sink.append(buffer.data(), static_cast<std::size_t>(n));
    } else if (n == 0) {
      return true;
    } else if (errno == EAGAIN) {
      return false;
    } else if (errno != EINTR) {
      throw_errno("read");
    }
  }
}

std::string self_path() {
  std::array<char, 4096> buffer{};
  const ssize_t n = ::readlink("/proc/self/exe", buffer.data(), buffer.size() - 1);
  if (n <= 0) return "/proc/self/exe";
  return std::string(buffer.data(), static_cast<std::size_t>(n));
}

std::string tail(const std::string& text) {
  constexpr std::size_t limit = 4096;
  return text.size() <= limit ? text : "..." + text.substr(text.size() - limit);
}

}  // namespace

detail::role_registrar::role_registrar(std::string_view name, role_function function) noexcept {
  if (!registry().emplace(std::string(name), function).second) {
    std::fprintf(stderr, "mp::testing: role '%.*s' is defined twice\n",
                 static_cast<int>(name.size()), name.data());
    std::abort();
  }
}

role_function detail::find_role(std::string_view name) {
  const auto found = registry().find(name);
  return found == registry().end() ? nullptr : found->second;
}

std::string_view detail::current_role() {
  return role_of_this_process();
}

int detail::run_role_main(std::string_view name, std::span<char* const> args) {
  const role_function role = find_role(name);
  if (role == nullptr) {
    std::fprintf(stderr,
                 "mp::testing: unknown role '%.*s'; known roles:", static_cast<int>(name.size()),
                 name.data());
    for (const auto& entry : registry()) std::fprintf(stderr, " %s", entry.first.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  role_of_this_process() = std::string(name);
  int status = 1;
  try {
    status = role(args);
  } catch (const std::exception& error) {
    // Python's exit code for a process that dies of an uncaught exception.
    std::cerr << "mp::testing: role '" << name << "' threw: " << error.what() << '\n';
    status = 1;
  }
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  return status;
}

role_result run_role(std::string_view role, std::vector<std::string> args,
                     std::chrono::milliseconds timeout) {
  const auto limit = scaled(timeout);
  const auto deadline = std::chrono::steady_clock::now() + limit;

  std::vector<std::string> strings;
  strings.reserve(args.size() + 2);
  strings.push_back(self_path());
  strings.push_back("--mp-test-role=" + std::string(role));
  for (auto& arg : args) strings.push_back(std::move(arg));
  std::vector<char*> argv;
  argv.reserve(strings.size() + 1);
  for (auto& string : strings) argv.push_back(string.data());
  argv.push_back(nullptr);

  auto [out_read, out_write] = make_pipe();
  auto [err_read, err_write] = make_pipe();

  // The dup2 targets lose O_CLOEXEC, so the child keeps exactly stdin, stdout and stderr of
  // ours (plus whatever fds the test deliberately left inheritable).
  spawn_setup setup;
  check_spawn(
      ::posix_spawn_file_actions_addopen(&setup.actions_, STDIN_FILENO, "/dev/null", O_RDONLY, 0),
      "posix_spawn_file_actions_addopen");
  check_spawn(::posix_spawn_file_actions_adddup2(&setup.actions_, out_write.get(), STDOUT_FILENO),
              "posix_spawn_file_actions_adddup2");
  check_spawn(::posix_spawn_file_actions_adddup2(&setup.actions_, err_write.get(), STDERR_FILENO),
              "posix_spawn_file_actions_adddup2");
  // A test that blocks or ignores signals must not pass that on to the role.
  sigset_t signals;
  ::sigemptyset(&signals);
  check_spawn(::posix_spawnattr_setsigmask(&setup.attributes_, &signals),
              "posix_spawnattr_setsigmask");
  ::sigfillset(&signals);
  check_spawn(::posix_spawnattr_setsigdefault(&setup.attributes_, &signals),
              "posix_spawnattr_setsigdefault");
  check_spawn(::posix_spawnattr_setflags(&setup.attributes_,
                                         POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF),
              "posix_spawnattr_setflags");

  pid_t pid = -1;
  check_spawn(::posix_spawn(&pid, "/proc/self/exe", &setup.actions_, &setup.attributes_,
                            argv.data(), environ),
              "posix_spawn");
  child_guard child{pid};
  out_write.reset();
  err_write.reset();
  set_nonblocking(out_read.get());
  set_nonblocking(err_read.get());

  // A pidfd tells when the child exits even if a grandchild still holds the pipes. Without
  // one (old kernel, seccomp), fall back to checking every 10 ms.
  unique_fd pidfd{static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))};

  role_result result{0, {}, {}};
  bool exited = false;
  while (!exited) {
    std::array<pollfd, 3> polled{};
    nfds_t count = 0;
    if (out_read.valid()) polled[count++] = {out_read.get(), POLLIN, 0};
    if (err_read.valid()) polled[count++] = {err_read.get(), POLLIN, 0};
    if (pidfd.valid()) polled[count++] = {pidfd.get(), POLLIN, 0};

    const auto remaining =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (remaining.count() <= 0) {
      throw role_timeout("mp::testing: role '" + std::string(role) + "' did not finish within " +
                         std::to_string(limit.count()) + " ms (killed)\n--- stdout ---\n" +
                         tail(result.out) + "\n--- stderr ---\n" + tail(result.err));
    }
    auto wait_ms = std::min<std::chrono::milliseconds::rep>(remaining.count(), 60'000);
    if (!pidfd.valid()) wait_ms = std::min<std::chrono::milliseconds::rep>(wait_ms, 10);

    if (::poll(polled.data(), count, static_cast<int>(wait_ms)) < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll");
    }
    for (nfds_t i = 0; i < count; ++i) {
      if (polled[i].revents == 0) continue;
      if (polled[i].fd == pidfd.get()) {
        exited = true;
      } else if (polled[i].fd == out_read.get()) {
        if (read_available(out_read.get(), result.out)) out_read.reset();
      } else if (polled[i].fd == err_read.get()) {
        if (read_available(err_read.get(), result.err)) err_read.reset();
      }
    }
    if (!pidfd.valid()) {
      siginfo_t info{};
      if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        throw_errno("waitid");
      }
      exited = info.si_pid == pid;
    }
  }
  // Everything the child wrote before exiting is already in the pipes.
  if (out_read.valid()) read_available(out_read.get(), result.out);
  if (err_read.valid()) read_available(err_read.get(), result.err);
  result.exitcode = child.wait();
  return result;
}

}  // namespace mp::testing
