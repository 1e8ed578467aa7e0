// SPDX-License-Identifier: MIT
// pool_prime_count.cpp on the ranks of an MPI job: `mpirun -n 3 ./mpi_prime_count`
// (or srun) counts primes below two million on ranks 1 and 2, which may be on
// other machines. Two lines differ from the local version: the session at the
// top of main, and the pool's type. The counts must agree.
#include <chrono>
#include <cstdint>
#include <iostream>
#include <tuple>
#include <vector>

#include "mp/mpi.hpp"

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

int main(int argc, char** argv) {
  mp::mpi::session mpi(argc, argv);  // ranks other than 0 serve the pool here
  std::vector<std::tuple<std::int64_t, std::int64_t>> ranges;
  for (std::int64_t from = 0; from < limit; from += step) ranges.emplace_back(from, from + step);

  auto start = std::chrono::steady_clock::now();
  std::int64_t serial = 0;
  for (const auto& range : ranges) serial += count_range(range);
  const double serial_seconds = seconds_since(start);

  mp::mpi::pool pool;  // every other rank of the job is a worker
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
