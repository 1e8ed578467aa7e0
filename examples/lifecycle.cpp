// SPDX-License-Identifier: MIT
// A process's lifecycle, after the Process.terminate example of Python's docs:
// is_alive() before start, while running, after terminate() and join(); exitcode.
#include <signal.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include "mp/mp.hpp"

namespace {

// Python's target is time.sleep itself; C++ needs a function to point at.
void sleep_for_seconds(int seconds) {
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
}

// Python's None: no exit code while the process has not ended.
std::string to_string(std::optional<int> exitcode) {
  return exitcode ? std::to_string(*exitcode) : "none";
}

// Prints Python's repr too: <process name='Process-1' pid=... started>.
void show(const char* when, const mp::process& p) {
  std::cout << when << ": is_alive() = " << p.is_alive()
            << ", exitcode() = " << to_string(p.exitcode()) << "  " << p << '\n';
}

}  // namespace

int main() {
  std::cout << std::boolalpha;

  mp::process p{sleep_for_seconds, 1000};  // Python: Process(target=time.sleep, args=(1000,))
  show("created", p);

  p.start();
  show("started", p);

  p.terminate();  // SIGTERM
  p.join();       // Python's example sleeps 0.1 s here; join waits just long enough
  show("terminated and joined", p);

  if (p.exitcode() != -SIGTERM) {
    std::cerr << "lifecycle: expected exitcode " << -SIGTERM << '\n';
    return 1;
  }
  std::cout << "exitcode == -SIGTERM: true\n";
}
