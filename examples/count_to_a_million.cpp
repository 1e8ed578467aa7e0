// SPDX-License-Identifier: MIT
// A worker process counts to a million and sends the total back through a pipe,
// as in "Exchanging objects between processes" in Python's docs.
#include <cstdint>
#include <iostream>
#include <utility>

#include "mp/mp.hpp"

namespace {

void count(mp::connection out, std::int64_t limit) {
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < limit; ++i) ++total;
  out.send(total);
}

}  // namespace

int main() {
  constexpr std::int64_t limit = 1'000'000;

  auto [parent_end, child_end] = mp::pipe();  // Python: parent_conn, child_conn = Pipe()
  mp::process worker{count, std::move(child_end), limit};
  worker.start();
  const auto total = parent_end.recv<std::int64_t>();  // blocks until the worker sends
  worker.join();

  std::cout << "the worker counted to " << total << '\n';
  if (total != limit || worker.exitcode() != 0) {
    std::cerr << "count_to_a_million: expected " << limit << '\n';
    return 1;
  }
}
