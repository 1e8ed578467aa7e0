// SPDX-License-Identifier: MIT
// Contexts and the fork server's public calls: the public face of the
// forkserver start method, above mp::process (see src/start_method.hpp for the
// layers).
#include "mp/context.hpp"

#include <utility>
#include <vector>

#include "start_method.hpp"

namespace mp {

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
