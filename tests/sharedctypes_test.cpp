// SPDX-License-Identifier: MIT
// Tests of mp::raw_value, mp::raw_array, mp::shared_value and mp::shared_array
// (mp/sharedctypes.hpp), in one process and across forked children.
#include "mp/sharedctypes.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <ranges>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

#include "mp/connection.hpp"
#include "mp/process.hpp"
#include "mp/testing/testing.hpp"

namespace {

using namespace std::chrono_literals;

// A ctypes Structure: trivially copyable, too large for lock-free atomics.
struct point {
  int x;
  double y;
};

// Small enough for lock-free atomics, aligned less than atomic_ref requires.
struct pair32 {
  std::int32_t first;
  std::int32_t second;
};

template <class V>
concept has_fetch_add = requires(const V& v) {
  v.fetch_add(typename V::value_type{});
};
template <class V>
concept has_load = requires(const V& v) {
  v.load();
};
template <class A>
concept has_atomic_element = requires(const A& a) {
  a.atomic(std::size_t{0});
};

static_assert(has_fetch_add<mp::raw_value<int>>);
static_assert(has_fetch_add<mp::shared_value<double>>);
static_assert(!has_fetch_add<mp::raw_value<bool>>);
static_assert(has_load<mp::raw_value<bool>>);
static_assert(!has_fetch_add<mp::raw_value<pair32>>);
static_assert(has_load<mp::raw_value<pair32>> == std::atomic_ref<pair32>::is_always_lock_free);
static_assert(has_load<mp::raw_value<point>> == std::atomic_ref<point>::is_always_lock_free);
// long double's atomic_ref needs libatomic's per-process locks on x86-64: refused there.
static_assert(has_load<mp::raw_value<long double>> ==
              std::atomic_ref<long double>::is_always_lock_free);
static_assert(has_atomic_element<mp::shared_array<long>>);
static_assert(!has_atomic_element<mp::raw_array<point>> ||
              std::atomic_ref<point>::is_always_lock_free);
static_assert(std::ranges::contiguous_range<mp::raw_array<int>>);
static_assert(std::ranges::sized_range<mp::shared_array<int>>);

void sleep_forever() {
  for (;;) ::pause();
}

// Python's documentation, "Sharing state between processes":
//   def f(n, a):
//       n.value = 3.1415927
//       for i in range(len(a)):
//           a[i] = -a[i]
void f(mp::shared_value<double> n, mp::shared_array<int> a) {
  n.set(3.1415927);
  for (std::size_t i = 0; i < a.size(); ++i) a.set(i, -a.get(i));
}

TEST(shared_value, values_and_arrays_sent_over_a_connection_are_the_same_memory) {
  mp::shared_value<int> value(1);
  mp::shared_array<double> array{1.0, 2.0};
  auto [ours, theirs] = mp::pipe();
  ours.send(std::make_tuple(value, array));  // their memfds travel beside the bytes
  auto [v, a] = theirs.recv<std::tuple<mp::shared_value<int>, mp::shared_array<double>>>();
  v.set(7);
  a.set(1, 9.5);
  EXPECT_EQ(value.get(), 7);
  EXPECT_EQ(array.get(1), 9.5);
  ASSERT_EQ(a.size(), 2U);
  // The same lock too (an rlock): held by this thread, another cannot take it.
  std::scoped_lock guard(value.get_lock());
  bool taken = true;
  std::thread other([&] { taken = v.get_lock().acquire(false); });
  other.join();
  EXPECT_FALSE(taken);
}

TEST(shared_value, python_doc_example_child_sets_value_and_negates_array) {
  mp::shared_value<double> num(0.0);                   // Value('d', 0.0)
  mp::shared_array<int> arr(std::views::iota(0, 10));  // Array('i', range(10))
  mp::process p{f, num, arr};
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(num.get(), 3.1415927);
  EXPECT_EQ(std::vector<int>(arr.begin(), arr.end()),
            (std::vector<int>{0, -1, -2, -3, -4, -5, -6, -7, -8, -9}));
}

TEST(raw_array, a_child_reverses_it_in_place_and_the_parent_sees_it) {
  mp::raw_array<int> a{1, 2, 3, 4, 5};
  mp::process p{[](mp::raw_array<int> shared) { std::ranges::reverse(shared); }, a};
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(std::vector<int>(a.begin(), a.end()), (std::vector<int>{5, 4, 3, 2, 1}));
}

TEST(shared_value, nine_processes_incrementing_under_get_lock_count_exactly) {
  mp::shared_value<int> counter(0);
  constexpr int processes = 9, increments = 1000;
  std::vector<mp::process> workers;
  for (int i = 0; i < processes; ++i)
    workers.emplace_back(
        [](mp::shared_value<int> c) {
          for (int n = 0; n < increments; ++n) {
            // Python: with counter.get_lock(): counter.value += 1
            // get() and set() take the rlock again, recursively.
            std::scoped_lock guard(c.get_lock());
            c.set(c.get() + 1);
          }
        },
        counter);
  for (auto& w : workers) w.start();
  for (auto& w : workers) {
    w.join();
    EXPECT_EQ(w.exitcode(), 0);
  }
  EXPECT_EQ(counter.get(), processes * increments);
}

TEST(shared_value, fetch_add_from_four_processes_without_the_lock_is_exact) {
  mp::shared_value<long> total(0);
  mp::shared_array<double> sums(2);
  mp::raw_value<pair32> both(pair32{0, 0});
  constexpr int processes = 4, increments = 20000;
  std::vector<mp::process> workers;
  for (int i = 0; i < processes; ++i)
    workers.emplace_back(
        [](mp::shared_value<long> t, mp::shared_array<double> s, mp::raw_value<pair32> b) {
          for (int n = 0; n < increments; ++n) {
            t.fetch_add(1);
            s.atomic(1).fetch_add(0.5);  // halves add up exactly in binary
            if constexpr (std::atomic_ref<pair32>::is_always_lock_free) {
              pair32 seen = b.load(std::memory_order_relaxed);
              while (!b.compare_exchange_weak(seen, pair32{seen.first + 1, seen.second - 1})) {
              }
            }
          }
        },
        total, sums, both);
  for (auto& w : workers) w.start();
  for (auto& w : workers) {
    w.join();
    EXPECT_EQ(w.exitcode(), 0);
  }
  EXPECT_EQ(total.get(), long{processes} * increments);
  EXPECT_EQ(total.load(), long{processes} * increments);
  EXPECT_EQ(sums.get(0), 0.0);
  EXPECT_EQ(sums.get(1), processes * increments * 0.5);
  if constexpr (std::atomic_ref<pair32>::is_always_lock_free) {
    EXPECT_EQ(both.get().first, processes * increments);
    EXPECT_EQ(both.get().second, -processes * increments);
  }
}

TEST(raw_value, atomic_operations_behave_like_atomic_ref) {
  const mp::raw_value<unsigned> v(10U);  // const is shallow: still writable
  EXPECT_EQ(v.fetch_sub(3U), 10U);
  EXPECT_EQ(v.exchange(1U), 7U);
  unsigned expected = 2;
  EXPECT_FALSE(v.compare_exchange_strong(expected, 5U));
  EXPECT_EQ(expected, 1U);
  EXPECT_TRUE(v.compare_exchange_strong(expected, 5U, std::memory_order_acq_rel,
                                        std::memory_order_acquire));
  v.store(9U, std::memory_order_release);
  EXPECT_EQ(v.load(std::memory_order_acquire), 9U);
  EXPECT_EQ(v.atomic().fetch_or(16U), 9U);
  EXPECT_EQ(v.get(), 25U);
}

TEST(raw_value, threads_adding_atomically_and_under_the_lock_lose_nothing) {
  mp::raw_value<long> atomic_total;
  mp::shared_value<long> locked_total;
  constexpr int threads = 2, increments = 10000;
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i)
    workers.emplace_back([&] {
      for (int n = 0; n < increments; ++n) {
        atomic_total.fetch_add(1, std::memory_order_relaxed);
        std::scoped_lock guard(locked_total.get_lock());
        ++*locked_total.get_obj();
      }
    });
  for (auto& w : workers) w.join();
  EXPECT_EQ(atomic_total.get(), long{threads} * increments);
  EXPECT_EQ(locked_total.get(), long{threads} * increments);
}

TEST(raw_value, starts_value_initialised_and_is_aligned_for_atomic_ref) {
  EXPECT_EQ(mp::raw_value<int>().get(), 0);
  EXPECT_EQ(mp::shared_value<double>().get(), 0.0);
  // A char first, so that the next piece of the shared arena would be misaligned.
  mp::raw_value<char> c('x');
  mp::raw_value<pair32> p;
  mp::raw_array<std::int64_t> a(3);
  EXPECT_EQ(
      reinterpret_cast<std::uintptr_t>(p.get_obj()) % std::atomic_ref<pair32>::required_alignment,
      0U);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.data()) %
                std::atomic_ref<std::int64_t>::required_alignment,
            0U);
  EXPECT_EQ(c.get(), 'x');
}

TEST(raw_array, at_and_shared_array_get_set_throw_out_of_range) {
  mp::raw_array<int> a(3);
  EXPECT_NO_THROW(a.at(2) = 7);
  EXPECT_THROW(a.at(3), std::out_of_range);
  EXPECT_EQ(a[2], 7);
  mp::shared_array<int> s(3);
  EXPECT_THROW(s.get(3), std::out_of_range);
  EXPECT_THROW(s.set(3, 1), std::out_of_range);
  EXPECT_THROW(s.at(3), std::out_of_range);
  // The lock is not left held by a failed get/set.
  EXPECT_TRUE(s.get_lock().try_lock());
  s.get_lock().unlock();
  mp::raw_array<int> empty(0);
  EXPECT_TRUE(empty.empty());
  EXPECT_THROW(empty.at(0), std::out_of_range);
}

TEST(raw_array, is_built_from_an_initializer_list_a_count_or_a_range) {
  mp::raw_array<int> listed{1, 2, 3};
  EXPECT_EQ(std::vector<int>(listed.begin(), listed.end()), (std::vector<int>{1, 2, 3}));
  mp::raw_array<int> one{5};  // braces: one element
  EXPECT_EQ(one.size(), 1U);
  EXPECT_EQ(one[0], 5);
  mp::raw_array<int> five(5);  // parentheses: five zeros, as RawArray('i', 5)
  EXPECT_EQ(five.size(), 5U);
  EXPECT_TRUE(std::ranges::all_of(five, [](int x) { return x == 0; }));
  mp::raw_array<double> converted(std::vector<int>{1, 2});
  EXPECT_EQ(converted[1], 2.0);
  // A range without a size is collected first.
  mp::raw_array<int> odd(std::views::iota(0, 10) |
                         std::views::filter([](int x) { return x % 2 == 1; }));
  EXPECT_EQ(std::vector<int>(odd.begin(), odd.end()), (std::vector<int>{1, 3, 5, 7, 9}));
  mp::shared_array<long> locked{4, 5};
  EXPECT_EQ(locked.get(1), 5);
}

TEST(raw_array, copies_share_memory_and_a_moved_from_array_is_empty) {
  mp::raw_value<int> v(1);
  mp::raw_value<int> value_copy = v;
  value_copy.set(2);
  EXPECT_EQ(v.get(), 2);
  EXPECT_EQ(v.get_obj(), value_copy.get_obj());

  mp::raw_array<int> a(2);
  mp::raw_array<int> array_copy = a;
  array_copy[1] = 42;
  EXPECT_EQ(a[1], 42);
  mp::raw_array<int> moved = std::move(array_copy);
  EXPECT_EQ(moved.data(), a.data());
  EXPECT_TRUE(array_copy.empty());  // NOLINT(bugprone-use-after-move): the documented state

  mp::shared_value<int> s(3);
  mp::shared_value<int> shared_copy = s;
  shared_copy.set(4);
  EXPECT_EQ(s.get(), 4);
  std::scoped_lock guard(shared_copy.get_lock());
  bool other_thread_got_it = true;
  std::thread([&] { other_thread_got_it = s.get_lock().try_lock(); }).join();
  EXPECT_FALSE(other_thread_got_it);  // one lock behind both copies
}

TEST(shared_value, a_lock_passed_in_is_the_one_get_lock_returns) {
  mp::lock l;
  mp::shared_value<int> v(7, l);
  EXPECT_TRUE(std::holds_alternative<mp::lock>(v.get_lock().variant()));
  EXPECT_TRUE(std::holds_alternative<mp::rlock>(mp::shared_value<int>(0).get_lock().variant()));
  std::scoped_lock held(l);
  auto [reader, writer] = mp::pipe(false);
  mp::process p{[](mp::shared_value<int> value, mp::connection out) {
                  out.send(value.get_lock().try_lock());
                },
                v, std::move(writer)};
  p.start();
  EXPECT_FALSE(reader.recv<bool>());
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(shared_array, one_rlock_can_guard_several_objects) {
  mp::rlock r;
  mp::shared_array<int> a(2, r);
  mp::shared_value<int> v(0, r);
  std::scoped_lock guard(a.get_lock());
  v.set(v.get() + 1);  // recursive: the same rlock, already held by this thread
  bool other_thread_got_it = true;
  std::thread([&] { other_thread_got_it = v.get_lock().try_lock(); }).join();
  EXPECT_FALSE(other_thread_got_it);
  EXPECT_EQ(v.get(), 1);
}

TEST(shared_value, set_in_another_process_waits_for_the_lock) {
  mp::shared_value<int> v(0);
  auto [reader, writer] = mp::pipe(false);
  std::unique_lock held(v.get_lock());
  mp::process p{[](mp::shared_value<int> value, mp::connection out) {
                  value.set(5);
                  out.send(true);
                },
                v, std::move(writer)};
  p.start();
  EXPECT_FALSE(reader.poll(50ms));  // blocked on our lock
  held.unlock();
  EXPECT_TRUE(reader.recv<bool>());
  p.join();
  EXPECT_EQ(v.get(), 5);
}

TEST(shared_value, get_tells_the_caller_when_the_lock_holder_died) {
  mp::shared_value<int> v(1);
  auto [reader, writer] = mp::pipe(false);
  mp::process holder{[](mp::shared_value<int> value, mp::connection out) {
                       value.get_lock().lock();
                       value.set(2);
                       out.send(1);
                       sleep_forever();
                     },
                     v, std::move(writer)};
  holder.start();
  EXPECT_EQ(reader.recv<int>(), 1);
  holder.kill();
  holder.join();
  EXPECT_THROW(v.get(), mp::owner_died);
  // get() threw holding the lock: repair, vouch for the state, release.
  EXPECT_TRUE(v.get_lock().inconsistent());
  EXPECT_EQ(*v.get_obj(), 2);
  v.get_lock().mark_consistent();
  v.get_lock().release();
  EXPECT_EQ(v.get(), 2);
}

TEST(shared_value, holds_a_trivially_copyable_struct) {
  mp::shared_value<point> p(point{1, 2.5});
  mp::raw_array<point> points(2);
  mp::process child{[](mp::shared_value<point> value, mp::raw_array<point> array) {
                      const point old = value.get();
                      value.set(point{old.x + 2, old.y + 2.0});
                      array[1] = point{5, 6.5};
                    },
                    p, points};
  child.start();
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
  EXPECT_EQ(p.get().x, 3);
  EXPECT_EQ(p.get().y, 4.5);
  EXPECT_EQ(points[0].x, 0);
  EXPECT_EQ(points[1].x, 5);
  EXPECT_EQ(points[1].y, 6.5);
}

}  // namespace
