// SPDX-License-Identifier: MIT
// Five worker processes each count to a million and put their count on one
// mp::queue; the parent gets the five counts and adds them up (the "sum the
// workers' partial results through a Queue" scenario of Python's tutorials).
#include <cstdint>
#include <iostream>
#include <vector>

#include "mp/mp.hpp"

namespace {

constexpr int workers = 5;
constexpr std::int64_t limit = 1'000'000;

void count(mp::queue<std::int64_t> counts) {
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < limit; ++i) ++total;
  counts.put(total);
}

}  // namespace

int main() {
  mp::queue<std::int64_t> counts;  // Python: Queue()
  std::vector<mp::process> processes;
  for (int i = 0; i < workers; ++i) processes.emplace_back(count, counts);
  for (auto& p : processes) p.start();

  // One get() per worker, in whatever order they finish.
  std::int64_t total = 0;
  for (int i = 0; i < workers; ++i) total += counts.get();
  for (auto& p : processes) p.join();

  std::cout << workers << " workers counted " << total << " in all\n";
  for (auto& p : processes)
    if (p.exitcode() != 0) return 1;
  if (total != workers * limit) {
    std::cerr << "queue_partial_counts: expected " << workers * limit << '\n';
    return 1;
  }
}
