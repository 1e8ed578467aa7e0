// SPDX-License-Identifier: MIT
// Timeouts on a pool's tasks (Python's res = pool.apply_async(time.sleep, (10,))
// followed by res.get(timeout=1)). get(timeout) stops waiting, as in Python,
// but the task runs on; a task given a timeout of its own is stopped: its
// worker is killed and replaced, which no Python pool can do.
#include <chrono>
#include <iostream>
#include <thread>

#include "mp/mp.hpp"

namespace {

using namespace std::chrono_literals;

int sleep_then_return(int seconds) {
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  return seconds;
}

}  // namespace

int main() {
  mp::pool pool(1);

  // Python's get(timeout=1): the caller gives up waiting, the task goes on.
  auto slow = pool.apply_async(sleep_then_return, 2);
  try {
    slow.get(100ms);
  } catch (const mp::timeout_error&) {
    std::cout << "get(100ms) timed out; the task still runs\n";
  }
  std::cout << "get() later: " << slow.get() << '\n';

  // A timeout on the task itself: after 200 ms its worker is killed.
  const auto start = std::chrono::steady_clock::now();
  auto stopped = pool.apply_async({.timeout = 200ms}, sleep_then_return, 60);
  try {
    stopped.get();
  } catch (const mp::timeout_error& e) {
    std::cout << "a task past its timeout was stopped (mp::timeout_error)\n";
  }
  const auto waited = std::chrono::steady_clock::now() - start;
  std::cout << "stopped long before its 60 s: " << std::boolalpha << (waited < 30s) << '\n';

  // The pool replaced the killed worker and goes on.
  std::cout << "the next task: " << pool.apply(sleep_then_return, 0) << '\n';
}
