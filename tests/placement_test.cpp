// SPDX-License-Identifier: MIT
// Where a pool's busy workers run: the choice of which to move
// (spread_over_cpus, src/pool_engine.hpp), the moves themselves and what
// /proc says of a thread (src/os/system.hpp).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "os/system.hpp"
#include "pool_engine.hpp"

namespace {

using namespace std::chrono_literals;
using mp::detail::spread_over_cpus;
using mp::detail::worker_place;
using moves = std::vector<std::pair<std::size_t, int>>;

TEST(spread_over_cpus, moves_the_second_of_two_workers_on_one_cpu_to_the_free_one) {
  const std::vector<worker_place> places{{1, {0, 1}}, {1, {0, 1}}};
  EXPECT_EQ(spread_over_cpus(places), (moves{{1, 0}}));
}

TEST(spread_over_cpus, leaves_workers_on_different_cpus_alone) {
  const std::vector<worker_place> places{{0, {0, 1}}, {1, {0, 1}}};
  EXPECT_TRUE(spread_over_cpus(places).empty());
}

TEST(spread_over_cpus, moves_no_more_workers_than_there_are_free_cpus) {
  const std::vector<worker_place> places{{0, {0, 1}}, {0, {0, 1}}, {0, {0, 1}}};
  EXPECT_EQ(spread_over_cpus(places), (moves{{1, 1}}));
}

TEST(spread_over_cpus, gives_each_free_cpu_to_one_worker) {
  const std::vector<worker_place> places{
      {0, {0, 1, 2, 3}}, {0, {0, 1, 2, 3}}, {1, {0, 1, 2, 3}}, {1, {0, 1, 2, 3}}};
  EXPECT_EQ(spread_over_cpus(places), (moves{{1, 2}, {3, 3}}));
}

TEST(spread_over_cpus, moves_a_worker_only_where_its_mask_allows) {
  // The second may run on CPU 1 only: it stays, and the third, which may
  // use CPU 2, moves there.
  const std::vector<worker_place> places{{1, {0, 1, 2}}, {1, {1}}, {1, {1, 2}}};
  EXPECT_EQ(spread_over_cpus(places), (moves{{2, 2}}));
}

TEST(spread_over_cpus, ignores_workers_whose_cpu_is_not_known) {
  const std::vector<worker_place> places{{-1, {0, 1}}, {0, {0, 1}}, {-1, {0, 1}}};
  EXPECT_TRUE(spread_over_cpus(places).empty());
  EXPECT_TRUE(spread_over_cpus({}).empty());
}

// A thread that spins until told to stop, and says where it runs.
struct spinner {
  std::atomic<pid_t> tid{0};
  std::atomic<bool> stop{false};
  std::thread thread{[this] {
    tid.store(mp::os::thread_id());
    while (!stop.load(std::memory_order_relaxed)) {
    }
  }};
  spinner() {
    while (tid.load() == 0) std::this_thread::yield();
  }
  ~spinner() {
    stop.store(true);
    thread.join();
  }
};

TEST(placement, the_callers_cpu_is_one_it_may_use) {
  const auto allowed = mp::os::thread_allowed_cpus(mp::os::thread_id());
  ASSERT_FALSE(allowed.empty());
  const int cpu = mp::os::current_cpu();
  EXPECT_NE(std::find(allowed.begin(), allowed.end(), cpu), allowed.end()) << cpu;
}

TEST(placement, a_thread_moved_to_each_cpu_runs_there_with_its_mask_as_it_was) {
  spinner s;
  const pid_t tid = s.tid.load();
  const auto allowed = mp::os::thread_allowed_cpus(tid);
  ASSERT_FALSE(allowed.empty());
  for (std::size_t i = 0; i < allowed.size() && i < 4; ++i) {
    const int cpu = allowed[i];
    // The scheduler may move it on at once (a loaded machine): one of a few
    // moves must be seen to land.
    bool landed = false;
    for (int attempt = 0; attempt < 20 && !landed; ++attempt) {
      ASSERT_TRUE(mp::os::move_thread(tid, cpu)) << cpu;
      landed = mp::os::thread_cpu(tid) == cpu;
    }
    EXPECT_TRUE(landed) << "moved to CPU " << cpu << ", /proc says it runs on "
                        << mp::os::thread_cpu(tid);
    EXPECT_EQ(mp::os::thread_allowed_cpus(tid), allowed);
  }
}

TEST(placement, a_move_outside_the_mask_is_refused_and_changes_nothing) {
  const auto allowed = mp::os::thread_allowed_cpus(mp::os::thread_id());
  if (allowed.size() < 2) GTEST_SKIP() << "one CPU to run on";
  spinner s;
  const pid_t tid = s.tid.load();
  cpu_set_t only;
  CPU_ZERO(&only);
  CPU_SET(static_cast<std::size_t>(allowed[0]), &only);
  ASSERT_EQ(::sched_setaffinity(tid, sizeof only, &only), 0);
  EXPECT_FALSE(mp::os::move_thread(tid, allowed[1]));
  EXPECT_EQ(mp::os::thread_allowed_cpus(tid), std::vector<int>{allowed[0]});
  EXPECT_EQ(mp::os::thread_cpu(tid), allowed[0]);
  EXPECT_FALSE(mp::os::move_thread(tid, -1));
  EXPECT_FALSE(mp::os::move_thread(tid, CPU_SETSIZE));
}

TEST(placement, a_thread_named_with_spaces_and_parentheses_is_read_past_its_name) {
  spinner s;
  const pid_t tid = s.tid.load();
  // The name is field 2 of /proc/<tid>/stat; fields are counted after its last ')'.
  ASSERT_EQ(::pthread_setname_np(s.thread.native_handle(), "x) 1 2 (y) 3"), 0);
  const auto stat = mp::os::read_task_stat(tid);
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->state, 'R');  // spinning: running or runnable
  const auto process = mp::os::read_task_stat(::getpid());
  ASSERT_TRUE(process.has_value());
  EXPECT_GT(process->start_time, 0U);
  EXPECT_GE(stat->start_time, process->start_time);  // started after its process
  const auto allowed = mp::os::thread_allowed_cpus(tid);
  EXPECT_NE(std::find(allowed.begin(), allowed.end(), stat->cpu), allowed.end()) << stat->cpu;
}

TEST(placement, a_thread_that_does_not_exist_has_no_cpu_and_no_mask) {
  // Thread ids stop below the kernel's pid_max, at most 2^22.
  constexpr pid_t none = (1 << 22) + 1;
  EXPECT_FALSE(mp::os::read_task_stat(none).has_value());
  EXPECT_EQ(mp::os::thread_cpu(none), -1);
  EXPECT_TRUE(mp::os::thread_allowed_cpus(none).empty());
  EXPECT_FALSE(mp::os::move_thread(none, 0));
}

}  // namespace
