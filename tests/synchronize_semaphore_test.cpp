// SPDX-License-Identifier: MIT
// Tests of mp::semaphore, mp::bounded_semaphore, mp::event and mp::barrier
// (mp/synchronize.hpp), in one process and across processes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mp/connection.hpp"
#include "mp/process.hpp"
#include "mp/synchronize.hpp"
#include "mp/testing/testing.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// Fields 3 (state), 14 (utime) and 15 (stime) of a /proc stat file.
struct proc_stat {
  char state = '?';
  long cpu_ticks = 0;
};

proc_stat read_stat(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  proc_stat out;
  const auto close = line.rfind(')');  // the command name may hold anything
  if (close == std::string::npos) return out;
  std::istringstream fields(line.substr(close + 2));
  std::string skip;
  fields >> out.state;                          // field 3
  for (int i = 4; i < 14; ++i) fields >> skip;  // fields 4-13
  long user = 0, system = 0;
  fields >> user >> system;  // fields 14, 15
  out.cpu_ticks = user + system;
  return out;
}

std::string stat_path(pid_t pid) {
  return "/proc/" + std::to_string(pid) + "/stat";
}

std::string thread_stat_path(pid_t tid) {
  return "/proc/self/task/" + std::to_string(tid) + "/stat";
}

// Waits until the process or thread whose stat file is `path` sleeps in the
// kernel: after it has said it is about to block, that means it blocks.
void wait_until_asleep(const std::string& path) {
  const auto deadline = clock_type::now() + mp::testing::scaled(10s);
  while (read_stat(path).state != 'S') {
    ASSERT_LT(clock_type::now(), deadline) << path << " never went to sleep";
    std::this_thread::sleep_for(1ms);
  }
}

// Sends SIGSTOP to `pid` and waits (up to 10 s, scaled) until it shows as
// stopped; false if the signal could not be sent.
bool stop(pid_t pid) {
  if (::kill(pid, SIGSTOP) != 0) return false;
  const auto deadline = clock_type::now() + mp::testing::scaled(10s);
  while (read_stat(stat_path(pid)).state != 'T' && clock_type::now() < deadline)
    std::this_thread::sleep_for(1ms);
  return true;
}

// Waits until `b` counts `n` arrivals.
void wait_for_arrivals(const mp::barrier& b, unsigned n) {
  const auto deadline = clock_type::now() + mp::testing::scaled(10s);
  while (b.n_waiting() != n) {
    ASSERT_LT(clock_type::now(), deadline) << "only " << b.n_waiting() << " arrivals";
    std::this_thread::sleep_for(1ms);
  }
}

// Runs a barrier wait and reports how it ended: "index <n>", "broken" or the
// message of another exception.
std::string barrier_outcome(const mp::barrier& b, mp::timeout timeout) {
  try {
    return "index " + std::to_string(b.wait(timeout));
  } catch (const mp::broken_barrier&) {
    return "broken";
  } catch (const std::exception& e) {
    return e.what();
  }
}

// A child that arrives at `b` and sends how its wait ended.
mp::process barrier_waiter(const mp::barrier& b, mp::connection& reader) {
  auto [r, w] = mp::pipe(false);
  mp::process child{[](mp::barrier shared, mp::connection out) {
                      out.send(barrier_outcome(shared, mp::testing::scaled(30s)));
                    },
                    b, std::move(w)};
  child.start();
  reader = std::move(r);
  return child;
}

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

TEST(semaphore, counts_like_python) {
  mp::semaphore sem(2);
  EXPECT_EQ(sem.get_value(), 2U);
  EXPECT_TRUE(sem.acquire());
  EXPECT_EQ(sem.get_value(), 1U);
  EXPECT_TRUE(sem.acquire());
  EXPECT_EQ(sem.get_value(), 0U);
  EXPECT_FALSE(sem.acquire(false));
  EXPECT_EQ(sem.get_value(), 0U);
  sem.release();
  EXPECT_EQ(sem.get_value(), 1U);
  sem.release();
  sem.release();  // a plain semaphore may rise above its initial value
  sem.release(2);
  EXPECT_EQ(sem.get_value(), 5U);
  EXPECT_EQ(mp::semaphore{}.get_value(), 1U);
  mp::semaphore copy = sem;  // copies share one semaphore
  EXPECT_TRUE(copy.acquire());
  EXPECT_EQ(sem.get_value(), 4U);
}

TEST(semaphore, timeouts_return_false_and_non_blocking_acquire_never_waits) {
  mp::semaphore sem(0);
  auto start = clock_type::now();
  EXPECT_FALSE(sem.acquire(false));
  EXPECT_FALSE(sem.acquire(false, std::nullopt));
  EXPECT_FALSE(sem.acquire(false, 10s));  // the timeout is ignored, as in Python
  EXPECT_FALSE(sem.acquire(true, 0s));
  EXPECT_FALSE(sem.acquire(true, -1s));
  EXPECT_FALSE(sem.try_lock());
  EXPECT_LT(seconds_since(start), 1.0);

  start = clock_type::now();
  EXPECT_FALSE(sem.acquire(true, 100ms));
  EXPECT_GE(seconds_since(start), 0.1);
  EXPECT_FALSE(sem.try_lock_for(20ms));
  EXPECT_FALSE(sem.try_lock_until(clock_type::now() + 20ms));
  EXPECT_GE(seconds_since(start), 0.14);
  EXPECT_LT(seconds_since(start), 5.0);
  EXPECT_EQ(sem.get_value(), 0U);
}

TEST(semaphore, a_timeout_too_long_to_represent_means_forever) {
  mp::semaphore sem(0);
  std::thread releaser([&] {
    std::this_thread::sleep_for(50ms);
    sem.release();
  });
  EXPECT_TRUE(sem.acquire(true, std::chrono::nanoseconds::max()));
  releaser.join();
}

TEST(semaphore, release_n_lets_n_waiters_through) {
  mp::semaphore sem(0);
  std::atomic<int> through{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i)
    waiters.emplace_back([&] {
      if (sem.acquire(true, mp::testing::scaled(30s))) ++through;
    });
  sem.release(2);
  const auto deadline = clock_type::now() + mp::testing::scaled(10s);
  while (through.load() < 2 && clock_type::now() < deadline) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(through.load(), 2);
  EXPECT_EQ(sem.get_value(), 0U);
  sem.release();
  for (auto& w : waiters) w.join();
  EXPECT_EQ(through.load(), 3);
}

TEST(semaphore, bad_values_throw_and_change_nothing) {
  EXPECT_THROW(mp::semaphore{mp::sem_value_max + 1}, mp::usage_error);
  EXPECT_THROW(mp::bounded_semaphore{mp::sem_value_max + 1}, mp::usage_error);
  mp::semaphore sem(mp::sem_value_max - 1);
  EXPECT_THROW(sem.release(0), mp::usage_error);
  EXPECT_THROW(sem.release(2), mp::usage_error);
  EXPECT_EQ(sem.get_value(), mp::sem_value_max - 1);
  sem.release();
  EXPECT_THROW(sem.release(), mp::usage_error);
  EXPECT_EQ(sem.get_value(), mp::sem_value_max);
}

TEST(semaphore, works_as_a_lock_with_standard_guards) {
  mp::semaphore sem;
  {
    std::scoped_lock guard(sem);  // Python's `with sem:`
    EXPECT_EQ(sem.get_value(), 0U);
    EXPECT_FALSE(sem.try_lock());
  }
  EXPECT_EQ(sem.get_value(), 1U);
  std::unique_lock guard(sem, std::defer_lock);
  EXPECT_TRUE(guard.try_lock_for(10ms));
  EXPECT_FALSE(sem.try_lock_for(1ms));
  guard.unlock();
  EXPECT_EQ(sem.get_value(), 1U);
}

TEST(semaphore, a_blocked_child_is_woken_by_the_parent_and_uses_no_cpu) {
  mp::semaphore sem(0);
  auto [reader, writer] = mp::pipe(false);
  mp::process child{[](mp::semaphore s, mp::connection out) {
                      out.send(1);
                      out.send(s.acquire(true, mp::testing::scaled(30s)));
                    },
                    sem, std::move(writer)};
  child.start();
  EXPECT_EQ(reader.recv<int>(), 1);
  const std::string path = stat_path(*child.pid());
  wait_until_asleep(path);
  const long before = read_stat(path).cpu_ticks;
  std::this_thread::sleep_for(300ms);
  const long after = read_stat(path).cpu_ticks;
  EXPECT_FALSE(reader.poll());  // still blocked
  sem.release();
  EXPECT_TRUE(reader.recv<bool>());
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
  EXPECT_EQ(sem.get_value(), 0U);
  const long ms = (after - before) * 1000 / ::sysconf(_SC_CLK_TCK);
  EXPECT_LT(ms, 50) << "a blocked waiter used " << ms << " ms of CPU in 300 ms";
}

TEST(semaphore, never_admits_more_holders_than_its_value_across_processes) {
  struct counters {
    std::atomic<int> holders;
    std::atomic<int> most;
    std::atomic<int> entries;
  };
  mp::semaphore sem(2);
  auto shared = mp::detail::shared_object<counters>::make();
  constexpr int processes = 4, iterations = 2000;
  std::vector<mp::process> workers;
  for (int i = 0; i < processes; ++i)
    workers.emplace_back(
        [](mp::semaphore admits, mp::detail::shared_object<counters> seen) {
          for (int n = 0; n < iterations; ++n) {
            std::scoped_lock guard(admits);
            const int now = seen->holders.fetch_add(1) + 1;
            int most = seen->most.load();
            while (now > most && !seen->most.compare_exchange_weak(most, now)) {
            }
            seen->entries.fetch_add(1);
            if (n % 16 == 0) std::this_thread::yield();  // let others pile up
            seen->holders.fetch_sub(1);
          }
        },
        sem, shared);
  for (auto& w : workers) w.start();
  for (auto& w : workers) {
    w.join();
    EXPECT_EQ(w.exitcode(), 0);
  }
  EXPECT_EQ(shared->entries.load(), processes * iterations);
  EXPECT_LE(shared->most.load(), 2);
  EXPECT_GE(shared->most.load(), 1);
  EXPECT_EQ(sem.get_value(), 2U);
}

TEST(bounded_semaphore, release_above_the_initial_value_throws_and_changes_nothing) {
  mp::bounded_semaphore sem(2);
  EXPECT_TRUE(sem.acquire());
  EXPECT_TRUE(sem.acquire());
  EXPECT_FALSE(sem.acquire(false));
  sem.release();
  try {
    sem.release(2);
    FAIL() << "no usage_error";
  } catch (const mp::usage_error& e) {
    EXPECT_STREQ(e.what(), "semaphore or lock released too many times");
  }
  EXPECT_EQ(sem.get_value(), 1U);
  sem.release();
  EXPECT_THROW(sem.release(), mp::usage_error);
  EXPECT_EQ(sem.get_value(), 2U);
  EXPECT_EQ(mp::bounded_semaphore{}.get_value(), 1U);
}

TEST(bounded_semaphore, keeps_its_bound_in_a_child_and_as_a_plain_semaphore) {
  mp::bounded_semaphore bounded(1);
  mp::semaphore sliced = bounded;  // the bound lives in shared memory
  EXPECT_THROW(sliced.release(), mp::usage_error);
  auto [reader, writer] = mp::pipe(false);
  mp::process child{[](mp::semaphore s, mp::connection out) {
                      s.acquire();
                      s.release();
                      try {
                        s.release();
                        out.send(std::string{"released"});
                      } catch (const mp::usage_error&) {
                        out.send(std::string{"refused"});
                      }
                    },
                    sliced, std::move(writer)};
  child.start();
  EXPECT_EQ(reader.recv<std::string>(), "refused");
  child.join();
  EXPECT_EQ(bounded.get_value(), 1U);
}

TEST(event, sets_clears_and_waits_like_python) {
  mp::event e;
  EXPECT_FALSE(e.is_set());
  auto start = clock_type::now();
  EXPECT_FALSE(e.wait(0s));
  EXPECT_LT(seconds_since(start), 1.0);
  start = clock_type::now();
  EXPECT_FALSE(e.wait(50ms));
  EXPECT_GE(seconds_since(start), 0.05);
  e.set();
  EXPECT_TRUE(e.is_set());
  EXPECT_TRUE(e.wait());
  EXPECT_TRUE(e.wait(0s));
  e.set();  // setting twice is harmless
  EXPECT_TRUE(e.is_set());
  e.clear();
  EXPECT_FALSE(e.is_set());
  EXPECT_FALSE(e.wait(1ms));
  mp::event copy = e;
  copy.set();
  EXPECT_TRUE(e.is_set());
}

TEST(event, set_in_the_parent_wakes_every_waiting_child) {
  mp::event e;
  std::vector<mp::connection> readers;
  std::vector<mp::process> children;
  for (int i = 0; i < 3; ++i) {
    auto [reader, writer] = mp::pipe(false);
    children.emplace_back(
        [](mp::event shared, mp::connection out) {
          out.send(1);
          out.send(shared.wait(mp::testing::scaled(30s)));
        },
        e, std::move(writer));
    children.back().start();
    readers.push_back(std::move(reader));
  }
  for (std::size_t i = 0; i < children.size(); ++i) {
    EXPECT_EQ(readers[i].recv<int>(), 1);
    wait_until_asleep(stat_path(*children[i].pid()));
    EXPECT_FALSE(readers[i].poll());
  }
  e.set();
  for (std::size_t i = 0; i < children.size(); ++i) {
    EXPECT_TRUE(readers[i].recv<bool>());
    children[i].join();
    EXPECT_EQ(children[i].exitcode(), 0);
  }
}

TEST(event, a_set_undone_by_clear_still_wakes_a_waiter_which_returns_false) {
  mp::event e;
  auto [reader, writer] = mp::pipe(false);
  mp::process child{[](mp::event shared, mp::connection out) {
                      out.send(1);
                      out.send(shared.wait(mp::testing::scaled(30s)));
                    },
                    e, std::move(writer)};
  child.start();
  EXPECT_EQ(reader.recv<int>(), 1);
  const pid_t pid = *child.pid();
  wait_until_asleep(stat_path(pid));
  // Stopped, the waiter cannot run between set() and clear(); when it
  // continues, the kernel restarts its futex wait, which finds the word changed.
  ASSERT_TRUE(stop(pid));
  e.set();
  e.clear();
  ASSERT_EQ(::kill(pid, SIGCONT), 0);
  const auto start = clock_type::now();
  EXPECT_FALSE(reader.recv<bool>());
  EXPECT_LT(seconds_since(start), 10.0);  // woken, not timed out
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
}

TEST(event, what_happens_before_set_is_visible_after_wait) {
  struct data {
    int value;
  };
  mp::event e;
  auto shared = mp::detail::shared_object<data>::make(data{0});
  mp::process child{[](mp::event done, mp::detail::shared_object<data> written) {
                      written->value = 42;  // not atomic: only the event orders it
                      done.set();
                    },
                    e, shared};
  child.start();
  EXPECT_TRUE(e.wait(mp::testing::scaled(30s)));
  EXPECT_EQ(shared->value, 42);
  child.join();
}

TEST(barrier, three_processes_get_each_index_once_per_cycle_and_the_last_runs_the_action) {
  struct counters {
    std::atomic<int> actions;
    std::atomic<int> action_pid;
    std::atomic<int> misplaced_actions;
  };
  auto shared = mp::detail::shared_object<counters>::make();
  mp::barrier b(3, {[](mp::detail::shared_object<counters> seen) {
                      seen->actions.fetch_add(1);
                      seen->action_pid.store(static_cast<int>(::getpid()));
                    },
                    shared});
  EXPECT_EQ(b.parties(), 3U);
  constexpr int cycles = 200;
  std::vector<mp::connection> readers;
  std::vector<mp::process> children;
  for (int i = 0; i < 3; ++i) {
    auto [reader, writer] = mp::pipe(false);
    children.emplace_back(
        [](mp::barrier shared_barrier, mp::detail::shared_object<counters> seen,
           mp::connection out) {
          std::vector<unsigned> indices;
          for (int c = 0; c < cycles; ++c) {
            const unsigned index = shared_barrier.wait(mp::testing::scaled(30s));
            // The next action needs this process to arrive again, so the
            // last one is still ours.
            if (index == 2 && seen->action_pid.load() != static_cast<int>(::getpid()))
              seen->misplaced_actions.fetch_add(1);
            indices.push_back(index);
          }
          out.send(indices);
        },
        b, shared, std::move(writer));
    children.back().start();
    readers.push_back(std::move(reader));
  }
  std::vector<std::vector<unsigned>> indices;
  for (auto& r : readers) indices.push_back(r.recv<std::vector<unsigned>>());
  for (auto& c : children) {
    c.join();
    EXPECT_EQ(c.exitcode(), 0);
  }
  for (std::size_t c = 0; c < cycles; ++c) {
    const std::multiset<unsigned> cycle{indices[0][c], indices[1][c], indices[2][c]};
    EXPECT_EQ(cycle, (std::multiset<unsigned>{0, 1, 2})) << "cycle " << c;
  }
  EXPECT_EQ(shared->actions.load(), cycles);
  EXPECT_EQ(shared->misplaced_actions.load(), 0);
  EXPECT_EQ(b.n_waiting(), 0U);
  EXPECT_FALSE(b.broken());
}

TEST(barrier, threads_that_reenter_fast_never_confuse_a_slow_one) {
  constexpr unsigned parties = 4;
  constexpr int cycles = 2000;
  std::atomic<int> actions{0};
  mp::barrier b(parties, [&] { ++actions; });
  std::vector<std::vector<unsigned>> indices(parties);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < parties; ++t)
    threads.emplace_back([&, t] {
      for (int c = 0; c < cycles; ++c) indices[t].push_back(b.wait(mp::testing::scaled(30s)));
    });
  for (auto& t : threads) t.join();
  for (std::size_t c = 0; c < cycles; ++c) {
    std::multiset<unsigned> cycle;
    for (unsigned t = 0; t < parties; ++t) cycle.insert(indices[t][c]);
    EXPECT_EQ(cycle, (std::multiset<unsigned>{0, 1, 2, 3})) << "cycle " << c;
  }
  EXPECT_EQ(actions.load(), cycles);
}

// Runs `cycles` complete cycles of a two-party barrier with two threads.
void run_cycles(mp::barrier& b, int cycles) {
  std::thread other([&] {
    for (int c = 0; c < cycles; ++c) b.wait(mp::testing::scaled(30s));
  });
  for (int c = 0; c < cycles; ++c) b.wait(mp::testing::scaled(30s));
  other.join();
}

TEST(barrier, a_waiter_that_falls_behind_still_learns_how_its_cycle_ended) {
  for (const bool released : {true, false}) {
    SCOPED_TRACE(released ? "cycle released" : "cycle aborted");
    mp::barrier b(2);
    mp::connection reader;
    mp::process child = barrier_waiter(b, reader);
    wait_for_arrivals(b, 1);
    const pid_t pid = *child.pid();
    wait_until_asleep(stat_path(pid));
    // Stopped, the child cannot look at the barrier until long after its
    // cycle ended and several others came and went.
    ASSERT_TRUE(stop(pid));
    if (released) {
      EXPECT_EQ(b.wait(), 1U);
      b.abort();
    } else {
      b.abort();
    }
    b.reset();
    run_cycles(b, 5);
    b.abort();
    b.reset();
    ASSERT_EQ(::kill(pid, SIGCONT), 0);
    EXPECT_EQ(reader.recv<std::string>(), released ? "index 0" : "broken");
    child.join();
  }
}

TEST(barrier, a_single_party_never_waits) {
  int actions = 0;
  mp::barrier b(1, [&] { ++actions; });
  for (int i = 0; i < 3; ++i) EXPECT_EQ(b.wait(), 0U);
  EXPECT_EQ(actions, 3);
  EXPECT_THROW(mp::barrier{0}, mp::usage_error);
}

TEST(barrier, abort_breaks_every_waiter_until_reset) {
  mp::barrier b(3);
  mp::connection r1, r2;
  mp::process c1 = barrier_waiter(b, r1);
  mp::process c2 = barrier_waiter(b, r2);
  wait_for_arrivals(b, 2);
  b.abort();
  EXPECT_TRUE(b.broken());
  EXPECT_EQ(b.n_waiting(), 0U);
  EXPECT_EQ(r1.recv<std::string>(), "broken");
  EXPECT_EQ(r2.recv<std::string>(), "broken");
  c1.join();
  c2.join();
  EXPECT_THROW(b.wait(), mp::broken_barrier);  // at once, even without a timeout
  b.abort();
  EXPECT_TRUE(b.broken());
  b.reset();
  EXPECT_FALSE(b.broken());
  // Usable again, by the same processes' successors.
  mp::process c3 = barrier_waiter(b, r1);
  mp::process c4 = barrier_waiter(b, r2);
  const unsigned mine = b.wait(mp::testing::scaled(30s));
  const std::set<std::string> theirs{r1.recv<std::string>(), r2.recv<std::string>()};
  std::set<std::string> all = theirs;
  all.insert("index " + std::to_string(mine));
  EXPECT_EQ(all, (std::set<std::string>{"index 0", "index 1", "index 2"}));
  c3.join();
  c4.join();
}

TEST(barrier, reset_while_waited_on_breaks_the_waiters_and_leaves_it_usable) {
  mp::barrier b(3);
  mp::connection r1, r2;
  mp::process c1 = barrier_waiter(b, r1);
  mp::process c2 = barrier_waiter(b, r2);
  wait_for_arrivals(b, 2);
  b.reset();
  EXPECT_FALSE(b.broken());
  EXPECT_EQ(r1.recv<std::string>(), "broken");
  EXPECT_EQ(r2.recv<std::string>(), "broken");
  c1.join();
  c2.join();
  EXPECT_EQ(b.n_waiting(), 0U);
  std::thread t1([&] { b.wait(mp::testing::scaled(30s)); });
  std::thread t2([&] { b.wait(mp::testing::scaled(30s)); });
  b.wait(mp::testing::scaled(30s));
  t1.join();
  t2.join();
  EXPECT_FALSE(b.broken());
}

TEST(barrier, a_wait_that_times_out_breaks_it_for_every_waiter) {
  mp::barrier b(3);
  mp::connection r1;
  mp::process c1 = barrier_waiter(b, r1);
  wait_for_arrivals(b, 1);
  const auto start = clock_type::now();
  EXPECT_THROW(b.wait(100ms), mp::broken_barrier);
  EXPECT_GE(seconds_since(start), 0.1);
  EXPECT_EQ(r1.recv<std::string>(), "broken");
  c1.join();
  EXPECT_TRUE(b.broken());
  EXPECT_THROW(b.wait(), mp::broken_barrier);
  b.reset();
  EXPECT_FALSE(b.broken());
}

TEST(barrier, the_constructor_timeout_is_the_default) {
  mp::barrier b(2, {}, 50ms);
  const auto start = clock_type::now();
  EXPECT_THROW(b.wait(), mp::broken_barrier);
  EXPECT_GE(seconds_since(start), 0.05);
  b.reset();
  std::thread other([&] { b.wait(mp::testing::scaled(30s)); });
  EXPECT_NO_THROW(b.wait(mp::testing::scaled(30s)));  // an explicit timeout wins
  other.join();
}

TEST(barrier, an_exception_from_the_action_reaches_its_runner_and_breaks_the_others) {
  mp::barrier b(3, [] { throw std::runtime_error("action failed"); });
  mp::connection r1, r2;
  mp::process c1 = barrier_waiter(b, r1);
  mp::process c2 = barrier_waiter(b, r2);
  wait_for_arrivals(b, 2);
  EXPECT_EQ(barrier_outcome(b, mp::testing::scaled(30s)), "action failed");  // we arrive last
  EXPECT_EQ(r1.recv<std::string>(), "broken");
  EXPECT_EQ(r2.recv<std::string>(), "broken");
  c1.join();
  c2.join();
  EXPECT_TRUE(b.broken());
}

TEST(barrier, arrivals_during_the_action_wait_for_the_next_cycle) {
  std::promise<void> started, finish;
  std::shared_future<void> may_finish = finish.get_future().share();
  int actions = 0;
  mp::barrier b(2, [&started, may_finish, &actions] {
    if (actions++ > 0) return;  // only the first cycle's action lingers
    started.set_value();
    may_finish.wait();
  });
  auto first = std::async(std::launch::async, [&] { return b.wait(mp::testing::scaled(30s)); });
  auto second = std::async(std::launch::async, [&] { return b.wait(mp::testing::scaled(30s)); });
  started.get_future().wait();  // one of them runs the action now
  std::atomic<pid_t> tid{0};
  auto early = std::async(std::launch::async, [&] {
    tid = ::gettid();
    return b.wait(mp::testing::scaled(30s));
  });
  while (tid.load() == 0) std::this_thread::yield();
  wait_until_asleep(thread_stat_path(tid.load()));
  EXPECT_EQ(b.n_waiting(), 2U);  // the full cycle, as Python counts it
  finish.set_value();
  EXPECT_EQ(std::set<unsigned>({first.get(), second.get()}), (std::set<unsigned>{0, 1}));
  wait_for_arrivals(b, 1);  // the early arrival joined the next cycle
  std::thread late([&] { b.wait(mp::testing::scaled(30s)); });
  EXPECT_EQ(early.get(), 0U);
  late.join();
}

TEST(barrier, abort_during_the_action_breaks_the_cycle_after_it) {
  std::promise<void> started, finish;
  std::shared_future<void> may_finish = finish.get_future().share();
  mp::barrier b(2, [&started, may_finish] {
    started.set_value();
    may_finish.wait();
  });
  auto first = std::async(std::launch::async, [&] { return barrier_outcome(b, std::nullopt); });
  auto second = std::async(std::launch::async, [&] { return barrier_outcome(b, std::nullopt); });
  started.get_future().wait();
  b.abort();
  EXPECT_TRUE(b.broken());
  finish.set_value();
  EXPECT_EQ(first.get(), "broken");
  EXPECT_EQ(second.get(), "broken");
}

}  // namespace
