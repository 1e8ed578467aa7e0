// SPDX-License-Identifier: MIT
// The per-test watchdog: one thread that sleeps until the running test's deadline, prints the
// stacks of the processes involved (so that a hang seen once can be understood), then kills the
// whole process tree, because a hung test would otherwise hold CTest until its TIMEOUT and leave
// its children behind.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>
#include <vector>

#include "internal.hpp"

extern char** environ;

namespace mp::testing {
namespace {

void write_stderr(const std::string& text) noexcept {
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(STDERR_FILENO, text.data() + done, text.size() - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
}

// Runs gdb on `pid` in batch mode, its output on our stderr, stopped after `limit`, and then
// lets `pid` go on: a gdb killed while attached would leave it stopped (and when `pid` is us,
// this thread with it, so a shell does it). False if there is no gdb.
bool run_gdb(pid_t pid, std::chrono::milliseconds limit) {
  static constexpr const char* script =
      "command -v gdb > /dev/null || exit 127\n"
      "timeout -s INT -k 3 \"$2\" gdb -q -nx -batch -p \"$1\" -ex 'thread apply all bt'\n"
      "kill -CONT \"$1\" 2> /dev/null\n"
      "exit 0\n";
  const std::string seconds = std::to_string(std::max<long long>(1, limit.count() / 1000));
  const std::string target = std::to_string(pid);
  std::vector<std::string> words{"sh", "-c", script, "sh", target, seconds};
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  ::posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  pid_t shell = 0;
  const int rc = ::posix_spawn(&shell, "/bin/sh", &actions, nullptr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return false;
  int status = 0;
  while (::waitpid(shell, &status, 0) < 0 && errno == EINTR) {
  }
  return !(WIFEXITED(status) && WEXITSTATUS(status) == 127);
}

}  // namespace

void detail::dump_stacks(std::chrono::milliseconds budget) noexcept {
  try {
    // gdb, our child, attaches to us and to its siblings: allow it where Yama would not.
    ::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    std::vector<pid_t> targets{::getpid()};
    for (const pid_t pid : descendant_pids())
      if (!is_exempt_child(pid) && targets.size() < 4) targets.push_back(pid);
    // Half for the test process, whose binary takes gdb longest to load; the rest shared.
    for (std::size_t i = 0; i < targets.size(); ++i) {
      const pid_t pid = targets[i];
      const auto others = static_cast<long>(std::max<std::size_t>(targets.size() - 1, 1));
      const std::chrono::milliseconds share = i == 0 ? budget / 2 : budget / 2 / others;
      write_stderr("mp watchdog: thread stacks of " + describe_process(pid) + "\n");
      if (!run_gdb(pid, share)) {
        write_stderr("mp watchdog: (no gdb on this machine: no stacks)\n");
        return;
      }
    }
  } catch (...) {
    // Out of memory: go on to the kill.
  }
}

void detail::kill_descendants() noexcept {
  try {
    // Stop first, re-scanning until nothing new appears: a stopped process cannot fork, and
    // killing a parent first would re-parent its children out of our sight.
    std::set<pid_t> stopped;
    for (int round = 0; round < 100; ++round) {
      bool found = false;
      for (const pid_t pid : descendant_pids()) {
        if (stopped.insert(pid).second) {
          ::kill(pid, SIGSTOP);
          found = true;
        }
      }
      if (!found) break;
    }
    // A helper meant to outlive tests (the fork server) is let go on again: it ends by itself
    // when we do, and removes what it made (its socket directory) as it goes.
    for (const pid_t pid : stopped) ::kill(pid, is_exempt_child(pid) ? SIGCONT : SIGKILL);
  } catch (...) {
    // Out of memory while reading /proc: kill what we can see directly.
    for (const pid_t pid : child_pids()) ::kill(pid, SIGKILL);
  }
}

namespace {
// Sanitizers run on the thread's stack too; 1 MiB is ample for waiting and reading /proc.
constexpr std::size_t stack_size = std::size_t{1} << 20;
}  // namespace

detail::watchdog::watchdog() {
  stack_ = ::mmap(nullptr, stack_size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack_ == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap");
  pthread_attr_t attributes;
  int rc = ::pthread_attr_init(&attributes);
  if (rc == 0) {
    rc = ::pthread_attr_setstack(&attributes, stack_, stack_size);
    if (rc == 0) rc = ::pthread_create(&thread_, &attributes, &watchdog::start, this);
    ::pthread_attr_destroy(&attributes);
  }
  if (rc != 0) {
    ::munmap(stack_, stack_size);
    throw std::system_error(rc, std::system_category(), "pthread_create");
  }
  // Until the thread runs, its start may be allocating (ASan sets a new
  // thread up with malloc): a test that forks meanwhile would give its child
  // an allocator locked for ever (GCC 12's ASan does not hold its locks
  // across fork), and the child's first thread would hang. So the first test
  // starts only once the thread waits.
  std::unique_lock lock(mutex_);
  wakeup_.wait(lock, [this] { return running_; });
}

detail::watchdog::~watchdog() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wakeup_.notify_one();
  ::pthread_join(thread_, nullptr);
  ::munmap(stack_, stack_size);
}

void* detail::watchdog::start(void* self) {
  static_cast<watchdog*>(self)->run();
  return nullptr;
}

void detail::watchdog::arm(const std::string& test_name) {
  const auto limit = test_timeout();
  // Formatted now, so that expiry only has to write(): the hung thread may hold stdio's lock.
  std::array<char, 32> seconds{};
  std::snprintf(seconds.data(), seconds.size(), "%g", static_cast<double>(limit.count()) / 1000.0);
  std::string message =
      "mp watchdog: " + test_name + " exceeded " + seconds.data() + " s; killing descendants\n";
  {
    std::lock_guard lock(mutex_);
    deadline_ = std::chrono::steady_clock::now() + limit;
    message_ = std::move(message);
  }
  wakeup_.notify_one();
}

void detail::watchdog::disarm() {
  {
    std::lock_guard lock(mutex_);
    deadline_.reset();
  }
  wakeup_.notify_one();
}

void detail::watchdog::run() {
  std::unique_lock lock(mutex_);
  running_ = true;
  wakeup_.notify_all();
  while (!stop_) {
    if (!deadline_) {
      wakeup_.wait(lock);
    } else if (std::chrono::steady_clock::now() < *deadline_) {
      wakeup_.wait_until(lock, *deadline_);
    } else {
      write_stderr(message_);
      // Within the 30 s (scaled) that CTest's own timeout leaves after ours.
      dump_stacks(scaled(std::chrono::seconds{20}));
      kill_descendants();
      ::_exit(1);
    }
  }
}

void detail::watchdog_listener::OnTestStart(const ::testing::TestInfo& test) {
  owner_ = ::getpid();
  dog_.arm(std::string(test.test_suite_name()) + "." + test.name());
}

void detail::watchdog_listener::OnTestEnd(const ::testing::TestInfo&) {
  if (::getpid() == owner_) dog_.disarm();
}

}  // namespace mp::testing
