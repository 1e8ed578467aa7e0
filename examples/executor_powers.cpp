// SPDX-License-Identifier: MIT
// ProcessPoolExecutor computing powers of two: submit returns futures,
// as_completed yields them as they finish, map keeps the input order
// (Python's concurrent.futures tutorial).
#include <algorithm>
#include <iostream>
#include <vector>

#include "mp/mp.hpp"

namespace {

long power_of_two(int n) {
  return 1L << n;
}

}  // namespace

int main() {
  mp::process_pool_executor executor(2);  // Python: ProcessPoolExecutor(max_workers=2)
  std::vector<mp::future<long>> futures;
  for (int n = 0; n < 8; ++n) futures.push_back(executor.submit(power_of_two, n));

  std::vector<long> completed;
  for (const auto& done : mp::as_completed(futures))
    completed.push_back(mp::future<long>(done).result());
  std::sort(completed.begin(), completed.end());
  std::cout << "as_completed, sorted:";
  for (long v : completed) std::cout << ' ' << v;

  const std::vector<int> exponents{10, 20, 30};
  std::cout << "\nmap:";
  for (long v : executor.map(power_of_two, exponents)) std::cout << ' ' << v;
  std::cout << '\n';
}
