// SPDX-License-Identifier: MIT
// The mp side of the side-by-side scenarios; mirrors floor/floor.c mode by mode.
// Usage: mp_side <mode> [rounds]
//   spawn            mp::process start() + join() of a trivial target; median µs
//   forkserver-method  the same under the forkserver start method (the server
//                    starts in the warm-up rounds)
//   spawn-method     the same under the spawn start method: the child is a fresh
//                    run of mp_side, caught before main
//   noop             exits at once (what the floor's exec-side mode runs)
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
//   queue8           a child put()s std::uint64_t items into an mp::queue, the
//                    parent get()s them; millions of items per second (timed items)
//   queue4k          the same with std::vector<std::uint8_t> items of 4096 bytes
//   queue-mpmc       four producer and four consumer children on one
//                    mp::queue<std::uint64_t>; rounds = items in all; millions of
//                    items per second, all consumers together
//   queue-big        a child put()s one 64 MiB std::vector<std::uint8_t> again and
//                    again into an mp::queue of maxsize 2, the parent get_into()s each
//                    into one reused vector; GB/s
//   queue-rt         the parent puts into q1, a child gets and puts into q2, the
//                    parent gets; median round trip µs
//   pool-map         mp::pool of 2 workers, maps of x*x over `rounds` int64s (default
//                    chunksize): a warm-up map, then the median of five; millions
//                    of items per second
//   pool-map1        the same with chunksize 1
//   pool-apply       apply(f, x) round trips on a pool of 2; median µs
//   executor-submit  a process_pool_executor of 2: submit `rounds` tiny tasks, then
//                    wait for every result; millions of tasks per second
//   executor-rt      submit(f, x).result() round trips; median µs
//   pool-cpu         primes below `rounds` counted in 40 ranges, serially and with
//                    pool.map on one worker per CPU; the speedup (serial / pool time)
//   thread-map1      pool-map1 on an mp::thread_pool of 2
//   thread-apply     pool-apply on an mp::thread_pool of 2
//   thread-submit    apply_async of `rounds` tiny tasks on an mp::thread_pool of 2, then
//                    their results; millions of tasks per second
//   listener-connect mp::client to a listener in a child over TCP on loopback, with an
//                    authkey (the handshake), one 8-byte send_bytes/recv_bytes round trip,
//                    close; median µs of the whole
//   listener-rt      8-byte send_bytes/recv_bytes round trips on one such connection;
//                    median µs
//   manager-rt       a child holding the proxy of a dict<int, std::int64_t> of 1000 keys
//                    in an mp::manager calls d.get(k) (one request to the server each);
//                    median round trip µs, measured by the child
//   manager-batch    a child calls d.update() with 10,000 pairs (the same keys each time,
//                    new values) `rounds` times; millions of items per second over the
//                    timed calls, measured by the child
// Each mode first runs rounds/10 (at least 1) untimed warm-up rounds.
#include <sched.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/connection.hpp"
#include "mp/detail/shared_region.hpp"
#include "mp/executor.hpp"
#include "mp/listener.hpp"
#include "mp/managers.hpp"
#include "mp/pool.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "mp/serialization.hpp"  // std::map, which manager.dict() encodes
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

void do_nothing() {}

// start + join of a trivial target under `method`; median µs.
double spawn(std::size_t rounds, std::size_t warmup, mp::start_method method) {
  std::vector<double> times;
  times.reserve(rounds);
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    const auto start = clock_type::now();
    mp::process p(mp::process_options{.method = method}, do_nothing);
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

// ---- queues -----------------------------------------------------------------

constexpr std::size_t item_4k = 4096;
constexpr std::size_t big_item = std::size_t{64} << 20;
constexpr int mpmc_sides = 4;  // producers, and consumers

using item_bytes = std::vector<std::uint8_t>;

std::uint64_t sequence_of(const item_bytes& item) {
  std::uint64_t value = 0;
  std::memcpy(&value, item.data(), sizeof value);
  return value;
}

// queue8 (Item = std::uint64_t) and queue4k (4096-byte vectors, the first 8 bytes a sequence
// number): the child puts warmup + rounds items, the parent takes them and times the last
// `rounds`.
template <class Item>
double queue_rate(std::size_t rounds, std::size_t warmup) {
  mp::queue<Item> q;
  mp::process producer(
      [](mp::queue<Item> into, std::size_t count) {
        if constexpr (std::is_same_v<Item, std::uint64_t>) {
          for (std::uint64_t i = 0; i < count; ++i) into.put(i);
        } else {
          item_bytes item(item_4k, 'x');
          for (std::uint64_t i = 0; i < count; ++i) {
            std::memcpy(item.data(), &i, sizeof i);
            into.put(item);
          }
        }
      },
      q, warmup + rounds);
  producer.start();
  auto start = clock_type::now();
  for (std::uint64_t i = 0; i < warmup + rounds; ++i) {
    if (i == warmup) start = clock_type::now();
    const Item item = q.get();
    if constexpr (std::is_same_v<Item, std::uint64_t>) {
      if (item != i) fail("queue: items out of order");
    } else {
      if (item.size() != item_4k || sequence_of(item) != i) fail("queue: bad item");
    }
  }
  const double elapsed_us = microseconds(clock_type::now() - start);
  producer.join();
  check_exit(producer);
  return static_cast<double>(rounds) / elapsed_us;
}

// The start line of queue-mpmc, and what the consumers report.
struct alignas(64) mpmc_flags {
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
  alignas(64) std::array<std::atomic<std::int64_t>, mpmc_sides> end_ns{};
  std::array<std::atomic<std::uint64_t>, mpmc_sides> received{};
};

void wait_for_go(mpmc_flags& flags) {
  flags.ready.fetch_add(1, std::memory_order_acq_rel);
  while (flags.go.load(std::memory_order_acquire) == 0) ::sched_yield();
}

// Four producers each put rounds/4 (rounded up) items and then a stop item; four consumers
// each take items until they take a stop item (the last item of all is one, and each consumer
// takes exactly one). The clock runs from the start line to the last consumer's stop item.
double queue_mpmc(std::size_t rounds, std::size_t warmup) {
  mp::queue<std::uint64_t> q;
  for (std::uint64_t i = 0; i < warmup; ++i) {
    q.put(i);
    (void)q.get();
  }
  auto flags = mp::detail::shared_object<mpmc_flags>::make();
  const std::size_t per_producer = (rounds + mpmc_sides - 1) / mpmc_sides;
  std::vector<mp::process> children;
  children.reserve(2 * mpmc_sides);
  for (int c = 0; c < mpmc_sides; ++c) {
    children.emplace_back([q, flags, c]() mutable {
      wait_for_go(*flags);
      std::uint64_t count = 0;
      while (q.get() != stop) ++count;
      flags->end_ns[static_cast<std::size_t>(c)].store(now_ns(), std::memory_order_relaxed);
      flags->received[static_cast<std::size_t>(c)].store(count, std::memory_order_release);
    });
  }
  for (int p = 0; p < mpmc_sides; ++p) {
    children.emplace_back([q, flags, per_producer]() mutable {
      wait_for_go(*flags);
      for (std::uint64_t i = 0; i < per_producer; ++i) q.put(i);
      q.put(stop);
    });
  }
  for (auto& child : children) child.start();
  while (flags->ready.load(std::memory_order_acquire) < 2 * mpmc_sides) ::sched_yield();
  const std::int64_t start = now_ns();
  flags->go.store(1, std::memory_order_release);
  std::int64_t end = start;
  std::uint64_t total = 0;
  for (auto& child : children) {
    child.join();
    check_exit(child);
  }
  for (std::size_t c = 0; c < mpmc_sides; ++c) {
    end = std::max(end, flags->end_ns[c].load(std::memory_order_relaxed));
    total += flags->received[c].load(std::memory_order_acquire);
  }
  if (total != per_producer * mpmc_sides) fail("queue-mpmc: lost an item");
  return static_cast<double>(total) / static_cast<double>(end - start) * 1e3;
}

// A bounded queue, as Python's side is, so that the producer cannot run gigabytes ahead.
double queue_big(std::size_t rounds, std::size_t warmup) {
  mp::queue<item_bytes> q(2);
  mp::process producer(
      [](mp::queue<item_bytes> into, std::size_t count) {
        const item_bytes item(big_item, 'x');
        for (std::size_t i = 0; i < count; ++i) into.put(item);
      },
      q, warmup + rounds);
  producer.start();
  // Into one reused vector, as the floor copies into one buffer: get() would
  // add a fresh 64 MiB allocation per item, which is the caller's choice.
  item_bytes received;
  auto start = clock_type::now();
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    if (i == warmup) start = clock_type::now();
    q.get_into(received);
    if (received.size() != big_item) fail("queue-big: bad item size");
  }
  const double elapsed_us = microseconds(clock_type::now() - start);
  producer.join();
  check_exit(producer);
  return static_cast<double>(rounds * big_item) / elapsed_us / 1e3;
}

double queue_roundtrip(std::size_t rounds, std::size_t warmup) {
  mp::queue<std::uint64_t> there, back;
  mp::process echo(
      [](mp::queue<std::uint64_t> from, mp::queue<std::uint64_t> to, std::size_t count) {
        for (std::size_t i = 0; i < count; ++i) to.put(from.get());
      },
      there, back, warmup + rounds);
  echo.start();
  std::vector<double> times;
  times.reserve(rounds);
  for (std::uint64_t i = 0; i < warmup + rounds; ++i) {
    const auto start = clock_type::now();
    there.put(i);
    const std::uint64_t reply = back.get();
    const auto end = clock_type::now();
    if (reply != i) fail("queue-rt: bad reply");
    if (i >= warmup) times.push_back(microseconds(end - start));
  }
  echo.join();
  check_exit(echo);
  return median(std::move(times));
}

std::int64_t square(std::int64_t x) {
  return x * x;
}

std::vector<std::int64_t> iota_input(std::size_t count) {
  std::vector<std::int64_t> input(count);
  for (std::size_t i = 0; i < count; ++i) input[i] = static_cast<std::int64_t>(i);
  return input;
}

// Maps of x*x over `rounds` items on one pool: a warm-up map, then the median
// rate of five timed ones (a pool's steady state: its workers and the
// allocator's memory warm); items per µs.
template <class Pool = mp::pool>
double pool_map(std::size_t rounds, std::size_t chunksize) {
  Pool pool(2);
  const std::vector<std::int64_t> input = iota_input(rounds);
  std::vector<double> rates;
  for (int i = 0; i < 6; ++i) {
    const auto start = clock_type::now();
    const std::vector<std::int64_t> out = pool.map(square, input, chunksize);
    const double elapsed_us = microseconds(clock_type::now() - start);
    if (out.size() != rounds || out.back() != input.back() * input.back())
      fail("pool-map: wrong results");
    if (i > 0) rates.push_back(static_cast<double>(rounds) / elapsed_us);
  }
  return median(std::move(rates));
}

template <class Pool = mp::pool>
double pool_apply(std::size_t rounds, std::size_t warmup) {
  Pool pool(2);
  std::vector<double> times;
  times.reserve(rounds);
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    const auto start = clock_type::now();
    const std::int64_t r = pool.apply(square, static_cast<std::int64_t>(i));
    const auto end = clock_type::now();
    if (r != static_cast<std::int64_t>(i * i)) fail("pool-apply: wrong result");
    if (i >= warmup) times.push_back(microseconds(end - start));
  }
  return median(std::move(times));
}

// `rounds` tiny tasks given by `submit(i)` (a future or an async result), then
// their results, after `warmup` of them; millions of tasks per second.
template <class Submit, class Outcome>
double submit_rate(std::size_t rounds, std::size_t warmup, const char* wrong, Submit submit,
                   Outcome outcome) {
  const auto run = [&](std::size_t count) {
    std::vector<decltype(submit(std::int64_t{}))> pending;
    pending.reserve(count);
    for (std::size_t i = 0; i < count; ++i) pending.push_back(submit(static_cast<std::int64_t>(i)));
    for (std::size_t i = 0; i < count; ++i)
      if (outcome(pending[i]) != static_cast<std::int64_t>(i * i)) fail(wrong);
  };
  run(warmup);
  const auto start = clock_type::now();
  run(rounds);
  return static_cast<double>(rounds) / microseconds(clock_type::now() - start);
}

double executor_submit(std::size_t rounds, std::size_t warmup) {
  mp::process_pool_executor executor({.max_workers = 2});
  return submit_rate(
      rounds, warmup, "executor-submit: wrong result",
      [&](std::int64_t x) { return executor.submit(square, x); },
      [](const mp::future<std::int64_t>& f) { return f.result(); });
}

// thread-submit: through a thread pool's apply_async (Python's
// ThreadPoolExecutor.submit beside it).
double thread_submit(std::size_t rounds, std::size_t warmup) {
  mp::thread_pool pool(2);
  return submit_rate(
      rounds, warmup, "thread-submit: wrong result",
      [&](std::int64_t x) { return pool.apply_async(square, x); },
      [](const mp::async_result<std::int64_t>& r) { return r.get(); });
}

double executor_roundtrip(std::size_t rounds, std::size_t warmup) {
  mp::process_pool_executor executor({.max_workers = 2});
  std::vector<double> times;
  times.reserve(rounds);
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    const auto start = clock_type::now();
    const std::int64_t r = executor.submit(square, static_cast<std::int64_t>(i)).result();
    const auto end = clock_type::now();
    if (r != static_cast<std::int64_t>(i * i)) fail("executor-rt: wrong result");
    if (i >= warmup) times.push_back(microseconds(end - start));
  }
  return median(std::move(times));
}

bool is_prime(std::int64_t n) {
  if (n < 2) return false;
  for (std::int64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

std::int64_t count_primes(std::tuple<std::int64_t, std::int64_t> range) {
  std::int64_t count = 0;
  for (std::int64_t n = std::get<0>(range); n < std::get<1>(range); ++n) count += is_prime(n);
  return count;
}

// Serial time over pool time for counting the primes below `limit`.
double pool_cpu(std::size_t limit) {
  constexpr std::int64_t ranges_count = 40;
  const auto top = static_cast<std::int64_t>(limit);
  std::vector<std::tuple<std::int64_t, std::int64_t>> ranges;
  for (std::int64_t i = 0; i < ranges_count; ++i)
    ranges.emplace_back(top * i / ranges_count, top * (i + 1) / ranges_count);
  mp::pool pool(mp::cpu_count());
  pool.map(count_primes, ranges, 1);  // warm-up: workers started, pages touched
  auto start = clock_type::now();
  std::int64_t serial = 0;
  for (const auto& r : ranges) serial += count_primes(r);
  const double serial_us = microseconds(clock_type::now() - start);
  start = clock_type::now();
  std::int64_t parallel = 0;
  for (std::int64_t c : pool.map(count_primes, ranges, 1)) parallel += c;
  const double parallel_us = microseconds(clock_type::now() - start);
  if (serial != parallel) fail("pool-cpu: the counts differ");
  return serial_us / parallel_us;
}

// ---- listener and client --------------------------------------------------

const std::vector<std::byte> bench_key = mp::key("benchmark key");

// The server: a listener in a child, echoing 8-byte messages on each of
// `connections` clients in turn; it tells the parent its port through `out`.
void echo_listener(mp::connection out, std::size_t connections) {
  mp::listener server(mp::address("127.0.0.1", 0), {.authkey = bench_key});
  out.send(static_cast<int>(server.address().port()));
  for (std::size_t c = 0; c < connections; ++c) {
    mp::connection conn = server.accept();
    try {
      for (;;) {
        std::array<std::byte, 8> message{};
        conn.recv_bytes_into(message);
        conn.send_bytes(message);
      }
    } catch (const mp::eof_error&) {
    }
  }
}

// Times `rounds` (after `warmup`) round trips of the 8 bytes of their index
// through a listener in a child, over a new authenticated connection each
// round (`connect_each`: the round includes mp::client and the close) or one
// for them all. Median µs.
double listener_rounds(std::size_t rounds, std::size_t warmup, bool connect_each,
                       const char* name) {
  auto [port_in, port_out] = mp::pipe(false);
  mp::process server(echo_listener, std::move(port_out), connect_each ? warmup + rounds : 1);
  server.start();
  const mp::address at("127.0.0.1", port_in.recv<int>());
  mp::connection c;
  std::vector<double> times;
  times.reserve(rounds);
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    std::array<std::byte, 8> message{};
    std::memcpy(message.data(), &i, sizeof i);
    const auto start = clock_type::now();
    if (c.closed()) c = mp::client(at, {.authkey = bench_key});
    c.send_bytes(message);
    c.recv_bytes_into(message);
    if (connect_each) c.close();
    const auto end = clock_type::now();
    std::size_t reply = 0;
    std::memcpy(&reply, message.data(), sizeof reply);
    if (reply != i) fail(name);
    if (i >= warmup) times.push_back(microseconds(end - start));
  }
  c.close();
  server.join();
  check_exit(server);
  return median(std::move(times));
}

// ---- managers ---------------------------------------------------------------

constexpr int manager_keys = 1000;
constexpr std::size_t manager_batch = 10'000;
using bench_dict = mp::dict_proxy<int, std::int64_t>;

// The child of manager-rt: `warmup` then `rounds` d.get(k) round trips (the first
// opens the child's connection to the server); sends the median µs to the parent.
void manager_gets(bench_dict d, mp::connection out, std::size_t rounds, std::size_t warmup) {
  std::vector<double> times;
  times.reserve(rounds);
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    const int k = static_cast<int>(i % manager_keys);
    const auto start = clock_type::now();
    const std::optional<std::int64_t> value = d.get(k);
    const auto end = clock_type::now();
    if (value != std::int64_t{k} * k) fail("manager-rt: wrong value");
    if (i >= warmup) times.push_back(microseconds(end - start));
  }
  out.send(median(std::move(times)));
}

// The child of manager-batch: `warmup` then `rounds` d.update() calls of
// manager_batch pairs, keys 0..manager_batch-1 each time with the call's
// number as the value; sends the rate over the timed calls (items per µs).
void manager_updates(bench_dict d, mp::connection out, std::size_t rounds, std::size_t warmup) {
  std::vector<std::pair<int, std::int64_t>> items(manager_batch);
  auto start = clock_type::now();
  for (std::size_t i = 0; i < warmup + rounds; ++i) {
    if (i == warmup) start = clock_type::now();
    for (std::size_t k = 0; k < manager_batch; ++k)
      items[k] = {static_cast<int>(k), static_cast<std::int64_t>(i)};
    d.update(items);
  }
  const double elapsed_us = microseconds(clock_type::now() - start);
  const auto last = static_cast<std::int64_t>(warmup + rounds - 1);
  if (d.get(0) != last || d.get(static_cast<int>(manager_batch - 1)) != last ||
      d.size() != manager_batch)
    fail("manager-batch: wrong contents");
  out.send(static_cast<double>(rounds * manager_batch) / elapsed_us);
}

// A manager (its server a child of this process), a dict in it, and a child
// process given the dict's proxy that runs `body` and sends back its result.
template <class Body>
double manager_child(std::size_t rounds, std::size_t warmup, Body body) {
  mp::manager manager;
  std::map<int, std::int64_t> initial;
  for (int k = 0; k < manager_keys; ++k) initial.emplace(k, std::int64_t{k} * k);
  const bench_dict d = manager.dict(std::move(initial));
  auto [result_in, result_out] = mp::pipe(false);
  mp::process child(body, d, std::move(result_out), rounds, warmup);
  child.start();
  const auto result = result_in.recv<double>();
  child.join();
  check_exit(child);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string_view(argv[1]) == "noop") return 0;
  if (argc < 2 || argc > 3) {
    std::fputs(
        "usage: mp_side "
        "spawn|spawn-method|forkserver-method|noop|pingpong|throughput|throughput-into|lock|"
        "increments|event|queue8|"
        "queue4k|queue-mpmc|queue-big|queue-rt|pool-map|pool-map1|pool-apply|executor-submit|"
        "executor-rt|pool-cpu|thread-map1|thread-apply|thread-submit|listener-connect|"
        "listener-rt|manager-rt|manager-batch [rounds]\n",
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
      result = spawn(rounds, warmup, mp::start_method::fork);
    else if (mode == "spawn-method")
      result = spawn(rounds, warmup, mp::start_method::spawn);
    else if (mode == "forkserver-method")
      result = spawn(rounds, warmup, mp::start_method::forkserver);
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
    else if (mode == "queue8")
      result = queue_rate<std::uint64_t>(rounds, warmup);
    else if (mode == "queue4k")
      result = queue_rate<item_bytes>(rounds, warmup);
    else if (mode == "queue-mpmc")
      result = queue_mpmc(rounds, warmup);
    else if (mode == "queue-big")
      result = queue_big(rounds, warmup);
    else if (mode == "queue-rt")
      result = queue_roundtrip(rounds, warmup);
    else if (mode == "pool-map")
      result = pool_map(rounds, 0);
    else if (mode == "pool-map1")
      result = pool_map(rounds, 1);
    else if (mode == "pool-apply")
      result = pool_apply(rounds, warmup);
    else if (mode == "executor-submit")
      result = executor_submit(rounds, warmup);
    else if (mode == "executor-rt")
      result = executor_roundtrip(rounds, warmup);
    else if (mode == "pool-cpu")
      result = pool_cpu(rounds);
    else if (mode == "thread-map1")
      result = pool_map<mp::thread_pool>(rounds, 1);
    else if (mode == "thread-apply")
      result = pool_apply<mp::thread_pool>(rounds, warmup);
    else if (mode == "thread-submit")
      result = thread_submit(rounds, warmup);
    else if (mode == "listener-connect")
      result = listener_rounds(rounds, warmup, true, "listener-connect: bad reply");
    else if (mode == "listener-rt")
      result = listener_rounds(rounds, warmup, false, "listener-rt: bad reply");
    else if (mode == "manager-rt")
      result = manager_child(rounds, warmup, manager_gets);
    else if (mode == "manager-batch")
      result = manager_child(rounds, warmup, manager_updates);
    else
      fail("unknown mode");
    std::printf("%.3f\n", result);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp_side: %s\n", e.what());
    return 2;
  }
  return 0;
}
