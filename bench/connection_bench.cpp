// SPDX-License-Identifier: MIT
// Micro-benchmarks of mp::connection between two processes: the round trip of
// a small value through an echoing child, and one-way 1 MiB messages.
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "mp/connection.hpp"
#include "mp/process.hpp"

namespace {

constexpr std::size_t mebibyte = std::size_t{1} << 20;

void BM_pipe_round_trip_int(benchmark::State& state) {
  auto [parent_end, child_end] = mp::pipe();
  mp::process echo(
      [](mp::connection c) {
        for (int value = c.recv<int>(); value >= 0; value = c.recv<int>()) c.send(value);
      },
      std::move(child_end));
  echo.start();
  int i = 0;
  for (auto _ : state) {
    parent_end.send(i);
    if (parent_end.recv<int>() != i) state.SkipWithError("bad reply");
    i = (i + 1) & 0xffff;
  }
  parent_end.send(-1);
  echo.join();
}
BENCHMARK(BM_pipe_round_trip_int)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The parent sends, a child receives; an empty message ends the stream and the
// child's reply says it read everything. The timed loop ends when the last
// send returns, at most a socket buffer (well under one message) early.
void BM_send_bytes_1MiB(benchmark::State& state) {
  auto [parent_end, child_end] = mp::pipe();
  mp::process reader(
      [](mp::connection c) {
        std::size_t total = 0;
        for (auto message = c.recv_bytes(); !message.empty(); message = c.recv_bytes())
          total += message.size();
        c.send(total);
      },
      std::move(child_end));
  reader.start();
  const std::vector<std::byte> payload(mebibyte, std::byte{'x'});
  for (auto _ : state) parent_end.send_bytes(payload);
  parent_end.send_bytes(std::span<const std::byte>{});
  const auto received = parent_end.recv<std::size_t>();
  reader.join();
  const auto sent = static_cast<std::size_t>(state.iterations()) * mebibyte;
  if (received != sent) state.SkipWithError("the reader lost bytes");
  state.SetBytesProcessed(static_cast<std::int64_t>(sent));
}
BENCHMARK(BM_send_bytes_1MiB)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
