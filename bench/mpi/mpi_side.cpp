// SPDX-License-Identifier: MIT
// The mp side of the MPI side-by-side scenarios: mp::mpi::pool_executor on the
// ranks of an MPI job, beside mpi4py.futures' MPIPoolExecutor
// (bench/python/mpi_futures_*.py) and bare MPI messages (floor_pingpong.c).
// Run it as they run: `mpiexec -n 3 mp_mpi_side <mode> [rounds]`; rank 0 runs
// the scenario and prints one number, ranks 1 and 2 serve from the session.
//   submit     submit `rounds` tiny tasks (add_one on an int), then take every
//              result in order; millions of tasks per second, from the first
//              submit to the last result
//   roundtrip  submit(add_one, i).result(), one at a time; median round trip µs
//   map        map(add_one) over `rounds` ints in 8 chunks (chunksize rounds/8
//              rounded up: 125000 for a million), reading every result: a
//              warm-up map, then the median rate of five timed ones; millions of
//              items per second
// Each mode first runs rounds/10 (at least 1) untimed warm-up rounds (map: one
// warm-up map), which also bring the worker ranks into the executor.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include "mp/mpi.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::size_t map_chunks = 8;
constexpr int map_timed = 5;

double microseconds(clock_type::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Thrown to main, not std::exit or MPI_Abort: returning from main ends the session, which
// releases the worker ranks, so mpiexec ends with rank 0's status.
[[noreturn]] void fail(const char* what) {
  throw std::runtime_error(what);
}

// A plain function: a task names it by its code identity, the same on every rank.
int add_one(int x) {
  return x + 1;
}

double submit(mp::mpi::pool_executor& executor, std::size_t rounds, std::size_t warmup) {
  const auto run = [&](std::size_t count) {
    std::vector<mp::future<int>> pending;
    pending.reserve(count);
    for (std::size_t i = 0; i < count; ++i)
      pending.push_back(executor.submit(add_one, static_cast<int>(i)));
    for (std::size_t i = 0; i < count; ++i)
      if (pending[i].result() != static_cast<int>(i) + 1) fail("submit: wrong result");
  };
  run(warmup);
  const auto start = clock_type::now();
  run(rounds);
  return static_cast<double>(rounds) / microseconds(clock_type::now() - start);
}

double roundtrip(mp::mpi::pool_executor& executor, std::size_t rounds, std::size_t warmup) {
  std::vector<double> times;
  times.reserve(rounds);
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    const auto start = clock_type::now();
    const int r = executor.submit(add_one, static_cast<int>(i)).result();
    const auto end = clock_type::now();
    if (r != static_cast<int>(i) + 1) fail("roundtrip: wrong result");
    if (i >= warmup) times.push_back(microseconds(end - start));
  }
  return median(std::move(times));
}

double map(mp::mpi::pool_executor& executor, std::size_t rounds) {
  const std::size_t chunksize = (rounds + map_chunks - 1) / map_chunks;
  std::vector<int> input(rounds);
  for (std::size_t i = 0; i < rounds; ++i) input[i] = static_cast<int>(i);
  std::vector<double> rates;
  for (int i = 0; i <= map_timed; ++i) {
    const auto start = clock_type::now();
    std::size_t count = 0;
    for (const int r : executor.map(add_one, input, mp::timeout{}, chunksize)) {
      if (r != input[count] + 1) fail("map: wrong result");
      ++count;
    }
    const double elapsed_us = microseconds(clock_type::now() - start);
    if (count != rounds) fail("map: missing results");
    if (i > 0) rates.push_back(static_cast<double>(rounds) / elapsed_us);
  }
  return median(std::move(rates));
}

}  // namespace

int main(int argc, char** argv) {
  // First: on ranks other than 0 this serves rank 0's executor and exits the process when
  // rank 0's session ends, so nothing below runs there.
  mp::mpi::session mpi(argc, argv);
  const std::string_view mode = argc >= 2 ? argv[1] : "";
  const long parsed = argc == 3 ? std::strtol(argv[2], nullptr, 10) : 1000;
  if (argc < 2 || argc > 3 || (mode != "submit" && mode != "roundtrip" && mode != "map") ||
      parsed < 1 || parsed > 100'000'000) {
    std::fputs("usage: mpiexec -n 3 mp_mpi_side submit|roundtrip|map [rounds]  (rounds >= 1)\n",
               stderr);
    return 2;
  }
  const auto rounds = static_cast<std::size_t>(parsed);
  const std::size_t warmup = std::max<std::size_t>(rounds / 10, 1);
  try {
    mp::mpi::pool_executor executor;  // every other rank a worker
    double result = 0;
    if (mode == "submit")
      result = submit(executor, rounds, warmup);
    else if (mode == "roundtrip")
      result = roundtrip(executor, rounds, warmup);
    else
      result = map(executor, rounds);
    std::printf("%.6f\n", result);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp_mpi_side: %s\n", e.what());
    return 2;
  }
  return 0;
}
