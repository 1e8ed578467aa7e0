// SPDX-License-Identifier: MIT
// The yardstick of the compile-time benchmark: the README example's shape (start a worker
// with a value and a channel, receive one string, join) with std::thread and std::promise,
// including only <thread> and <future> beside what the README example includes.
#include <future>
#include <iostream>
#include <string>
#include <thread>
#include <utility>

void greet(std::promise<std::string> out, std::string name) {
  out.set_value("hello, " + name);
}

int main() {
  std::promise<std::string> promise;
  auto answer = promise.get_future();
  std::thread t{greet, std::move(promise), std::string{"world"}};
  std::cout << answer.get() << '\n';  // hello, world
  t.join();
  return 0;
}
