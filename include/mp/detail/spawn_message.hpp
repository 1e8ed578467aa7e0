// SPDX-License-Identifier: MIT
// The start message of a spawned child (src/spawn.cpp): what the parent sends
// over the child's start descriptor before anything else. Here so that the
// fuzz target can decode it as the child does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mp/detail/code_identity.hpp"

namespace mp::detail {

struct spawn_message {
  code_ref hook;  // the parent's start hook: the child's own must have the same build-id
  std::string name;
  bool daemon = false;
  std::vector<unsigned> identity;
  std::string parent_name;
  std::int32_t parent_pid = 0;
  std::vector<std::byte> call;  // encoded by encode_call, descriptors beside it
  template <class Archive>
  void serialize(Archive& archive) {
    archive(hook, name, daemon, identity, parent_name, parent_pid, call);
  }
};

}  // namespace mp::detail
