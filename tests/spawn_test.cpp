// SPDX-License-Identifier: MIT
// Tests of the start methods that start clean, spawn and forkserver, and of
// contexts (mp/context.hpp): a spawned child is a fresh run of this test
// program that runs only its target, and a forkserver child is a copy of such
// a run; the program's main() (here, GoogleTest's) runs in neither.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <ranges>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mp/connection.hpp"
#include "mp/context.hpp"
#include "mp/executor.hpp"
#include "mp/pool.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "mp/shared_memory.hpp"
#include "mp/sharedctypes.hpp"
#include "mp/synchronize.hpp"
#include "mp/testing/testing.hpp"
// Internal (not installed): the start message, for a test that forges one; an exception of
// src/os that a test meets before it lowers its descriptor limit.
#include "os/system.hpp"
#include "spawn_message.hpp"

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

// The rest of the resources: each used as itself, reported through `results`.
void use_the_other_resources(mp::rlock reentrant, mp::bounded_semaphore bounded, mp::barrier meet,
                             mp::simple_queue<int> results, mp::joinable_queue<int> work,
                             const mp::shared_memory& block) {
  {
    std::scoped_lock twice(reentrant, reentrant);  // an rlock taken twice by one owner
    results.put(1);
  }
  bounded.acquire();
  bounded.release();
  results.put(meet.wait() < 2 ? 2 : -1);
  results.put(work.get());
  work.task_done();
  block.data()[0] = std::byte{4};
  results.put(static_cast<int>(block.size()));
}

// Every test of this suite runs under spawn and under forkserver.
class clean_start : public ::testing::TestWithParam<mp::start_method> {};

}  // namespace

INSTANTIATE_TEST_SUITE_P(methods, clean_start,
                         ::testing::Values(mp::start_method::spawn, mp::start_method::forkserver),
                         [](const auto& method) {
                           return std::string(mp::to_string(method.param));
                         });

TEST_P(clean_start, the_child_runs_the_target_with_its_arguments_and_not_main) {
  mp::process p(mp::process_options{.method = GetParam()}, exit_with, std::vector<int>{1, 2, 3, 4},
                std::string("10"), 42);
  p.start();
  p.join();
  // GoogleTest's main would have exited 0 or 1 after running the tests again.
  EXPECT_EQ(p.exitcode(), 7);
}

TEST_P(clean_start, the_child_knows_its_name_and_parent) {
  auto ctx = mp::get_context(GetParam());
  EXPECT_EQ(ctx.get_start_method(), GetParam());
  mp::process p = ctx.process(mp::process_options{.name = "spawned-child"}, report_identity,
                              static_cast<int>(::getpid()));
  p.start();
  EXPECT_TRUE(p.join(mp::testing::scaled(30s)));
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(clean_start, a_connection_argument_reaches_the_child_as_a_working_end) {
  auto [ours, theirs] = mp::pipe();
  mp::process p(mp::process_options{.method = GetParam()}, echo_twice, std::move(theirs));
  p.start();
  ours.send(std::string("ab"));
  EXPECT_EQ(ours.recv<std::string>(), "abab");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  // The child's end was open only in the child: it closed when the child ended.
  EXPECT_THROW(static_cast<void>(ours.recv<std::string>()), mp::eof_error);
}

TEST_P(clean_start, locks_events_semaphores_and_conditions_reach_the_child_as_themselves) {
  mp::event started;
  mp::lock held;
  mp::semaphore done(0);
  mp::condition changed;
  held.lock();
  mp::process p(mp::process_options{.method = GetParam()}, use_the_primitives, started, held, done,
                changed);
  p.start();
  EXPECT_TRUE(started.wait(mp::testing::scaled(30s)));
  EXPECT_EQ(done.get_value(), 0U);  // the child waits for our lock
  held.unlock();
  EXPECT_TRUE(done.acquire(true, mp::testing::scaled(30s)));
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(clean_start, a_queue_reaches_the_child_as_itself) {
  auto ctx = mp::get_context(GetParam());
  mp::queue<std::string> q;
  mp::process p = ctx.process(put_hello, q);
  p.start();
  EXPECT_EQ(q.get(mp::testing::scaled(30s)), "hello");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(clean_start, shared_values_and_arrays_reach_the_child_as_themselves) {
  mp::shared_value<double> num(0.0);
  mp::shared_array<int> arr(std::views::iota(0, 10));
  mp::raw_value<long> counted(0);
  mp::process p(mp::process_options{.method = GetParam()}, set_pi_and_negate, num, arr, counted);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(num.get(), 3.1415927);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(arr.get(static_cast<std::size_t>(i)), -i);
  EXPECT_EQ(counted.get(), 1);
}

TEST_P(clean_start, rlocks_barriers_the_other_queues_and_shared_memory_reach_the_child_too) {
  mp::rlock reentrant;
  mp::bounded_semaphore bounded(1);
  mp::barrier meet(2);
  mp::simple_queue<int> results;
  mp::joinable_queue<int> work;
  auto block = mp::shared_memory::create(100);
  work.put(3);
  mp::process p(mp::process_options{.method = GetParam()}, use_the_other_resources, reentrant,
                bounded, meet, results, work, std::ref(block));
  p.start();
  EXPECT_EQ(results.get(), 1);
  EXPECT_LT(meet.wait(), 2U);
  EXPECT_EQ(results.get(), 2);
  work.join();  // the child called task_done
  EXPECT_EQ(results.get(), 3);
  EXPECT_EQ(results.get(), 100);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(block.data()[0], std::byte{4});
  EXPECT_EQ(bounded.get_value(), 1U);
}

TEST_P(clean_start, an_exception_in_the_child_ends_it_with_1) {
  mp::process p = mp::get_context(GetParam()).process(throws_in_child);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 1);
}

TEST_P(clean_start, a_capturing_lambda_is_refused_saying_why) {
  int captured = 3;
  mp::process p(mp::process_options{.method = GetParam()},
                [captured] { static_cast<void>(captured); });
  try {
    p.start();
    FAIL() << "start() accepted a capturing lambda under " << mp::to_string(GetParam());
  } catch (const mp::usage_error& e) {
    EXPECT_NE(std::string(e.what()).find("capturing lambda"), std::string::npos) << e.what();
  }
}

// The classic fork hazard: a thread holds a mutex when a child starts. A
// forked child inherits it locked, by a thread it does not have, and hangs; a
// spawned child starts clean.
TEST_P(clean_start, is_immune_to_locks_other_threads_hold_at_fork) {
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
  mp::process spawned(mp::process_options{.method = GetParam()}, take_the_mutex);
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

TEST(context, the_default_is_fork_and_all_three_methods_are_available) {
  EXPECT_EQ(mp::get_start_method(), mp::start_method::fork);
  EXPECT_EQ(mp::get_all_start_methods(),
            (std::vector<mp::start_method>{mp::start_method::fork, mp::start_method::spawn,
                                           mp::start_method::forkserver}));
  EXPECT_EQ(mp::to_string(mp::start_method::spawn), "spawn");
  EXPECT_EQ(mp::to_string(mp::start_method::forkserver), "forkserver");
  // Fixed on first use: changing it needs force, even to the method in force (Python's
  // RuntimeError('context has already been set')).
  EXPECT_THROW(mp::set_start_method(mp::start_method::spawn), mp::context_error);
  EXPECT_THROW(mp::set_start_method(mp::start_method::fork), mp::context_error);
  static_assert(std::is_base_of_v<std::runtime_error, mp::context_error>);
  static_assert(!std::is_base_of_v<std::logic_error, mp::context_error>);
  mp::set_start_method(mp::start_method::fork, true);
  mp::set_start_method(mp::start_method::spawn, true);
  EXPECT_EQ(mp::get_context().get_start_method(), mp::start_method::spawn);
  mp::process p(exit_with, std::vector<int>{5}, std::string("5"), 42);  // spawned now
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 7);
  mp::set_start_method(mp::start_method::fork, true);
}

// ---- the fork server -------------------------------------------------------

namespace {

int preloaded = 0;
void preload_the_answer() {
  preloaded = 42;
}
void exit_with_preloaded() {
  throw mp::system_exit{preloaded};
}
void sleep_for_a_minute() {
  std::this_thread::sleep_for(60s);
}

bool process_exists(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

// Waits for `pid` to be gone (not even a zombie our test could reap).
bool gone_within(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + mp::testing::scaled(limit);
  while (process_exists(pid)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// The socket directories of fork servers of this user, in $TMPDIR and /tmp.
std::vector<std::string> forkserver_directories() {
  std::vector<std::string> found;
  std::vector<std::string> bases{"/tmp"};
  if (const char* tmp = std::getenv("TMPDIR"); tmp != nullptr && *tmp != '\0') bases.push_back(tmp);
  for (const std::string& base : bases) {
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator(base, ignored)) {
      if (entry.path().filename().string().rfind("mp-forkserver-", 0) != 0) continue;
      struct stat info {};
      if (::stat(entry.path().c_str(), &info) == 0 && info.st_uid == ::getuid())
        found.push_back(entry.path().string());
    }
  }
  return found;
}

}  // namespace

// Preloading happens once, in the server, before it forks: a child starts
// with what it left.
MP_TEST_ROLE(forkserver_preload) {
  mp::set_forkserver_preload({preload_the_answer});
  mp::process p(mp::process_options{.method = mp::start_method::forkserver}, exit_with_preloaded);
  p.start();
  p.join();
  return *p.exitcode();
}

TEST(forkserver, runs_the_preload_functions_before_forking_children) {
  const auto result = mp::testing::run_role("forkserver_preload");
  EXPECT_EQ(result.exitcode, 42) << result.err;
  EXPECT_EQ(preloaded, 0);  // only in the server and its children
}

// Prints the server's pid and its child's, then dies at once.
MP_TEST_ROLE(forkserver_parent_killed) {
  const pid_t server = mp::ensure_forkserver_running();
  mp::process p(mp::process_options{.method = mp::start_method::forkserver}, sleep_for_a_minute);
  p.start();
  std::printf("%d %d\n", static_cast<int>(server), static_cast<int>(*p.pid()));
  std::fflush(stdout);
  ::kill(::getpid(), SIGKILL);
  return 0;
}

TEST(forkserver, dies_with_its_parent_and_takes_its_children_along) {
  const auto result = mp::testing::run_role("forkserver_parent_killed");
  EXPECT_EQ(result.exitcode, -SIGKILL) << result.err;
  int server = 0, child = 0;
  ASSERT_EQ(std::sscanf(result.out.c_str(), "%d %d", &server, &child), 2) << result.out;
  EXPECT_TRUE(gone_within(server, 30s));
  EXPECT_TRUE(gone_within(child, 30s));
}

MP_TEST_ROLE(forkserver_killed) {
  const pid_t first = mp::ensure_forkserver_running();
  ::kill(first, SIGKILL);
  // The next start finds it gone, reaps it and starts another.
  mp::process p(mp::process_options{.method = mp::start_method::forkserver}, exit_with,
                std::vector<int>{2, 3}, std::string("5"), 42);
  p.start();
  p.join();
  if (mp::ensure_forkserver_running() == first) return 2;
  return *p.exitcode();
}

TEST(forkserver, a_killed_server_is_replaced_on_next_use) {
  const auto result = mp::testing::run_role("forkserver_killed");
  EXPECT_EQ(result.exitcode, 7) << result.err;
}

// The path of the Unix socket `pid` listens on, from its descriptors and
// /proc/net/unix; empty if none.
std::string listening_path(pid_t pid) {
  std::set<std::string> inodes;
  std::error_code ignored;
  for (const auto& fd :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ignored)) {
    const std::string target = std::filesystem::read_symlink(fd.path(), ignored).string();
    if (target.rfind("socket:[", 0) == 0) inodes.insert(target.substr(8, target.size() - 9));
  }
  std::ifstream table("/proc/net/unix");
  std::string line;
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string num, refs, protocol, flags, type, state, inode, path;
    if (fields >> num >> refs >> protocol >> flags >> type >> state >> inode >> path &&
        inodes.contains(inode) && path.rfind('/', 0) == 0)
      return path;
  }
  return {};
}

// Kills its server, waits until it has ended (unreaped), prints its socket's
// path and exits: the exit handler must remove what the server could not.
MP_TEST_ROLE(forkserver_killed_before_exit) {
  // A child started through it: the server holds its socket from then on.
  mp::process p(mp::process_options{.method = mp::start_method::forkserver}, exit_with,
                std::vector<int>{1}, std::string("1"), 42);
  p.start();
  p.join();
  const pid_t server = mp::ensure_forkserver_running();
  const std::string path = listening_path(server);
  ::kill(server, SIGKILL);
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(server), &info, WEXITED | WNOWAIT) != 0) return 2;
  std::printf("%s\n", path.c_str());
  return 0;
}

TEST(forkserver, the_socket_of_a_killed_server_is_removed_when_its_parent_exits) {
  const auto result = mp::testing::run_role("forkserver_killed_before_exit");
  ASSERT_EQ(result.exitcode, 0) << result.err;
  const std::string path = result.out.substr(0, result.out.find('\n'));
  ASSERT_EQ(path.rfind("/", 0), 0U) << result.out;
  EXPECT_FALSE(std::filesystem::exists(path)) << path;
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(path).parent_path())) << path;
}

TEST(forkserver, its_socket_is_private_and_answers_only_its_parent) {
  const pid_t server = mp::ensure_forkserver_running();
  const std::vector<std::string> directories = forkserver_directories();
  ASSERT_FALSE(directories.empty());
  for (const std::string& directory : directories) {
    struct stat info {};
    ASSERT_EQ(::stat(directory.c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0700U) << directory;
    if (::stat((directory + "/socket").c_str(), &info) == 0) {
      EXPECT_TRUE(S_ISSOCK(info.st_mode)) << directory;
      EXPECT_EQ(info.st_mode & 0777, 0600U) << directory;
    }
  }
  // Another process of ours (so same uid and permissions) is not its parent:
  // every server hangs up on it without starting anything.
  mp::process stranger(
      mp::process_options{.method = mp::start_method::fork},
      [](std::vector<std::string> paths) {
        for (const std::string& directory : paths) {
          const std::string path = directory + "/socket";
          const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
          sockaddr_un address{};
          address.sun_family = AF_UNIX;
          std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
          if (::connect(s, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
            ::close(s);
            continue;  // a server that ended meanwhile
          }
          const char request[] = "start something";
          static_cast<void>(::send(s, request, sizeof request, MSG_NOSIGNAL));
          ::shutdown(s, SHUT_WR);
          char reply[16];
          const ssize_t n = ::recv(s, reply, sizeof reply, 0);
          ::close(s);
          if (n > 0) throw mp::system_exit{3};  // it answered a stranger
        }
      },
      directories);
  stranger.start();
  stranger.join();
  EXPECT_EQ(stranger.exitcode(), 0);
  // And it still serves us.
  mp::process p(mp::process_options{.method = mp::start_method::forkserver}, exit_with,
                std::vector<int>{1}, std::string("1"), 42);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 7);
  EXPECT_EQ(mp::ensure_forkserver_running(), server);
}

// The server serves its parent's connections as their requests arrive: one that says
// nothing holds up no other start (it used to block every later start until it closed).
TEST(forkserver, a_silent_connection_holds_up_no_other_start) {
  // A start first: from then on the server holds its socket, so that we can find it.
  mp::process first(mp::process_options{.method = mp::start_method::forkserver}, exit_with,
                    std::vector<int>{1}, std::string("1"), 42);
  first.start();
  first.join();
  const std::string path = listening_path(mp::ensure_forkserver_running());
  ASSERT_FALSE(path.empty());
  const int silent = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(silent, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  ASSERT_EQ(::connect(silent, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  auto started = std::async(std::launch::async, [] {
    mp::process p(mp::process_options{.method = mp::start_method::forkserver}, exit_with,
                  std::vector<int>{2}, std::string("2"), 42);
    p.start();
    p.join();
    return p.exitcode();
  });
  // No timing claim: the deadline is far beyond a start, and without it the test would hang.
  const bool done = started.wait_for(mp::testing::scaled(30s)) == std::future_status::ready;
  ::close(silent);  // lets a server that waits on it go on, so that the test ends either way
  EXPECT_TRUE(done) << "a forkserver start waited for a silent connection";
  EXPECT_EQ(started.get(), 7);
}

// Writes `path` and sleeps: the target of a start that must never run (an empty path: a
// start that may).
void touch_and_sleep(std::string path) {
  if (path.empty()) return;
  std::ofstream(path) << "ran";
  std::this_thread::sleep_for(60s);
}

// Starts a forkserver child while this process may open one descriptor more and no other:
// the connection to the server gets it, the pidfd and pipe of the reply do not. Prints what
// start() threw, then whether the server's child ended (reaped, so the server has no child
// left) and whether the target ran.
MP_TEST_ROLE(forkserver_reply_without_descriptors) {
  const pid_t server = mp::ensure_forkserver_running();
  // The same start once before the limit: UBSan checks an object's dynamic type with a pipe
  // the first time it meets it, and the limit would refuse that pipe.
  mp::process before(mp::process_options{.method = mp::start_method::forkserver}, touch_and_sleep,
                     std::string());
  before.start();
  before.join();
  // And the two exceptions the start below throws: the first of each would need that pipe too.
  try {
    throw mp::os::descriptors_lost(EMFILE, std::system_category(), "met once");
  } catch (const std::system_error&) {
  }
  try {
    throw mp::process_error("met once");
  } catch (const std::exception&) {
  }
  const std::string ran = "/tmp" + mp::testing::unique_name("mp-ran");
  mp::process p(mp::process_options{.method = mp::start_method::forkserver}, touch_and_sleep, ran);
  const int lowest = ::dup(STDIN_FILENO);  // every descriptor below it is in use
  ::close(lowest);
  rlimit old{};
  ::getrlimit(RLIMIT_NOFILE, &old);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(lowest) + 1;
  ::setrlimit(RLIMIT_NOFILE, &low);
  std::exception_ptr failure;
  try {
    p.start();
  } catch (...) {
    failure = std::current_exception();  // looked at once the limit is lifted (UBSan again)
  }
  ::setrlimit(RLIMIT_NOFILE, &old);
  std::string what = "started";
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const mp::process_error& e) {
      what = e.what();
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + mp::testing::scaled(30s);
  while (mp::testing::descendant_pids() != std::vector<pid_t>{server} &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  const bool alone = mp::testing::descendant_pids() == std::vector<pid_t>{server};
  const bool target_ran = std::filesystem::remove(ran);
  std::printf("%s|%d|%d\n", what.c_str(), alone, target_ran);
  return 0;
}

// A start that fails after the server forked (here the parent cannot take the reply's
// descriptors) leaves no child behind, and the target never runs: the child waits for the
// parent's word before it becomes anything, and the parent gives it only once it has taken
// the child as its own.
TEST(forkserver, a_start_that_fails_after_the_fork_leaves_no_child_running) {
  const auto result = mp::testing::run_role("forkserver_reply_without_descriptors");
  EXPECT_EQ(result.exitcode, 0) << result.err;
  EXPECT_NE(result.out.find("lacks its descriptors"), std::string::npos) << result.out;
  EXPECT_TRUE(result.out.ends_with("|1|0\n")) << result.out;  // no child left, target never ran
}

TEST(forkserver, its_children_are_ours_and_report_signals_like_any_child) {
  mp::process p(mp::process_options{.method = mp::start_method::forkserver}, sleep_for_a_minute);
  p.start();
  const auto children = mp::active_children();
  EXPECT_EQ(children.size(), 1U);
  EXPECT_TRUE(p.is_alive());
  EXPECT_NE(p.pid(), std::optional<pid_t>(mp::ensure_forkserver_running()));
  EXPECT_FALSE(p.join(10ms));
  p.terminate();
  EXPECT_TRUE(p.join(mp::testing::scaled(30s)));
  EXPECT_EQ(p.exitcode(), -SIGTERM);
  EXPECT_TRUE(mp::active_children().empty());
}

// Exits 0 if neither variable the fork server's start adds reached the child.
void check_no_bind_now_leaked() {
  if (::getenv("MP_SPAWN_BIND_NOW") != nullptr || ::getenv("LD_BIND_NOW") != nullptr)
    throw mp::system_exit{3};
}

TEST(forkserver, its_children_exit_with_their_own_codes_and_see_no_loader_setting) {
  if (::getenv("LD_BIND_NOW") != nullptr) GTEST_SKIP() << "LD_BIND_NOW is set for this run";
  mp::process clean(mp::process_options{.method = mp::start_method::forkserver},
                    check_no_bind_now_leaked);
  clean.start();
  clean.join();
  EXPECT_EQ(clean.exitcode(), 0);
  // The code the child wrote as it exited, with no signal involved: 300 & 0xff.
  mp::process coded(mp::process_options{.method = mp::start_method::forkserver},
                    [] { throw mp::system_exit{300}; });
  coded.start();
  coded.join();
  EXPECT_EQ(coded.exitcode(), 44);
  EXPECT_FALSE(coded.is_alive());
}

// A start message from another build of the program (its hook's build-id
// differs) is refused before anything in it runs.
TEST(spawn, a_message_from_another_build_is_reported_and_never_run) {
  mp::detail::spawn_message message;
  message.hook.build_id.fill(0xab);
  message.hook.build_id_size = 20;
  message.name = "from-elsewhere";
  message.call = {std::byte{1}, std::byte{2}};
  const auto encoded = mp::encode(message);

  int start[2], err[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, start), 0);
  ASSERT_EQ(::pipe2(err, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_adddup2(&actions, start[1], 3);
  ::posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  std::string marker = "MP_SPAWN_FD=3";
  std::vector<char*> env{marker.data(), nullptr};
  char program[] = "/proc/self/exe";
  char* argv[] = {program, nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, program, &actions, nullptr, argv, env.data());
  ::posix_spawn_file_actions_destroy(&actions);
  ::close(start[1]);
  ::close(err[1]);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(::send(start[0], encoded.data(), encoded.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(encoded.size()));
  ::close(start[0]);
  std::string said;
  char chunk[256];
  for (ssize_t n; (n = ::read(err[0], chunk, sizeof chunk)) > 0;)
    said.append(chunk, static_cast<std::size_t>(n));
  ::close(err[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(said.find("different build"), std::string::npos) << said;
}

namespace {
int twice(int x) {
  return 2 * x;
}
void put_twice(mp::queue<int> q, int x) {
  q.put(2 * x);
}
}  // namespace

// Python's ctx.Pool(), ctx.Queue(), ctx.Process(): the context's factories.
TEST(context, makes_pools_executors_queues_and_processes_of_its_method) {
  const auto ctx = mp::get_context(mp::start_method::forkserver);
  mp::pool p = ctx.pool({.processes = 1});
  EXPECT_EQ(p.apply(twice, 21), 42);
  mp::process_pool_executor ex = ctx.process_pool_executor({.max_workers = 1});
  EXPECT_EQ(ex.submit(twice, 4).result(), 8);
  auto q = ctx.queue<int>();
  mp::process child = ctx.process(put_twice, q, 5);
  child.start();
  EXPECT_EQ(q.get(mp::testing::scaled(30s)), 10);
  child.join();
  EXPECT_EQ(child.exitcode(), 0);
  auto lock = ctx.lock();
  EXPECT_TRUE(lock.try_lock());
  lock.unlock();
}

// ---- MP_START_METHOD: the program's default from the environment -----------

namespace {

constexpr const char* environment_probe = "--mp-test-role=start_method_from_environment";

// Runs the steps in `steps` against the default start method and says what each gave:
// "get" (get_start_method), "context" (get_context's method), "set:<method>" (without force).
std::string run_default_steps(std::span<char* const> steps) {
  std::string said;
  for (const std::string step : steps) {
    if (!said.empty()) said += ' ';
    try {
      if (step == "get") {
        said += mp::to_string(mp::get_start_method());
      } else if (step == "context") {
        said += mp::to_string(mp::get_context().get_start_method());
      } else {
        const std::string name = step.substr(4);
        for (const mp::start_method m : mp::get_all_start_methods())
          if (mp::to_string(m) == name) mp::set_start_method(m);
        said += "set";
      }
    } catch (const mp::context_error&) {
      said += "context_error";
    } catch (const mp::usage_error& e) {
      said += std::string("usage_error(") + e.what() + ")";
    }
  }
  return said;
}

// The process run_role starts for start_method_from_environment does its work here, before
// main: test_main fixes the default (from MP_TEST_START_METHOD) before any role runs, and
// MP_START_METHOD counts only while nothing has fixed it. argv: the role flag, the value of
// MP_START_METHOD, then the steps. Single-threaded still, so setenv is safe.
__attribute__((constructor)) void probe_start_method_from_environment(int argc, char** argv,
                                                                      char**) {
  if (argc < 3 || std::strcmp(argv[1], environment_probe) != 0) return;
  ::setenv("MP_START_METHOD", argv[2], 1);
  const std::string said =
      run_default_steps(std::span<char* const>(argv + 3, static_cast<std::size_t>(argc - 3)));
  std::fputs(said.c_str(), stdout);
  std::fflush(stdout);
  std::_Exit(0);
}

}  // namespace

MP_TEST_ROLE(start_method_from_environment) {
  return 3;  // the probe above did not run
}

// `MP_START_METHOD=spawn ./app` sets the default as if the program had not chosen: read at
// the first use of the default, overridden by set_start_method (with or without force) until
// then, fixed by that first use.
TEST(context, the_environment_sets_the_default_until_the_program_chooses) {
  auto probe = [](std::string value, std::vector<std::string> steps) {
    steps.insert(steps.begin(), std::move(value));
    const auto result = mp::testing::run_role("start_method_from_environment", steps);
    EXPECT_EQ(result.exitcode, 0) << result.err;
    return result.out;
  };
  EXPECT_EQ(probe("spawn", {"get", "context"}), "spawn spawn");
  EXPECT_EQ(probe("forkserver", {"context", "get"}), "forkserver forkserver");
  EXPECT_EQ(probe("", {"get"}), "fork");
  // The program's own choice wins, once; after that the default is fixed as usual.
  EXPECT_EQ(probe("forkserver", {"set:fork", "get", "set:spawn"}), "set fork context_error");
  EXPECT_EQ(probe("spawn", {"get", "set:fork", "set:spawn"}), "spawn context_error context_error");
  // A value that names no method is reported at every use of the default, and the program
  // can still choose one.
  const std::string said = probe("sporn", {"get", "set:spawn", "get"});
  EXPECT_EQ(said.rfind("usage_error(", 0), 0U) << said;
  EXPECT_NE(said.find("MP_START_METHOD=sporn"), std::string::npos) << said;
  EXPECT_TRUE(said.ends_with(") set spawn")) << said;
  const std::string twice = probe("sporn", {"get", "context"});
  EXPECT_EQ(twice.rfind("usage_error(", 0), 0U) << twice;
  EXPECT_NE(twice.find(") usage_error("), std::string::npos) << twice;
}
