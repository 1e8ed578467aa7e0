// SPDX-License-Identifier: MIT
// Nine processes each add 1 to a shared counter 1000 times, first under the
// counter's lock, then without it, which loses updates: the pitfall of
// `counter.value += 1` in "Shared ctypes Objects" of Python's docs.
#include <iostream>
#include <mutex>
#include <vector>

#include "mp/mp.hpp"

namespace {

constexpr int processes = 9;
constexpr int additions = 1000;

void add_locked(mp::shared_value<int> counter) {
  for (int i = 0; i < additions; ++i) {
    std::scoped_lock guard(counter.get_lock());  // Python: with counter.get_lock():
    *counter.get_obj() += 1;                     // get_obj(): no second locking
  }
}

// Python's `counter.value += 1`: get() and set() each take the lock, but
// another process may set in between, and then one of the two additions is
// lost. (Unlocked `*get_obj() += 1` would lose updates too, but as a data race
// it is undefined behaviour in C++, and the compiler may merge the 1000
// additions into one.)
void add_unlocked(mp::shared_value<int> counter) {
  for (int i = 0; i < additions; ++i) counter.set(counter.get() + 1);
}

// Runs `add` in nine processes on a new counter and returns the total.
int count_with(void (*add)(mp::shared_value<int>), bool& all_succeeded) {
  mp::shared_value<int> counter{0};  // Python: Value('i', 0)
  std::vector<mp::process> workers;
  for (int i = 0; i < processes; ++i) workers.emplace_back(add, counter);
  for (auto& w : workers) w.start();
  for (auto& w : workers) w.join();
  for (auto& w : workers)
    if (w.exitcode() != 0) all_succeeded = false;
  return counter.get();
}

}  // namespace

int main() {
  constexpr int expected = processes * additions;
  bool all_succeeded = true;

  const int locked = count_with(add_locked, all_succeeded);
  std::cout << "with the lock: " << locked << '\n';

  const int unlocked = count_with(add_unlocked, all_succeeded);
  // Lost updates are likely but not certain: the scheduler may never interleave.
  std::cout << "without it: " << unlocked << ", lost " << expected - unlocked << " updates\n";

  if (!all_succeeded || locked != expected || unlocked > expected) {
    std::cerr << "shared_counter: expected " << expected << " with the lock and at most "
              << expected << " without\n";
    return 1;
  }
}
