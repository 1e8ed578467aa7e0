// SPDX-License-Identifier: MIT
// Tests of mp::manager and its proxies (mp/managers.hpp): every proxy type
// across processes under the suite's start method, proxies travelling to
// processes, pool tasks, queues and pipes, apply, reference counting (also
// when a holder is killed), a dead server, remote serving with the right and
// a wrong key, concurrent clients and bad requests.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <sstream>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "mp/connection.hpp"
#include "mp/executor.hpp"
#include "mp/listener.hpp"
#include "mp/managers.hpp"
#include "mp/pool.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "mp/serialization.hpp"
#include "mp/synchronize.hpp"
#include "mp/testing/testing.hpp"

namespace {

using namespace std::chrono_literals;
using mp::testing::scaled;

// How many objects the server holds once it reached `expected` or a long
// while passed: a decref has no reply, and a dead holder's connection closes
// when the kernel says so, so the count settles a little after the fact.
std::size_t objects_once_settled(const mp::manager& manager, std::size_t expected) {
  const auto deadline = std::chrono::steady_clock::now() + scaled(30s);
  std::size_t left = manager.number_of_objects();
  while (left != expected && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
    left = manager.number_of_objects();
  }
  return left;
}

void run(mp::process& p) {
  p.start();
  ASSERT_TRUE(p.join(scaled(60s)));
  EXPECT_EQ(p.exitcode(), 0);
}

// ---- the tutorials' programs --------------------------------------------------

void modify_shared_list(mp::list_proxy<std::string> shared) {
  shared.append("Hello");
  shared.append("World");
}

TEST(manager, the_shared_list_tutorial_prints_like_python) {
  mp::manager manager;
  auto shared_list = manager.list<std::string>();
  mp::process p(modify_shared_list, shared_list);
  run(p);
  std::ostringstream out;
  out << shared_list;
  EXPECT_EQ(out.str(), "['Hello', 'World']");
}

int square(int x) {
  return x * x;
}

TEST(manager, pool_map_over_a_manager_list) {
  mp::manager manager;
  auto numbers = manager.list<int>({1, 2, 3, 4});
  mp::pool pool(2);
  EXPECT_EQ(pool.map(square, numbers), (std::vector<int>{1, 4, 9, 16}));
}

int sum_of(mp::list_proxy<int> numbers) {
  int total = 0;
  for (const int x : numbers) total += x;
  return total;
}

TEST(manager, a_proxy_travels_as_a_pool_task_argument) {
  mp::manager manager;
  auto numbers = manager.list<int>({1, 2, 3});
  mp::pool pool(2);
  EXPECT_EQ(pool.apply(sum_of, numbers), 6);
  numbers.append(4);
  EXPECT_EQ(pool.apply(sum_of, numbers), 10);
}

TEST(manager, a_proxy_travels_to_an_executor_task) {
  mp::manager manager;
  auto numbers = manager.list<int>({1, 2, 3});
  mp::process_pool_executor executor(1);
  EXPECT_EQ(executor.submit(sum_of, numbers).result(), 6);
}

// ---- each proxy type ------------------------------------------------------------

TEST(manager, list_methods_behave_as_pythons) {
  mp::manager manager;
  auto l = manager.list<int>({3, 1, 2});
  EXPECT_EQ(l.size(), 3U);
  EXPECT_EQ(l.at(-1), 2);
  l[0] = 7;
  EXPECT_EQ(static_cast<int>(l[0]), 7);
  l.insert(1, 5);
  l.extend({9, 9});
  EXPECT_EQ(l.copy(), (std::vector<int>{7, 5, 1, 2, 9, 9}));
  EXPECT_EQ(l.count(9), 2U);
  EXPECT_EQ(l.index(1), 2U);
  EXPECT_EQ(l.pop(), 9);
  EXPECT_EQ(l.pop(0), 7);
  l.remove(9);
  l.sort();
  EXPECT_EQ(l.copy(), (std::vector<int>{1, 2, 5}));
  l.reverse();
  EXPECT_EQ(l.get_many({0, -1}), (std::vector<int>{5, 1}));
  EXPECT_THROW(l.at(3), std::out_of_range);
  EXPECT_THROW(l.remove(42), std::invalid_argument);
  try {
    l.at(10);
    FAIL();
  } catch (const std::out_of_range& e) {
    const mp::remote_info* remote = mp::remote_info_of(e);
    ASSERT_NE(remote, nullptr);
    EXPECT_EQ(remote->pid(), *manager.pid());
  }
  l.clear();
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(l.str(), "[]");
}

void fill_dict(mp::dict_proxy<std::string, int> d) {
  d["one"] = 1;
  d.set("two", 2);
  d.update({{"three", 3}, {"four", 4}});
}

TEST(manager, a_dict_is_shared_across_processes) {
  mp::manager manager;
  auto d = manager.dict<std::string, int>();
  mp::process p(fill_dict, d);
  run(p);
  EXPECT_EQ(d.size(), 4U);
  EXPECT_EQ(d.at("one"), 1);
  EXPECT_EQ(d.get("five"), std::nullopt);
  EXPECT_EQ(d.get("five", 5), 5);
  EXPECT_TRUE(d.contains("two"));
  EXPECT_EQ(d.keys(), (std::vector<std::string>{"four", "one", "three", "two"}));
  EXPECT_EQ(d.get_many({"one", "nine"}), (std::vector<std::optional<int>>{1, std::nullopt}));
  EXPECT_EQ(d.pop("four"), 4);
  EXPECT_FALSE(d.erase("four"));
  EXPECT_THROW(d.at("four"), std::out_of_range);
  EXPECT_EQ(d.setdefault("one", 10), 1);
  EXPECT_EQ(d.str(), "{'one': 1, 'three': 3, 'two': 2}");
}

void set_value_and_array(mp::value_proxy<double> v, mp::array_proxy<int> a) {
  v.set(3.5);
  for (std::size_t i = 0; i < a.size(); ++i)
    a[static_cast<std::int64_t>(i)] = -a.at(static_cast<std::int64_t>(i));
}

TEST(manager, value_and_array_as_pythons_sum_and_squares) {
  mp::manager manager;
  auto v = manager.value<double>(0.0);
  auto a = manager.array<int>({1, 2, 3});
  mp::process p(set_value_and_array, v, a);
  run(p);
  EXPECT_EQ(v.get(), 3.5);
  EXPECT_EQ(a.copy(), (std::vector<int>{-1, -2, -3}));
  EXPECT_EQ(v.str(), "3.5");
  EXPECT_EQ(manager.array<int>(2).copy(), (std::vector<int>{0, 0}));
}

void fill_namespace(mp::namespace_proxy ns) {
  ns.set("x", 10);
  ns.set("name", std::string("mp"));
}

TEST(manager, a_namespace_holds_values_of_different_types) {
  mp::manager manager;
  auto ns = manager.namespace_();
  mp::process p(fill_namespace, ns);
  run(p);
  EXPECT_EQ(ns.get<int>("x"), 10);
  EXPECT_EQ(ns.get<std::string>("name"), "mp");
  EXPECT_THROW(ns.get<double>("x"), mp::decode_error);
  EXPECT_THROW(ns.get<int>("y"), std::out_of_range);
  EXPECT_TRUE(ns.contains("x"));
  EXPECT_TRUE(ns.erase("x"));
  EXPECT_EQ(ns.names(), (std::vector<std::string>{"name"}));
  EXPECT_EQ(ns.str(), "Namespace(name)");
}

void produce(mp::queue_proxy<int> q, int n) {
  for (int i = 0; i < n; ++i) q.put(i);
}

TEST(manager, a_queue_carries_items_between_processes) {
  mp::manager manager;
  auto q = manager.queue<int>();
  mp::process p(produce, q, 100);
  p.start();
  long total = 0;
  for (int i = 0; i < 100; ++i) total += q.get(scaled(30s));
  ASSERT_TRUE(p.join(scaled(30s)));
  EXPECT_EQ(total, 4950);
  EXPECT_THROW(q.get_nowait(), mp::queue_empty);
  EXPECT_THROW(q.get(10ms), mp::queue_empty);
  auto small = manager.queue<std::string>(1);
  small.put("a");
  EXPECT_TRUE(small.full());
  EXPECT_THROW(small.put_nowait("b"), mp::queue_full);
  EXPECT_EQ(small.qsize(), 1U);
}

void consume_all(mp::joinable_queue_proxy<int> q, mp::list_proxy<int> seen) {
  for (;;) {
    const int item = q.get();
    if (item < 0) {
      q.task_done();
      return;
    }
    seen.append(item);
    q.task_done();
  }
}

TEST(manager, a_joinable_queue_joins_when_every_task_is_done) {
  mp::manager manager;
  auto q = manager.joinable_queue<int>();
  auto seen = manager.list<int>();
  mp::process p(consume_all, q, seen);
  p.start();
  for (int i = 0; i < 10; ++i) q.put(i);
  q.put(-1);
  q.join();
  EXPECT_EQ(seen.size(), 10U);
  ASSERT_TRUE(p.join(scaled(30s)));
  EXPECT_THROW(q.task_done(), mp::usage_error);
}

void add_under_lock(mp::lock_proxy lock, mp::value_proxy<int> counter, int times) {
  for (int i = 0; i < times; ++i) {
    std::lock_guard guard(lock);
    counter.set(counter.get() + 1);
  }
}

TEST(manager, a_lock_serializes_read_modify_write_across_processes) {
  mp::manager manager;
  auto lock = manager.lock();
  auto counter = manager.value<int>(0);
  mp::process a(add_under_lock, lock, counter, 100);
  mp::process b(add_under_lock, lock, counter, 100);
  a.start();
  b.start();
  ASSERT_TRUE(a.join(scaled(60s)));
  ASSERT_TRUE(b.join(scaled(60s)));
  EXPECT_EQ(counter.get(), 200);
  EXPECT_TRUE(lock.acquire());
  EXPECT_FALSE(lock.acquire(false));
  EXPECT_EQ(lock.str(), "<Lock(locked)>");
  lock.release();
  EXPECT_THROW(lock.release(), mp::usage_error);
}

void take_and_die(mp::lock_proxy lock, mp::event_proxy taken) {
  lock.acquire();
  taken.set();
  ::pause();
}

TEST(manager, a_lock_held_by_a_killed_process_is_released) {
  mp::manager manager;
  auto lock = manager.lock();
  auto taken = manager.event();
  mp::process p(take_and_die, lock, taken);
  p.start();
  ASSERT_TRUE(taken.wait(scaled(30s)));
  EXPECT_FALSE(lock.acquire(false));
  p.kill();
  ASSERT_TRUE(p.join(scaled(30s)));
  EXPECT_TRUE(lock.acquire(scaled(30s)));
  lock.release();
}

TEST(manager, a_lock_taken_by_a_thread_that_ended_stays_held_by_its_process) {
  mp::manager manager;
  auto lock = manager.lock();
  std::thread taker([&] { EXPECT_TRUE(lock.acquire()); });
  taker.join();  // its connection closes; the lock is the process's, as in Python
  EXPECT_FALSE(lock.acquire(scaled(50ms)));
  lock.release();  // any thread may release it
  EXPECT_TRUE(lock.acquire(false));
  lock.release();
}

TEST(manager, an_rlock_is_reentrant_and_owned) {
  mp::manager manager;
  auto r = manager.rlock();
  EXPECT_TRUE(r.acquire());
  EXPECT_TRUE(r.acquire());
  r.release();
  std::thread other([&] {
    EXPECT_FALSE(r.acquire(false));  // another thread: another owner
    EXPECT_THROW(r.release(), mp::usage_error);
  });
  other.join();
  r.release();
  EXPECT_THROW(r.release(), mp::usage_error);
}

TEST(manager, semaphores_count_and_a_bounded_one_refuses_extra_releases) {
  mp::manager manager;
  auto s = manager.semaphore(2);
  EXPECT_TRUE(s.acquire());
  EXPECT_TRUE(s.acquire());
  EXPECT_FALSE(s.acquire(20ms));
  s.release(2);
  EXPECT_EQ(s.get_value(), 2);
  auto b = manager.bounded_semaphore(1);
  EXPECT_THROW(b.release(), mp::usage_error);
  EXPECT_TRUE(b.acquire());
  b.release();
}

void wait_for_ready(mp::condition_proxy cond, mp::value_proxy<int> state,
                    mp::value_proxy<int> seen) {
  std::unique_lock guard(cond);
  cond.wait_for([&] { return state.get() == 1; }, scaled(60s));
  seen.set(state.get());
}

TEST(manager, a_condition_wakes_a_waiter_in_another_process) {
  mp::manager manager;
  auto cond = manager.condition();
  auto state = manager.value<int>(0);
  auto seen = manager.value<int>(0);
  mp::process p(wait_for_ready, cond, state, seen);
  p.start();
  std::this_thread::sleep_for(50ms);
  {
    std::lock_guard guard(cond);
    state.set(1);
    cond.notify_all();
  }
  ASSERT_TRUE(p.join(scaled(60s)));
  EXPECT_EQ(seen.get(), 1);
  EXPECT_THROW(cond.notify(), mp::usage_error);
  std::lock_guard guard(cond);
  EXPECT_FALSE(cond.wait(10ms));
}

void set_event(mp::event_proxy e) {
  e.set();
}

TEST(manager, an_event_is_set_by_another_process) {
  mp::manager manager;
  auto e = manager.event();
  EXPECT_FALSE(e.is_set());
  EXPECT_FALSE(e.wait(10ms));
  mp::process p(set_event, e);
  p.start();
  EXPECT_TRUE(e.wait(scaled(30s)));
  ASSERT_TRUE(p.join(scaled(30s)));
  e.clear();
  EXPECT_FALSE(e.is_set());
}

void meet(mp::barrier_proxy b, mp::list_proxy<int> indices) {
  indices.append(static_cast<int>(b.wait(scaled(60s))));
}

TEST(manager, a_barrier_releases_its_parties_together) {
  mp::manager manager;
  auto b = manager.barrier(3);
  auto indices = manager.list<int>();
  mp::process p1(meet, b, indices);
  mp::process p2(meet, b, indices);
  p1.start();
  p2.start();
  meet(b, indices);
  ASSERT_TRUE(p1.join(scaled(60s)));
  ASSERT_TRUE(p2.join(scaled(60s)));
  auto got = indices.copy();
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(b.parties(), 3U);
  EXPECT_THROW(b.wait(10ms), mp::broken_barrier);  // timed out: broken
  EXPECT_TRUE(b.broken());
  b.reset();
  EXPECT_FALSE(b.broken());
  b.abort();
  EXPECT_THROW(b.wait(), mp::broken_barrier);
}

// ---- apply and batches ----------------------------------------------------------

void add_one(std::map<std::string, int>& counts, const std::string& key) {
  ++counts[key];
}

void count_many(mp::dict_proxy<std::string, int> d, int times) {
  for (int i = 0; i < times; ++i) d.apply(add_one, std::string("hits"));
}

TEST(manager, apply_makes_an_update_atomic_across_processes) {
  mp::manager manager;
  auto d = manager.dict<std::string, int>();
  mp::process a(count_many, d, 200);
  mp::process b(count_many, d, 200);
  a.start();
  b.start();
  count_many(d, 200);
  ASSERT_TRUE(a.join(scaled(60s)));
  ASSERT_TRUE(b.join(scaled(60s)));
  EXPECT_EQ(d.at("hits"), 600);
  // apply returns the function's result; a value proxy hands it the value.
  auto v = manager.value<int>(41);
  EXPECT_EQ(v.apply([](int& x) { return ++x; }), 42);
  EXPECT_EQ(d.apply([](std::map<std::string, int>& m) { return m.size(); }), 1U);
  EXPECT_THROW(d.apply([](std::map<std::string, int>&) -> int { throw std::domain_error("no"); }),
               std::domain_error);
}

TEST(manager, batched_operations_are_one_request_each) {
  mp::manager manager;
  auto d = manager.dict<int, int>();
  std::vector<std::pair<int, int>> pairs;
  for (int i = 0; i < 1000; ++i) pairs.emplace_back(i, i * i);
  d.update(pairs);
  EXPECT_EQ(d.size(), 1000U);
  std::vector<int> keys = {0, 10, 999, 1000};
  EXPECT_EQ(d.get_many(keys), (std::vector<std::optional<int>>{0, 100, 998001, std::nullopt}));
  auto l = manager.list<int>();
  l.extend(std::vector<int>(500, 1));
  EXPECT_EQ(l.size(), 500U);
}

// ---- travelling proxies ------------------------------------------------------------

void read_from_queue(mp::queue<mp::list_proxy<int>> q) {
  auto l = q.get();
  l.append(99);
}

TEST(manager, proxies_travel_through_queues_and_pipes) {
  mp::manager manager;
  auto l = manager.list<int>();
  mp::queue<mp::list_proxy<int>> q;
  mp::process p(read_from_queue, q);
  p.start();
  q.put(l);
  ASSERT_TRUE(p.join(scaled(60s)));
  EXPECT_EQ(l.copy(), (std::vector<int>{99}));
  auto [a, b] = mp::pipe();
  a.send(l);
  auto again = b.recv<mp::list_proxy<int>>();
  again.append(100);
  EXPECT_EQ(l.size(), 2U);
  a.send(l);
  EXPECT_THROW((b.recv<mp::dict_proxy<int, int>>()), mp::decode_error);
}

// ---- nested proxies ------------------------------------------------------------------

void append_to_inner(mp::list_proxy<mp::list_proxy<int>> outer) {
  outer.at(0).append(2);
}

TEST(manager, a_proxy_inside_a_managed_container_is_a_nested_proxy) {
  mp::manager manager;
  auto outer = manager.list<mp::list_proxy<int>>();
  {
    auto inner = manager.list<int>({1});
    outer.append(inner);
    mp::process p(append_to_inner, outer);
    run(p);
    EXPECT_EQ(inner.copy(), (std::vector<int>{1, 2}));
    EXPECT_TRUE(outer.at(0) == inner);
  }
  // The server's copy keeps the inner list alive.
  outer.at(0).append(3);
  EXPECT_EQ(outer.str(), "[[1, 2, 3]]");
  auto d = manager.dict<std::string, mp::dict_proxy<std::string, int>>();
  d.set("scores", manager.dict<std::string, int>());
  d.at("scores").set("a", 1);
  EXPECT_EQ(d.at("scores").at("a"), 1);
  EXPECT_EQ(manager.number_of_objects(), 4U);
  outer.clear();
  d.clear();
  const std::size_t left = objects_once_settled(manager, 2);
  EXPECT_EQ(left, 2U);  // outer and d: what they held is freed
}

// ---- shared memory managers ------------------------------------------------------------

void fill_block(std::string name, std::string list_name) {
  auto block = mp::shared_memory::open(name);
  block.data()[0] = std::byte{42};
  auto list = mp::shareable_list::open(list_name);
  list.set(0, std::int64_t{7});
}

TEST(manager, a_shared_memory_manager_unlinks_its_blocks_at_shutdown) {
  std::string block_name;
  std::string list_name;
  {
    mp::shared_memory_manager smm;
    auto block = smm.shared_memory(64);
    auto list = smm.shareable_list({std::int64_t{1}, std::string("two")});
    block_name = block.name();
    list_name = list.shm().name();
    mp::process p(fill_block, block_name, list_name);
    run(p);
    EXPECT_EQ(block.data()[0], std::byte{42});
    EXPECT_EQ(std::get<std::int64_t>(list.get(0)), 7);
    // Still there after the objects that made them are gone.
    { auto gone = std::move(block); }
    EXPECT_NO_THROW(mp::shared_memory::open(block_name));
  }
  EXPECT_THROW(mp::shared_memory::open(block_name), mp::shared_memory_not_found);
  EXPECT_THROW(mp::shared_memory::open(list_name), mp::shared_memory_not_found);
}

// ---- custom types ------------------------------------------------------------------------

struct counter {
  counter() = default;
  explicit counter(int start) : value(start) {}
  int add(int n) { return value += n; }
  int get() const { return value; }
  std::unique_ptr<counter> split() const { return std::make_unique<counter>(value); }
  void fail() { throw std::domain_error("counter failed"); }
  int value = 0;
};

// As Python registers at import: before main, in every run (a spawned server too).
const bool counter_registered = mp::register_type<counter>("counter", &counter::add, &counter::get,
                                                           &counter::split, &counter::fail);

struct never_registered {
  int x = 0;
};

void add_in_child(mp::proxy<counter> c) {
  c.call(&counter::add, 5);
}

TEST(manager, custom_types_are_served_and_called_by_member_pointer) {
  ASSERT_TRUE(counter_registered);
  mp::manager manager;
  auto c = manager.create<counter>(10);
  EXPECT_EQ(c.call(&counter::add, 1), 11);
  mp::process p(add_in_child, c);
  run(p);
  EXPECT_EQ(c.call(&counter::get), 16);
  mp::proxy<counter> other = c.call(&counter::split);  // a new object, served
  other.call(&counter::add, 1);
  EXPECT_EQ(other.call(&counter::get), 17);
  EXPECT_EQ(c.call(&counter::get), 16);
  EXPECT_THROW(c.call(&counter::fail), std::domain_error);
  EXPECT_EQ(c.apply([](counter& x) { return x.value * 2; }), 32);
  EXPECT_EQ(manager.create<counter>().call(&counter::get), 0);
  EXPECT_THROW(manager.create<never_registered>(), mp::usage_error);
  EXPECT_EQ(manager.number_of_objects(), 2U);  // c and other
}

// ---- references --------------------------------------------------------------------

TEST(manager, an_object_is_freed_with_its_last_proxy) {
  mp::manager manager;
  EXPECT_EQ(manager.number_of_objects(), 0U);
  {
    auto l = manager.list<int>();
    auto copy = l;
    auto d = manager.dict<int, int>();
    EXPECT_EQ(manager.number_of_objects(), 2U);
  }
  const std::size_t left = objects_once_settled(manager, 0);
  EXPECT_EQ(left, 0U);
}

void use_later(mp::list_proxy<int> l, mp::event_proxy go) {
  go.wait(scaled(30s));
  l.append(1);
}

TEST(manager, a_child_keeps_the_object_after_the_parent_drops_its_proxy) {
  mp::manager manager;
  auto go = manager.event();
  std::optional<mp::process> p;
  {
    auto l = manager.list<int>();
    p.emplace(use_later, l, go);
    p->start();
  }
  go.set();
  ASSERT_TRUE(p->join(scaled(60s)));
  EXPECT_EQ(p->exitcode(), 0);  // its append found the list
}

void hold_and_report(mp::list_proxy<int> l, mp::event_proxy ready) {
  auto copy = l;
  ready.set();
  ::pause();
}

TEST(manager, a_killed_process_gives_its_references_back) {
  mp::manager manager;
  auto ready = manager.event();
  {
    auto l = manager.list<int>();
    mp::process p(hold_and_report, l, ready);
    p.start();
    ASSERT_TRUE(ready.wait(scaled(30s)));
    p.kill();
    ASSERT_TRUE(p.join(scaled(30s)));
  }
  const std::size_t left = objects_once_settled(manager, 1);
  EXPECT_EQ(left, 1U);  // the event only
}

// ---- failures ----------------------------------------------------------------------

TEST(manager, a_dead_server_fails_every_pending_and_later_call) {
  mp::manager manager;
  auto q = manager.queue<int>();
  auto l = manager.list<int>({1});
  std::atomic<bool> failed{false};
  std::thread waiter([&] {
    try {
      q.get();
    } catch (const mp::manager_error&) {
      failed = true;
    }
  });
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(::kill(*manager.pid(), SIGKILL), 0);
  waiter.join();
  EXPECT_TRUE(failed);
  EXPECT_THROW(l.size(), mp::manager_error);
  EXPECT_THROW(manager.list<int>(), mp::manager_error);
}

void call_after_shutdown(mp::list_proxy<int> l, mp::event_proxy ready, mp::connection go,
                         mp::connection result) {
  ready.set();
  go.recv<int>();
  try {
    l.append(1);
    result.send(0);
  } catch (const mp::manager_error&) {
    result.send(1);
  }
}

TEST(manager, shutdown_with_proxies_alive_elsewhere_is_clean) {
  auto manager = std::make_optional<mp::manager>();
  auto l = manager->list<int>();
  auto ready = manager->event();
  auto [go_r, go_w] = mp::pipe(false);
  auto [res_r, res_w] = mp::pipe(false);
  mp::process p(call_after_shutdown, l, ready, std::move(go_r), std::move(res_w));
  p.start();
  ASSERT_TRUE(ready.wait(scaled(30s)));
  manager->shutdown();
  go_w.send(1);
  EXPECT_EQ(res_r.recv<int>(), 1);
  ASSERT_TRUE(p.join(scaled(30s)));
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_THROW(l.append(2), mp::manager_error);
}

TEST(manager, bad_requests_get_an_error_and_the_server_goes_on) {
  mp::manager manager;
  auto l = manager.list<int>({1, 2});
  mp::connection raw = mp::client(manager.address(), {.authenticate = true});
  for (const std::string& garbage : {std::string("x"), std::string(40, '\xff'),
                                     std::string("\x01\x01\0\0\0\0\0\0\0\x05\0"
                                                 "nopes",
                                                 16)}) {
    raw.send_bytes(garbage);
    const mp::bytes reply = raw.recv_bytes();
    ASSERT_FALSE(reply.empty());
    EXPECT_EQ(static_cast<int>(reply[0]), 2);  // refused
  }
  // A known method with arguments of the wrong type: a decode error, raised.
  std::string frame("\x01", 1);
  std::uint64_t id = l.id();
  frame.append(reinterpret_cast<const char*>(&id), 8);
  frame.append(
      "\x06\0"
      "append",
      8);
  frame.append("garbage!");
  raw.send_bytes(frame);
  const mp::bytes reply = raw.recv_bytes();
  ASSERT_FALSE(reply.empty());
  EXPECT_EQ(static_cast<int>(reply[0]), 1);  // raised
  EXPECT_EQ(l.copy(), (std::vector<int>{1, 2}));
}

// ---- remote managers ----------------------------------------------------------------

TEST(manager, a_remote_manager_serves_named_objects_to_clients_with_the_key) {
  const auto key = mp::key("abracadabra");
  mp::manager m({.address = mp::address("127.0.0.1", 0), .authkey = key, .start = false});
  m.register_object<mp::queue_proxy<int>>("get_queue");
  auto server = m.get_server();  // listening: its port is known before it serves
  const int port = server.address().port();
  ASSERT_NE(port, 0);
  std::jthread serving([&server](std::stop_token stop) { server.serve_forever(stop); });

  mp::manager client({.address = mp::address("127.0.0.1", port), .authkey = key, .start = false});
  client.connect();
  auto q = client.get<mp::queue_proxy<int>>("get_queue");
  q.put(7);
  // The serving manager is a client of its own server too.
  EXPECT_EQ(m.get<mp::queue_proxy<int>>("get_queue").get(scaled(10s)), 7);
  // Every maker works over TCP as locally.
  auto remote_list = client.list<int>({1});
  remote_list.append(2);
  EXPECT_EQ(remote_list.copy(), (std::vector<int>{1, 2}));
  auto remote_lock = client.lock();
  EXPECT_TRUE(remote_lock.acquire(false));
  remote_lock.release();
  auto remote_ns = client.namespace_();
  remote_ns.set("x", 1.5);
  EXPECT_EQ(remote_ns.get<double>("x"), 1.5);
  EXPECT_THROW(client.get<mp::queue_proxy<int>>("no_such_name"), mp::manager_error);
  EXPECT_THROW(client.get<mp::list_proxy<int>>("get_queue"), mp::manager_error);

  mp::manager intruder(
      {.address = mp::address("127.0.0.1", port), .authkey = mp::key("wrong"), .start = false});
  EXPECT_THROW(intruder.connect(), mp::authentication_error);
  serving.request_stop();
}

void hammer(mp::dict_proxy<int, int> d, int base) {
  for (int i = 0; i < 50; ++i) d.set(base + i, i);
}

TEST(manager, concurrent_clients_from_threads_and_processes) {
  mp::manager manager;
  auto d = manager.dict<int, int>();
  // The processes start first: a fork while other threads allocate can hang
  // the child in AddressSanitizer's allocator (GCC 12's has no fork handler).
  mp::process a(hammer, d, 10000);
  mp::process b(hammer, d, 20000);
  a.start();
  b.start();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&, t] { hammer(d, t * 1000); });
  for (auto& t : threads) t.join();
  ASSERT_TRUE(a.join(scaled(60s)));
  ASSERT_TRUE(b.join(scaled(60s)));
  EXPECT_EQ(d.size(), 300U);
}

TEST(manager, misuse_is_reported) {
  mp::list_proxy<int> unbound;
  EXPECT_THROW(unbound.size(), mp::usage_error);
  mp::manager idle({.start = false});
  EXPECT_THROW(idle.list<int>(), mp::usage_error);
  EXPECT_THROW(idle.connect(), mp::usage_error);  // no address
  mp::manager started;
  EXPECT_THROW(started.start(), mp::usage_error);
}

}  // namespace
