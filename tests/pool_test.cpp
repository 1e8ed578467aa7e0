// SPDX-License-Identifier: MIT
// Tests of mp::pool (mp/pool.hpp): Python's Pool semantics, and workers that
// die in the middle of a task.
#include <cxxabi.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include "mp/connection.hpp"
#include "mp/context.hpp"
#include "mp/executor.hpp"
#include "mp/pool.hpp"
#include "mp/queues.hpp"
#include "mp/shared_memory.hpp"
#include "mp/sharedctypes.hpp"
#include "mp/synchronize.hpp"
#include "mp/testing/testing.hpp"

namespace {

using namespace std::chrono_literals;

int square(int x) {
  return x * x;
}

long square_long(long x) {
  return x * x;
}

long power(long base, int exponent) {
  long out = 1;
  for (int i = 0; i < exponent; ++i) out *= base;
  return out;
}

// A result whose length runs all over the place: 0 to 5,000 bytes, and 2 MiB
// every 97th.
std::string sized_text(int i) {
  const auto size =
      static_cast<std::size_t>(i) * 7919 % 5000 + (i % 97 == 0 ? std::size_t{2} << 20 : 0);
  return std::string(size, static_cast<char>('a' + i % 26));
}

std::string greet(std::string name) {
  return "hello " + name;
}

// The bytes of `text` and a checksum of them, to show a large argument arrived whole.
std::size_t weigh(const std::string& text) {
  std::size_t sum = text.size();
  for (const char c : text) sum = sum * 31 + static_cast<unsigned char>(c);
  return sum;
}

int fails_on_three(int x) {
  if (x == 3) throw std::invalid_argument("three is not allowed");
  return x;
}

struct custom_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int throws_custom(int) {
  throw custom_error("custom");
}

// Dies the way `how` says when x is 7.
int dies_on_seven(int x, int how) {
  if (x == 7) {
    if (how == 0) ::raise(SIGKILL);
    if (how == 1) std::_Exit(3);
    if (how == 2) std::abort();
  }
  return x;
}

int slow_identity(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(x));
  return x;
}

void nothing(int) {}

// An initializer that makes a worker slow to start, as a spawned worker is
// under a sanitizer on a loaded machine.
void sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// Expects `r` to fail because its task ran past its own timeout: not a wait
// for it that gave up (get(timeout) throws mp::timeout_error too).
template <class R>
void expect_task_timed_out(mp::async_result<R>& r) {
  ASSERT_TRUE(r.wait(mp::testing::scaled(30s))) << "the task neither finished nor failed";
  try {
    r.get();
    ADD_FAILURE() << "the task past its timeout succeeded";
  } catch (const mp::timeout_error& e) {
    EXPECT_NE(std::string(e.what()).find("past its timeout"), std::string::npos) << e.what();
  }
}

// Moves the calling thread to `cpu`, its affinity mask narrowed for a moment
// and then restored; false if it could not.
bool go_to(int cpu) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  cpu_set_t only;
  CPU_ZERO(&only);
  CPU_SET(static_cast<std::size_t>(cpu), &only);
  return ::sched_getaffinity(0, sizeof mask, &mask) == 0 &&
         ::sched_setaffinity(0, sizeof only, &only) == 0 &&
         ::sched_setaffinity(0, sizeof mask, &mask) == 0;
}

// Task `i` of two running at once, each on a worker that go_to() put on the
// same CPU: spins until the two run on different CPUs or 30 s pass. True if
// they parted (the pool parts them; the scheduler of a busy machine may take
// long) and this thread's mask is again `allowed`, its CPUs, as it was (the
// pool narrows it for a moment to move it).
bool part_from_the_other(mp::shared_array<int> where, std::size_t i, std::vector<int> allowed) {
  cpu_set_t before;
  CPU_ZERO(&before);
  for (const int cpu : allowed) CPU_SET(static_cast<std::size_t>(cpu), &before);
  const auto until = std::chrono::steady_clock::now() + mp::testing::scaled(30s);
  bool parted = false;
  while (!parted && std::chrono::steady_clock::now() < until) {
    const int here = ::sched_getcpu();
    where.atomic(i).store(here);
    const int other = where.atomic(1 - i).load();
    parted = other >= 0 && other != here;
  }
  for (;;) {
    cpu_set_t after;
    CPU_ZERO(&after);
    if (::sched_getaffinity(0, sizeof after, &after) != 0) return false;
    if (CPU_EQUAL(&after, &before)) return parted;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(1ms);
  }
}

// The tests that hold for every kind of worker run over each: worker
// processes (under the suite's start method) and worker threads.
template <class Pool>
class any_pool : public ::testing::Test {};
struct pool_kind_names {
  template <class Pool>
  static std::string GetName(int) {
    return std::is_same_v<Pool, mp::thread_pool> ? "threads" : "processes";
  }
};
using pool_kinds = ::testing::Types<mp::pool, mp::thread_pool>;
TYPED_TEST_SUITE(any_pool, pool_kinds, pool_kind_names);

TYPED_TEST(any_pool, apply_and_apply_async_return_results) {
  TypeParam p(2);
  EXPECT_EQ(p.processes(), 2U);
  EXPECT_EQ(p.apply(square, 7), 49);
  EXPECT_EQ(p.apply(greet, std::string("pool")), "hello pool");
  auto r = p.apply_async(power, 2L, 10);
  EXPECT_EQ(r.get(), 1024);
  EXPECT_TRUE(r.ready());
  EXPECT_TRUE(r.successful());
  auto lambda = p.apply_async([](int a, int b) { return a + b; }, 20, 22);
  EXPECT_EQ(lambda.get(5s), 42);
  p.apply(nothing, 1);
}

TYPED_TEST(any_pool, apply_async_runs_its_callbacks) {
  TypeParam p(2);
  std::atomic<int> seen{0};
  std::atomic<int> errors{0};
  auto ok = p.apply_async({.callback = [&](const int& v) { seen = v; }}, square, 5);
  auto bad =
      p.apply_async({.error_callback = [&](std::exception_ptr) { ++errors; }}, fails_on_three, 3);
  ok.wait();
  bad.wait();
  EXPECT_EQ(seen.load(), 25);
  EXPECT_EQ(errors.load(), 1);
  EXPECT_FALSE(bad.successful());
}

TYPED_TEST(any_pool, map_and_starmap_keep_input_order) {
  TypeParam p(2);
  std::vector<int> input(1000);
  std::iota(input.begin(), input.end(), 0);
  const auto squares = p.map(square, input);
  ASSERT_EQ(squares.size(), 1000U);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(squares[static_cast<std::size_t>(i)], i * i);
  EXPECT_EQ(p.map(square, input, 1).size(), 1000U);
  EXPECT_TRUE(p.map(square, std::vector<int>{}).empty());
  const std::vector<std::tuple<long, int>> pairs{{2, 3}, {3, 2}, {10, 4}};
  EXPECT_EQ(p.starmap(power, pairs), (std::vector<long>{8, 9, 10000}));
}

TYPED_TEST(any_pool, results_of_every_size_keep_their_own_bytes) {
  // A worker writes each result into a buffer a spent one left (on threads
  // they go round between the pool's thread and the workers): a short result
  // after a long one, and a long one after short ones, are each themselves.
  TypeParam p(2);
  std::vector<int> input(400);
  std::iota(input.begin(), input.end(), 0);
  for (int round = 0; round < 2; ++round) {
    const auto texts = p.map(sized_text, input, 1);
    ASSERT_EQ(texts.size(), input.size());
    for (const int i : input)
      EXPECT_TRUE(texts[static_cast<std::size_t>(i)] == sized_text(i)) << "result " << i;
  }
  EXPECT_TRUE(p.apply(sized_text, 194) == sized_text(194));
  EXPECT_TRUE(p.apply(sized_text, 3) == sized_text(3));
}

TYPED_TEST(any_pool, map_takes_any_input_range_and_any_result_type) {
  TypeParam p(2);
  const std::list<int> listed{3, 1, 2};  // not contiguous: goes through a vector
  EXPECT_EQ(p.map(square, listed), (std::vector<int>{9, 1, 4}));
  const std::vector<std::string> names{"ann", "bob"};  // results that are not memcpy-able
  EXPECT_EQ(p.map(greet, names, 1), (std::vector<std::string>{"hello ann", "hello bob"}));
  EXPECT_EQ(p.map(square, std::views::iota(0, 5)), (std::vector<int>{0, 1, 4, 9, 16}));
}

// A call too large for the room in its task's state (96 bytes) goes in a
// buffer of its own: small, just past the room, and large ones all arrive whole.
TEST(pool, apply_async_calls_of_every_size_arrive_whole) {
  mp::pool p(2);
  std::vector<std::string> texts;
  for (const std::size_t size :
       {std::size_t{1}, std::size_t{40}, std::size_t{90}, std::size_t{200}, std::size_t{1} << 20})
    texts.emplace_back(size, static_cast<char>('a' + size % 26));
  std::vector<mp::async_result<std::size_t>> results;
  for (const auto& text : texts) results.push_back(p.apply_async(weigh, text));
  for (std::size_t i = 0; i < texts.size(); ++i)
    EXPECT_EQ(results[i].get(), weigh(texts[i])) << texts[i].size() << " bytes";
}

TEST(pool, a_chunk_sent_from_its_span_encodes_as_its_vector) {
  using call = mp::detail::chunk_call<int (*)(int), int, false>;
  const std::vector<int> items{5, 6, 7, 8};
  mp::detail::byte_buffer as_vector;
  mp::detail::byte_buffer as_span;
  {
    mp::detail::output_archive out(as_vector);
    mp::detail::encode_call(out, call{square}, std::tuple<std::vector<int>>(items));
  }
  {
    mp::detail::output_archive out(as_span);
    mp::detail::encode_call_as<std::vector<int>>(out, call{square},
                                                 mp::detail::elements_wire<int>{items});
  }
  ASSERT_EQ(as_span.size(), as_vector.size());
  EXPECT_EQ(std::memcmp(as_span.data(), as_vector.data(), as_span.size()), 0);

  // The in-place decoder takes exactly the chunk's count.
  const mp::bytes encoded = mp::encode(std::vector<int>{1, 2, 3});
  std::vector<int> out(3);
  mp::detail::decode_elements_into<int>(encoded, out);
  EXPECT_EQ(out, (std::vector<int>{1, 2, 3}));
  std::vector<int> wrong(2);
  EXPECT_THROW(mp::detail::decode_elements_into<int>(encoded, wrong), mp::decode_error);
  EXPECT_THROW(mp::detail::decode_elements_into<int>(mp::encode(std::vector<long>{1, 2}), wrong),
               mp::decode_error);
}

TEST(pool, a_chunk_of_plain_items_runs_on_its_encoded_bytes_as_on_its_vector) {
  using call = mp::detail::chunk_call<int (*)(int), int, false>;
  static_assert(call::runs_on_encoded);
  static_assert(!mp::detail::chunk_call<bool (*)(int), int, false>::runs_on_encoded);
  static_assert(!mp::detail::chunk_call<std::string (*)(int), int, false>::runs_on_encoded);
  const std::vector<int> items{5, 6, 7, 8};
  mp::detail::byte_buffer payload;
  {
    mp::detail::output_archive out(payload);
    mp::detail::encode_call(out, call{square}, std::tuple<std::vector<int>>(items));
  }
  // Run as a worker runs it, the result is the encoding of the vector the
  // call returns.
  mp::detail::byte_buffer result;
  mp::detail::invoke_call(payload.span(), nullptr, &result);
  mp::detail::byte_buffer expected;
  mp::detail::encode_into(expected, call{square}(items));
  ASSERT_EQ(result.size(), expected.size());
  EXPECT_EQ(std::memcmp(result.data(), expected.data(), result.size()), 0);
  // Without a result buffer the calls still run.
  mp::detail::invoke_call(payload.span(), nullptr, nullptr);
  // A count larger than the bytes that follow, or a missing element, is a decode error.
  const auto cut = payload.span().first(payload.size() - 1);
  EXPECT_THROW(mp::detail::invoke_call(cut, nullptr, &result), mp::decode_error);
  mp::detail::byte_buffer lying;
  lying.append(payload.data(), payload.size() - items.size() * sizeof(int) - 8);
  const std::uint64_t huge = std::uint64_t{1} << 60;
  lying.append(&huge, sizeof huge);
  EXPECT_THROW(mp::detail::invoke_call(lying.span(), nullptr, &result), mp::decode_error);
}

TYPED_TEST(any_pool, a_task_exception_reaches_the_caller_and_the_pool_goes_on) {
  TypeParam p(2);
  EXPECT_THROW(p.apply(fails_on_three, 3), std::invalid_argument);
  try {
    p.apply(throws_custom, 1);
    FAIL() << "no exception";
  } catch (const mp::remote_error& e) {
    EXPECT_NE(e.type_name().find("custom_error"), std::string::npos) << e.type_name();
    EXPECT_NE(std::string(e.what()).find("custom"), std::string::npos);
  }
  std::vector<int> input{1, 2, 3, 4, 5};
  EXPECT_THROW(p.map(fails_on_three, input, 1), std::invalid_argument);
  EXPECT_THROW(p.map(fails_on_three, input, 5), std::invalid_argument);  // mid-chunk
  EXPECT_EQ(p.map(square, input, 5), (std::vector<int>{1, 4, 9, 16, 25}));
  EXPECT_EQ(p.apply(square, 3), 9);
  auto r = p.apply_async(slow_identity, 2000);  // a thread runs it to the end
  EXPECT_THROW(r.get(10ms), mp::timeout_error);
  p.terminate();
  p.join();
  EXPECT_THROW(r.get(), mp::process_error);
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

picky negate(picky p) {
  return {-p.value};
}

TYPED_TEST(any_pool, what_the_codec_refuses_fails_that_task_only) {
  TypeParam p(1);
  // The argument does not decode in the worker; the result does not decode here.
  EXPECT_THROW(p.apply(negate, picky{-1}), mp::decode_error);
  EXPECT_THROW(p.apply(negate, picky{1}), mp::decode_error);
  EXPECT_EQ(p.apply(negate, picky{0}).value, 0);  // the pool goes on
}

// Resources as task arguments: Python refuses them ("Queue objects should only
// be shared between processes through inheritance"); here their descriptors go
// to the worker that takes the task, beside it.
int put_square(int x, mp::queue<int> out) {
  out.put(x * x);
  return x;
}

int locked_increment(mp::lock lock, const mp::shared_value<int>& counter) {
  std::lock_guard guard(lock);
  return ++*counter.get_obj();
}

int identity_under(int x, mp::lock lock) {
  std::lock_guard guard(lock);
  return x;
}

int reply_over(mp::connection& conn, int x) {
  conn.send(x + 1);
  return conn.recv<int>();
}

std::size_t block_size(const mp::shared_memory& block) {
  block.data()[0] = std::byte{5};
  return block.size();
}

mp::queue<int> return_a_queue(int) {
  return mp::queue<int>();
}

TYPED_TEST(any_pool, tasks_take_queues_locks_connections_and_shared_memory_as_arguments) {
  TypeParam p(2);
  mp::queue<int> squares;
  EXPECT_EQ(p.apply(put_square, 7, squares), 7);
  EXPECT_EQ(squares.get(), 49);

  // Every chunk of a starmap carries the queue, once per item.
  std::vector<std::tuple<int, mp::queue<int>>> items;
  for (int i = 0; i < 20; ++i) items.emplace_back(i, squares);
  EXPECT_EQ(p.starmap(put_square, items, 3).size(), 20U);
  int sum = 0;
  for (int i = 0; i < 20; ++i) sum += squares.get();
  EXPECT_EQ(sum, 2470);  // 0^2 + ... + 19^2

  mp::lock lock;
  mp::shared_value<int> counter(0);
  std::vector<mp::async_result<int>> increments;
  for (int i = 0; i < 40; ++i) increments.push_back(p.apply_async(locked_increment, lock, counter));
  for (auto& r : increments) r.get(mp::testing::scaled(30s));
  EXPECT_EQ(counter.load(), 40);
  // A chunk names the one lock 260 times but carries its descriptor once (a message carries at
  // most 253).
  std::vector<std::tuple<int, mp::lock>> locked;
  for (int i = 0; i < 520; ++i) locked.emplace_back(i, lock);
  const auto same = p.starmap(identity_under, locked, 260);
  EXPECT_EQ(std::accumulate(same.begin(), same.end(), 0), 519 * 520 / 2);

  auto [mine, theirs] = mp::pipe();
  auto answer = p.apply_async(reply_over, std::move(theirs), 1);
  EXPECT_EQ(mine.recv<int>(), 2);
  mine.send(10);
  EXPECT_EQ(answer.get(mp::testing::scaled(30s)), 10);
  // The task has ended and the pool dropped its copies: only the worker had the other end.
  EXPECT_TRUE(mine.poll(mp::testing::scaled(30s)));
  EXPECT_THROW(mine.recv<int>(), mp::eof_error);

  auto block = mp::shared_memory::create(3000);
  EXPECT_EQ(p.apply(block_size, std::ref(block)), 3000U);
  EXPECT_EQ(block.data()[0], std::byte{5});

  // A resource does not come back as a result: that task fails, saying which
  // value and why (Python's MaybeEncodingError).
  try {
    p.apply(return_a_queue, 0);
    ADD_FAILURE() << "a queue came back as a result";
  } catch (const mp::process_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("returned a mp::queue<int> that cannot be sent back"), std::string::npos)
        << what;
  }
  EXPECT_EQ(p.apply(put_square, 2, squares), 2);
  EXPECT_EQ(squares.get(), 4);
}

int wait_then_put(mp::event go, mp::queue<int> out, int x) {
  go.wait();
  out.put(x);
  return x;
}

TEST(pool, tasks_with_resources_behind_a_killed_worker_take_them_elsewhere) {
  mp::pool p(1);
  mp::event go;
  mp::queue<int> out;
  mp::queue<int> pids;
  auto first = p.apply_async(
      [](mp::event e, mp::queue<int> q) {
        q.put(static_cast<int>(::getpid()));
        e.wait();
        return 0;
      },
      go, pids);
  // Queued behind the first in the same worker, with their descriptors sent.
  std::vector<mp::async_result<int>> behind;
  for (int i = 1; i <= 3; ++i) behind.push_back(p.apply_async(wait_then_put, go, out, i));
  const int worker = pids.get();
  ::kill(worker, SIGKILL);
  EXPECT_THROW(first.get(mp::testing::scaled(30s)), mp::worker_died);
  go.set();
  int sum = 0;
  for (auto& r : behind) sum += r.get(mp::testing::scaled(30s));
  EXPECT_EQ(sum, 6);
  EXPECT_EQ(out.get() + out.get() + out.get(), 6);
}

TYPED_TEST(any_pool, imap_is_lazy_and_ordered_imap_unordered_is_not) {
  TypeParam p(2);
  std::vector<int> input(100);
  std::iota(input.begin(), input.end(), 0);
  std::vector<int> got;
  for (int v : p.imap(square, input)) got.push_back(v);
  ASSERT_EQ(got.size(), 100U);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], i * i);
  const std::vector<int> delays{300, 10, 20};
  std::vector<int> order;
  for (int v : p.imap_unordered(slow_identity, delays)) order.push_back(v);
  EXPECT_EQ(std::multiset<int>(order.begin(), order.end()), (std::multiset<int>{10, 20, 300}));
  EXPECT_EQ(order.back(), 300);  // the slow one comes last
  // An endless input: imap reads only what it needs.
  auto endless = std::views::iota(0);
  int count = 0;
  for (int v : p.imap(square, endless)) {
    EXPECT_EQ(v, count * count);
    if (++count == 50) break;
  }
}

class worker_death : public ::testing::TestWithParam<int> {};

TEST_P(worker_death, fails_only_its_own_task_and_the_pool_replaces_the_worker) {
  mp::pool p(2);
  std::vector<mp::async_result<int>> results;
  for (int x = 0; x < 12; ++x) results.push_back(p.apply_async(dies_on_seven, x, GetParam()));
  for (int x = 0; x < 12; ++x) {
    if (x == 7) {
      EXPECT_THROW(results[7].get(mp::testing::scaled(30s)), mp::worker_died);
    } else {
      EXPECT_EQ(results[static_cast<std::size_t>(x)].get(mp::testing::scaled(30s)), x);
    }
  }
  EXPECT_EQ(p.apply(square, 6), 36);  // still two workers
}

INSTANTIATE_TEST_SUITE_P(pool, worker_death, ::testing::Values(0, 1, 2));

// Says it has started, then sleeps for `ms`.
int announce_then_sleep(mp::event started, int ms) {
  started.set();
  return slow_identity(ms);
}

TEST(pool, workers_killed_from_outside_in_a_loop_never_hang_it) {
  mp::pool p(2);
  for (int round = 0; round < 5; ++round) {
    mp::event started;
    auto r = p.apply_async(announce_then_sleep, started, 10000);
    // Once the task runs (a replacement worker may still be starting), kill
    // every child of ours: an idle worker dies without a task. (Our mp
    // children: a forkserver's are not our direct children.)
    ASSERT_TRUE(started.wait(mp::testing::scaled(30s)));
    for (const auto& child : mp::active_children()) ::kill(*child.pid(), SIGKILL);
    EXPECT_THROW(r.get(mp::testing::scaled(30s)), mp::worker_died);
    EXPECT_EQ(p.apply(square, round), round * round);
  }
}

// Runs task `x` once: a second run finds the file the first one made.
int run_once(std::string folder, int x) {
  const std::string path = folder + "/" + std::to_string(x);
  const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("task " + std::to_string(x) + " ran twice");
  ::close(fd);
  std::this_thread::sleep_for(5ms);
  return x;
}

TEST(pool, tasks_queued_behind_a_killed_worker_run_elsewhere_exactly_once) {
  std::string folder = (std::filesystem::temp_directory_path() / "mp-once-XXXXXX").string();
  ASSERT_NE(::mkdtemp(folder.data()), nullptr);
  mp::pool p(2);
  for (int round = 0; round < 6; ++round) {
    std::vector<mp::async_result<int>> results;
    for (int i = 0; i < 16; ++i)
      results.push_back(p.apply_async(run_once, folder, round * 100 + i));
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + 4 * round));
    const auto children = mp::active_children();
    if (!children.empty()) ::kill(*children.front().pid(), SIGKILL);
    int died = 0;
    for (int i = 0; i < 16; ++i) {
      try {
        EXPECT_EQ(results[static_cast<std::size_t>(i)].get(mp::testing::scaled(30s)),
                  round * 100 + i);
      } catch (const mp::worker_died&) {
        ++died;  // the one task the killed worker had started, if any
      }
    }
    EXPECT_LE(died, 1);
  }
  std::filesystem::remove_all(folder);
}

int own_pid(int) {
  return static_cast<int>(::getpid());
}

int initialized_value = 0;

int read_initialized(int) {
  return initialized_value;
}

TEST(pool, maxtasksperchild_replaces_workers_after_their_share) {
  mp::pool p({.processes = 1, .maxtasksperchild = 2});
  std::set<int> pids;
  for (int i = 0; i < 6; ++i) pids.insert(p.apply(own_pid, i));
  EXPECT_EQ(pids.size(), 3U);
}

TEST(pool, the_initializer_runs_in_every_worker) {
  mp::pool p({.processes = 2, .initializer = [] { initialized_value = 42; }});
  EXPECT_EQ(p.apply(read_initialized, 0), 42);
  EXPECT_EQ(initialized_value, 0);  // not here
}

std::optional<mp::lock> worker_lock;  // set in each worker by its initializer

void keep_lock(mp::lock lock, int value) {
  worker_lock = std::move(lock);
  initialized_value = value;
}

// 1 if the worker could take the lock it was given (and released it again).
int try_worker_lock(int) {
  if (!worker_lock) return -1;
  if (!worker_lock->try_lock()) return 0;
  worker_lock->unlock();
  return initialized_value;
}

// Python's Pool(initializer=init, initargs=(lock,)): under any start method.
TEST(pool, the_initializer_takes_arguments_and_resources_among_them) {
  mp::lock held;
  mp::pool p({.processes = 2, .initializer = {keep_lock, held, 7}});
  held.lock();
  EXPECT_EQ(p.apply(try_worker_lock, 0), 0);  // the very lock we hold
  held.unlock();
  EXPECT_EQ(p.apply(try_worker_lock, 0), 7);
}

TEST(pool, an_initializer_that_cannot_travel_is_refused_saying_why) {
  int captured = 5;
  if (mp::testing::suite_start_method() == mp::start_method::fork) {
    mp::pool p({.processes = 1, .initializer = [captured] { initialized_value = captured; }});
    EXPECT_EQ(p.apply(read_initialized, 0), 5);  // under fork anything goes
    return;
  }
  try {
    mp::pool p({.processes = 1, .initializer = [captured] { initialized_value = captured; }});
    FAIL() << "a capturing initializer was accepted under "
           << mp::to_string(mp::testing::suite_start_method());
  } catch (const mp::usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("{init, args...}"), std::string::npos) << e.what();
  }
}

TEST(pool, a_task_past_its_timeout_is_stopped_and_its_worker_replaced) {
  mp::pool p(1);
  auto r = p.apply_async({.timeout = 100ms}, slow_identity, 60000);
  expect_task_timed_out(r);
  EXPECT_EQ(p.apply(square, 4), 16);  // a fresh worker
  auto quick = p.apply_async({.timeout = mp::testing::scaled(30s)}, square, 5);
  EXPECT_EQ(quick.get(), 25);
}

// A task's timeout counts from when its worker starts it, not from when the
// pool hands it over: a worker that takes longer to start than the timeout
// must not be killed again and again before it begins (a task requeued for
// ever, and a pool whose destructor waited for it: issue 13).
TEST(pool, a_task_timeout_counts_from_when_its_worker_starts_it) {
  const auto limit = mp::testing::scaled(200ms);
  const int start_up = static_cast<int>(3 * limit.count());
  {
    mp::pool p({.processes = 1, .initializer = {sleep_ms, start_up}});
    auto quick = p.apply_async({.timeout = limit}, square, 6);
    ASSERT_TRUE(quick.wait(mp::testing::scaled(30s))) << "a quick task never ran";
    EXPECT_EQ(quick.get(), 36);
  }
  mp::pool p({.processes = 1, .initializer = {sleep_ms, start_up}});
  auto stopped = p.apply_async({.timeout = limit}, slow_identity, 60000);
  expect_task_timed_out(stopped);
  EXPECT_EQ(p.apply(square, 9), 81);  // on a replacement, itself slow to start
}

TEST(pool, map_with_options_calls_back_and_limits_each_chunk) {
  mp::pool p(2);
  std::vector<int> input{1, 2, 3, 4, 5, 6};
  std::promise<std::vector<int>> got;
  auto r = p.map_async(square, input, {.chunksize = 2, .callback = [&](const std::vector<int>& v) {
                                         got.set_value(v);
                                       }});
  EXPECT_EQ(got.get_future().get(), (std::vector<int>{1, 4, 9, 16, 25, 36}));
  EXPECT_EQ(r.get(), (std::vector<int>{1, 4, 9, 16, 25, 36}));

  std::promise<std::string> failure;
  auto failed = p.map_async(fails_on_three, input, {.error_callback = [&](std::exception_ptr e) {
                              try {
                                std::rethrow_exception(e);
                              } catch (const std::exception& x) {
                                failure.set_value(x.what());
                              }
                            }});
  EXPECT_EQ(failure.get_future().get(), "three is not allowed");
  EXPECT_THROW(failed.get(), std::invalid_argument);

  // A chunk that outlives its limit is stopped: the map fails with
  // timeout_error, and the pool goes on with a fresh worker.
  std::vector<int> sleeps{1, 60000, 1};
  EXPECT_THROW(p.map(slow_identity, sleeps, {.chunksize = 1, .timeout = 200ms}), mp::timeout_error);
  std::vector<std::tuple<long, int>> pairs{{2, 10}, {3, 3}};
  EXPECT_EQ(p.starmap(power, pairs, {.timeout = mp::testing::scaled(30s)}),
            (std::vector<long>{1024, 27}));
  EXPECT_EQ(p.starmap_async(power, pairs, {.chunksize = 1}).get(), (std::vector<long>{1024, 27}));
  // The plain forms keep Python's positional chunksize.
  EXPECT_EQ(p.map(square, input, 4), (std::vector<int>{1, 4, 9, 16, 25, 36}));
}

TYPED_TEST(any_pool, the_destructor_finishes_submitted_work) {
  std::vector<mp::async_result<int>> results;
  {
    TypeParam p(2);
    for (int x = 0; x < 10; ++x) results.push_back(p.apply_async(slow_identity, 5));
  }
  for (auto& r : results) EXPECT_EQ(r.get(), 5);
}

TYPED_TEST(any_pool, copies_are_one_pool_and_the_last_one_finishes_the_work) {
  std::vector<mp::async_result<int>> results;
  // (On the heap, not in a std::optional: GCC 12 at -O2 takes the optional's
  // shared_ptr for uninitialized, a false -Wmaybe-uninitialized.)
  auto first = std::make_unique<TypeParam>(2U);
  {
    TypeParam copy = *first;  // passed by value, as to a function
    for (int x = 0; x < 4; ++x) results.push_back(copy.apply_async(slow_identity, 5));
  }  // not the last copy: the pool goes on
  EXPECT_EQ(first->apply(square, 3), 9);
  TypeParam last = *first;
  first.reset();
  results.push_back(last.apply_async(slow_identity, 6));
  last.close();  // through a copy, for every copy
  EXPECT_THROW(last.apply(square, 1), mp::usage_error);
  last.join();
  for (std::size_t i = 0; i < results.size(); ++i) EXPECT_EQ(results[i].get(), i < 4 ? 5 : 6);
}

// A map of large chunks hands them to the pool one by one as they are
// encoded. A pool terminated meanwhile refuses the rest: the map says so at
// once and calls no callback; or, quicker, the map is in and its tasks end
// (with their results, or terminated). Nothing hangs.
TYPED_TEST(any_pool, a_map_of_large_chunks_ends_whenever_the_pool_is_stopped) {
  std::vector<long> input(std::size_t{1} << 20);
  std::iota(input.begin(), input.end(), 0L);
  for (int round = 0; round < 4; ++round) {
    TypeParam p(2);
    std::atomic<int> called{0};
    std::thread stopper([&p, round] {
      std::this_thread::sleep_for(std::chrono::microseconds(300 * round));
      p.terminate();
    });
    std::optional<mp::async_result<std::vector<long>>> r;
    try {
      r.emplace(p.map_async(square_long, input,
                            {.chunksize = std::size_t{1} << 14,
                             .callback = [&](const std::vector<long>&) { ++called; },
                             .error_callback = [&](std::exception_ptr) { ++called; }}));
    } catch (const mp::usage_error& e) {
      EXPECT_NE(std::string(e.what()).find("not running"), std::string::npos) << e.what();
    }
    stopper.join();
    p.join();
    if (!r) {
      EXPECT_EQ(called.load(), 0) << "a map refused by the pool called back";
      continue;
    }
    r->wait();
    EXPECT_EQ(called.load(), 1);
    if (r->successful()) {
      EXPECT_EQ(r->get().size(), input.size());
    }
  }
}

TYPED_TEST(any_pool, map_and_imap_report_progress) {
  TypeParam p(2);
  std::vector<int> input(40);
  std::iota(input.begin(), input.end(), 0);
  std::mutex mutex;
  std::vector<std::pair<std::size_t, std::size_t>> reports;
  const auto record = [&](std::size_t done, std::size_t total) {
    std::lock_guard lock(mutex);
    reports.emplace_back(done, total);
  };
  p.map(square, input, 4, record);
  {
    std::lock_guard lock(mutex);
    ASSERT_EQ(reports.size(), 10U);  // one per chunk
    EXPECT_EQ(reports.back(), (std::pair<std::size_t, std::size_t>{40, 40}));
    reports.clear();
  }
  for (int v : p.imap(square, input, 1, record)) static_cast<void>(v);
  ASSERT_EQ(reports.size(), 40U);  // one per item
  EXPECT_EQ(reports[9], (std::pair<std::size_t, std::size_t>{10, 40}));
  // The ready-made bar draws only on a terminal; under ctest stderr is not one.
  const auto bar = mp::progress_bar();
  bar(1, 2);
  bar(2, 2);
}

TEST(pool, runs_on_spawned_workers_too) {
  MP_ONE_RUN_ONLY("its pools start their workers by spawn whatever the suite's default");
  mp::pool p({.processes = 2, .method = mp::start_method::spawn});
  std::vector<int> input(100);
  std::iota(input.begin(), input.end(), 0);
  const auto squares = p.map(square, input, 7);
  ASSERT_EQ(squares.size(), 100U);
  EXPECT_EQ(squares[99], 99 * 99);
  EXPECT_EQ(p.apply(greet, std::string("spawn")), "hello spawn");
  EXPECT_NE(p.apply(own_pid, 0), static_cast<int>(::getpid()));
  // A spawned worker that dies fails only its task, and is replaced by another spawned one.
  auto dies = p.apply_async(dies_on_seven, 7, 0);
  EXPECT_THROW(dies.get(mp::testing::scaled(30s)), mp::worker_died);
  auto stopped = p.apply_async({.timeout = 100ms}, slow_identity, 60000);
  expect_task_timed_out(stopped);
  EXPECT_EQ(p.apply(square, 9), 81);
  // A capture-less initializer travels to spawned workers too.
  mp::pool initialized({.processes = 1,
                        .initializer = [] { initialized_value = 42; },
                        .method = mp::start_method::spawn});
  EXPECT_EQ(initialized.apply(read_initialized, 0), 42);
}

// `ulimit -v 8G`, a common limit for batch jobs and containers: the queues
// under a pool and an executor map what they use, not 64 GiB each.
TEST(pool, a_pool_and_an_executor_work_under_a_virtual_memory_limit) {
  if (mp::testing::shadow_memory) GTEST_SKIP() << "a sanitizer's shadow memory exceeds the limit";
  mp::process child([] {
    const rlimit limit{std::uint64_t{8} << 30, std::uint64_t{8} << 30};
    if (::setrlimit(RLIMIT_AS, &limit) != 0) throw mp::system_exit{2};
    mp::pool p(1);
    if (p.map(square, std::vector<int>{1, 2, 3}) != std::vector<int>{1, 4, 9})
      throw mp::system_exit{3};
    mp::process_pool_executor executor({.max_workers = 1});
    if (executor.submit(square, 7).result() != 49) throw mp::system_exit{4};
  });
  child.start();
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

std::size_t weigh_beside(const std::string& text, const mp::queue<int>&) {
  return weigh(text);
}

// A task the pool cannot hand to its worker (here: the queue to it cannot map room for the task
// under an address-space limit) fails with the reason, and only it: the tasks after it run, it
// is never sent later in another's place, and the descriptors sent ahead of it (a queue among
// its arguments) do not put the worker out of step for the next task that carries some.
TEST(pool, a_task_that_cannot_reach_its_worker_fails_alone) {
  if (mp::testing::shadow_memory) GTEST_SKIP() << "a sanitizer's shadow memory exceeds the limit";
  MP_ONE_RUN_ONLY("the engine's undo does not depend on how workers start");
  mp::process child([] {
    mp::pool p(1);
    if (p.apply(square, 2) != 4) throw mp::system_exit{2};  // the pool's threads exist by now
    const int worker = p.apply(own_pid, 0);
    constexpr std::size_t text_size = std::size_t{96} << 20;
    const std::string text(text_size, 'x');
    const mp::queue<int> beside;  // its descriptor goes ahead of the task that cannot
    const long used_kib = mp::testing::address_space_kib();
    if (used_kib <= 0) throw mp::system_exit{3};
    rlimit limit{};
    if (::getrlimit(RLIMIT_AS, &limit) != 0) throw mp::system_exit{3};
    // Room for the task's encoded call and some, not for the 128 MiB segment that would carry
    // it to the worker; how much "some" needs depends on the allocator, so a few are tried.
    for (std::size_t slack_mib = 64; slack_mib <= 224; slack_mib += 32) {
      limit.rlim_cur = (static_cast<rlim_t>(used_kib) << 10) + text_size + (slack_mib << 20);
      if (::setrlimit(RLIMIT_AS, &limit) != 0) throw mp::system_exit{3};
      try {
        (void)p.apply(weigh_beside, text, beside);
        throw mp::system_exit{4};  // it fitted after all: the limit is not what the test needs
      } catch (const std::system_error& e) {
        if (e.code() != std::errc::not_enough_memory) throw mp::system_exit{5};
      } catch (const std::bad_alloc&) {
        continue;  // the call itself did not fit: more room
      }
      // Under the same limit, the pool goes on, with the same worker.
      if (p.apply(square, 3) != 9) throw mp::system_exit{6};
      if (p.map(square, std::vector<int>{1, 2, 3}) != std::vector<int>{1, 4, 9})
        throw mp::system_exit{6};
      mp::queue<int> out;
      if (p.apply(put_square, 5, out) != 5 || out.get() != 25) throw mp::system_exit{6};
      if (p.apply(own_pid, 0) != worker) throw mp::system_exit{8};
      return;
    }
    throw mp::system_exit{7};  // no limit made the queue fail
  });
  child.start();
  child.join();
  EXPECT_EQ(child.exitcode(), 0)
      << "2-3: setup, 4: no limit tried made the task fail, 5: a "
         "failure other than ENOMEM, 6: the pool did not go on, 7: "
         "only the call's own allocation failed, 8: the worker was replaced";
}

TEST(thread_pool, has_the_pool_interface_on_threads) {
  mp::thread_pool p(2);
  EXPECT_EQ(p.apply(own_pid, 0), static_cast<int>(::getpid()));  // here, not in a child
  std::vector<int> input(100);
  std::iota(input.begin(), input.end(), 0);
  const auto squares = p.map(square, input);
  EXPECT_EQ(squares[99], 99 * 99);
  std::vector<int> got;
  for (int v : p.imap(square, input)) got.push_back(v);
  EXPECT_EQ(got, squares);
  EXPECT_THROW(p.apply(fails_on_three, 3), std::invalid_argument);
  mp::queue<int> out;  // resources reach a thread worker as themselves too
  EXPECT_EQ(p.apply(put_square, 5, out), 5);
  EXPECT_EQ(out.get(), 25);
  // A task past its timeout fails at once; its thread finishes it meanwhile.
  auto r = p.apply_async({.timeout = 20ms}, slow_identity, 300);
  expect_task_timed_out(r);
  EXPECT_EQ(p.apply(square, 9), 81);
}

// A map's results decoded in place: an empty chunk has a span that may hold a null pointer,
// which must never reach memcpy (UBSan, in the dev preset, reports it).
TEST(pool, an_empty_chunk_decodes_into_an_empty_span) {
  const mp::bytes encoded = mp::encode(std::vector<int>{});
  std::span<int> none;
  EXPECT_NO_THROW(mp::detail::decode_elements_into<int>(encoded, none));
  std::vector<int> two(2);
  EXPECT_THROW(mp::detail::decode_elements_into<int>(encoded, std::span<int>(two)),
               mp::decode_error);
  mp::pool p(1);
  EXPECT_TRUE(p.map(square, std::vector<int>{}).empty());
}

TYPED_TEST(any_pool, close_refuses_new_work_and_join_needs_it) {
  TypeParam p(1);
  EXPECT_THROW(p.join(), mp::usage_error);
  p.close();
  EXPECT_THROW(p.apply(square, 2), mp::usage_error);
  p.join();
}

// maxtasksperchild on threads: a thread that has run its share ends and is
// replaced (the replacement path once asked a thread worker for a process's
// name and terminated the program).
TYPED_TEST(any_pool, maxtasksperchild_replaces_workers_and_the_pool_goes_on) {
  TypeParam p({.processes = 1, .maxtasksperchild = 1});
  std::set<int> pids;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(p.apply(square, i), i * i);
    pids.insert(p.apply(own_pid, i));
  }
  if constexpr (std::is_same_v<TypeParam, mp::pool>) {
    EXPECT_EQ(pids.size(), 4U);
  }
  std::vector<int> input(20);
  std::iota(input.begin(), input.end(), 0);
  EXPECT_EQ(p.map(square, input, 1)[19], 361);
}

void failing_initializer() {
  throw std::runtime_error("no database here");
}

// Python's executor breaks when an initializer fails (BrokenProcessPool,
// BrokenThreadPool); a pool that replaced the worker for ever would never
// run the task, and never end.
TYPED_TEST(any_pool, a_failing_initializer_breaks_the_pool_saying_why) {
  TypeParam p({.processes = 2, .initializer = failing_initializer});
  using broken = std::conditional_t<std::is_same_v<TypeParam, mp::pool>, mp::broken_process_pool,
                                    mp::broken_thread_pool>;
  try {
    // The pool may have broken before the task is submitted, or after.
    auto r = p.apply_async(square, 3);
    ASSERT_TRUE(r.wait(mp::testing::scaled(30s))) << "a task of a broken pool never failed";
    r.get();
    FAIL() << "a task ran though every initializer failed";
  } catch (const broken& e) {
    EXPECT_NE(std::string(e.what()).find("no database here"), std::string::npos) << e.what();
  }
  EXPECT_THROW(p.apply(square, 4), mp::broken_executor);
  p.terminate();
  p.join();
}

void exiting_initializer() {
  std::_Exit(3);
}

// A worker that dies before it is ready, again and again, breaks the pool
// too, rather than being replaced for ever.
TEST(pool, workers_that_die_before_they_are_ready_break_it) {
  mp::pool p({.processes = 1, .initializer = exiting_initializer});
  try {
    auto r = p.apply_async(square, 3);
    ASSERT_TRUE(r.wait(mp::testing::scaled(60s))) << "a task of a broken pool never failed";
    r.get();
    FAIL() << "a task ran though every worker died at start";
  } catch (const mp::broken_process_pool& e) {
    EXPECT_NE(std::string(e.what()).find("exited with code 3"), std::string::npos) << e.what();
  }
}

std::string demangle(const std::type_info& type) {
  int status = 0;
  char* name = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string out = status == 0 && name != nullptr ? name : type.name();
  std::free(name);
  return out;
}

// Every exception type mp defines.
using mp_errors =
    std::tuple<mp::process_error, mp::timeout_error, mp::eof_error, mp::decode_error,
               mp::buffer_too_short, mp::authentication_error, mp::context_error, mp::usage_error,
               mp::queue_empty, mp::queue_full, mp::owner_died, mp::broken_barrier,
               mp::shared_memory_not_found, mp::shared_memory_exists, mp::broken_executor,
               mp::worker_died, mp::broken_process_pool, mp::broken_thread_pool,
               mp::cancelled_error, mp::invalid_state_error>;

template <class E>
E make_error() {
  if constexpr (std::is_same_v<E, mp::buffer_too_short>)
    return E(std::vector<std::byte>(5));
  else
    return E("thrown in a task");
}

int throw_mp_error(std::size_t index) {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((I == index ? throw make_error<std::tuple_element_t<I, mp_errors>>() : void()), ...);
  }
  (std::make_index_sequence<std::tuple_size_v<mp_errors>>());
  return 0;
}

// Checks that `e` is the exception the task threw: its very type (not a base
// or a derived one), its message, and where it came from.
template <class Pool, class E>
void expect_rebuilt(const E& e, const std::string& message) {
  EXPECT_EQ(typeid(e), typeid(mp::detail::remote_exception<E>)) << demangle(typeid(e));
  EXPECT_EQ(std::string(e.what()), message);
  const mp::remote_info* from = mp::remote_info_of(e);
  ASSERT_NE(from, nullptr);
  EXPECT_EQ(from->type_name(), demangle(typeid(E)));
  EXPECT_EQ(from->message(), message);
  if constexpr (std::is_same_v<Pool, mp::thread_pool>) {
    EXPECT_EQ(from->pid(), static_cast<int>(::getpid()));
  } else {
    EXPECT_NE(from->pid(), static_cast<int>(::getpid()));
  }
}

TYPED_TEST(any_pool, every_mp_exception_type_crosses_as_itself) {
  TypeParam p(1);
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (
        [&] {
          using E = std::tuple_element_t<I, mp_errors>;
          try {
            p.apply(throw_mp_error, I);
            ADD_FAILURE() << demangle(typeid(E)) << " was not thrown";
          } catch (const E& e) {
            expect_rebuilt<TypeParam>(e, make_error<E>().what());
          } catch (const std::exception& e) {
            ADD_FAILURE() << demangle(typeid(E)) << " arrived as " << demangle(typeid(e)) << ": "
                          << e.what();
          }
        }(),
        ...);
  }
  (std::make_index_sequence<std::tuple_size_v<mp_errors>>());
}

int throw_standard(int kind) {
  switch (kind) {
    case 0:
      throw std::system_error(EACCES, std::generic_category(), "opening /secret");
    case 1:
      throw std::system_error(std::make_error_code(std::errc::timed_out));
    case 2:
      throw std::bad_alloc();
    case 3:
      throw std::out_of_range("index 7");
    case 4:
      throw std::ios_base::failure("reading the file");
    default:
      throw std::overflow_error("too big");
  }
}

TYPED_TEST(any_pool, standard_exceptions_cross_as_themselves_with_their_error_codes) {
  TypeParam p(1);
  try {
    p.apply(throw_standard, 0);
    FAIL();
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::make_error_code(std::errc::permission_denied));
    EXPECT_EQ(std::string(e.what()),
              "opening /secret: " + std::make_error_code(std::errc::permission_denied).message());
    ASSERT_NE(mp::remote_info_of(e), nullptr);
  }
  try {
    p.apply(throw_standard, 1);
    FAIL();
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::make_error_code(std::errc::timed_out));
    EXPECT_EQ(std::string(e.what()), std::make_error_code(std::errc::timed_out).message());
  }
  EXPECT_THROW(p.apply(throw_standard, 2), std::bad_alloc);
  try {
    p.apply(throw_standard, 3);
    FAIL();
  } catch (const std::out_of_range& e) {
    expect_rebuilt<TypeParam>(e, "index 7");
  }
  try {
    p.apply(throw_standard, 4);
    FAIL();
  } catch (const std::ios_base::failure& e) {
    EXPECT_EQ(e.code(), std::io_errc::stream);
    EXPECT_NE(std::string(e.what()).find("reading the file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(p.apply(throw_standard, 5), std::overflow_error);
}

struct registered_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int throws_registered(int) {
  throw registered_error("registered");
}

TYPED_TEST(any_pool, unknown_types_arrive_as_remote_error_and_registered_ones_as_themselves) {
  TypeParam p(1);
  try {
    p.apply(throws_custom, 1);
    FAIL() << "no exception";
  } catch (const mp::remote_error& e) {
    EXPECT_EQ(e.type_name(), demangle(typeid(custom_error)));
    EXPECT_EQ(e.message(), "custom");
    if constexpr (std::is_same_v<TypeParam, mp::pool>) {
      EXPECT_NE(e.pid(), static_cast<int>(::getpid()));
    }
  }
  mp::register_exception<registered_error>();
  try {
    p.apply(throws_registered, 1);
    FAIL() << "no exception";
  } catch (const registered_error& e) {
    expect_rebuilt<TypeParam>(e, "registered");
  }
}

int throwing_input(int x) {
  if (x == 3) throw std::runtime_error("the input broke at 3");
  return x;
}

// Python's imap over an iterator that raises yields what came before it,
// then the error; before, the first next() threw and the results were lost.
TYPED_TEST(any_pool, imap_yields_what_came_before_an_input_that_throws) {
  TypeParam p(2);
  const std::vector<std::pair<std::size_t, std::vector<int>>> cases{{1, {0, 1, 4}}, {2, {0, 1}}};
  for (const auto& [chunksize, before] : cases) {
    std::vector<int> got;
    std::string error;
    try {
      for (int v : p.imap(square, std::views::iota(0, 10) | std::views::transform(throwing_input),
                          chunksize))
        got.push_back(v);
    } catch (const std::runtime_error& e) {
      error = e.what();
    }
    EXPECT_EQ(error, "the input broke at 3") << "chunksize " << chunksize;
    EXPECT_EQ(got, before) << "chunksize " << chunksize;
  }
  std::multiset<int> unordered;
  EXPECT_THROW(
      {
        for (int v : p.imap_unordered(
                 square, std::views::iota(0, 10) | std::views::transform(throwing_input)))
          unordered.insert(v);
      },
      std::runtime_error);
  EXPECT_EQ(unordered, (std::multiset<int>{0, 1, 4}));
  EXPECT_EQ(p.apply(square, 5), 25);  // the pool goes on
}

// imap(f, range(10)) ported literally: a temporary range is kept by the result.
TYPED_TEST(any_pool, imap_takes_temporary_ranges) {
  TypeParam p(2);
  std::vector<int> got;
  for (int v : p.imap(square, std::views::iota(0, 5))) got.push_back(v);
  EXPECT_EQ(got, (std::vector<int>{0, 1, 4, 9, 16}));
  auto later = p.imap(square, std::vector<int>{7, 8});  // the vector lives in `later`
  got.clear();
  for (int v : later) got.push_back(v);
  EXPECT_EQ(got, (std::vector<int>{49, 64}));
}

// mp::pool(-1) converts to four billion workers: refused, saying why.
TYPED_TEST(any_pool, nonsense_counts_are_refused) {
  const int negative = -1;
  EXPECT_THROW(TypeParam(static_cast<unsigned>(negative)), std::invalid_argument);
  EXPECT_THROW(TypeParam({.processes = 1, .maxtasksperchild = static_cast<unsigned>(negative)}),
               std::invalid_argument);
}

// Python's `with Pool() as p:` terminates on exit: on_destroy = terminate.
TYPED_TEST(any_pool, on_destroy_terminate_drops_the_work) {
  std::vector<mp::async_result<int>> results;
  {
    TypeParam p({.processes = 1, .on_destroy = mp::destroy_action::terminate});
    for (int i = 0; i < 5; ++i) results.push_back(p.apply_async(slow_identity, 200));
  }
  int dropped = 0;
  for (auto& r : results) {
    ASSERT_TRUE(r.ready());
    dropped += r.successful() ? 0 : 1;
  }
  EXPECT_GE(dropped, 4);  // at most the one running on a thread was finished
}

void refuses_three(int x) {
  if (x == 3) throw std::invalid_argument("three is not allowed");
}

bool is_odd(int x) {
  return x % 2 != 0;
}

// map over a function returning void (Python's list of None) and one
// returning bool (std::vector<bool> holds no bools to refer to).
TYPED_TEST(any_pool, map_takes_functions_returning_void_and_bool) {
  TypeParam p(2);
  const std::vector<int> input{1, 2, 3, 4, 5};
  static_assert(std::is_void_v<decltype(p.map(nothing, input))>);
  p.map(nothing, input);
  p.map_async(nothing, input, 2).get();
  EXPECT_THROW(p.map(refuses_three, input, 1), std::invalid_argument);
  bool called = false;
  p.map_async(nothing, input, {.callback = [&] { called = true; }}).get();
  EXPECT_TRUE(called);
  std::size_t count = 0;
  for (mp::none n : p.imap(nothing, input)) count += n == mp::none{} ? 1 : 0;
  EXPECT_EQ(count, input.size());
  EXPECT_EQ(p.map(is_odd, input), (std::vector<bool>{true, false, true, false, true}));
  std::vector<bool> odd;
  for (bool b : p.imap(is_odd, input, 2)) odd.push_back(b);
  EXPECT_EQ(odd, (std::vector<bool>{true, false, true, false, true}));
  const std::vector<std::tuple<int>> packed{{1}, {2}};
  p.starmap(nothing, packed);
}

TYPED_TEST(any_pool, busy_workers_made_to_share_a_cpu_part) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(::sched_getaffinity(0, sizeof allowed, &allowed), 0);
  if (CPU_COUNT(&allowed) < 2) GTEST_SKIP() << "one CPU to run on";
  std::vector<int> cpus;
  for (std::size_t cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &allowed)) cpus.push_back(static_cast<int>(cpu));
  const int first = cpus.front();
  TypeParam p(2);
  mp::shared_array<int> where{-1, -1};
  // One worker each, in this order (a task goes to the worker holding fewest).
  auto moved_a = p.apply_async(go_to, first);
  auto moved_b = p.apply_async(go_to, first);
  auto a = p.apply_async(part_from_the_other, where, std::size_t{0}, cpus);
  auto b = p.apply_async(part_from_the_other, where, std::size_t{1}, cpus);
  EXPECT_TRUE(moved_a.get());
  EXPECT_TRUE(moved_b.get());
  EXPECT_TRUE(a.get());
  EXPECT_TRUE(b.get());
}

}  // namespace
