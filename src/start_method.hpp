// SPDX-License-Identifier: MIT
// The contract of the start methods: one function per method, each in a file
// of its own, all with the same signature and guarantees.
//
// The process layer, top to bottom. An arrow is "includes and calls"; every
// one points down, and no file calls one above it:
//
//   context.cpp          get_context, the fork server's public calls
//     |
//     v
//   process.cpp          mp::process, process_handle, current_process,
//     |                  active_children, get/set_start_method and
//     |                  MP_START_METHOD
//     v
//   start_method.hpp     this contract, met by one file per method:
//     |-- start_fork.cpp         fork(); the copy becomes itself in child_main
//     |-- start_spawn.cpp        a fresh run of the program
//     `-- start_forkserver.cpp   the fork server: the parent's side, and the
//           |                    server, which registers its main with
//           |                    fresh_run at static initialization, so that
//           v                    fresh_run never names it
//   fresh_run.hpp/.cpp   what spawn and forkserver share: the start message
//     |                  and its transport, starting a fresh run of the
//     |                  program, the run's entry before main (the spawn
//     |                  hook), and becoming the process a message describes
//     v
//   runtime.hpp/.cpp     this process: its state, parent and children, the
//     |                  exit handler, the default start method, the launcher
//     |                  thread, and child_main, where every child becomes
//     v                  itself
//   os/system.hpp        the system calls
//
// Below process.cpp nothing includes <mp/process.hpp>: what a child runs and
// how it starts (mp::detail::target, mp::start_method, mp::system_exit) are in
// <mp/detail/target.hpp>. process.cpp and start_fork.cpp also call runtime
// directly.

#pragma once

#include <memory>
#include <vector>

#include "mp/detail/code_identity.hpp"
#include "mp/detail/target.hpp"
#include "runtime.hpp"

namespace mp::detail {

/// Each starts `work` in the unstarted `child`, on the thread that forks
/// (run_on_forking_thread), and lists the child among this process's
/// children, or throws and leaves nothing behind: no child runs `work`, and
/// any child already created is killed and reaped. `work` must be portable for
/// spawn and forkserver (the caller checks). The child's default start method
/// is the one it started with, as in Python.
void start_fork(target& work, const std::shared_ptr<process_state>& child);
void start_spawn(target& work, const std::shared_ptr<process_state>& child);
void start_forkserver(target& work, const std::shared_ptr<process_state>& child);

/// The fork server of this process (start_forkserver.cpp), started unless it
/// runs; its pid.
pid_t ensure_fork_server_running();
/// The functions a fork server started from now on calls before serving.
void set_fork_server_preload(std::vector<code_ref> functions);

}  // namespace mp::detail
