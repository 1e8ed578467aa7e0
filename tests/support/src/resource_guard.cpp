// SPDX-License-Identifier: MIT
// The per-test resource guard: children that are still running or were never reaped, fds and
// /dev/shm names that a test left behind fail that test, and are then cleaned up.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <thread>

#include "internal.hpp"
#include "mp/process.hpp"

namespace mp::testing {
namespace {

struct exemptions {
  std::mutex mutex;
  std::set<pid_t> children;
  std::set<int> fds;
  std::set<std::string> shm;
};

exemptions& exempt() {
  static exemptions list;
  return list;
}

template <typename T>
bool is_exempt(const std::set<T>& set, const T& value) {
  std::lock_guard lock(exempt().mutex);
  return set.contains(value);
}

std::optional<std::pair<dev_t, ino_t>> identity(int fd) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) return std::nullopt;
  return std::pair{info.st_dev, info.st_ino};
}

// Does `name` contain `pid` as a whole number, as unique_name() puts it? Other processes, such
// as test binaries that CTest runs in parallel, create /dev/shm names at the same time.
bool names_pid(std::string_view name, pid_t pid) {
  const std::string digits = std::to_string(pid);
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  for (auto at = name.find(digits); at != std::string_view::npos; at = name.find(digits, at + 1)) {
    const auto end = at + digits.size();
    if ((at == 0 || !is_digit(name[at - 1])) && (end == name.size() || !is_digit(name[end]))) {
      return true;
    }
  }
  return false;
}

bool strict_shm_check() {
  const char* value = std::getenv("MP_TEST_SHM_STRICT");
  return value != nullptr && std::string_view(value) == "1";
}

// Our direct children and mp's: a child of the fork server is the server's
// child, not ours, but mp counts it among active_children().
std::set<pid_t> our_children() {
  const std::vector<pid_t> direct = child_pids();
  std::set<pid_t> found(direct.begin(), direct.end());
  for (const auto& child : mp::active_children())
    if (const auto pid = child.pid()) found.insert(*pid);
  return found;
}

}  // namespace

bool detail::is_exempt_child(pid_t pid) {
  return is_exempt(exempt().children, pid);
}

void exempt_child(pid_t pid) {
  std::lock_guard lock(exempt().mutex);
  exempt().children.insert(pid);
}

void exempt_fd(int fd) {
  std::lock_guard lock(exempt().mutex);
  exempt().fds.insert(fd);
}

void exempt_shm(std::string name) {
  std::lock_guard lock(exempt().mutex);
  exempt().shm.insert(std::move(name));
}

void detail::resource_guard::OnTestStart(const ::testing::TestInfo&) {
  owner_ = ::getpid();
  fds_.clear();
  for (const int fd : open_fds()) {
    if (const auto id = identity(fd)) fds_.emplace(fd, *id);
  }
  children_ = our_children();
  shm_ = shm_entries();
}

void detail::resource_guard::OnTestEnd(const ::testing::TestInfo&) {
  // A forked copy of the test process that returned into GoogleTest is not ours to judge.
  if (::getpid() != owner_) return;
  // Children first: reaping one may be what closes the last fds that refer to it.
  check_children();
  check_fds();
  check_shm();
}

void detail::resource_guard::check_children() {
  auto new_children = [this] {
    std::vector<pid_t> found;
    for (const pid_t pid : our_children()) {
      if (!children_.contains(pid) && !is_exempt(exempt().children, pid)) found.push_back(pid);
    }
    return found;
  };
  // The library may reap from a background thread, so allow it a moment. Only look: a
  // waitpid() here would steal the exit status from its owner.
  const auto grace = scaled(std::chrono::seconds{2});
  const auto deadline = std::chrono::steady_clock::now() + grace;
  auto left = new_children();
  while (!left.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
    left = new_children();
  }
  if (left.empty()) return;

  std::string details;
  for (const pid_t pid : left) details += "\n  " + describe_process(pid);
  ADD_FAILURE() << "mp resource guard: the test left " << left.size()
                << " child process(es) running or unreaped " << grace.count()
                << " ms after it ended:" << details;

  for (const pid_t pid : left) ::kill(pid, SIGKILL);
  const auto reap_deadline = std::chrono::steady_clock::now() + scaled(std::chrono::seconds{5});
  for (const pid_t pid : left) {
    while (true) {
      const pid_t reaped = ::waitpid(pid, nullptr, WNOHANG);
      if (reaped == pid || (reaped < 0 && errno != EINTR)) break;  // ECHILD: its owner won
      if (std::chrono::steady_clock::now() >= reap_deadline) {
        ADD_FAILURE() << "mp resource guard: could not reap " << describe_process(pid);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{1});
    }
  }
}

void detail::resource_guard::check_fds() {
  std::string details;
  std::vector<int> to_close;
  for (const int fd : open_fds()) {
    if (is_exempt(exempt().fds, fd)) continue;
    const auto before = fds_.find(fd);
    if (before == fds_.end()) {
      details += "\n  fd " + std::to_string(fd) + " -> " + fd_target(fd);
      to_close.push_back(fd);
    } else if (identity(fd) != before->second) {
      // Replaced with dup2() and never restored; reported but left open, since closing
      // stdout or stderr would hide every later failure.
      details += "\n  fd " + std::to_string(fd) + " -> " + fd_target(fd) + " (was replaced)";
    }
  }
  if (details.empty()) return;
  ADD_FAILURE() << "mp resource guard: the test leaked fds:" << details;
  for (const int fd : to_close) ::close(fd);
}

void detail::resource_guard::check_shm() {
  const bool strict = strict_shm_check();
  const pid_t self = ::getpid();
  std::vector<std::string> leaked;
  for (const auto& name : shm_entries()) {
    if (shm_.contains(name) || is_exempt(exempt().shm, name)) continue;
    if (strict || names_pid(name, self)) leaked.push_back(name);
  }
  if (leaked.empty()) return;
  std::string details;
  for (const auto& name : leaked) details += "\n  /dev/shm/" + name;
  ADD_FAILURE() << "mp resource guard: the test left /dev/shm entries:" << details;
  for (const auto& name : leaked) ::unlink(("/dev/shm/" + name).c_str());
}

}  // namespace mp::testing
