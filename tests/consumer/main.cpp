// SPDX-License-Identifier: MIT
// Install-consumer check: uses an installed mp through <mp/mp.hpp> and exits 0 only if
// - a forked child can send a string back through a pipe,
// - a thread pool maps with options filled as users fill them (the pkg-config
//   build compiles this with -Wall -Wextra -Wpedantic -Werror, mp's headers
//   included as the user's own: a field left out of a designated initializer
//   must not warn), and
// - a spawned child (a fresh run of this program) runs its target after this
//   program's static initializers and never runs main: with a static and with
//   a shared libmp, whose start hooks differ (docs/start-methods.md).
#include <mp/mp.hpp>

#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

namespace {

// A dynamic initializer: a spawned child must have run it before its target.
const int initialized = std::getenv("PATH") != nullptr ? 40 : 40;

void spawned_target(int add) {
  throw mp::system_exit{initialized + add};  // 42 if both arrived
}

}  // namespace

int main() {
  auto [a, b] = mp::pipe();
  mp::process p{[](mp::connection c) { c.send(std::string{"hello from child"}); }, std::move(b)};
  p.start();
  auto s = a.recv<std::string>();
  p.join();
  std::cout << s << '\n';

  mp::thread_pool pool({.processes = 1});
  const auto squares =
      pool.map([](int x) { return x * x; }, std::vector<int>{1, 2, 3}, {.chunksize = 1});
  std::cout << "squares " << squares[0] << ' ' << squares[1] << ' ' << squares[2] << '\n';

  // main would print the lines above again and exit with 0 or 1.
  mp::process spawned = mp::get_context(mp::start_method::spawn).process(spawned_target, 2);
  spawned.start();
  spawned.join();
  std::cout << "spawned child exited with " << spawned.exitcode().value_or(-1) << '\n';
  const bool mapped = squares == std::vector<int>{1, 4, 9};
  return s == "hello from child" && p.exitcode() == 0 && spawned.exitcode() == 42 && mapped ? 0 : 1;
}
