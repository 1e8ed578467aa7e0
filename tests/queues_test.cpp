// SPDX-License-Identifier: MIT
// Tests of mp::queue, mp::simple_queue and mp::joinable_queue (mp/queues.hpp):
// Python's semantics, many producers and consumers across processes, items from
// 1 byte to 256 MiB, and producers and consumers killed in the middle.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mp/connection.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "mp/serialization.hpp"  // std::map items
#include "mp/sharedctypes.hpp"
#include "mp/synchronize.hpp"
#include "mp/testing/testing.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// An item that can tell whether it arrived whole.
struct item {
  int producer = 0;
  std::uint64_t seq = 0;
  std::vector<std::uint8_t> payload;
  std::uint64_t sum = 0;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(producer, seq, payload, sum);
  }
};

std::uint64_t checksum(const item& i) {
  std::uint64_t h = 1469598103934665603ULL ^ i.seq ^ (static_cast<std::uint64_t>(i.producer) << 48);
  // Sampled, so that multi-MiB items stay cheap to check.
  const std::size_t step = std::max<std::size_t>(1, i.payload.size() / 4096);
  for (std::size_t k = 0; k < i.payload.size(); k += step)
    h = (h ^ i.payload[k]) * 1099511628211ULL;
  if (!i.payload.empty()) h ^= i.payload.back();
  return h ^ i.payload.size();
}

item make_item(int producer, std::uint64_t seq, std::size_t size) {
  item i;
  i.producer = producer;
  i.seq = seq;
  i.payload.resize(size);
  for (std::size_t k = 0; k < size; ++k)
    i.payload[k] = static_cast<std::uint8_t>(seq * 31 + k * 7 + static_cast<std::size_t>(producer));
  i.sum = checksum(i);
  return i;
}

bool whole(const item& i) {
  if (i.sum != checksum(i)) return false;
  for (std::size_t k = 0; k < i.payload.size(); ++k)
    if (i.payload[k] !=
        static_cast<std::uint8_t>(i.seq * 31 + k * 7 + static_cast<std::size_t>(i.producer)))
      return false;
  return true;
}

// ---- Python's semantics, in one process ------------------------------------

TEST(queue, a_queue_sent_over_a_connection_is_the_same_queue) {
  mp::queue<int> q;
  auto [ours, theirs] = mp::pipe();
  ours.send(q);  // its memfd travels beside the bytes
  auto received = theirs.recv<mp::queue<int>>();
  q.put(5);
  EXPECT_EQ(received.get(), 5);
  // A queue of another item type is refused, as is a message of another type.
  ours.send(q);
  EXPECT_THROW(static_cast<void>(theirs.recv<mp::queue<long>>()), mp::decode_error);
  ours.send(mp::lock());
  EXPECT_THROW(static_cast<void>(theirs.recv<mp::queue<int>>()), mp::decode_error);
}

TEST(queue, a_queue_received_many_times_is_mapped_once) {
  mp::queue<int> q;
  auto [ours, theirs] = mp::pipe();
  // One descriptor, named three times. (Few: decoding a vector default-constructs its
  // queues first, each a queue of its own until it is replaced, which TSan's address space
  // does not hold many of.)
  ours.send(std::vector<mp::queue<int>>(3, q));
  const long before = mp::testing::address_space_kib();
  auto received = theirs.recv<std::vector<mp::queue<int>>>();
  const long grown = mp::testing::address_space_kib() - before;
  // One queue's 64 GiB reservation, not three.
  EXPECT_LT(grown, 2L * 64 * 1024 * 1024);
  received.front().put(7);
  EXPECT_EQ(received.back().get(), 7);
  EXPECT_EQ(q.qsize(), 0U);
}

TEST(queue, is_fifo_and_counts_its_items) {
  mp::queue<std::string> q;
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.full());
  EXPECT_EQ(q.qsize(), 0U);
  for (int i = 0; i < 1000; ++i) q.put("item " + std::to_string(i));
  EXPECT_EQ(q.qsize(), 1000U);
  EXPECT_FALSE(q.empty());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(q.get(), "item " + std::to_string(i));
  EXPECT_TRUE(q.empty());
}

TEST(queue, carries_any_codec_type) {
  mp::queue<std::map<std::string, std::vector<double>>> maps;
  maps.put({{"a", {1.5, 2.5}}, {"b", {}}});
  EXPECT_EQ(maps.get(), (std::map<std::string, std::vector<double>>{{"a", {1.5, 2.5}}, {"b", {}}}));
  struct point {
    int x, y;
  };
  mp::queue<point> points;
  points.put({3, 4});
  const point p = points.get();
  EXPECT_EQ(p.x, 3);
  EXPECT_EQ(p.y, 4);
  mp::queue<std::uint8_t> bytes;  // a 1-byte item
  bytes.put(0xab);
  EXPECT_EQ(bytes.get(), 0xab);
}

TEST(queue, empty_is_raised_exactly_where_python_raises_it) {
  mp::queue<int> q;
  EXPECT_THROW(q.get_nowait(), mp::queue_empty);
  EXPECT_THROW(q.get(false), mp::queue_empty);
  EXPECT_THROW(q.get(20ms), mp::queue_empty);
  EXPECT_EQ(q.try_get(), std::nullopt);
  EXPECT_EQ(q.try_get(10ms), std::nullopt);
  // Non-blocking fails at once even with a timeout (Python ignores it too).
  const auto start = clock_type::now();
  EXPECT_THROW(q.get(false, 30s), mp::queue_empty);
  EXPECT_LT(clock_type::now() - start, 20s);
  q.put(7);
  EXPECT_EQ(q.try_get(), 7);
  q.put(8);
  EXPECT_EQ(q.get_nowait(), 8);
}

TEST(queue, full_is_raised_exactly_where_python_raises_it) {
  mp::queue<int> q(2);
  EXPECT_EQ(q.maxsize(), 2U);
  q.put(1);
  q.put_nowait(2);
  EXPECT_TRUE(q.full());
  EXPECT_THROW(q.put_nowait(3), mp::queue_full);
  EXPECT_THROW(q.put(3, 20ms), mp::queue_full);
  const auto start = clock_type::now();
  EXPECT_THROW(q.put(3, false, 30s), mp::queue_full);
  EXPECT_LT(clock_type::now() - start, 20s);
  EXPECT_EQ(q.get(), 1);
  q.put_nowait(3);
  EXPECT_EQ(q.get(), 2);
  EXPECT_EQ(q.get(), 3);
}

TEST(queue, close_stops_this_process_only) {
  mp::queue<int> q;
  EXPECT_THROW(q.join_thread(), mp::usage_error);
  q.put(1);
  mp::queue<int> other_process_view = q;
  mp::process reader([](mp::queue<int> in) { std::_Exit(in.get() == 1 && in.get() == 2 ? 0 : 1); },
                     q);
  reader.start();
  q.put(2);
  q.close();
  EXPECT_THROW(q.put(3), mp::usage_error);
  EXPECT_THROW(q.get(), mp::usage_error);
  EXPECT_THROW(other_process_view.put(3), mp::usage_error);  // copies here share the flag
  EXPECT_NO_THROW(q.join_thread());
  q.cancel_join_thread();
  reader.join();
  EXPECT_EQ(reader.exitcode(), 0);
}

TEST(queue, get_into_reuses_the_callers_memory) {
  mp::queue<std::vector<int>> q;
  q.put({1, 2, 3});
  q.put({4, 5});
  std::vector<int> out;
  out.reserve(100);
  const int* const memory = out.data();
  q.get_into(out);
  EXPECT_EQ(out, (std::vector<int>{1, 2, 3}));
  q.get_into(out);
  EXPECT_EQ(out, (std::vector<int>{4, 5}));
  EXPECT_EQ(out.data(), memory);
  EXPECT_THROW(q.get_into(out, 10ms), mp::queue_empty);
  mp::queue<std::map<int, std::string>> maps;  // through cereal
  maps.put({{1, "one"}});
  std::map<int, std::string> m{{7, "seven"}};
  maps.get_into(m);
  EXPECT_EQ(m, (std::map<int, std::string>{{1, "one"}}));
}

TEST(queue, a_moved_from_queue_says_so) {
  mp::queue<int> q;
  mp::queue<int> moved = std::move(q);
  EXPECT_THROW(q.put(1), mp::usage_error);  // NOLINT(bugprone-use-after-move)
  moved.put(1);
  EXPECT_EQ(moved.get(), 1);
}

struct picky {
  int value = 0;
  template <class Archive>
  void save(Archive& archive) const {
    archive(value);
  }
  template <class Archive>
  void load(Archive& archive) {
    archive(value);
    if (value < 0) throw mp::decode_error("negative values are refused");
  }
};

TEST(queue, an_item_that_cannot_be_decoded_is_consumed_with_an_error) {
  mp::queue<picky> q;
  q.put({-1});
  q.put({5});
  EXPECT_THROW(q.get(), mp::decode_error);
  EXPECT_EQ(q.get().value, 5);
}

TEST(queue, grows_without_a_consumer_and_gives_everything_back) {
  mp::queue<item> q;
  constexpr int count = 20000;
  for (int i = 0; i < count; ++i)
    q.put(make_item(0, static_cast<std::uint64_t>(i), static_cast<std::size_t>((i * 37) % 300)));
  EXPECT_EQ(q.qsize(), static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    const item got = q.get();
    ASSERT_EQ(got.seq, static_cast<std::uint64_t>(i));
    ASSERT_TRUE(whole(got));
  }
  EXPECT_TRUE(q.empty());
}

TEST(queue, maps_only_the_memory_it_uses_and_grows_for_large_items) {
  mp::detail::queue_core core(mp::type_fingerprint<std::string>, 0);
  EXPECT_LE(core.mapped_for_testing(), std::uint64_t{4} << 20);
  mp::queue<std::string> q;
  const std::string big(std::size_t{40} << 20, 'x');
  q.put(big);
  q.put("after");
  EXPECT_EQ(q.get(), big);
  EXPECT_EQ(q.get(), "after");
}

// Under `ulimit -v 8G`, a common limit for batch jobs and containers: queues
// map what they use, not a fixed 64 GiB each, so hundreds of them fit.
TEST(queue, hundreds_of_queues_work_under_a_virtual_memory_limit) {
  if (mp::testing::shadow_memory) GTEST_SKIP() << "a sanitizer's shadow memory exceeds the limit";
  mp::process child([] {
    const rlimit limit{std::uint64_t{8} << 30, std::uint64_t{8} << 30};
    if (::setrlimit(RLIMIT_AS, &limit) != 0) throw mp::system_exit{2};
    std::vector<mp::queue<std::string>> queues(300);
    for (std::size_t i = 0; i < queues.size(); ++i) queues[i].put(std::to_string(i));
    for (std::size_t i = 0; i < queues.size(); ++i)
      if (queues[i].get() != std::to_string(i)) throw mp::system_exit{3};
    // Growing past the first mapping within the limit.
    queues[0].put(std::string(std::size_t{64} << 20, 'y'));
    if (queues[0].get().size() != std::size_t{64} << 20) throw mp::system_exit{4};
  });
  child.start();
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

TEST(queue, threads_of_one_process_share_it) {
  mp::queue<std::uint64_t> q(64);
  std::atomic<std::uint64_t> total{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&] {
      for (std::uint64_t i = 1; i <= 5000; ++i) q.put(i);
    });
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) total += q.get();
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(total.load(), 3 * (5000ULL * 5001 / 2));
  EXPECT_TRUE(q.empty());
}

// ---- across processes ---------------------------------------------------------

TEST(queue, a_producer_may_exit_right_after_put_and_joining_it_never_deadlocks) {
  // Python's documented hang: joining a process that put large items on a
  // queue before they were consumed.
  mp::queue<item> q;
  mp::process producer(
      [](mp::queue<item> out) {
        for (int i = 0; i < 50; ++i) out.put(make_item(1, static_cast<std::uint64_t>(i), 1 << 20));
      },
      q);
  producer.start();
  producer.join();
  EXPECT_EQ(producer.exitcode(), 0);
  EXPECT_EQ(q.qsize(), 50U);
  for (int i = 0; i < 50; ++i) {
    const item got = q.get();
    EXPECT_EQ(got.seq, static_cast<std::uint64_t>(i));
    EXPECT_TRUE(whole(got));
  }
}

TEST(queue, many_producers_and_consumers_lose_and_duplicate_nothing) {
  constexpr int producers = 4, consumers = 3, per_producer = 3000;
  mp::queue<item> q(100);
  mp::queue<std::vector<std::uint64_t>> reports;  // per consumer: seq seen, per producer
  std::vector<mp::process> children;
  for (int p = 0; p < producers; ++p)
    children.emplace_back(
        [](mp::queue<item> out, int id) {
          for (int i = 0; i < per_producer; ++i)
            out.put(make_item(id, static_cast<std::uint64_t>(i),
                              static_cast<std::size_t>(i % 7 == 0 ? 70000 : i % 100)));
        },
        q, p);
  for (int c = 0; c < consumers; ++c)
    children.emplace_back(
        [](mp::queue<item> in, mp::queue<std::vector<std::uint64_t>> out) {
          std::vector<std::uint64_t> count(producers, 0), sum(producers, 0);
          std::vector<std::int64_t> last(producers, -1);
          bool ordered = true, intact = true;
          for (;;) {
            const item got = in.get();
            if (got.producer < 0) break;
            intact = intact && whole(got);
            const auto p = static_cast<std::size_t>(got.producer);
            // FIFO per producer, as seen by any one consumer.
            ordered = ordered && static_cast<std::int64_t>(got.seq) > last[p];
            last[p] = static_cast<std::int64_t>(got.seq);
            ++count[p];
            sum[p] += got.seq;
          }
          std::vector<std::uint64_t> report{ordered ? 1U : 0U, intact ? 1U : 0U};
          report.insert(report.end(), count.begin(), count.end());
          report.insert(report.end(), sum.begin(), sum.end());
          out.put(report);
        },
        q, reports);
  for (auto& child : children) child.start();
  for (int p = 0; p < producers; ++p) children[static_cast<std::size_t>(p)].join();
  for (int c = 0; c < consumers; ++c) q.put(item{-1, 0, {}, 0});
  std::vector<std::uint64_t> count(producers, 0), sum(producers, 0);
  for (int c = 0; c < consumers; ++c) {
    const auto report = reports.get(mp::testing::scaled(60s));
    EXPECT_EQ(report[0], 1U) << "a consumer saw a producer's items out of order";
    EXPECT_EQ(report[1], 1U) << "a consumer got a damaged item";
    for (std::size_t p = 0; p < producers; ++p) {
      count[p] += report[2 + p];
      sum[p] += report[2 + producers + p];
    }
  }
  for (auto& child : children) child.join();
  for (std::size_t p = 0; p < producers; ++p) {
    EXPECT_EQ(count[p], static_cast<std::uint64_t>(per_producer));
    EXPECT_EQ(sum[p], static_cast<std::uint64_t>(per_producer) * (per_producer - 1) / 2);
  }
  EXPECT_TRUE(q.empty());
}

TEST(queue, a_full_queue_blocks_its_producer_until_a_consumer_makes_room) {
  mp::queue<int> q(1);
  mp::queue<int> done;
  mp::process producer(
      [](mp::queue<int> out, mp::queue<int> finished) {
        for (int i = 0; i < 100; ++i) out.put(i);
        finished.put(1);
      },
      q, done);
  producer.start();
  for (int i = 0; i < 100; ++i) EXPECT_EQ(q.get(), i);
  EXPECT_EQ(done.get(mp::testing::scaled(30s)), 1);
  producer.join();
}

// Every byte of a small vector, one in 4093 and the last of a large one: a
// lost or misplaced page shows.
std::uint64_t fingerprint(const std::vector<std::uint8_t>& v) {
  std::uint64_t h = v.size();
  const std::size_t step = v.size() > 65536 ? 4093 : 1;
  for (std::size_t k = 0; k < v.size(); k += step) h = (h ^ v[k]) * 1099511628211ULL;
  return v.empty() ? h : h ^ v.back();
}

// The CPU time this process has used, user and system, in microseconds.
long cpu_time_us() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec * 1000000L + usage.ru_utime.tv_usec +
         usage.ru_stime.tv_sec * 1000000L + usage.ru_stime.tv_usec;
}

TEST(queue, a_blocked_consumer_and_producer_use_almost_no_cpu) {
  mp::queue<int> empty;
  mp::queue<int> full(1);
  full.put(0);
  mp::queue<long> report;
  mp::process waiter{[](mp::queue<int> in, mp::queue<int> out, mp::queue<long> cpu) {
                       // Only the CPU used from here on counts: a spawned child has
                       // spent some starting up.
                       const long before = cpu_time_us();
                       cpu.put(0);  // about to block
                       in.get();    // blocks until the parent puts
                       out.put(1);  // blocks until the parent gets
                       cpu.put(cpu_time_us() - before);
                     },
                     empty, full, report};
  waiter.start();
  EXPECT_EQ(report.get(), 0);
  std::this_thread::sleep_for(400ms);  // the waiter sleeps in get() meanwhile
  empty.put(1);
  std::this_thread::sleep_for(400ms);  // and then in put()
  EXPECT_EQ(full.get(), 0);
  const long cpu_us = report.get(mp::testing::scaled(30s));
  waiter.join();
  // Spinning would burn about 800 ms; a sleeper wakes every 100 ms to look.
  // The bound leaves room for a slow, loaded machine.
  EXPECT_LT(cpu_us, 150000) << "waiter used " << cpu_us << " us of CPU";
}

class item_sizes : public ::testing::TestWithParam<std::size_t> {};

TEST_P(item_sizes, cross_intact_between_processes) {
  const std::size_t size = GetParam();
  mp::queue<std::vector<std::uint8_t>> q;
  mp::queue<std::uint64_t> sums;
  mp::process consumer(
      [](mp::queue<std::vector<std::uint8_t>> in, mp::queue<std::uint64_t> out) {
        for (int round = 0; round < 2; ++round) out.put(fingerprint(in.get()));
      },
      q, sums);
  consumer.start();
  std::vector<std::uint8_t> v(size, 0x5a);
  for (std::size_t k = 0; k < size; k += 4093) v[k] = static_cast<std::uint8_t>(k * 13 + 1);
  v.back() = 0xee;
  const auto expected = fingerprint(v);
  q.put(v);
  q.put(v);
  EXPECT_EQ(sums.get(mp::testing::scaled(60s)), expected);
  EXPECT_EQ(sums.get(mp::testing::scaled(60s)), expected);
  consumer.join();
  EXPECT_EQ(consumer.exitcode(), 0);
}

INSTANTIATE_TEST_SUITE_P(queue, item_sizes,
                         ::testing::Values(std::size_t{1}, std::size_t{64} << 10,
                                           std::size_t{256} << 20));

// The bytes of memory the queue's memfd holds (there is one queue alive).
std::uint64_t queue_memory_bytes() {
  std::uint64_t total = 0;
  for (const int fd : mp::testing::open_fds()) {
    char target[256] = {};
    const std::string link = "/proc/self/fd/" + std::to_string(fd);
    const auto n = ::readlink(link.c_str(), target, sizeof target - 1);
    if (n <= 0 || std::string(target, static_cast<std::size_t>(n)).find("memfd:mp-queue") ==
                      std::string::npos)
      continue;
    struct stat st {};
    if (::fstat(fd, &st) == 0) total += static_cast<std::uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

TEST(queue, reuses_its_memory_for_a_stream_of_small_items) {
  // 200,000 records of 24 bytes pass through: 4.8 MB in all, while the queue
  // never holds more than one, so its segments must be reused.
  mp::queue<std::uint64_t> q;
  for (std::uint64_t i = 0; i < 200000; ++i) {
    q.put(i);
    ASSERT_EQ(q.get(), i);
  }
  EXPECT_LE(queue_memory_bytes(), std::uint64_t{2} << 20);
}

TEST(queue, a_stream_of_large_items_reuses_its_memory) {
  // 200 MiB pass through, one 20 MiB item at a time: the queue keeps a few
  // warm segments (32 MiB each) instead of growing.
  mp::queue<std::vector<std::uint8_t>> q;
  constexpr std::size_t mib = std::size_t{1} << 20;
  for (int i = 0; i < 10; ++i) {
    q.put(std::vector<std::uint8_t>(20 * mib, static_cast<std::uint8_t>(i)));
    const auto got = q.get();
    ASSERT_EQ(got.size(), 20 * mib);
    ASSERT_EQ(got[12345], static_cast<std::uint8_t>(i));
  }
  EXPECT_LE(queue_memory_bytes(), 100 * mib);
}

// ---- crashes --------------------------------------------------------------------

// A producer killed at a random moment inside a stream of puts: every item
// that arrives is whole, they arrive in order without gaps, and the queue goes
// on working for everybody else.
TEST(queue, a_producer_killed_mid_put_leaves_no_trace) {
  mp::queue<item> q;
  std::mt19937 random(12345);
  std::uint64_t expected_next = 0;
  for (int round = 0; round < 12; ++round) {
    // The seq after the last one whose put() returned in this round's producer.
    mp::raw_value<std::uint64_t> returned;
    returned.store(expected_next);
    mp::event putting;  // set when the producer's first put() has returned
    mp::process producer(
        [](mp::queue<item> out, std::uint64_t first, mp::raw_value<std::uint64_t> done,
           mp::event under_way) {
          for (std::uint64_t i = first;; ++i) {
            out.put(make_item(2, i, i % 5 == 0 ? (std::size_t{3} << 20) + i : i % 200));
            done.store(i + 1);
            if (i == first) under_way.set();
          }
        },
        q, expected_next, returned, putting);
    producer.start();
    // However long the child takes to start, kill it at a random moment of its
    // stream of puts.
    ASSERT_TRUE(putting.wait(mp::testing::scaled(60s))) << "round " << round;
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + random() % 40));
    producer.kill();
    producer.join();
    const std::uint64_t put_returned = returned.load();
    // Everything committed before the kill is there, whole and in order; what
    // was half written is gone. Seq numbers continue where they stopped.
    while (auto got = q.try_get()) {
      ASSERT_TRUE(whole(*got)) << "round " << round;
      ASSERT_EQ(got->seq, expected_next) << "round " << round;
      ++expected_next;
    }
    // Every put that returned arrived; of the one the kill interrupted, at most
    // its item, whole.
    EXPECT_GE(expected_next, put_returned) << "round " << round;
    EXPECT_LE(expected_next, put_returned + 1) << "round " << round;
    // Another producer carries on at once (repairing if the dead one held the lock).
    q.put(make_item(3, 0, 10));
    const item after = q.get(mp::testing::scaled(30s));
    EXPECT_EQ(after.producer, 3);
    EXPECT_TRUE(whole(after));
  }
  EXPECT_GT(expected_next, 0U);
  EXPECT_TRUE(q.empty());
}

// Consumers killed while taking items: nobody hangs, nothing arrives damaged or
// twice, and at most the one item a consumer had taken without reporting it yet
// is missing per kill.
TEST(queue, a_consumer_killed_mid_get_leaves_the_others_working) {
  constexpr std::uint64_t total = 3000;
  mp::queue<item> q;
  for (std::uint64_t i = 0; i < total; ++i)
    q.put(make_item(4, i, i % 9 == 0 ? (std::size_t{300} << 10) : i % 300));
  mp::raw_array<std::uint8_t> seen(total);  // 1 when some consumer reported it
  mp::raw_value<std::uint64_t> damaged;
  mp::raw_value<std::uint64_t> progress;  // items reported so far
  std::mt19937 random(777);
  int kills = 0;
  for (int round = 0; round < 15 && !q.empty(); ++round) {
    mp::process consumer(
        [](mp::queue<item> in, mp::raw_array<std::uint8_t> reported,
           mp::raw_value<std::uint64_t> bad, mp::raw_value<std::uint64_t> count) {
          for (;;) {
            const item got = in.get();
            if (!whole(got) || reported[got.seq] != 0) bad.fetch_add(1);
            reported[got.seq] = 1;
            count.fetch_add(1);
          }
        },
        q, seen, damaged, progress);
    // Kill it once it is under way (the first get after a kill may wait for
    // the dead holder's lock to be noticed), at a random moment.
    const std::uint64_t before = progress.load();
    consumer.start();
    const auto deadline = clock_type::now() + mp::testing::scaled(30s);
    while (progress.load() == before) {
      ASSERT_LT(clock_type::now(), deadline) << "the consumer never got an item";
      std::this_thread::sleep_for(100us);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 3000));
    consumer.kill();
    consumer.join();
    ++kills;
  }
  // The rest, here.
  while (auto got = q.try_get()) {
    ASSERT_TRUE(whole(*got));
    ASSERT_EQ(seen[got->seq], 0) << "item " << got->seq << " arrived twice";
    seen[got->seq] = 1;
  }
  EXPECT_EQ(damaged.load(), 0U);
  std::uint64_t missing = 0;
  for (std::uint64_t i = 0; i < total; ++i) missing += seen[i] == 0 ? 1U : 0U;
  EXPECT_LE(missing, static_cast<std::uint64_t>(kills));
  q.put(make_item(5, 1, 5));
  EXPECT_EQ(q.get().producer, 5);
}

// An item whose process dies inside the queue while encoding or decoding it:
// with `die` set, its save() exits halfway through the record; load() exits
// where dying_while_decoding is set (in the child only).
bool dying_while_decoding = false;
struct fatal_item {
  int value = 0;
  bool die = false;

  template <class Archive>
  void save(Archive& archive) const {
    archive(value);
    if (die) ::_exit(3);
    archive(die);
  }
  template <class Archive>
  void load(Archive& archive) {
    archive(value);
    if (dying_while_decoding && value != 0) ::_exit(3);
    archive(die);
  }
};

// The first producer holds its side's bias and puts without the lock; one that
// dies inside a put is found out by the next producer, who repairs and goes on.
TEST(queue, a_producer_dying_inside_a_put_without_the_lock_is_repaired_after) {
  mp::queue<fatal_item> q;
  mp::process producer(
      [](mp::queue<fatal_item> out) {
        out.put(fatal_item{1, false});  // the side's first entrant: it takes the bias
        out.put(fatal_item{2, false});
        out.put(fatal_item{3, true});  // dies inside
      },
      q);
  producer.start();
  producer.join();
  ASSERT_EQ(producer.exitcode(), 3);
  // Blocks forever (here: fails at the timeout) unless the dead owner is noticed.
  ASSERT_NO_THROW(q.put(fatal_item{4, false}, mp::testing::scaled(30s)));
  EXPECT_EQ(q.get(mp::testing::scaled(30s)).value, 1);
  EXPECT_EQ(q.get(mp::testing::scaled(30s)).value, 2);
  EXPECT_EQ(q.get(mp::testing::scaled(30s)).value, 4);
  EXPECT_TRUE(q.empty());
  // And the side works for everyone from then on.
  mp::process another([](mp::queue<fatal_item> out) { out.put(fatal_item{5, false}); }, q);
  another.start();
  EXPECT_EQ(q.get(mp::testing::scaled(30s)).value, 5);
  another.join();
  EXPECT_EQ(another.exitcode(), 0);
}

// The same on the consumers' side: the item the dead consumer was decoding is
// taken by the next consumer or lost, never damaged, and the rest follow.
TEST(queue, a_consumer_dying_inside_a_get_without_the_lock_is_repaired_after) {
  mp::queue<fatal_item> q;
  for (int i = 0; i <= 3; ++i) q.put(fatal_item{i, false});
  mp::process consumer(
      [](mp::queue<fatal_item> in) {
        dying_while_decoding = true;
        (void)in.get();  // item 0: the side's first entrant takes the bias
        (void)in.get();  // item 1: dies inside
      },
      q);
  consumer.start();
  consumer.join();
  ASSERT_EQ(consumer.exitcode(), 3);
  const fatal_item next = q.get(mp::testing::scaled(30s));
  ASSERT_TRUE(next.value == 1 || next.value == 2) << next.value;
  for (int expected = next.value + 1; expected <= 3; ++expected)
    EXPECT_EQ(q.get(mp::testing::scaled(30s)).value, expected);
  EXPECT_TRUE(q.empty());
}

// ---- SimpleQueue and JoinableQueue ----------------------------------------------

TEST(simple_queue, puts_and_gets_across_processes) {
  mp::simple_queue<std::string> q;
  EXPECT_TRUE(q.empty());
  mp::process child([](mp::simple_queue<std::string> both) { both.put("hello " + both.get()); }, q);
  child.start();
  q.put("child");
  child.join();
  EXPECT_EQ(q.get(), "hello child");
  q.close();
  EXPECT_THROW(q.put("x"), mp::usage_error);
}

TEST(joinable_queue, join_waits_until_every_item_is_done) {
  mp::joinable_queue<int> q;
  EXPECT_THROW(q.task_done(), mp::usage_error);
  EXPECT_TRUE(q.join(1ms));  // nothing put, nothing to wait for
  for (int i = 0; i < 20; ++i) q.put(i);
  EXPECT_FALSE(q.join(20ms));
  mp::raw_value<int> processed;
  mp::process worker(
      [](mp::joinable_queue<int> in, mp::raw_value<int> count) {
        for (int i = 0; i < 20; ++i) {
          in.get();
          std::this_thread::sleep_for(1ms);
          count.fetch_add(1);
          in.task_done();
        }
      },
      q, processed);
  worker.start();
  q.join();
  EXPECT_EQ(processed.load(), 20);
  EXPECT_THROW(q.task_done(), mp::usage_error);
  worker.join();
}

TEST(joinable_queue, task_done_may_come_before_get_as_in_python) {
  mp::joinable_queue<int> q;
  q.put(1);
  q.task_done();
  EXPECT_TRUE(q.join(1s));
  EXPECT_EQ(q.get(), 1);
}

// A damaged record that jumps into a segment no producer handed out, whose
// header claims a gigabyte: refused before anything of it is read or its
// pages are populated (a fuzzer once took 2 GiB that way).
TEST(queue, a_record_that_jumps_past_what_was_handed_out_is_damage) {
  using mp::detail::queue_core;
  using strings = std::vector<std::string>;
  queue_core queue(mp::type_fingerprint<strings>, 0);
  std::byte* memory = queue.memory_for_testing();
  constexpr std::uint64_t unit = queue_core::first_segment;
  const auto put = [&](std::uint64_t at, std::uint64_t value) {
    std::memcpy(memory + at, &value, sizeof value);
  };
  // A record's header: its stamp (record 1: 0x80000001) in the low half, its
  // size in the high half, or with the top bit set a jump to a segment by index.
  constexpr std::uint64_t first_stamp = 0x80000001;
  put(queue_core::first_record, (std::uint64_t{0x80000000 | 2} << 32) | first_stamp);  // a jump
  put(2 * unit, std::uint64_t{1} << 30);  // that segment's capacity: 1 GiB
  put(2 * unit + 64, (std::uint64_t{1} << 29 << 32) | first_stamp);  // a record of 512 MiB
  std::optional<strings> out;
  try {
    queue.get(&out, &mp::detail::decode_item<strings>, false, {});
    FAIL() << "a damaged queue gave an item";
  } catch (const mp::decode_error& e) {
    EXPECT_NE(std::string(e.what()).find("handed out"), std::string::npos) << e.what();
  }
}

// A queue whose memory has the layout of an older mp (16-byte record headers,
// "mp-queue" at its start) is refused by name, not misread.
TEST(queue, a_queue_of_an_older_layout_is_refused) {
  using mp::detail::queue_core;
  queue_core older(mp::type_fingerprint<int>, 0);
  constexpr std::uint64_t magic_before = 0x6d702d7175657565;  // "mp-queue"
  std::memcpy(older.memory_for_testing(), &magic_before, sizeof magic_before);
  try {
    (void)queue_core::received(mp::unique_fd(::dup(older.fd())), mp::type_fingerprint<int>);
    FAIL() << "a queue of an older layout was taken";
  } catch (const mp::decode_error& e) {
    EXPECT_NE(std::string(e.what()).find("older mp"), std::string::npos) << e.what();
  }
}

// An item of 2 GiB or more has its size in the word after its record's
// header (the header's own half has 31 bits): written and read whole.
TEST(queue, an_item_of_more_than_two_gibibytes_round_trips) {
  if (mp::testing::shadow_memory) GTEST_SKIP() << "sheer size: left to the release build";
  MP_ONE_RUN_ONLY("the start method does not touch a record's layout");
  constexpr std::size_t size = (std::size_t{1} << 31) + 8;
  mp::queue<std::vector<std::uint8_t>> q;
  {
    std::vector<std::uint8_t> big(size);
    for (std::size_t i = 0; i < size; i += 4096) big[i] = static_cast<std::uint8_t>(i >> 12);
    big.back() = 0xa5;
    q.put(big);
  }
  q.put({1, 2, 3});  // a short record behind it, in the same segment
  const auto got = q.get();
  ASSERT_EQ(got.size(), size);
  for (std::size_t i = 0; i < size; i += 4096)
    ASSERT_EQ(got[i], static_cast<std::uint8_t>(i >> 12)) << "at " << i;
  EXPECT_EQ(got.back(), 0xa5);
  EXPECT_EQ(q.get(), (std::vector<std::uint8_t>{1, 2, 3}));
}

// The same layout written by hand, small: a consumer reads the size from the
// word after the header, and refuses one that runs past the segment.
TEST(queue, a_long_record_takes_its_size_from_the_next_word) {
  using mp::detail::queue_core;
  constexpr std::uint64_t first_stamp = 0x80000001, long_size = 0x7fffffff;
  const auto write = [](std::byte* at, std::uint64_t value) {
    std::memcpy(at, &value, sizeof value);
  };
  {
    queue_core queue(mp::type_fingerprint<std::string>, 0);
    std::byte* record = queue.memory_for_testing() + queue_core::first_record;
    write(record, long_size << 32 | first_stamp);
    write(record + 8, 13);  // the item: a count of 5, then 5 bytes
    write(record + 16, 5);
    std::memcpy(record + 24, "hello", 5);
    std::optional<std::string> out;
    ASSERT_TRUE(queue.get(&out, &mp::detail::decode_item<std::string>, false, {}));
    EXPECT_EQ(out, "hello");
  }
  queue_core queue(mp::type_fingerprint<std::string>, 0);
  std::byte* record = queue.memory_for_testing() + queue_core::first_record;
  write(record, long_size << 32 | first_stamp);
  write(record + 8, std::uint64_t{1} << 40);
  std::optional<std::string> out;
  try {
    queue.get(&out, &mp::detail::decode_item<std::string>, false, {});
    FAIL() << "a damaged queue gave an item";
  } catch (const mp::decode_error& e) {
    EXPECT_NE(std::string(e.what()).find("runs past its segment"), std::string::npos) << e.what();
  }
}

}  // namespace
