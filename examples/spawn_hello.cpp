// SPDX-License-Identifier: MIT
// The spawn start method (Python's get_context("spawn")): the child is a
// fresh run of this program that runs only its target. main() runs once, in
// the parent, and needs no `if __name__ == "__main__"` guard.
#include <iostream>
#include <string>

#include "mp/mp.hpp"

namespace {

void greet(std::string who) {
  std::cout << "hello " << who << " from " << mp::current_process().name()
            << ", a fresh run of the program\n";
}

}  // namespace

int main() {
  std::cout << "main runs once, in the parent\n";
  auto ctx = mp::get_context(mp::start_method::spawn);
  mp::process p = ctx.process(mp::process_options{.name = "spawned"}, greet, std::string("bob"));
  p.start();
  p.join();
  std::cout << "the spawned child exited with " << p.exitcode().value_or(-1) << '\n';
  return p.exitcode() == 0 ? 0 : 1;
}
