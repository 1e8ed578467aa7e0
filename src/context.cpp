// SPDX-License-Identifier: MIT
// The program's default start method, contexts, and the fork server's public
// calls: the public face of src/runtime.hpp's default and of the forkserver
// start method (see src/start_method.hpp for the layers).
#include "mp/context.hpp"

#include <string>

#include "mp/errors.hpp"
#include "runtime.hpp"
#include "start_method.hpp"

namespace mp {

std::string_view to_string(start_method method) noexcept {
  switch (method) {
    case start_method::fork:
      return "fork";
    case start_method::spawn:
      return "spawn";
    case start_method::forkserver:
      return "forkserver";
  }
  return "unknown";
}

start_method get_start_method() {
  detail::fix_start_method(static_cast<int>(start_method::fork));
  return static_cast<start_method>(detail::fixed_start_method());
}

void set_start_method(start_method method, bool force) {
  if (detail::fix_start_method(static_cast<int>(method))) return;
  // Python raises even when the method asked is the one in force.
  if (!force)
    throw context_error(
        "the start method is already fixed (to " +
        std::string(to_string(static_cast<start_method>(detail::fixed_start_method()))) +
        "); pass force = true to change it");
  detail::force_start_method(static_cast<int>(method));
}

std::vector<start_method> get_all_start_methods() {
  return {start_method::fork, start_method::spawn, start_method::forkserver};
}

context get_context(std::optional<start_method> method) {
  return context(method.value_or(get_start_method()));
}

pid_t ensure_forkserver_running() {
  return detail::ensure_fork_server_running();
}

void set_forkserver_preload(std::vector<void (*)()> functions) {
  std::vector<detail::code_ref> refs;
  refs.reserve(functions.size());
  for (void (*f)() : functions)
    refs.push_back(detail::code_ref_of(reinterpret_cast<const void*>(f)));
  detail::set_fork_server_preload(std::move(refs));
}

}  // namespace mp
