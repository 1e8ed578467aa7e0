// SPDX-License-Identifier: MIT
// imap_unordered yields results as they complete, so short tasks come back
// before long ones; imap keeps the input order (Python's pool.imap_unordered).
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include "mp/mp.hpp"

namespace {

int sleep_then_return(int milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  return milliseconds;
}

}  // namespace

int main() {
  mp::pool pool(3);
  // Wide gaps, so that a loaded machine still finishes them in this order.
  const std::vector<int> delays{900, 100, 500};
  std::cout << "imap_unordered:";
  for (int done : pool.imap_unordered(sleep_then_return, delays)) std::cout << ' ' << done;
  std::cout << "\nimap:";
  for (int done : pool.imap(sleep_then_return, delays)) std::cout << ' ' << done;
  std::cout << '\n';
}
