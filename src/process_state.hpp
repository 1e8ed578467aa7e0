// SPDX-License-Identifier: MIT
// The shared state behind mp::process and mp::process_handle.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

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
  std::optional<int> exitcode;
  bool closed = false;
  std::shared_ptr<void> keep_until_reaped;  // what start() must not free while sharing pages

  /// Sends `sig` unless the process already ended; true if sent.
  bool signal(int sig);
  /// Waits for the end (nullopt: forever); true if ended. Throws if not started.
  bool wait(std::optional<std::chrono::nanoseconds> timeout);
  /// Reaps if ended, without blocking; true if ended.
  bool poll();
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

/// Forks a child that runs `work` (the fork start method).
void start_fork(target& work, const std::shared_ptr<process_state>& child);

}  // namespace mp::detail
