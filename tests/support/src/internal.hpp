// SPDX-License-Identifier: MIT
// Internals shared by the mp::testing sources: /proc readers, the role registry, and the
// listeners that test_main() installs.
#pragma once

#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mp/testing/testing.hpp"

namespace mp::testing::detail {

struct process_entry {
  pid_t pid;
  pid_t parent;
};

/// One pass over /proc/<pid>/stat; processes that vanish meanwhile are skipped.
std::vector<process_entry> process_table();

/// "pid 123 (state Z, zombie) cmdline: ..." for failure messages.
std::string describe_process(pid_t pid);

/// Where fd points, from /proc/self/fd, or "?" if it is gone.
std::string fd_target(int fd);

/// The registered role of that name, or nullptr.
role_function find_role(std::string_view name);

/// The role this process runs, or empty in a test process.
std::string_view current_role();

/// Runs role `name` as this process's main and returns its exit status.
int run_role_main(std::string_view name, std::span<char* const> args);

/// The per-test deadline: MP_TEST_TIMEOUT seconds (default 120), scaled().
std::chrono::milliseconds test_timeout();

/// Whether exempt_child() named `pid`.
bool is_exempt_child(pid_t pid);

/// Prints on stderr the threads' stacks of this process and of its descendants (but the exempt
/// children), through gdb, if the machine has it; each gdb gets at most a share of `budget`.
void dump_stacks(std::chrono::milliseconds budget) noexcept;

/// Stops, then kills every descendant (stopping first so that none can fork meanwhile), except
/// the exempt children, which it lets go on.
void kill_descendants() noexcept;

/// Snapshots fds, children and /dev/shm names when a test starts, and fails the test for what
/// is new at its end, then cleans that up so that later tests start clean. Runs only in the
/// process that started the test, never in a forked copy of it.
class resource_guard final : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo& test) override;
  void OnTestEnd(const ::testing::TestInfo& test) override;

 private:
  void check_children();
  void check_fds();
  void check_shm();

  pid_t owner_ = -1;
  std::map<int, std::pair<dev_t, ino_t>> fds_;
  std::set<pid_t> children_;
  std::set<std::string> shm_;
};

/// One background thread that waits, on a condition variable, for the running test's deadline;
/// on expiry it reports, kills every descendant and ends the process with _exit(1). A forked
/// child has no copy of the thread, so it has no watchdog.
///
/// The thread runs on a stack of its own rather than one from glibc's cache: in a forked child
/// glibc hands the dead thread's cached stack, and so its pthread_t, to the child's first new
/// thread, which gcc's ThreadSanitizer rejects as "dup thread with used id".
class watchdog {
 public:
  watchdog();
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog();

  /// Starts test_timeout() for `test_name`.
  void arm(const std::string& test_name);
  void disarm();

 private:
  void run();
  static void* start(void* self);

  std::mutex mutex_;
  std::condition_variable wakeup_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::string message_;
  bool stop_ = false;
  bool running_ = false;  // the thread has started (see the constructor)
  void* stack_ = nullptr;
  pthread_t thread_{};
};

/// Arms the watchdog at each test's start and disarms it at its end.
class watchdog_listener final : public ::testing::EmptyTestEventListener {
 public:
  explicit watchdog_listener(watchdog& dog) noexcept : dog_(dog) {}
  void OnTestStart(const ::testing::TestInfo& test) override;
  void OnTestEnd(const ::testing::TestInfo& test) override;

 private:
  watchdog& dog_;
  pid_t owner_ = -1;
};

}  // namespace mp::testing::detail
