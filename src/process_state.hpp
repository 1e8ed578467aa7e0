// SPDX-License-Identifier: MIT
// The shared state behind mp::process and mp::process_handle.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mp/detail/unique_fd.hpp"
#include "mp/errors.hpp"

namespace mp::detail {

class target;

struct process_state {
  enum class kind { self, child, parent };
  explicit process_state(kind k) : kind_(k) {}

  const kind kind_;
  std::mutex mutex;  // guards pidfd, exitcode, pid, closed
  std::string name;
  bool daemon = false;
  unsigned identity_index = 0;
  pid_t pid = 0;
  unique_fd pidfd;
  // A child of the fork server, not ours: the pipe on which it writes its
  // exit code as it exits, or the server when it reaps it (after a signal;
  // we cannot reap it). Its end is still told by the pidfd.
  unique_fd status;
  std::optional<int> exitcode;
  bool closed = false;
  std::shared_ptr<void> keep_until_reaped;  // what start() must not free while sharing pages

  /// Sends `sig` unless the process already ended; true if sent.
  bool signal(int sig);
  /// Waits for the end (nullopt: forever); true if ended. Throws if not started.
  bool wait(std::optional<std::chrono::nanoseconds> timeout);
  /// Reaps if ended, without blocking; true if ended.
  bool poll();
  /// Under the mutex: the exit code if the child ended (reaping it), else nullopt.
  std::optional<int> collect_locked();
  /// The descriptor that is readable once the exit code can be collected.
  int sentinel_locked() const { return pidfd.get(); }
  void check_started() {
    std::lock_guard lock(mutex);
    if (!pidfd && !exitcode) throw usage_error("process '" + name + "' was not started");
  }
  void check_not_started(const char* what) {
    std::lock_guard lock(mutex);
    if (pidfd || exitcode) throw usage_error(std::string("cannot ") + what + " a started process");
  }
};

/// A pidfd for our parent, or empty if the parent has already gone (checked
/// after opening, so a recycled pid is never mistaken for it).
unique_fd open_parent_pidfd(pid_t parent);

/// What a child needs to become itself, prepared by the parent before fork so
/// that the child only swaps pointers. Most of a start's cost is page faults,
/// not system calls: each page the child writes is copied on write, and each
/// 64 KiB window of code it runs must be mapped, so the child's path up to the
/// user's code touches as little as possible.
struct child_boot {
  std::shared_ptr<process_state> self;
  std::shared_ptr<process_state> parent;
  std::vector<std::shared_ptr<process_state>> children;  // empty
  std::vector<unsigned> identity;
  pid_t parent_pid = 0;
  pid_t real_parent = 0;  // whose death ends ours: the parent, or the fork server
  sigset_t caller_mask;
  // A fork server's child: where it writes its exit code as it exits, so that
  // the parent need not wait for the server to reap it and tell.
  int exit_status_fd = -1;
};

/// The default start method if the program fixed it (as an int), else -1.
int fixed_start_method() noexcept;

/// Forks a child that runs `work` (the fork start method).
void start_fork(target& work, const std::shared_ptr<process_state>& child);

/// Starts a fresh run of this program that runs `work` (the spawn start method).
void start_spawn(target& work, const std::shared_ptr<process_state>& child);

/// Fills `boot` with what `child` is to become (all but the signal mask), for
/// a child that is not forked from us.
void prepare_child(const process_state& child, child_boot& boot);
/// Lists a child started by other means than fork as ours.
void adopt_child(const std::shared_ptr<process_state>& child, pid_t pid);
/// Lists a child of the fork server as ours: `pidfd` signals it, `status`
/// brings its exit code.
void adopt_child(const std::shared_ptr<process_state>& child, pid_t pid, unique_fd pidfd,
                 unique_fd status);
/// Starts `work` in a child of this process's fork server (the forkserver
/// start method), starting the server first if needed.
void start_forkserver(target& work, const std::shared_ptr<process_state>& child);
/// Runs `job` on a thread that lives as long as the process: the main thread
/// if we are on it, else the launcher thread. A child's parent-death signal
/// fires when the thread that started it exits.
void run_on_forking_thread(const std::function<void()>& job);
/// Becomes the child `boot` describes and runs `work`; never returns.
[[noreturn]] void child_main(target& work, child_boot& boot);

}  // namespace mp::detail
