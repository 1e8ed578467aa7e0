// SPDX-License-Identifier: MIT
// Install-consumer check: uses an installed mp through <mp/mp.hpp> and exits 0 only if a child
// process started from it can send a string back through a pipe.
#include <mp/mp.hpp>

#include <iostream>
#include <string>
#include <utility>

int main() {
  auto [a, b] = mp::pipe();
  mp::process p{[](mp::connection c) { c.send(std::string{"hello from child"}); }, std::move(b)};
  p.start();
  auto s = a.recv<std::string>();
  p.join();
  std::cout << s << '\n';
  return s == "hello from child" && p.exitcode() == 0 ? 0 : 1;
}
