// SPDX-License-Identifier: MIT
// The start message of a process that does not begin as a fork of its parent
// (src/fresh_run.cpp): what the parent sends before anything else, to a
// spawned child, to the fork server it starts, or through the fork server to
// a child. A header of its own so that the fuzz target (tests/fuzz, through a
// private include directory) can decode it as they do; not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mp/detail/code_identity.hpp"

namespace mp::detail {

struct spawn_message {
  enum class role : std::uint8_t { process, forkserver };

  code_ref hook;  // the parent's start hook: the child's own must have the same build-id
  role what = role::process;
  std::string name;
  bool daemon = false;
  std::vector<unsigned> identity;
  std::string parent_name;
  std::int32_t parent_pid = 0;
  std::int8_t start_method = -1;   // the child's default: the method it starts with
  std::uint64_t signal_mask = 0;   // signals 1 to 64 blocked in the caller
  std::vector<std::byte> call;     // encoded by encode_call, descriptors beside it
  std::vector<code_ref> preload;   // forkserver: functions to run before serving
  std::string socket_path;         // forkserver: its listening socket, removed when it ends
  std::vector<std::byte> authkey;  // the child's (Python's authkey)
  template <class Archive>
  void serialize(Archive& archive) {
    archive(hook, what, name, daemon, identity, parent_name, parent_pid, start_method, signal_mask,
            call, preload, socket_path, authkey);
  }
};

}  // namespace mp::detail
