// SPDX-License-Identifier: MIT
// The spawn start method: the child is a fresh run of this program
// (src/fresh_run.cpp) that reads its start message before main, runs the
// target and exits; the program's main() never runs in it.
#include "fresh_run.hpp"
#include "os/system.hpp"
#include "start_method.hpp"

namespace mp::detail {

void start_spawn(target& work, const std::shared_ptr<process_state>& child) {
  spawn_message message = start_message_for(*child, static_cast<int>(start_method::spawn));
  handle_sink handles;
  encode_target(work, message, handles);
  const bytes encoded = mp::encode(message);
  const sigset_t mask = mask_of(message.signal_mask);

  auto [ours, theirs] = os::socket_pair();
  const int child_end = theirs.get();  // clang 14 cannot capture a structured binding
  run_on_forking_thread([&] {
    const pid_t pid = spawn_program(child_end, mask);
    try {
      adopt_child(child, pid);
    } catch (...) {
      os::kill_and_reap(pid);  // a child we cannot watch must not run on
      throw;
    }
  });
  theirs.reset();
  // If the child is gone, its exit code will say why.
  static_cast<void>(send_with_fds(ours.get(), encoded, handles.fds));
}

}  // namespace mp::detail
