// SPDX-License-Identifier: MIT
// Python habits in C++ (docs/python-idioms.md quotes this program): a worker that reads a
// queue until a None sentinel, items of mixed types, a task that may find nothing, and
// keyword arguments.
#include <iostream>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>

#include "mp/pool.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"

namespace {

// Python: a queue that holds numbers and strings, ended by None.
using job = std::variant<int, std::string>;

void worker(mp::queue<std::optional<job>> jobs, mp::queue<std::string> done) {
  while (std::optional<job> item = jobs.get()) {  // Python: while (item := q.get()) is not None
    std::visit(
        [&](const auto& value) {
          if constexpr (std::is_same_v<std::decay_t<decltype(value)>, int>)
            done.put("number " + std::to_string(value * value));
          else
            done.put("text " + value);
        },
        *item);
  }
}

// Python: a function that returns None when it finds nothing.
std::optional<int> first_divisor(int n) {
  for (int d = 2; d * d <= n; ++d)
    if (n % d == 0) return d;
  return std::nullopt;
}

}  // namespace

int main() {
  mp::queue<std::optional<job>> jobs;
  mp::queue<std::string> done;
  // Python: Process(target=worker, args=(jobs, done), name="worker", daemon=False)
  mp::process p({.name = "worker", .daemon = false}, worker, jobs, done);
  p.start();
  jobs.put(job{7});
  jobs.put(job{std::string("seven")});
  jobs.put(std::nullopt);  // Python: jobs.put(None)
  std::cout << done.get() << '\n' << done.get() << '\n';
  p.join();

  mp::pool pool(2);
  for (int n : {91, 97}) {
    const std::optional<int> d = pool.apply(first_divisor, n);
    std::cout << n << ": " << (d ? "divisible by " + std::to_string(*d) : std::string("prime"))
              << '\n';
  }
}
