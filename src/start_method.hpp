// SPDX-License-Identifier: MIT
// The contract of the start methods: one function per method, each in a file
// of its own, all with the same signature and guarantees.
//
// The process layer, top to bottom (an arrow is "includes and calls"; none
// points up):
//
//   process.cpp         mp::process, mp::process_handle, current_process, ...
//   context.cpp         get/set_start_method, MP_START_METHOD, get_context,
//     |                 the fork server's public calls
//     v
//   start_method.hpp    this contract
//     |-- start_fork.cpp         fork() here, child_main in the copy
//     |-- start_spawn.cpp        a fresh run of the program
//     `-- start_forkserver.cpp   the fork server: its client, and the server
//           |                    (which registers itself with fresh_run)
//           v
//   fresh_run.hpp/.cpp  what spawn and forkserver share: the start message
//     |                 and its transport, starting a fresh run of the
//     |                 program, its entry before main (the spawn hook), and
//     |                 becoming the process a start message describes
//     v
//   runtime.hpp/.cpp    this process: its state, parent and children, the
//     |                 exit handler, the default start method, the launcher
//     |                 thread, and child_main (every child becomes itself there)
//     v
//   os/system.hpp       the system calls
//
// start_fork.cpp uses runtime directly; process.cpp and context.cpp use
// runtime for who this process is and for the default method.
#pragma once

#include <memory>
#include <vector>

#include "mp/detail/code_identity.hpp"
#include "mp/process.hpp"
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
