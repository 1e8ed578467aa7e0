// SPDX-License-Identifier: MIT
// Where mp differs from Python: a worker that crashes fails only the task it
// ran. Python's Pool would wait forever for that task; mp's throws
// mp::worker_died for it, replaces the worker, and completes the others.
#include <cstdlib>
#include <iostream>
#include <vector>

#include "mp/mp.hpp"

namespace {

int risky(int x) {
  if (x == 3) std::abort();  // a crash in the middle of the work
  return x * 10;
}

}  // namespace

int main() {
  mp::pool pool(2);
  std::vector<mp::async_result<int>> results;
  for (int x = 0; x < 6; ++x) results.push_back(pool.apply_async(risky, x));
  int succeeded = 0;
  for (int x = 0; x < 6; ++x) {
    try {
      std::cout << "task " << x << ": " << results[static_cast<std::size_t>(x)].get() << '\n';
      ++succeeded;
    } catch (const mp::worker_died&) {
      std::cout << "task " << x << ": its worker died (mp::worker_died)\n";
    }
  }
  std::cout << succeeded << " of 6 tasks succeeded; the pool still has " << pool.processes()
            << " workers: " << pool.apply(risky, 4) << '\n';
}
