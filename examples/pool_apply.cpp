// SPDX-License-Identifier: MIT
// apply, which waits for its result, and apply_async, which returns an
// async_result at once and can call back when the result arrives (Python's
// pool.apply(f, (x,)) and pool.apply_async(f, (x,), callback=...)).
#include <iostream>
#include <string>

#include "mp/mp.hpp"

namespace {

long cube(long x) {
  return x * x * x;
}

std::string shout(std::string word) {
  for (char& c : word) c = static_cast<char>(c - ('a' <= c && c <= 'z' ? 'a' - 'A' : 0));
  return word + "!";
}

}  // namespace

int main() {
  mp::pool pool(2);
  std::cout << "apply: cube(3) = " << pool.apply(cube, 3L) << '\n';

  auto pending = pool.apply_async(shout, std::string("hello"));  // returns at once
  std::cout << "apply_async: " << pending.get() << '\n';

  // The callback runs on the pool's own thread when the result arrives.
  auto with_callback = pool.apply_async(
      {.callback = [](const long& v) { std::cout << "callback got " << v << '\n'; }}, cube, 5L);
  with_callback.wait();
  std::cout << "ready: " << std::boolalpha << with_callback.ready()
            << ", successful: " << with_callback.successful() << '\n';
}
