// SPDX-License-Identifier: MIT
// Five workers each sum a slice of 1..n and send the partial sum through their own
// pipe; the parent takes them as they arrive with mp::wait, and checks the total.
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <utility>
#include <vector>

#include "mp/mp.hpp"

namespace {

// A trivially copyable struct travels through a pipe as it is.
struct partial_sum {
  std::uint64_t worker;
  std::uint64_t first;
  std::uint64_t last;
  std::uint64_t sum;
};

void sum_slice(mp::connection out, std::uint64_t worker, std::uint64_t first, std::uint64_t last) {
  std::uint64_t sum = 0;
  for (std::uint64_t i = first; i <= last; ++i) sum += i;
  out.send(partial_sum{worker, first, last, sum});
}

}  // namespace

int main() {
  constexpr std::uint64_t n = 10'000'000;
  constexpr std::uint64_t workers = 5;

  std::vector<mp::process> processes;
  std::vector<mp::connection> readers;
  for (std::uint64_t w = 0; w < workers; ++w) {
    auto [reader, writer] = mp::pipe(/*duplex=*/false);
    // The writer moves into the worker: once it has started, only the worker
    // holds it, so the reader sees EOF as soon as the worker ends.
    processes.emplace_back(sum_slice, std::move(writer), w, n * w / workers + 1,
                           n * (w + 1) / workers);
    processes.back().start();
    readers.push_back(std::move(reader));
  }

  // Python: while readers: for r in wait(readers): try r.recv() except EOFError: remove r
  std::vector<mp::connection*> pending;
  for (mp::connection& reader : readers) pending.push_back(&reader);
  std::uint64_t total = 0;
  std::uint64_t received = 0;
  while (!pending.empty()) {
    for (mp::connection* ready : mp::wait(pending)) {
      try {
        const auto part = ready->recv<partial_sum>();
        std::cout << "worker " << part.worker << ": " << part.first << " + ... + " << part.last
                  << " = " << part.sum << '\n';
        total += part.sum;
        ++received;
      } catch (const mp::eof_error&) {
        std::erase(pending, ready);  // that worker is done
      }
    }
  }
  for (mp::process& p : processes) p.join();

  const std::uint64_t expected = n * (n + 1) / 2;
  std::cout << "total: " << total << '\n';
  std::cout << "closed form n(n+1)/2: " << expected << '\n';
  const bool all_ok =
      std::ranges::all_of(processes, [](const mp::process& p) { return p.exitcode() == 0; });
  if (total != expected || received != workers || !all_ok) {
    std::cerr << "partial_sums: mismatch\n";
    return 1;
  }
}
