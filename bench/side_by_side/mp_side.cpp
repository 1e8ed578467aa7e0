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
//   lock             uncontended mp::lock lock() + unlock() in one process; rounds
//                    are batches of 1000 pairs; median ns per pair
//   increments       the parent and a child each add 1 to one shared counter (a
//                    long in shared memory) `rounds` times under one mp::lock,
//                    each on its own CPU; total timed increments per second, millions
//   event            ping-pong over two mp::events with a child: the parent sets
//                    e1 and waits for e2, the child waits for e1, clears it and
//                    sets e2; median round trip µs
// Each mode first runs rounds/10 (at least 1) untimed warm-up rounds.
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "mp/connection.hpp"
#include "mp/detail/shared_region.hpp"
#include "mp/process.hpp"
#include "mp/synchronize.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::size_t message_size = std::size_t{1} << 20;
constexpr int lock_batch = 1000;
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

double lock(std::size_t rounds, std::size_t warmup) {
  mp::lock lock;
  std::vector<double> times;
  times.reserve(rounds);
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    const auto start = clock_type::now();
    for (int j = 0; j < lock_batch; ++j) {
      lock.lock();
      lock.unlock();
    }
    const auto end = clock_type::now();
    if (i >= warmup)
      times.push_back(std::chrono::duration<double, std::nano>(end - start).count() / lock_batch);
  }
  return median(std::move(times));
}

// The start line of the increments scenario, on a cache line of its own.
struct alignas(64) start_flags {
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
  std::atomic<std::int64_t> child_end_ns{0};
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
      .count();
}

// The two lowest CPUs this process may use; nothing if it has only one.
std::optional<std::pair<std::size_t, std::size_t>> two_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) fail("sched_getaffinity");
  std::vector<std::size_t> cpus;
  for (std::size_t cpu = 0; cpu < CPU_SETSIZE && cpus.size() < 2; ++cpu)
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  if (cpus.size() < 2) return std::nullopt;
  return std::pair{cpus[0], cpus[1]};
}

void pin(std::size_t cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) fail("sched_setaffinity");
}

void add(mp::lock& lock, long& counter, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    lock.lock();
    ++counter;
    lock.unlock();
  }
}

double increments(std::size_t rounds, std::size_t warmup) {
  mp::lock lock;
  auto counter = mp::detail::shared_object<long>::make(0L);
  auto start_line = mp::detail::shared_object<start_flags>::make();
  // Each process on its own CPU, so that they contend (left alone, the scheduler often keeps
  // the child on its parent's CPU for the whole run, and the increments run one after another).
  const auto cpus = two_cpus();
  mp::process child([=]() mutable {
    if (cpus) pin(cpus->second);
    add(lock, *counter, warmup);
    start_line->ready.store(1, std::memory_order_release);
    while (start_line->go.load(std::memory_order_acquire) == 0) ::sched_yield();
    add(lock, *counter, rounds);
    start_line->child_end_ns.store(now_ns(), std::memory_order_release);
  });
  child.start();
  if (cpus) pin(cpus->first);
  add(lock, *counter, warmup);
  while (start_line->ready.load(std::memory_order_acquire) == 0) ::sched_yield();
  const std::int64_t start = now_ns();
  start_line->go.store(1, std::memory_order_release);
  add(lock, *counter, rounds);
  std::int64_t end = now_ns();
  child.join();
  check_exit(child);
  end = std::max(end, start_line->child_end_ns.load(std::memory_order_acquire));
  if (*counter != static_cast<long>(2 * (warmup + rounds))) fail("increments: lost an increment");
  return 2.0 * static_cast<double>(rounds) / static_cast<double>(end - start) * 1e3;
}

double event(std::size_t rounds, std::size_t warmup) {
  mp::event e1, e2;
  mp::process responder([=]() mutable {
    for (std::size_t i = 0; i < warmup + rounds; ++i) {
      if (!e1.wait()) fail("event: wait returned false");
      e1.clear();
      e2.set();
    }
  });
  responder.start();
  std::vector<double> times;
  times.reserve(rounds);
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    const auto start = clock_type::now();
    e1.set();
    if (!e2.wait()) fail("event: wait returned false");
    e2.clear();
    const auto end = clock_type::now();
    if (i >= warmup) times.push_back(microseconds(end - start));
  }
  responder.join();
  check_exit(responder);
  return median(std::move(times));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fputs(
        "usage: mp_side spawn|pingpong|throughput|throughput-into|lock|increments|event "
        "[rounds]\n",
        stderr);
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
    else if (mode == "lock")
      result = lock(rounds, warmup);
    else if (mode == "increments")
      result = increments(rounds, warmup);
    else if (mode == "event")
      result = event(rounds, warmup);
    else
      fail("unknown mode");
    std::printf("%.3f\n", result);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp_side: %s\n", e.what());
    return 2;
  }
  return 0;
}
