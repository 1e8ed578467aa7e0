// SPDX-License-Identifier: MIT
// The program's default start method, contexts, and the fork server's public
// calls: the public face of src/runtime.hpp's default and of the forkserver
// start method (see src/start_method.hpp for the layers).
#include "mp/context.hpp"

#include <cstdlib>
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

namespace {

/// The default the program has until it chooses one: what MP_START_METHOD
/// names (read once, at the first use of the default), or fork if it is unset
/// or empty. A value that names no method throws mp::usage_error at every use
/// of the default, as Python's get_context('sporn') raises ValueError: running
/// on under fork would hide the typo from a user checking the program under
/// spawn.
start_method environment_default() {
  static const std::string value = [] {
    const char* set = std::getenv("MP_START_METHOD");
    return std::string(set != nullptr ? set : "");
  }();
  if (value.empty()) return start_method::fork;
  for (const start_method method : get_all_start_methods())
    if (to_string(method) == value) return method;
  throw usage_error("MP_START_METHOD=" + value +
                    " names no start method (fork, spawn or forkserver)");
}

}  // namespace

start_method get_start_method() {
  if (const int fixed = detail::fixed_start_method(); fixed >= 0)
    return static_cast<start_method>(fixed);
  detail::fix_start_method(static_cast<int>(environment_default()));
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
