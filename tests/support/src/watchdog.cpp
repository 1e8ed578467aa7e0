// SPDX-License-Identifier: MIT
// The per-test watchdog: one thread that sleeps until the running test's deadline, then kills
// the whole process tree, because a hung test would otherwise hold CTest until its TIMEOUT and
// leave its children behind.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <system_error>

#include "internal.hpp"

namespace mp::testing {

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
  while (!stop_) {
    if (!deadline_) {
      wakeup_.wait(lock);
    } else if (std::chrono::steady_clock::now() < *deadline_) {
      wakeup_.wait_until(lock, *deadline_);
    } else {
      for (std::size_t done = 0; done < message_.size();) {
        const ssize_t n = ::write(STDERR_FILENO, message_.data() + done, message_.size() - done);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
      }
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
