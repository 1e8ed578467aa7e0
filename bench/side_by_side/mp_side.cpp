// SPDX-License-Identifier: MIT
// The mp side of the side-by-side scenarios; mirrors floor/floor.c mode by mode.
// Usage: mp_side <mode> [rounds]
//   spawn            mp::process start() + join() of a trivial target; median µs
//   pingpong         send<std::uint64_t> / recv<std::uint64_t> there and back
//                    with an echoing child over mp::pipe(); median round trip µs
//   throughput       the child send_bytes() 1 MiB messages, the parent
//                    recv_bytes() them; GB/s
//   throughput-into  as throughput, but the parent uses recv_bytes_into() into
//                    one reused buffer, as the floor does (no allocation per message)
// Each mode first runs rounds/10 (at least 1) untimed warm-up rounds.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

#include "mp/connection.hpp"
#include "mp/process.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::size_t message_size = std::size_t{1} << 20;
constexpr std::uint64_t stop = std::numeric_limits<std::uint64_t>::max();

double microseconds(clock_type::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "mp_side: %s\n", what);
  std::exit(2);
}

void check_exit(mp::process& p) {
  if (p.exitcode() != 0) fail("child failed");
}

double spawn(std::size_t rounds, std::size_t warmup) {
  std::vector<double> times;
  times.reserve(rounds);
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    const auto start = clock_type::now();
    mp::process p([] {});
    p.start();
    p.join();
    const auto end = clock_type::now();
    check_exit(p);
    if (i >= warmup) times.push_back(microseconds(end - start));
  }
  return median(std::move(times));
}

double pingpong(std::size_t rounds, std::size_t warmup) {
  auto [parent_end, child_end] = mp::pipe();
  mp::process echo(
      [](mp::connection c) {
        for (;;) {
          const auto value = c.recv<std::uint64_t>();
          if (value == stop) return;
          c.send(value);
        }
      },
      std::move(child_end));
  echo.start();
  std::vector<double> times;
  times.reserve(rounds);
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    const auto start = clock_type::now();
    parent_end.send(std::uint64_t{i});
    const auto reply = parent_end.recv<std::uint64_t>();
    const auto end = clock_type::now();
    if (reply != i) fail("pingpong: bad reply");
    if (i >= warmup) times.push_back(microseconds(end - start));
  }
  parent_end.send(stop);
  echo.join();
  check_exit(echo);
  return median(std::move(times));
}

double throughput(std::size_t rounds, std::size_t warmup, bool into) {
  auto [parent_end, child_end] = mp::pipe();
  mp::process writer(
      [](mp::connection c, std::size_t count) {
        const std::vector<std::byte> payload(message_size, std::byte{'x'});
        for (std::size_t i = 0; i < count; ++i) c.send_bytes(payload);
      },
      std::move(child_end), warmup + rounds);
  writer.start();
  std::vector<std::byte> buffer(into ? message_size : 0);
  auto start = clock_type::now();
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    if (i == warmup) start = clock_type::now();
    const std::size_t size =
        into ? parent_end.recv_bytes_into(buffer) : parent_end.recv_bytes().size();
    if (size != message_size) fail("throughput: bad message size");
  }
  const double elapsed_us = microseconds(clock_type::now() - start);
  writer.join();
  check_exit(writer);
  return static_cast<double>(rounds * message_size) / elapsed_us / 1e3;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fputs("usage: mp_side spawn|pingpong|throughput|throughput-into [rounds]\n", stderr);
    return 2;
  }
  const long parsed = argc == 3 ? std::strtol(argv[2], nullptr, 10) : 1000;
  if (parsed < 1) fail("rounds must be a positive number");
  const auto rounds = static_cast<std::size_t>(parsed);
  const std::size_t warmup = std::max<std::size_t>(rounds / 10, 1);
  const std::string_view mode = argv[1];
  try {
    double result = 0;
    if (mode == "spawn")
      result = spawn(rounds, warmup);
    else if (mode == "pingpong")
      result = pingpong(rounds, warmup);
    else if (mode == "throughput")
      result = throughput(rounds, warmup, false);
    else if (mode == "throughput-into")
      result = throughput(rounds, warmup, true);
    else
      fail("unknown mode");
    std::printf("%.3f\n", result);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp_side: %s\n", e.what());
    return 2;
  }
  return 0;
}
