// SPDX-License-Identifier: MIT
// Counting primes below two million in parallel with Pool.map over ranges,
// checked against a serial run (the "CPU-bound work on every core" scenario).
// The speedup depends on the machine; the counts must agree.
#include <chrono>
#include <cstdint>
#include <iostream>
#include <tuple>
#include <vector>

#include "mp/mp.hpp"

namespace {

constexpr std::int64_t limit = 2'000'000;
constexpr std::int64_t step = 50'000;

bool is_prime(std::int64_t n) {
  if (n < 2) return false;
  for (std::int64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

// Primes in [from, to).
std::int64_t count_range(std::tuple<std::int64_t, std::int64_t> range) {
  std::int64_t count = 0;
  for (std::int64_t n = std::get<0>(range); n < std::get<1>(range); ++n) count += is_prime(n);
  return count;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main() {
  std::vector<std::tuple<std::int64_t, std::int64_t>> ranges;
  for (std::int64_t from = 0; from < limit; from += step) ranges.emplace_back(from, from + step);

  auto start = std::chrono::steady_clock::now();
  std::int64_t serial = 0;
  for (const auto& range : ranges) serial += count_range(range);
  const double serial_seconds = seconds_since(start);

  mp::pool pool;  // one worker per usable CPU
  start = std::chrono::steady_clock::now();
  std::int64_t parallel = 0;
  for (std::int64_t c : pool.map(count_range, ranges, 1)) parallel += c;
  const double parallel_seconds = seconds_since(start);

  std::cout << "serial: " << serial << " primes below " << limit << '\n';
  std::cout << "pool:   " << parallel << " primes below " << limit << '\n';
  std::cout << "speedup on " << pool.processes()
            << " workers: " << serial_seconds / parallel_seconds << "x\n";
  return serial == parallel ? 0 : 1;
}
