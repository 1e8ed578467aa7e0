// SPDX-License-Identifier: MIT
// The fork start method: the child is a copy of this process (fork()), which
// becomes itself through child_main and runs the target in place.
#include "os/system.hpp"
#include "start_method.hpp"

namespace mp::detail {

void start_fork(target& work, const std::shared_ptr<process_state>& child) {
  const sigset_t caller_mask = os::block_all_signals();
  const pid_t parent_pid = os::process_id();

  auto fork_here = [&] {
    // Holding the runtime lock across fork keeps any other thread from holding
    // it at that instant, so the child's copy is never locked forever.
    std::unique_lock lock = lock_runtime();
    // Allocated, and released only after the child is reaped: freeing it while
    // the child shares our pages would copy them (see child_boot).
    auto boot_owner = std::make_shared<child_boot>();
    child_boot& boot = *boot_owner;
    reserve_child_locked();
    prepare_child_locked(*child, parent_pid, static_cast<int>(start_method::fork), boot);
    boot.caller_mask = caller_mask;
    const pid_t pid = os::fork_process();
    if (pid == 0) {
      lock.unlock();
      child_main(work, boot);
    }
    // Until we reap it the pid cannot be reused, so the pidfd is the child's.
    // It is set before the child is listed, so no one sees it half started.
    try {
      os::unique_fd fd = os::pidfd_open(pid);
      std::lock_guard state_lock(child->mutex);
      child->pid = pid;
      child->pidfd = std::move(fd);
      child->keep_until_reaped = std::move(boot_owner);
    } catch (...) {
      os::kill_and_reap(pid);
      throw;
    }
    list_child_locked(child);
  };

  try {
    run_on_forking_thread(fork_here);
  } catch (...) {
    os::set_signal_mask(caller_mask);
    throw;
  }
  os::set_signal_mask(caller_mask);
}

}  // namespace mp::detail
