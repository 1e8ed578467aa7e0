// SPDX-License-Identifier: MIT
// Tests of the executor and pool on MPI ranks (mp/mpi.hpp), run by CTest
// under a real mpirun with three ranks, once over shared memory and once over
// TCP: rank 0 runs the GoogleTest suite, the other two serve it from their
// session and exit with it.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "mp/executor.hpp"
#include "mp/mpi.hpp"
#include "mp/queues.hpp"

namespace {

using namespace std::chrono_literals;

// Whether an executor made before the session was refused, and how; and a
// session whose heartbeat cannot show a rank alive in time.
std::string refused_before_session;
std::string refused_heartbeat;

int square(int x) {
  return x * x;
}

int world_rank(int delay_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int fails(int x) {
  throw std::out_of_range("out of range on a worker rank: " + std::to_string(x));
}

std::vector<double> twice(const std::vector<double>& v) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = 2 * v[i];
  return out;
}

int sleepy(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

int initialized_with = 0;
void remember(int value) {
  initialized_with = value;
}
int read_initialized(int) {
  return initialized_with;
}
void refuse_to_start() {
  throw std::runtime_error("this initializer fails");
}

int add(int a, int b) {
  return a + b;
}

TEST(mpi_executor, submit_runs_tasks_on_the_other_ranks) {
  mp::mpi::pool_executor executor;
  EXPECT_EQ(executor.max_workers(), 2U);
  EXPECT_EQ(executor.submit(square, 7).result(), 49);
  std::vector<mp::future<int>> ranks;
  for (int i = 0; i < 12; ++i) ranks.push_back(executor.submit(world_rank, 30));
  std::set<int> seen;
  for (auto& f : ranks) seen.insert(f.result());
  EXPECT_EQ(seen, (std::set<int>{1, 2}));
}

TEST(mpi_executor, an_exception_comes_back_as_its_own_type) {
  mp::mpi::pool_executor executor;
  auto f = executor.submit(fails, 3);
  try {
    (void)f.result();
    FAIL() << "no exception";
  } catch (const std::out_of_range& e) {
    EXPECT_STREQ(e.what(), "out of range on a worker rank: 3");
  }
  EXPECT_EQ(executor.submit(square, 3).result(), 9);  // the rank goes on
}

TEST(mpi_executor, map_with_chunks_keeps_the_order) {
  mp::mpi::pool_executor executor;
  std::vector<int> input(10000);
  std::iota(input.begin(), input.end(), 0);
  std::size_t i = 0;
  for (const int r : executor.map(square, input, {}, 1000)) {
    ASSERT_EQ(r, input[i] * input[i]);
    ++i;
  }
  EXPECT_EQ(i, input.size());
}

TEST(mpi_executor, map_times_out_but_the_rank_finishes_its_task) {
  mp::mpi::pool_executor executor(1);
  auto results = executor.map(sleepy, std::vector<int>{1500}, 100ms);
  EXPECT_THROW(
      {
        for (const int r : results) (void)r;
      },
      mp::timeout_error);
  EXPECT_EQ(executor.submit(square, 5).result(), 25);  // after the slow one
}

TEST(mpi_executor, large_arguments_and_results_travel_whole) {
  mp::mpi::pool_executor executor;
  std::vector<double> big(1 << 20);  // 8 MiB
  std::iota(big.begin(), big.end(), 0.5);
  const auto back = executor.submit(twice, big).result();
  ASSERT_EQ(back.size(), big.size());
  for (std::size_t i = 0; i < big.size(); i += 4099) ASSERT_EQ(back[i], 2 * big[i]);
  EXPECT_EQ(back.back(), 2 * big.back());
}

TEST(mpi_executor, futures_work_with_wait_and_as_completed) {
  mp::mpi::pool_executor executor;
  std::vector<mp::future<int>> futures;
  for (const int ms : {60, 1, 30}) futures.push_back(executor.submit(sleepy, ms));
  const auto first = mp::wait(futures, 60s, mp::return_when::first_completed);
  EXPECT_GE(first.done.size(), 1U);
  std::set<int> got;
  for (auto& done : mp::as_completed(futures, 60s)) got.insert(done.result());
  EXPECT_EQ(got, (std::set<int>{1, 30, 60}));
  int called = 0;
  auto f = executor.submit(square, 4);
  f.add_done_callback([&called](mp::future<int> done) { called = done.result(); });
  (void)f.result();
  executor.shutdown();
  EXPECT_EQ(called, 16);
}

TEST(mpi_executor, an_initializer_runs_on_each_rank_and_a_failing_one_breaks_it) {
  {
    mp::mpi::pool_executor executor({.initializer = {remember, 42}});
    std::vector<mp::future<int>> seen;
    for (int i = 0; i < 6; ++i) seen.push_back(executor.submit(read_initialized, i));
    for (auto& f : seen) EXPECT_EQ(f.result(), 42);
  }
  mp::mpi::pool_executor broken({.initializer = refuse_to_start});
  auto f = broken.submit(square, 2);
  EXPECT_THROW((void)f.result(), mp::broken_process_pool);
}

TEST(mpi_executor, shutdown_with_tasks_in_flight_then_a_new_one_and_one_in_a_loop) {
  {
    mp::mpi::pool_executor executor;
    std::vector<mp::future<int>> futures;
    for (int i = 0; i < 200; ++i) futures.push_back(executor.submit(sleepy, 2));
    executor.shutdown(true, true);
    std::size_t finished = 0, cancelled = 0;
    for (auto& f : futures) {
      if (f.cancelled()) {
        ++cancelled;
      } else {
        EXPECT_EQ(f.result(), 2);
        ++finished;
      }
    }
    EXPECT_EQ(finished + cancelled, futures.size());
    EXPECT_GT(cancelled, 0U);
  }
  for (int round = 0; round < 25; ++round) {
    mp::mpi::pool_executor executor;
    ASSERT_EQ(executor.submit(square, round).result(), round * round) << "round " << round;
  }
}

TEST(mpi_executor, two_at_once_share_the_ranks_and_a_third_is_refused) {
  mp::mpi::pool_executor first(1);
  mp::mpi::pool_executor second(1);
  EXPECT_EQ(first.submit(square, 2).result(), 4);
  EXPECT_EQ(second.submit(square, 3).result(), 9);
  const int a = first.submit(world_rank, 0).result();
  const int b = second.submit(world_rank, 0).result();
  EXPECT_NE(a, b);
  try {
    mp::mpi::pool_executor third(1);
    FAIL() << "a third executor was made";
  } catch (const mp::usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("0 of the job's 2 are free"), std::string::npos)
        << e.what();
  }
}

TEST(mpi_executor, descriptors_cannot_reach_another_rank) {
  mp::mpi::pool_executor executor;
  mp::queue<int> q;
  auto f = executor.submit([](mp::queue<int> queue) { return queue.empty() ? 1 : 0; }, q);
  try {
    (void)f.result();
    FAIL() << "a queue went to another rank";
  } catch (const mp::usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot reach another MPI rank"), std::string::npos);
  }
}

TEST(mpi_executor, an_executor_needs_a_session) {
  EXPECT_NE(refused_before_session.find("needs an mp::mpi::session"), std::string::npos)
      << refused_before_session;
}

TEST(mpi_session, a_heartbeat_slower_than_presumed_dead_is_refused) {
  EXPECT_NE(refused_heartbeat.find("a heartbeat every 1000 ms cannot show a rank alive within "
                                   "presumed_dead (1000 ms)"),
            std::string::npos)
      << refused_heartbeat;
}

TEST(mpi_pool, the_pool_interface_runs_on_ranks) {
  mp::mpi::pool pool;
  EXPECT_EQ(pool.processes(), 2U);
  std::vector<int> input(1000);
  std::iota(input.begin(), input.end(), 0);
  const auto squares = pool.map(square, input, 64);
  ASSERT_EQ(squares.size(), input.size());
  EXPECT_EQ(squares[999], 999 * 999);
  long sum = 0;
  for (const int r : pool.imap_unordered(square, input, 10)) sum += r;
  EXPECT_EQ(sum, 332833500L);
  std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}};
  EXPECT_EQ(pool.starmap(add, pairs), (std::vector<int>{3, 7}));
  EXPECT_EQ(pool.apply_async(square, 12).get(), 144);
  EXPECT_EQ(pool.apply(square, 11), 121);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    mp::mpi::pool_executor early;
  } catch (const mp::usage_error& e) {
    refused_before_session = e.what();
  }
  try {
    mp::mpi::session wrong(argc, argv, {.heartbeat = 1s, .presumed_dead = 1s});
  } catch (const mp::usage_error& e) {
    refused_heartbeat = e.what();
  }
  mp::mpi::session mpi(argc, argv);  // ranks 1 and 2 serve here, and exit with rank 0's session
  if (mpi.size() != 3) {
    std::fprintf(stderr, "mpi_test: run it with three ranks (mpirun -n 3), not %d\n", mpi.size());
    return 2;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
