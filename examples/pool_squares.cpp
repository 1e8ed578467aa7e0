// SPDX-License-Identifier: MIT
// Squares with Pool.map on four workers (the first example of Python's
// multiprocessing documentation: `with Pool(4) as p: print(p.map(f, range(10)))`).
#include <iostream>
#include <numeric>
#include <vector>

#include "mp/mp.hpp"

namespace {

int square(int x) {
  return x * x;
}

}  // namespace

int main() {
  mp::pool pool(4);  // Python: Pool(4)
  std::vector<int> numbers(10);
  std::iota(numbers.begin(), numbers.end(), 0);
  const std::vector<int> squares = pool.map(square, numbers);
  std::cout << "squares:";
  for (int s : squares) std::cout << ' ' << s;
  std::cout << '\n';
}
