// SPDX-License-Identifier: MIT
// Tests of mp::timeout and mp::detail::deadline (mp/timeout.hpp), and of the one vocabulary
// they give the API (docs/conventions.md): every blocking call takes any std::chrono duration
// or none, and every operation on a handle is const.
#include "mp/timeout.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include "mp/connection.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "mp/sharedctypes.hpp"
#include "mp/synchronize.hpp"
#include "mp/testing/testing.hpp"

namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

TEST(timeout, left_out_or_nullopt_means_no_limit) {
  const mp::timeout none;
  EXPECT_FALSE(none.limited());
  EXPECT_EQ(none.duration(), nanoseconds::max());
  EXPECT_EQ(none.as_optional(), std::nullopt);
  EXPECT_EQ(mp::timeout(std::nullopt), none);
  EXPECT_EQ(mp::timeout(std::optional<std::chrono::milliseconds>()), none);
}

TEST(timeout, any_duration_converts_to_nanoseconds) {
  EXPECT_EQ(mp::timeout(2s).duration(), 2'000'000'000ns);
  EXPECT_EQ(mp::timeout(1.5s).duration(), 1'500'000'000ns);
  EXPECT_EQ(mp::timeout(std::chrono::duration<float>(0.25F)).duration(), 250'000'000ns);
  EXPECT_EQ(mp::timeout(3min).duration(), 180'000'000'000ns);
  EXPECT_EQ(mp::timeout(std::optional(3ms)).duration(), 3'000'000ns);
  EXPECT_TRUE(mp::timeout(1ns).limited());
  EXPECT_EQ(mp::timeout(1ns).as_optional(), std::optional(1ns));
}

TEST(timeout, a_fraction_of_a_nanosecond_rounds_up) {
  EXPECT_EQ(mp::timeout(std::chrono::duration<double, std::nano>(0.25)).duration(), 1ns);
  EXPECT_EQ(mp::timeout(std::chrono::duration<double, std::nano>(7.5)).duration(), 8ns);
  EXPECT_EQ(mp::timeout(std::chrono::duration<long, std::pico>(1001)).duration(), 2ns);
}

TEST(timeout, negative_or_nan_means_do_not_wait) {
  EXPECT_TRUE(mp::timeout(-1s).zero());
  EXPECT_TRUE(mp::timeout(-0.5s).zero());
  EXPECT_TRUE(mp::timeout(0s).zero());
  EXPECT_TRUE(mp::timeout(0s).limited());
  EXPECT_TRUE(mp::timeout(std::chrono::duration<double>(std::nan(""))).zero());
  EXPECT_TRUE(mp::timeout(nanoseconds::min()).zero());
}

TEST(timeout, too_long_to_count_means_no_limit) {
  EXPECT_FALSE(mp::timeout(std::chrono::hours::max()).limited());
  EXPECT_FALSE(mp::timeout(nanoseconds::max()).limited());
  EXPECT_FALSE(mp::timeout(std::chrono::duration<double>(1e300)).limited());
  EXPECT_FALSE(mp::timeout(std::chrono::duration<double>(std::numeric_limits<double>::infinity()))
                   .limited());
  EXPECT_TRUE(mp::timeout(nanoseconds::max() - 1ns).limited());
}

TEST(timeout, is_one_word_that_passes_in_a_register) {
  static_assert(sizeof(mp::timeout) == sizeof(std::int64_t));
  static_assert(std::is_trivially_copyable_v<mp::timeout>);
  static_assert(mp::timeout(1s).duration() == 1s);  // constexpr
}

TEST(deadline, without_a_limit_never_passes) {
  const mp::detail::deadline d{mp::timeout()};
  EXPECT_FALSE(d.limited());
  EXPECT_FALSE(d.passed());
  EXPECT_FALSE(d.left().limited());
  EXPECT_EQ(d.when(), std::chrono::steady_clock::time_point::max());
}

TEST(deadline, counts_down_to_zero_and_stays_there) {
  const mp::detail::deadline zero{0s};
  EXPECT_TRUE(zero.passed());
  EXPECT_TRUE(zero.left().zero());
  const mp::detail::deadline soon{20ms};
  EXPECT_TRUE(soon.limited());
  EXPECT_LE(soon.left().duration(), 20ms);
  std::this_thread::sleep_for(30ms);
  EXPECT_TRUE(soon.passed());
  EXPECT_TRUE(soon.left().zero());
}

TEST(deadline, a_limit_past_the_clock_s_end_saturates) {
  const mp::detail::deadline far{nanoseconds::max() - 1ns};
  EXPECT_EQ(far.when(), std::chrono::steady_clock::time_point::max());
  EXPECT_FALSE(far.passed());
}

TEST(deadline, wait_until_waits_on_a_condition_variable) {
  std::mutex mutex;
  std::condition_variable changed;
  std::unique_lock lock(mutex);
  EXPECT_FALSE(
      mp::detail::wait_until(changed, lock, mp::detail::deadline(5ms), [] { return false; }));
  EXPECT_TRUE(mp::detail::wait_until(changed, lock, mp::detail::deadline({}), [] { return true; }));
}

// The blocking calls take any duration, floating ones included, as Python takes seconds.
TEST(vocabulary, blocking_calls_take_any_duration_or_none) {
  const mp::event e;
  EXPECT_FALSE(e.wait(0.001s));
  EXPECT_FALSE(e.wait(-1s));  // negative: look, do not wait (Python)
  e.set();
  EXPECT_TRUE(e.wait());
  EXPECT_TRUE(e.wait(std::nullopt));

  const mp::queue<int> q;
  EXPECT_THROW(q.get(true, 0.001s), mp::queue_empty);
  EXPECT_THROW(q.get(1ms), mp::queue_empty);
  EXPECT_EQ(q.try_get(std::chrono::duration<double, std::milli>(1.5)), std::nullopt);
  q.put(7, 0.5s);
  EXPECT_EQ(q.get(std::optional(1s)), 7);

  auto [reader, writer] = mp::pipe();
  EXPECT_FALSE(reader.poll());  // Python's poll(): do not wait
  EXPECT_FALSE(reader.poll(0.001s));
  writer.send(1);
  EXPECT_TRUE(reader.poll(std::nullopt));
  EXPECT_EQ(mp::wait(std::vector<int>{reader.fileno()}, 1.5s).size(), 1U);

  mp::process p{[] {}};
  p.start();
  EXPECT_TRUE(p.join(mp::testing::scaled(30s)));
  EXPECT_TRUE(p.join(0.0s));
}

// Copies of a handle name the same shared object, so a const one does everything a copy
// could: the rule in docs/conventions.md.
TEST(vocabulary, every_operation_on_a_handle_is_const) {
  const mp::lock lock;
  EXPECT_TRUE(lock.try_lock_for(1ms));
  EXPECT_FALSE(lock.acquire(false));
  lock.unlock();
  mp::lock copy = lock;  // std::scoped_lock wants a non-const lvalue: a copy is the same lock
  {
    std::scoped_lock guard(copy);
    EXPECT_FALSE(lock.acquire(false));
  }
  const mp::rlock rlock;
  rlock.lock();
  EXPECT_TRUE(rlock.try_lock_until(std::chrono::steady_clock::now() + 1ms));
  rlock.unlock();
  rlock.unlock();

  const mp::condition cond;
  cond.acquire();
  EXPECT_FALSE(cond.wait(1ms));
  EXPECT_FALSE(cond.wait_for([] { return false; }, 1ms));
  cond.notify_all();
  cond.release();

  const mp::semaphore sem(1);
  EXPECT_TRUE(sem.acquire(true, 1ms));
  EXPECT_FALSE(sem.acquire(true, 1ms));
  sem.release();

  const mp::barrier barrier(1, {}, 1s);
  EXPECT_EQ(barrier.wait(), 0U);
  barrier.abort();
  EXPECT_TRUE(barrier.broken());
  barrier.reset();

  const mp::joinable_queue<int> jq;
  jq.put(1);
  EXPECT_EQ(jq.get(), 1);
  jq.task_done();
  EXPECT_TRUE(jq.join(1s));

  const mp::simple_queue<int> sq;
  sq.put(2);
  EXPECT_EQ(sq.get(), 2);

  const mp::shared_value<int> v(1);
  v.set(2);
  EXPECT_EQ(v.get(), 2);
  const mp::any_lock& held = v.get_lock();
  EXPECT_TRUE(held.acquire(true, 1ms));
  held.release();
}

}  // namespace
