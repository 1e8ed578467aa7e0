// SPDX-License-Identifier: MIT
// Tests of the spawn start method and contexts (mp/context.hpp): a spawned
// child is a fresh run of this test program that runs only its target; the
// program's main() (here, GoogleTest's) never runs in it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <mutex>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mp/connection.hpp"
#include "mp/context.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "mp/sharedctypes.hpp"
#include "mp/synchronize.hpp"
#include "mp/testing/testing.hpp"

namespace {

using namespace std::chrono_literals;

// Set by a static initializer: a spawned child has run them before its target.
int initialized_before_main = [] { return 42; }();

std::string sum_as_text(std::vector<int> values) {
  int sum = 0;
  for (int v : values) sum += v;
  return std::to_string(sum);
}

// Exits with the code the arguments describe, so the parent can check what
// the child received and saw.
void exit_with(std::vector<int> values, std::string expected_sum, int initialized) {
  if (sum_as_text(values) != expected_sum) throw mp::system_exit{2};
  if (initialized != initialized_before_main) throw mp::system_exit{3};
  throw mp::system_exit{7};
}

void report_identity(int parent_pid) {
  const auto parent = mp::parent_process();
  if (!parent || parent->pid() != parent_pid) throw mp::system_exit{2};
  if (mp::current_process().name() != "spawned-child") throw mp::system_exit{3};
  if (::getpid() == parent_pid) throw mp::system_exit{4};
  throw mp::system_exit{0};
}

void throws_in_child() {
  throw std::runtime_error("thrown in a spawned child");
}

std::mutex held_by_a_thread;

// Takes the mutex that a thread of the parent holds while the child starts.
void take_the_mutex() {
  std::lock_guard lock(held_by_a_thread);
}

void echo_twice(mp::connection c) {
  const auto text = c.recv<std::string>();
  c.send(text + text);
}

// Tells the parent it runs, waits for the lock the parent holds, then
// releases the semaphore and notifies the condition.
void use_the_primitives(mp::event started, mp::lock held, mp::semaphore done,
                        mp::condition changed) {
  started.set();
  held.lock();
  held.unlock();
  done.release();
  std::scoped_lock guard(changed);
  changed.notify_all();
}

// Python's example for get_context('spawn'): def foo(q): q.put('hello').
void put_hello(mp::queue<std::string> q) {
  q.put("hello");
}

// Python's shared-state example: n.value = 3.1415927; a[i] = -a[i].
void set_pi_and_negate(mp::shared_value<double> n, mp::shared_array<int> a,
                       mp::raw_value<long> counted) {
  n.set(3.1415927);
  for (std::size_t i = 0; i < a.size(); ++i) a.set(i, -a.get(i));
  counted.fetch_add(1);
}

}  // namespace

TEST(spawn, the_child_runs_the_target_with_its_arguments_and_not_main) {
  mp::process p(mp::process_options{.method = mp::start_method::spawn}, exit_with,
                std::vector<int>{1, 2, 3, 4}, std::string("10"), 42);
  p.start();
  p.join();
  // GoogleTest's main would have exited 0 or 1 after running the tests again.
  EXPECT_EQ(p.exitcode(), 7);
}

TEST(spawn, the_child_knows_its_name_and_parent) {
  auto ctx = mp::get_context(mp::start_method::spawn);
  EXPECT_EQ(ctx.get_start_method(), mp::start_method::spawn);
  mp::process p = ctx.process(mp::process_options{.name = "spawned-child"}, report_identity,
                              static_cast<int>(::getpid()));
  p.start();
  EXPECT_TRUE(p.join(mp::testing::scaled(30s)));
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(spawn, a_connection_argument_reaches_the_child_as_a_working_end) {
  auto [ours, theirs] = mp::pipe();
  mp::process p(mp::process_options{.method = mp::start_method::spawn}, echo_twice,
                std::move(theirs));
  p.start();
  ours.send(std::string("ab"));
  EXPECT_EQ(ours.recv<std::string>(), "abab");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  // The child's end was open only in the child: it closed when the child ended.
  EXPECT_THROW(static_cast<void>(ours.recv<std::string>()), mp::eof_error);
}

TEST(spawn, locks_events_semaphores_and_conditions_reach_the_child_as_themselves) {
  mp::event started;
  mp::lock held;
  mp::semaphore done(0);
  mp::condition changed;
  held.lock();
  mp::process p(mp::process_options{.method = mp::start_method::spawn}, use_the_primitives, started,
                held, done, changed);
  p.start();
  EXPECT_TRUE(started.wait(mp::testing::scaled(30s)));
  EXPECT_EQ(done.get_value(), 0U);  // the child waits for our lock
  held.unlock();
  EXPECT_TRUE(done.acquire(true, mp::testing::scaled(30s)));
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(spawn, a_queue_reaches_the_child_as_itself) {
  auto ctx = mp::get_context(mp::start_method::spawn);
  mp::queue<std::string> q;
  mp::process p = ctx.process(put_hello, q);
  p.start();
  EXPECT_EQ(q.get(mp::testing::scaled(30s)), "hello");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(spawn, shared_values_and_arrays_reach_the_child_as_themselves) {
  mp::shared_value<double> num(0.0);
  mp::shared_array<int> arr(std::views::iota(0, 10));
  mp::raw_value<long> counted(0);
  mp::process p(mp::process_options{.method = mp::start_method::spawn}, set_pi_and_negate, num, arr,
                counted);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(num.get(), 3.1415927);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(arr.get(static_cast<std::size_t>(i)), -i);
  EXPECT_EQ(counted.get(), 1);
}

TEST(spawn, an_exception_in_the_child_ends_it_with_1) {
  mp::process p = mp::get_context(mp::start_method::spawn).process(throws_in_child);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 1);
}

TEST(spawn, a_capturing_lambda_is_refused_saying_why) {
  int captured = 3;
  mp::process p(mp::process_options{.method = mp::start_method::spawn},
                [captured] { static_cast<void>(captured); });
  try {
    p.start();
    FAIL() << "start() accepted a capturing lambda under spawn";
  } catch (const mp::usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("capturing lambda"), std::string::npos) << e.what();
  }
}

// The classic fork hazard: a thread holds a mutex when a child starts. A
// forked child inherits it locked, by a thread it does not have, and hangs; a
// spawned child starts clean.
TEST(spawn, is_immune_to_locks_other_threads_hold_at_fork) {
  std::promise<void> locked;
  std::promise<void> release;
  std::thread holder([&] {
    std::lock_guard lock(held_by_a_thread);
    locked.set_value();
    release.get_future().wait();
  });
  locked.get_future().wait();  // the thread holds the mutex from here on

  mp::process forked(mp::process_options{.method = mp::start_method::fork}, take_the_mutex);
  forked.start();
  mp::process spawned(mp::process_options{.method = mp::start_method::spawn}, take_the_mutex);
  spawned.start();

  EXPECT_TRUE(spawned.join(mp::testing::scaled(30s)));
  EXPECT_EQ(spawned.exitcode(), 0);
  // Stuck for good on a lock that no thread of its own will ever release.
  EXPECT_FALSE(forked.join(200ms));
  forked.kill();
  forked.join();
  release.set_value();
  holder.join();
}

TEST(context, the_default_is_fork_and_both_methods_are_available) {
  EXPECT_EQ(mp::get_start_method(), mp::start_method::fork);
  EXPECT_EQ(mp::get_all_start_methods(),
            (std::vector<mp::start_method>{mp::start_method::fork, mp::start_method::spawn}));
  EXPECT_EQ(mp::to_string(mp::start_method::spawn), "spawn");
  // Fixed on first use: changing it needs force.
  EXPECT_THROW(mp::set_start_method(mp::start_method::spawn), mp::usage_error);
  mp::set_start_method(mp::start_method::spawn, true);
  EXPECT_EQ(mp::get_context().get_start_method(), mp::start_method::spawn);
  mp::process p(exit_with, std::vector<int>{5}, std::string("5"), 42);  // spawned now
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 7);
  mp::set_start_method(mp::start_method::fork, true);
}
