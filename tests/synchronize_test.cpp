// SPDX-License-Identifier: MIT
// Tests of mp::lock and mp::rlock (mp/synchronize.hpp), including holder death.
#include "mp/synchronize.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#include "mp/connection.hpp"
#include "mp/process.hpp"
#include "mp/testing/testing.hpp"

namespace {

using namespace std::chrono_literals;

void sleep_forever() {
  for (;;) ::pause();
}

// The CPU time this process has used, user and system, in microseconds.
long cpu_time_us() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec * 1000000L + usage.ru_utime.tv_usec +
         usage.ru_stime.tv_sec * 1000000L + usage.ru_stime.tv_usec;
}

TEST(lock, acquires_and_releases_like_python) {
  mp::lock l;
  EXPECT_TRUE(l.acquire());
  EXPECT_FALSE(l.acquire(false));
  EXPECT_FALSE(l.acquire(false, 1s));  // non-blocking fails at once, timeout or not
  EXPECT_FALSE(l.acquire(true, 10ms));
  l.release();
  EXPECT_THROW(l.release(), mp::usage_error);
  EXPECT_TRUE(l.try_lock());
  l.unlock();
}

TEST(lock, any_thread_may_release_it_as_in_python) {
  mp::lock l;
  l.lock();
  std::thread([&] { l.unlock(); }).join();
  EXPECT_TRUE(l.try_lock());
  l.unlock();
}

TEST(lock, works_with_standard_lock_guards_and_condition_variable_any) {
  mp::lock l;
  {
    std::scoped_lock guard(l);
    EXPECT_FALSE(l.try_lock());
  }
  std::unique_lock guard(l, std::defer_lock);
  EXPECT_TRUE(guard.try_lock_for(10ms));
  std::condition_variable_any cv;
  bool ready = false;
  std::thread notifier([&] {
    std::scoped_lock inner(l);
    ready = true;
    cv.notify_one();
  });
  cv.wait(guard, [&] { return ready; });
  guard.unlock();
  notifier.join();
}

TEST(lock, a_moved_from_primitive_throws_instead_of_crashing) {
  mp::lock l;
  mp::lock other = std::move(l);
  EXPECT_THROW(l.acquire(), mp::usage_error);  // NOLINT(bugprone-use-after-move)
  EXPECT_THROW(l.lock(), mp::usage_error);
  mp::event e;
  mp::event e2 = std::move(e);
  EXPECT_THROW(e.set(), mp::usage_error);  // NOLINT(bugprone-use-after-move)
  mp::semaphore s(1);
  mp::semaphore s2 = std::move(s);
  EXPECT_THROW(s.acquire(), mp::usage_error);  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(other.acquire());
  other.release();
}

TEST(lock, a_lock_sent_over_a_connection_is_the_same_lock) {
  mp::lock original;
  mp::event seen;
  auto [ours, theirs] = mp::pipe();
  ours.send(std::make_tuple(original, seen));  // their memfds travel beside the bytes
  auto [received, received_event] = theirs.recv<std::tuple<mp::lock, mp::event>>();
  original.lock();
  EXPECT_FALSE(received.acquire(false));  // the same lock, mapped a second time
  original.unlock();
  EXPECT_TRUE(received.acquire(false));
  received.unlock();
  received_event.set();
  EXPECT_TRUE(seen.is_set());

  // Bytes that name a descriptor which did not come with them are refused.
  EXPECT_THROW(static_cast<void>(mp::decode<mp::lock>(mp::encode(std::uint32_t{0}))),
               mp::decode_error);
}

TEST(lock, copies_and_children_share_one_lock) {
  mp::lock l;
  mp::lock copy = l;
  copy.lock();
  EXPECT_FALSE(l.try_lock());
  auto [reader, writer] = mp::pipe(false);
  mp::process p{[](mp::lock child_lock, mp::connection out) { out.send(child_lock.try_lock()); }, l,
                std::move(writer)};
  p.start();
  EXPECT_FALSE(reader.recv<bool>());
  p.join();
  l.unlock();
}

TEST(lock, serialises_increments_from_many_processes) {
  struct counter {
    long value;
  };
  mp::lock l;
  auto shared = mp::detail::shared_object<counter>::make(counter{0});
  constexpr int processes = 4, increments = 20000;
  std::vector<mp::process> workers;
  for (int i = 0; i < processes; ++i)
    workers.emplace_back(
        [](mp::lock guarded, mp::detail::shared_object<counter> count) {
          for (int n = 0; n < increments; ++n) {
            std::scoped_lock guard(guarded);
            count->value = count->value + 1;  // not atomic: only the lock keeps it exact
          }
        },
        l, shared);
  for (auto& w : workers) w.start();
  for (auto& w : workers) {
    w.join();
    EXPECT_EQ(w.exitcode(), 0);
  }
  EXPECT_EQ(shared->value, long{processes} * increments);
}

// A child takes the lock, says so, and is then SIGKILLed while holding it.
// `depth` times, for an rlock; any lock type of mp works.
template <class Lockable>
mp::process holder_that_dies(Lockable l, mp::connection& reader, int depth = 1) {
  auto [r, w] = mp::pipe(false);
  mp::process holder{[](Lockable held, mp::connection out, int times) {
                       for (int i = 0; i < times; ++i) held.lock();
                       out.send(1);
                       sleep_forever();
                     },
                     l, std::move(w), depth};
  holder.start();
  reader = std::move(r);
  return holder;
}

TEST(lock, the_next_acquirer_is_told_when_the_holder_died) {
  mp::lock l;
  mp::connection ready;
  mp::process holder = holder_that_dies(l, ready);
  EXPECT_EQ(ready.recv<int>(), 1);
  holder.kill();
  holder.join();
  try {
    l.acquire(true, mp::testing::scaled(30s));
    FAIL() << "no owner_died";
  } catch (const mp::owner_died&) {
  }
  // We hold it now, and it stays marked until someone vouches for the state.
  EXPECT_FALSE(l.try_lock());
  EXPECT_TRUE(l.inconsistent());
  l.release();
  EXPECT_THROW(l.acquire(), mp::owner_died);
  l.mark_consistent();
  l.release();
  EXPECT_TRUE(l.acquire());
  EXPECT_FALSE(l.inconsistent());
  l.release();
}

TEST(lock, a_waiter_blocked_in_another_process_is_told_too) {
  mp::lock l;
  mp::connection ready;
  mp::process holder = holder_that_dies(l, ready);
  EXPECT_EQ(ready.recv<int>(), 1);
  auto [result_reader, result_writer] = mp::pipe(false);
  mp::process waiter{[](mp::lock wanted, mp::connection out) {
                       try {
                         wanted.lock();
                         out.send(std::string{"acquired"});
                       } catch (const mp::owner_died&) {
                         out.send(std::string{"owner_died"});
                         wanted.mark_consistent();
                         wanted.unlock();
                       }
                     },
                     l, std::move(result_writer)};
  waiter.start();
  EXPECT_FALSE(result_reader.poll(50ms));  // blocked behind the holder
  holder.kill();
  holder.join();
  EXPECT_EQ(result_reader.recv<std::string>(), "owner_died");
  waiter.join();
  EXPECT_TRUE(l.acquire());
  l.release();
}

TEST(lock, a_blocked_waiter_uses_almost_no_cpu) {
  mp::lock l;
  l.lock();
  auto [reader, writer] = mp::pipe(false);
  mp::process waiter{[](mp::lock wanted, mp::connection out) {
                       // Only the CPU used from here on counts: a spawned child has
                       // spent some starting up.
                       const long before = cpu_time_us();
                       out.send(1);
                       wanted.lock();
                       out.send(cpu_time_us() - before);
                       wanted.unlock();
                     },
                     l, std::move(writer)};
  waiter.start();
  EXPECT_EQ(reader.recv<int>(), 1);
  std::this_thread::sleep_for(500ms);  // the waiter sleeps on the lock meanwhile
  l.unlock();
  const long cpu_us = reader.recv<long>();
  waiter.join();
  // A spinning waiter would burn about 500 ms; a sleeping one checks its
  // holder five times. The bound leaves room for a slow, loaded machine.
  EXPECT_LT(cpu_us, 100000) << "waiter used " << cpu_us << " us of CPU";
}

TEST(rlock, counts_recursion_per_owner) {
  mp::rlock r;
  EXPECT_TRUE(r.acquire());
  EXPECT_TRUE(r.acquire());
  std::thread([&] {
    EXPECT_FALSE(r.try_lock());
    EXPECT_THROW(r.release(), mp::usage_error);
  }).join();
  r.release();
  std::thread([&] { EXPECT_FALSE(r.try_lock()); }).join();
  r.release();
  std::thread([&] {
    EXPECT_TRUE(r.try_lock());
    r.unlock();
  }).join();
  EXPECT_THROW(r.release(), mp::usage_error);
}

TEST(rlock, another_process_cannot_release_it) {
  mp::rlock r;
  r.lock();
  auto [reader, writer] = mp::pipe(false);
  mp::process p{[](mp::rlock held, mp::connection out) {
                  try {
                    held.release();
                    out.send(std::string{"released"});
                  } catch (const mp::usage_error&) {
                    out.send(std::string{"refused"});
                  }
                },
                r, std::move(writer)};
  p.start();
  EXPECT_EQ(reader.recv<std::string>(), "refused");
  p.join();
  r.unlock();
}

TEST(rlock, the_next_acquirer_is_told_when_the_holder_died) {
  mp::rlock r;
  mp::connection reader;
  mp::process holder = holder_that_dies(r, reader, 2);
  EXPECT_EQ(reader.recv<int>(), 1);
  holder.kill();
  holder.join();
  EXPECT_THROW(r.acquire(true, mp::testing::scaled(30s)), mp::owner_died);
  r.mark_consistent();
  r.release();  // depth 1: the dead holder's recursion does not carry over
  EXPECT_TRUE(r.try_lock());
  r.unlock();
}

}  // namespace

namespace {

TEST(condition, wait_times_out_and_requires_the_lock) {
  mp::condition c;
  EXPECT_THROW(c.wait(1ms), mp::usage_error);
  EXPECT_THROW(c.notify(), mp::usage_error);
  std::scoped_lock guard(c);
  EXPECT_FALSE(c.wait(10ms));
}

TEST(condition, wait_releases_a_recursive_lock_fully_and_restores_it) {
  mp::rlock r;
  mp::condition c(r);
  c.acquire();
  c.acquire();
  std::thread notifier([&] {
    std::scoped_lock guard(c);  // only possible if wait released both levels
    c.notify();
  });
  EXPECT_TRUE(c.wait(mp::testing::scaled(30s)));
  notifier.join();
  c.release();
  std::thread([&] { EXPECT_FALSE(r.try_lock()); }).join();  // still held once
  c.release();
  std::thread([&] {
    EXPECT_TRUE(r.try_lock());
    r.unlock();
  }).join();
}

TEST(condition, producer_and_consumer_processes) {
  struct slot {
    int items;
    int total;
  };
  mp::condition c(mp::lock{});
  auto shared = mp::detail::shared_object<slot>::make(slot{0, 0});
  mp::process consumer{[](mp::condition changed, mp::detail::shared_object<slot> buffer) {
                         for (int consumed = 0; consumed < 100; ++consumed) {
                           std::scoped_lock guard(changed);
                           changed.wait_for([&] { return buffer->items > 0; });
                           --buffer->items;
                           ++buffer->total;
                           changed.notify();
                         }
                       },
                       c, shared};
  consumer.start();
  for (int i = 0; i < 100; ++i) {
    std::scoped_lock guard(c);
    c.wait_for([&] { return shared->items < 5; });  // a bounded buffer of 5
    ++shared->items;
    c.notify();
  }
  consumer.join();
  EXPECT_EQ(consumer.exitcode(), 0);
  EXPECT_EQ(shared->total, 100);
  EXPECT_EQ(shared->items, 0);
}

TEST(condition, notify_all_wakes_every_waiting_process) {
  struct state {
    int waiting;
    bool go;
  };
  mp::condition c;
  auto shared = mp::detail::shared_object<state>::make(state{0, false});
  std::vector<mp::process> waiters;
  for (int i = 0; i < 3; ++i)
    waiters.emplace_back(
        [](mp::condition changed, mp::detail::shared_object<state> counts) {
          std::scoped_lock guard(changed);
          ++counts->waiting;
          changed.notify_all();
          changed.wait_for([&] { return counts->go; });
        },
        c, shared);
  for (auto& w : waiters) w.start();
  {
    std::scoped_lock guard(c);
    EXPECT_TRUE(c.wait_for([&] { return shared->waiting == 3; }, mp::testing::scaled(30s)));
    shared->go = true;
    c.notify_all();
  }
  for (auto& w : waiters) {
    w.join();
    EXPECT_EQ(w.exitcode(), 0);
  }
}

TEST(condition, wait_for_returns_the_predicate_after_a_timeout) {
  mp::condition c;
  std::scoped_lock guard(c);
  EXPECT_FALSE(c.wait_for([] { return false; }, 20ms));
  EXPECT_TRUE(c.wait_for([] { return true; }, 0ms));
}

TEST(condition, a_waiter_learns_that_the_lock_holder_died) {
  mp::condition c(mp::lock{});
  mp::connection reader;
  mp::process holder = holder_that_dies(c, reader);
  EXPECT_EQ(reader.recv<int>(), 1);
  holder.kill();
  holder.join();
  EXPECT_THROW(c.acquire(true, mp::testing::scaled(30s)), mp::owner_died);
  c.release();
}

}  // namespace
