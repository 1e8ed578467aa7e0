// SPDX-License-Identifier: MIT
// Tests of mp::process_pool_executor, mp::future, mp::wait and
// mp::as_completed (mp/executor.hpp).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "mp/connection.hpp"
#include "mp/executor.hpp"
#include "mp/synchronize.hpp"
#include "mp/testing/testing.hpp"

namespace {

using namespace std::chrono_literals;

long power_of_two(int n) {
  return 1L << n;
}

// The bytes of `text` and a checksum of them, to show a large argument arrived whole.
std::size_t weigh(const std::string& text) {
  std::size_t sum = text.size();
  for (const char c : text) sum = sum * 31 + static_cast<unsigned char>(c);
  return sum;
}

int slow_identity(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

int fails(int) {
  throw std::out_of_range("out of range in a worker");
}

int dies(int) {
  ::raise(SIGKILL);
  return 0;
}

TEST(executor, submit_returns_futures_with_results) {
  mp::process_pool_executor ex(2);
  EXPECT_EQ(ex.max_workers(), 2U);
  std::vector<mp::future<long>> futures;
  for (int n = 0; n < 10; ++n) futures.push_back(ex.submit(power_of_two, n));
  for (int n = 0; n < 10; ++n) EXPECT_EQ(futures[static_cast<std::size_t>(n)].result(), 1L << n);
  EXPECT_TRUE(futures[0].done());
  EXPECT_FALSE(futures[0].cancelled());
  EXPECT_EQ(futures[0].exception(), nullptr);
}

int worker_pid(int) {
  return static_cast<int>(::getpid());
}

// A call too large for the room in its future's state (96 bytes) goes in a
// buffer of its own: small, just past the room, and large ones all arrive whole.
TEST(executor, calls_of_every_size_arrive_whole) {
  mp::process_pool_executor ex(2);
  std::vector<std::string> texts;
  for (const std::size_t size :
       {std::size_t{1}, std::size_t{40}, std::size_t{90}, std::size_t{200}, std::size_t{1} << 20})
    texts.emplace_back(size, static_cast<char>('a' + size % 26));
  std::vector<mp::future<std::size_t>> futures;
  for (const auto& text : texts) futures.push_back(ex.submit(weigh, text));
  for (std::size_t i = 0; i < texts.size(); ++i)
    EXPECT_EQ(futures[i].result(), weigh(texts[i])) << texts[i].size() << " bytes";
}

TEST(executor, starts_workers_on_demand_and_reuses_idle_ones) {
  // As Python 3.9's: no worker before the first task, and one task at a time
  // is served by one worker, which is kept.
  // Counted among all descendants: a fork server's workers are its children.
  const std::size_t before = mp::testing::descendant_pids().size();
  mp::process_pool_executor ex(4);
  EXPECT_EQ(mp::testing::descendant_pids().size(), before);
  std::set<int> pids;
  for (int i = 0; i < 5; ++i) pids.insert(ex.submit(worker_pid, i).result());
  EXPECT_EQ(pids.size(), 1U);
  EXPECT_EQ(mp::testing::descendant_pids().size(), before + 1);
  // Tasks that wait for each other need workers side by side: more start, up to four.
  auto first = ex.submit(slow_identity, 300);
  auto second = ex.submit(slow_identity, 300);
  EXPECT_EQ(first.result() + second.result(), 600);
  const std::size_t now = mp::testing::descendant_pids().size() - before;
  EXPECT_GE(now, 2U);
  EXPECT_LE(now, 4U);
  ex.shutdown(true);
  // A fork server reaps its children in its own time: give it that.
  const auto until = std::chrono::steady_clock::now() + mp::testing::scaled(10s);
  while (mp::testing::descendant_pids().size() != before &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(mp::testing::descendant_pids().size(), before);
}

void wait_for_go(mp::event go) {
  go.wait();
}

TEST(executor, shutdown_cancels_the_tasks_a_worker_holds_but_has_not_started) {
  // Python's cancel_futures: every future not started is cancelled, also those
  // already handed to a worker, which waits behind its running task.
  mp::event go;
  mp::process_pool_executor ex(1);
  auto first = ex.submit(wait_for_go, go);
  std::vector<mp::future<long>> queued;
  for (int i = 0; i < 3; ++i) queued.push_back(ex.submit(power_of_two, i));
  while (!first.running()) std::this_thread::sleep_for(1ms);
  ex.shutdown(false, true);
  for (const auto& f : queued) EXPECT_TRUE(f.cancelled());
  go.set();
  first.result();
}

TEST(executor, exceptions_and_timeouts) {
  mp::process_pool_executor ex(2);
  auto bad = ex.submit(fails, 1);
  EXPECT_THROW(bad.result(), std::out_of_range);
  EXPECT_NE(bad.exception(), nullptr);
  auto slow = ex.submit(slow_identity, 300);
  EXPECT_THROW(slow.result(5ms), mp::timeout_error);
  EXPECT_EQ(slow.result(), 300);
}

TEST(executor, a_dead_worker_breaks_only_its_future) {
  mp::process_pool_executor ex(2);
  auto doomed = ex.submit(dies, 0);
  auto fine = ex.submit(power_of_two, 5);
  EXPECT_THROW(doomed.result(mp::testing::scaled(30s)), mp::broken_process_pool);
  EXPECT_EQ(fine.result(), 32);
  EXPECT_EQ(ex.submit(power_of_two, 3).result(), 8);  // still usable
}

TEST(executor, runs_on_spawned_workers_too) {
  MP_ONE_RUN_ONLY("its executor starts its workers by spawn whatever the suite's default");
  mp::process_pool_executor ex({.max_workers = 2, .method = mp::start_method::spawn});
  EXPECT_EQ(ex.submit(power_of_two, 10).result(), 1024);
  auto doomed = ex.submit(dies, 0);
  EXPECT_THROW(doomed.result(mp::testing::scaled(30s)), mp::broken_process_pool);
  EXPECT_EQ(ex.submit(power_of_two, 3).result(), 8);
}

TEST(executor, cancel_before_start_and_while_running) {
  mp::process_pool_executor ex(1);
  auto running = ex.submit(slow_identity, 60000);
  auto waiting = ex.submit(slow_identity, 1);
  EXPECT_TRUE(waiting.cancel());
  EXPECT_TRUE(waiting.cancelled());
  EXPECT_THROW(waiting.result(), mp::cancelled_error);
  // Python cannot cancel a running future; mp can when asked to.
  const auto deadline = std::chrono::steady_clock::now() + mp::testing::scaled(30s);
  while (!running.running()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_FALSE(running.cancel());
  EXPECT_TRUE(running.cancel(true));
  EXPECT_THROW(running.result(mp::testing::scaled(30s)), mp::cancelled_error);
  EXPECT_TRUE(running.cancelled());
  EXPECT_EQ(ex.submit(power_of_two, 2).result(), 4);
}

int wait_for_event(mp::event go) {
  go.wait();
  return 1;
}

int echo_once(mp::connection& conn) {
  conn.send(conn.recv<int>());
  return 0;
}

TEST(executor, a_cancelled_task_lets_go_of_the_resources_among_its_arguments) {
  mp::process_pool_executor ex(1);
  mp::event go;
  auto blocker = ex.submit(wait_for_event, go);
  // Queued in the worker behind the blocker, its connection end sent with it.
  auto [mine, theirs] = mp::pipe();
  auto waiting = ex.submit(echo_once, std::move(theirs));
  EXPECT_TRUE(waiting.cancel());
  go.set();
  EXPECT_EQ(blocker.result(mp::testing::scaled(30s)), 1);
  // Nobody holds the other end any more: the worker closed it when it skipped the task.
  ASSERT_TRUE(mine.poll(mp::testing::scaled(30s)));
  EXPECT_THROW(mine.recv<int>(), mp::eof_error);
  // The next task's descriptors are its own.
  auto [mine2, theirs2] = mp::pipe();
  auto echo = ex.submit(echo_once, std::move(theirs2));
  mine2.send(7);
  EXPECT_EQ(mine2.recv<int>(), 7);
  EXPECT_EQ(echo.result(mp::testing::scaled(30s)), 0);
}

TEST(executor, done_callbacks_wait_and_as_completed) {
  mp::process_pool_executor ex(2);
  std::atomic<int> called{0};
  auto f = ex.submit(power_of_two, 4);
  f.add_done_callback([&](mp::future<long> done) { called += static_cast<int>(done.result()); });
  f.result();
  // As in Python, the callbacks run just after the future is marked done, so
  // result() may return first.
  const auto until = std::chrono::steady_clock::now() + mp::testing::scaled(30s);
  while (called.load() != 16 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  f.add_done_callback([&](mp::future<long>) { called += 1; });  // already done: at once
  EXPECT_EQ(called.load(), 17);

  std::vector<mp::future<int>> futures{ex.submit(slow_identity, 400), ex.submit(slow_identity, 10)};
  const auto first = mp::wait(futures, mp::testing::scaled(30s), mp::return_when::first_completed);
  ASSERT_GE(first.done.size(), 1U);
  std::vector<int> order;
  for (const auto& done : mp::as_completed(futures))
    order.push_back(done.result());  // const: a future is a handle
  EXPECT_EQ(order, (std::vector<int>{10, 400}));
  const auto all = mp::wait(futures);
  EXPECT_EQ(all.done.size(), 2U);
  EXPECT_TRUE(all.not_done.empty());
  std::vector<mp::future<int>> never{ex.submit(slow_identity, 600)};
  EXPECT_THROW(
      {
        for (const auto& done : mp::as_completed(never, 10ms)) static_cast<void>(done);
      },
      mp::timeout_error);
}

TEST(executor, map_is_lazy_and_ordered_and_shutdown_cancels_pending) {
  mp::process_pool_executor ex(2);
  std::vector<int> input(20);
  std::iota(input.begin(), input.end(), 0);
  std::vector<long> got;
  for (long v : ex.map(power_of_two, input)) got.push_back(v);
  ASSERT_EQ(got.size(), 20U);
  EXPECT_EQ(got[10], 1024);
  const std::vector<int> slow{500};
  EXPECT_THROW(
      {
        for (int v : ex.map(slow_identity, slow, 20ms)) static_cast<void>(v);
      },
      mp::timeout_error);
  std::vector<mp::future<int>> futures;
  for (int i = 0; i < 20; ++i) futures.push_back(ex.submit(slow_identity, 50));
  ex.shutdown(true, true);
  int cancelled = 0;
  for (auto& f : futures) {
    EXPECT_TRUE(f.done());
    cancelled += f.cancelled() ? 1 : 0;
  }
  EXPECT_GE(cancelled, 1);  // twenty 50 ms tasks on two workers: most had not started
  try {
    ex.submit(power_of_two, 1);
    FAIL() << "a submission after shutdown was accepted";
  } catch (const mp::process_error& e) {
    EXPECT_STREQ(e.what(), "cannot schedule new futures after shutdown");
  }
}

void failing_initializer() {
  throw std::runtime_error("no model file");
}

// Python's executor breaks when an initializer fails; before, the worker
// was replaced for ever, the future never finished and shutdown() hung.
TEST(executor, a_failing_initializer_breaks_it_and_shutdown_returns) {
  mp::process_pool_executor ex({.max_workers = 1, .initializer = failing_initializer});
  try {
    auto f = ex.submit(power_of_two, 2);
    ASSERT_TRUE(f.wait_for(mp::testing::scaled(30s))) << "the future of a broken executor hung";
    f.result();
    FAIL() << "a task ran though the initializer failed";
  } catch (const mp::broken_process_pool& e) {
    EXPECT_NE(std::string(e.what()).find("no model file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ex.submit(power_of_two, 3), mp::broken_executor);
  ex.shutdown(true);
}

// A dead worker is the same error whichever way the task came.
TEST(executor, map_reports_a_dead_worker_as_submit_does) {
  mp::process_pool_executor ex(1);
  const std::vector<int> input{1};
  EXPECT_THROW(
      {
        for (int v : ex.map(dies, input)) static_cast<void>(v);
      },
      mp::broken_process_pool);
  EXPECT_EQ(ex.submit(power_of_two, 4).result(), 16);
}

// Python's Executor.map submits everything at once: its results survive a
// shutdown, or the executor itself, before the iteration.
TEST(executor, map_results_survive_shutdown_and_the_executor) {
  std::vector<long> got;
  {
    mp::process_pool_executor ex(2);
    auto results = ex.map(power_of_two, std::vector<int>{1, 2, 3});
    ex.shutdown(false);
    for (long v : results) got.push_back(v);
  }
  EXPECT_EQ(got, (std::vector<long>{2, 4, 8}));
  const auto make = [] {
    mp::process_pool_executor ex(1);
    return ex.map(power_of_two, std::views::iota(4, 7));
  };
  got.clear();
  for (long v : make()) got.push_back(v);
  EXPECT_EQ(got, (std::vector<long>{16, 32, 64}));
}

// Python's Future(): completed by the program, waited on with the same tools.
TEST(executor, a_future_the_program_completes) {
  mp::future<int> f;
  EXPECT_FALSE(f.done());
  EXPECT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_TRUE(f.running());
  EXPECT_FALSE(f.cancel());  // running: too late, as in Python
  EXPECT_THROW(f.set_running_or_notify_cancel(), mp::invalid_state_error);
  std::thread completer([f] { f.set_result(42); });
  const std::vector<mp::future<int>> both{f, f};
  const auto waited = mp::wait(both);  // the same future twice counts once
  completer.join();
  ASSERT_EQ(waited.done.size(), 1U);
  EXPECT_EQ(waited.done[0].result(), 42);
  EXPECT_THROW(f.set_result(1), mp::invalid_state_error);
  EXPECT_THROW(f.set_exception(nullptr), mp::invalid_state_error);

  mp::future<void> failed;
  failed.set_exception(std::make_exception_ptr(std::out_of_range("no")));
  EXPECT_THROW(failed.result(), std::out_of_range);

  mp::future<int> dropped;
  EXPECT_TRUE(dropped.cancel());
  EXPECT_FALSE(dropped.set_running_or_notify_cancel());
  EXPECT_THROW(dropped.result(), mp::cancelled_error);
  EXPECT_THROW(dropped.set_result(1), mp::invalid_state_error);
}

TEST(executor, as_completed_yields_each_future_once_and_lets_it_go) {
  mp::process_pool_executor ex(2);
  auto a = ex.submit(power_of_two, 1);
  auto b = ex.submit(power_of_two, 2);
  std::vector<mp::future<long>> given{a, b, a, a};
  std::weak_ptr<mp::detail::task_state<long>> watch = a.state();
  a = mp::future<long>(nullptr);
  long sum = 0;
  int yielded = 0;
  {
    mp::as_completed<long> done(given);
    for (const auto& f : done) {
      sum += f.result();
      ++yielded;
    }
    given.clear();
    // The pool's thread lets go of a future's state just after completing it.
    for (int i = 0; i < 1000 && !watch.expired(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(watch.expired()) << "as_completed kept a yielded future";
  }
  EXPECT_EQ(yielded, 2);
  EXPECT_EQ(sum, 6);
}

// A done callback that throws is reported, never thrown at its caller.
TEST(executor, a_throwing_done_callback_is_reported_not_thrown) {
  mp::future<int> f;
  f.set_result(1);
  ::testing::internal::CaptureStderr();
  EXPECT_NO_THROW(f.add_done_callback([](mp::future<int>) { throw std::runtime_error("oops"); }));
  const std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(said.find("oops"), std::string::npos) << said;
}

}  // namespace
