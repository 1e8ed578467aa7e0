// expect: starmap: the callable cannot be called with the members of an element
#include <mp/pool.hpp>
#include <tuple>
#include <vector>

long power(long base, int exponent) {
  return exponent == 0 ? 1 : base * power(base, exponent - 1);
}

int main() {
  mp::pool pool(2);
  std::vector<std::tuple<long, int, int>> pairs{{2, 10, 0}};
  auto powers = pool.starmap(power, pairs);
}
