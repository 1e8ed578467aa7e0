// SPDX-License-Identifier: MIT
// The arena of task states (src/slab_arena.hpp) and its allocator.
#include "slab_arena.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <set>
#include <thread>
#include <vector>

#include "mp/detail/state_allocator.hpp"

namespace {

using mp::detail::slab_arena;

constexpr std::size_t per_slab(std::size_t block) {
  return (slab_arena::slab_size - slab_arena::granule) / block;
}

TEST(slab_arena, blocks_are_aligned_distinct_and_hold_what_is_written) {
  slab_arena arena;
  std::vector<std::pair<void*, std::size_t>> taken;
  std::set<std::uintptr_t> seen;
  for (std::size_t size = 1; size <= slab_arena::largest; size += 37) {
    void* at = arena.allocate(size);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(at) % slab_arena::granule, 0u) << size;
    EXPECT_TRUE(seen.insert(reinterpret_cast<std::uintptr_t>(at)).second) << size;
    std::memset(at, static_cast<int>(size & 0xff), size);
    taken.emplace_back(at, size);
  }
  for (const auto& [at, size] : taken) {
    const auto* bytes = static_cast<const unsigned char*>(at);
    EXPECT_TRUE(std::all_of(bytes, bytes + size, [&](unsigned char b) {
      return b == (size & 0xff);
    })) << size;
    arena.deallocate(at, size);
  }
}

TEST(slab_arena, refuses_sizes_it_does_not_serve) {
  slab_arena arena;
  EXPECT_THROW((void)arena.allocate(0), std::bad_alloc);
  EXPECT_THROW((void)arena.allocate(slab_arena::largest + 1), std::bad_alloc);
  EXPECT_EQ(arena.slabs(), 0u);
}

TEST(slab_arena, a_burst_is_given_back_but_for_one_slab_and_that_one_is_reused) {
  slab_arena arena;
  constexpr std::size_t size = 400;  // a task state's size, about
  const std::size_t count = 3 * per_slab(448) + 10;
  std::vector<void*> taken;
  for (std::size_t i = 0; i < count; ++i) taken.push_back(arena.allocate(size));
  EXPECT_EQ(arena.slabs(), 4u);
  // Freed in another order than taken, as tasks finish.
  for (std::size_t i = 0; i < count; i += 2) arena.deallocate(taken[i], size);
  for (std::size_t i = 1; i < count; i += 2) arena.deallocate(taken[i], size);
  EXPECT_EQ(arena.slabs(), 1u);  // the spare
  // A second burst of one slab's worth takes no new slab.
  taken.clear();
  for (std::size_t i = 0; i < per_slab(448); ++i) taken.push_back(arena.allocate(size));
  EXPECT_EQ(arena.slabs(), 1u);
  for (void* at : taken) arena.deallocate(at, size);
  EXPECT_EQ(arena.slabs(), 1u);
}

TEST(slab_arena, a_full_slab_takes_blocks_again_once_one_is_freed) {
  slab_arena arena;
  constexpr std::size_t size = slab_arena::largest;
  std::vector<void*> taken;
  for (std::size_t i = 0; i < per_slab(size); ++i) taken.push_back(arena.allocate(size));
  EXPECT_EQ(arena.slabs(), 1u);
  arena.deallocate(taken.back(), size);
  taken.back() = arena.allocate(size);  // the freed block, not a new slab
  EXPECT_EQ(arena.slabs(), 1u);
  taken.push_back(arena.allocate(size));  // now full: a second slab
  EXPECT_EQ(arena.slabs(), 2u);
  for (void* at : taken) arena.deallocate(at, size);
}

TEST(slab_arena, blocks_taken_on_one_thread_are_freed_on_another) {
  slab_arena arena;
  constexpr std::size_t rounds = 20000;
  constexpr std::size_t size = 256;
  std::vector<void*> handed(rounds);
  std::atomic<std::size_t> ready{0};
  std::thread freer([&] {
    for (std::size_t i = 0; i < rounds; ++i) {
      while (ready.load(std::memory_order_acquire) <= i) std::this_thread::yield();
      EXPECT_EQ(*static_cast<std::size_t*>(handed[i]), i);
      arena.deallocate(handed[i], size);
    }
  });
  for (std::size_t i = 0; i < rounds; ++i) {
    void* at = arena.allocate(size);
    *static_cast<std::size_t*>(at) = i;
    handed[i] = at;
    ready.store(i + 1, std::memory_order_release);
  }
  freer.join();
  EXPECT_EQ(arena.slabs(), 1u);
}

TEST(slab_arena, threads_allocating_and_freeing_at_once_never_share_a_block) {
  slab_arena arena;
  std::vector<std::thread> threads;
  std::atomic<bool> shared{false};
  for (std::size_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      const std::size_t size = 64 * (t + 1);
      std::vector<std::uintptr_t*> mine;
      for (std::size_t round = 0; round < 50; ++round) {
        for (std::size_t i = 0; i < 500; ++i) {
          auto* at = static_cast<std::uintptr_t*>(arena.allocate(size));
          *at = t;
          mine.push_back(at);
        }
        for (auto* at : mine) {
          if (*at != t) shared = true;
          arena.deallocate(at, size);
        }
        mine.clear();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_FALSE(shared.load());
  EXPECT_EQ(arena.slabs(), 4u);  // one spare per size class used
}

struct alignas(128) overaligned {
  std::byte bytes[128];
};

TEST(state_allocator, serves_shared_states_of_any_size_and_alignment) {
  using mp::detail::state_allocator;
  auto small = std::allocate_shared<int>(state_allocator<int>(), 7);
  auto large =
      std::allocate_shared<std::vector<char>>(state_allocator<std::vector<char>>(), 5000, 'x');
  struct big {
    char bytes[4000];
  };
  auto beyond = std::allocate_shared<big>(state_allocator<big>());
  auto aligned = std::allocate_shared<overaligned>(state_allocator<overaligned>());
  EXPECT_EQ(*small, 7);
  EXPECT_EQ(large->size(), 5000u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(aligned.get()) % 128, 0u);
  beyond->bytes[3999] = 1;
  EXPECT_EQ(beyond->bytes[3999], 1);
}

TEST(state_allocator, a_child_forked_while_threads_allocate_can_allocate) {
  using mp::detail::state_allocator;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&] {
      while (!stop.load()) {
        std::vector<std::shared_ptr<std::uint64_t>> held;
        for (int i = 0; i < 100; ++i)
          held.push_back(std::allocate_shared<std::uint64_t>(state_allocator<std::uint64_t>(), 1u));
      }
    });
  for (int round = 0; round < 20; ++round) {
    const pid_t child = ::fork();
    ASSERT_NE(child, -1);
    if (child == 0) {
      // A lock held by a thread of the parent at the fork would hang this.
      auto state = std::allocate_shared<std::uint64_t>(state_allocator<std::uint64_t>(), 5u);
      ::_exit(*state == 5u ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  stop = true;
  for (auto& t : threads) t.join();
}

}  // namespace
