// SPDX-License-Identifier: MIT
// A semaphore of 2 lets at most two of three processes use a pretend database
// at once, as the BoundedSemaphore "database connections" example of Python's
// threading docs; shared atomic counters record how many were inside.
#include <chrono>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include "mp/mp.hpp"

namespace {

constexpr unsigned max_connections = 2;
constexpr int users = 3;

void use_database(mp::bounded_semaphore connections, mp::raw_value<int> inside,
                  mp::raw_value<int> most_inside) {
  std::scoped_lock guard(connections);  // Python: with pool_sema:
  const int now = inside.fetch_add(1) + 1;
  // Raise most_inside to `now` unless another process raised it higher.
  int most = most_inside.load();
  while (most < now && !most_inside.compare_exchange_weak(most, now)) {
  }
  std::this_thread::sleep_for(std::chrono::milliseconds{20});  // the "query"
  inside.fetch_sub(1);
}

}  // namespace

int main() {
  mp::bounded_semaphore connections{max_connections};  // Python: BoundedSemaphore(2)
  mp::raw_value<int> inside{0};                        // Python: RawValue('i', 0)
  mp::raw_value<int> most_inside{0};

  std::vector<mp::process> processes;
  for (int i = 0; i < users; ++i)
    processes.emplace_back(use_database, connections, inside, most_inside);
  for (auto& p : processes) p.start();
  for (auto& p : processes) p.join();

  bool all_succeeded = true;
  for (auto& p : processes)
    if (p.exitcode() != 0) all_succeeded = false;

  std::cout << users << " processes used the database\n";
  if (!all_succeeded || most_inside.get() < 1 ||
      most_inside.get() > static_cast<int>(max_connections) || inside.get() != 0) {
    std::cerr << "semaphore_database: " << most_inside.get() << " were inside at once\n";
    return 1;
  }
  std::cout << "at most " << max_connections << " inside at once\n";
}
