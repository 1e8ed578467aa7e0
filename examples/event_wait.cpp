// SPDX-License-Identifier: MIT
// A child process waits on an mp::event until the parent sets it (Python's
// multiprocessing.Event, threading.Event's interface). A second event tells the
// parent the child is waiting, so the output's order is fixed.
#include <chrono>
#include <iostream>

#include "mp/mp.hpp"

namespace {

void waiter(mp::event ready, mp::event go) {
  std::cout << "child: waiting" << std::endl;  // flushed before the parent may print
  ready.set();
  // wait() returns the flag: false only if the timeout passed, a safety net here.
  if (!go.wait(std::chrono::seconds{30})) throw mp::system_exit{2};
  std::cout << "child: event set" << std::endl;
}

}  // namespace

int main() {
  mp::event ready, go;  // Python: Event()
  mp::process child{waiter, ready, go};
  child.start();

  if (!ready.wait(std::chrono::seconds{30})) return 1;
  std::cout << "parent: setting the event" << std::endl;
  go.set();  // wakes every waiter
  child.join();

  std::cout << "parent: child exited with " << child.exitcode().value_or(-1) << '\n';
  return child.exitcode() == 0 ? 0 : 1;
}
