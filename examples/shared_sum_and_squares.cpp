// SPDX-License-Identifier: MIT
// A child process writes a shared double and squares a shared array of ints;
// the parent sees both: "Sharing state between processes" in Python's docs
// (which negates the elements instead of squaring them).
#include <cstddef>
#include <iomanip>
#include <iostream>
#include <ranges>

#include "mp/mp.hpp"

namespace {

void f(mp::shared_value<double> n, mp::shared_array<int> a) {
  n.set(3.1415927);  // Python: n.value = 3.1415927
  for (std::size_t i = 0; i < a.size(); ++i) {
    const int x = a.get(i);  // Python: a[i] = a[i] * a[i]; each access takes the lock
    a.set(i, x * x);
  }
}

}  // namespace

int main() {
  mp::shared_value<double> num{0.0};                   // Python: Value('d', 0.0)
  mp::shared_array<int> arr{std::views::iota(0, 10)};  // Python: Array('i', range(10))

  mp::process p{f, num, arr};  // the child gets handles to the same memory
  p.start();
  p.join();

  std::cout << std::setprecision(8) << num.get() << '\n';
  bool squares = true;
  std::cout << '[';
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const int x = arr.get(i);
    std::cout << (i == 0 ? "" : ", ") << x;
    const int n = static_cast<int>(i);
    if (x != n * n) squares = false;
  }
  std::cout << "]\n";

  if (p.exitcode() != 0 || num.get() != 3.1415927 || !squares) {
    std::cerr << "shared_sum_and_squares: the child's writes are missing\n";
    return 1;
  }
}
