// SPDX-License-Identifier: MIT
// The program's default start method.
#include "mp/context.hpp"

#include <atomic>
#include <string>

#include "mp/errors.hpp"
#include "process_state.hpp"

namespace mp {
namespace {

// -1 while not fixed; otherwise a start_method.
std::atomic<int> chosen{-1};

}  // namespace

int detail::fixed_start_method() noexcept {
  return chosen.load();
}

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
  int expected = -1;
  chosen.compare_exchange_strong(expected, static_cast<int>(start_method::fork));
  return static_cast<start_method>(chosen.load());
}

void set_start_method(start_method method, bool force) {
  int expected = -1;
  if (chosen.compare_exchange_strong(expected, static_cast<int>(method))) return;
  if (!force && expected != static_cast<int>(method))
    throw usage_error("the start method is already fixed (to " +
                      std::string(to_string(static_cast<start_method>(expected))) +
                      "); pass force = true to change it");
  chosen.store(static_cast<int>(method));
}

std::vector<start_method> get_all_start_methods() {
  return {start_method::fork, start_method::spawn, start_method::forkserver};
}

context get_context(std::optional<start_method> method) {
  return context(method.value_or(get_start_method()));
}

}  // namespace mp
