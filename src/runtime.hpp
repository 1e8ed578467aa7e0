// SPDX-License-Identifier: MIT
// The bottom of the process layer (the map is in src/start_method.hpp): the
// per-process runtime. Who this process is, its parent and its children, the
// state behind mp::process and mp::process_handle, the exit handler, the
// program's default start method, and child_main, through which the child of
// every start method becomes itself. Nothing here calls a file above it.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mp/detail/unique_fd.hpp"
#include "mp/errors.hpp"
#include "mp/timeout.hpp"

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
  // Python's authkey: ours (32 random bytes in the main process), or a
  // child's, which it inherits from whoever made it unless set before start.
  std::vector<std::byte> authkey;

  /// Sends `sig` unless the process already ended; true if sent.
  bool signal(int sig);
  /// Waits for the end (nullopt: forever); true if ended. Throws if not started.
  bool wait(mp::timeout timeout);
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
  // The child's default start method (a start_method), or -1 to keep ours.
  int start_method = -1;
};

// ---- this process ----------------------------------------------------------

/// This process's state (kind::self).
std::shared_ptr<process_state> self_state();

/// True once the exit handler (Python's _exit_function: it stops the daemonic
/// children and joins them all) has begun: no child may start after that.
bool exiting() noexcept;
/// A type's name as written in C++ (`name` demangled), or `name` itself if it
/// cannot be demangled.
std::string demangle(const char* name);
/// The parent's state, or null in the main process.
std::shared_ptr<process_state> parent_state();
/// The children listed now: started and not yet reaped.
std::vector<std::shared_ptr<process_state>> listed_children();
/// Takes `state` off the list of children (it ended, or its process is gone).
void remove_child(const process_state* state);
/// Numbers a new, unstarted `child` as Python does and names it: `name`, or
/// "Process-N" after this process's identity if empty. Its daemon flag is
/// `daemon`, or ours if unset.
void init_child(process_state& child, const std::string& name, std::optional<bool> daemon);

/// A pidfd for our parent, or empty if the parent has already gone (checked
/// after opening, so a recycled pid is never mistaken for it).
unique_fd open_parent_pidfd(pid_t parent);

// ---- the program's default start method -------------------------------------

/// The default start method if fixed (as an int), else -1.
int fixed_start_method() noexcept;
/// Fixes the default to `method` unless it is fixed already; true if this
/// call fixed it.
bool fix_start_method(int method) noexcept;
/// Sets the default to `method`, fixed or not.
void force_start_method(int method) noexcept;

// ---- starting a child --------------------------------------------------------

/// The runtime's lock, for a start that must hold it across fork (so that no
/// other thread holds it at that instant and the child's copy is never locked
/// forever). The *_locked functions below need it.
std::unique_lock<std::mutex> lock_runtime();
/// Under lock_runtime(): fills `boot` with what `child` is to become, a child
/// of `parent_pid` whose default start method is `method` (all but the signal
/// mask), and registers the exit handler before the first child.
void prepare_child_locked(const process_state& child, pid_t parent_pid, int method,
                          child_boot& boot);
/// Under lock_runtime(): makes room to list one more child, so that listing
/// it after a fork cannot fail.
void reserve_child_locked();
/// Under lock_runtime(): lists a started child.
void list_child_locked(const std::shared_ptr<process_state>& child);

/// prepare_child_locked for a child that is not forked from us.
void prepare_child(const process_state& child, int method, child_boot& boot);
/// Lists a child started by other means than fork as ours.
void adopt_child(const std::shared_ptr<process_state>& child, pid_t pid);
/// Lists a child of the fork server as ours: `pidfd` signals it, `status`
/// brings its exit code.
void adopt_child(const std::shared_ptr<process_state>& child, pid_t pid, unique_fd pidfd,
                 unique_fd status);
/// Runs `job` on a thread that lives as long as the process: the main thread
/// if we are on it, else the launcher thread. A child's parent-death signal
/// fires when the thread that started it exits.
void run_on_forking_thread(const std::function<void()>& job);

/// Becomes the child `boot` describes and runs `work`; never returns.
[[noreturn]] void child_main(target& work, child_boot& boot);

}  // namespace mp::detail
