// SPDX-License-Identifier: MIT
// starmap spreads each tuple over the function's parameters (Python's
// pool.starmap(pow, [(2, 3), (3, 2), (10, 4)])).
#include <iostream>
#include <tuple>
#include <vector>

#include "mp/mp.hpp"

namespace {

long power(long base, int exponent) {
  long out = 1;
  for (int i = 0; i < exponent; ++i) out *= base;
  return out;
}

}  // namespace

int main() {
  mp::pool pool(2);
  const std::vector<std::tuple<long, int>> pairs{{2, 3}, {3, 2}, {10, 4}, {7, 0}};
  const std::vector<long> powers = pool.starmap(power, pairs);
  for (std::size_t i = 0; i < pairs.size(); ++i)
    std::cout << std::get<0>(pairs[i]) << '^' << std::get<1>(pairs[i]) << " = " << powers[i]
              << '\n';
}
