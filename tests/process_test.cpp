// SPDX-License-Identifier: MIT
// Tests of mp::process and the process-level functions (mp/process.hpp).
#include "mp/process.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "mp/connection.hpp"
#include "mp/context.hpp"
#include "mp/testing/testing.hpp"

namespace {

using namespace std::chrono_literals;

void do_nothing() {}

void sleep_forever() {
  for (;;) ::pause();
}

// Waits until the peer sends anything (or closes): the tests' start signal.
void wait_for_go(mp::connection& c) {
  try {
    static_cast<void>(c.recv<int>());
  } catch (const mp::eof_error&) {
  }
}

TEST(process, runs_a_function_and_reports_exit_code_zero) {
  mp::process p{do_nothing};
  EXPECT_FALSE(p.pid().has_value());
  EXPECT_FALSE(p.exitcode().has_value());
  EXPECT_FALSE(p.is_alive());
  p.start();
  EXPECT_TRUE(p.pid().has_value());
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_FALSE(p.is_alive());
}

TEST(process, passes_arguments_to_a_portable_target) {
  auto [reader, writer] = mp::pipe(false);
  mp::process p{[](mp::connection out, int n, const std::string& word) {
                  out.send(word + std::to_string(n));
                },
                std::move(writer), 42, std::string{"x"}};
  EXPECT_TRUE(p.portable());
  p.start();
  EXPECT_EQ(reader.recv<std::string>(), "x42");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

void send_greeting(mp::connection out, std::string greeting, std::string name) {
  out.send(greeting + ", " + name);
}

void send_c_string(mp::connection out, const char* text) {
  out.send(std::string(text));
}

// Under every start method: a string literal or C string travels as a std::string (under
// spawn and forkserver a pointer into the parent means nothing).
TEST(process, string_literal_arguments_arrive_under_every_start_method) {
  auto [reader, writer] = mp::pipe(false);
  const char* name = "World";
  mp::process p{send_greeting, std::move(writer), "Hello", name};
  EXPECT_TRUE(p.portable());
  p.start();
  EXPECT_EQ(reader.recv<std::string>(), "Hello, World");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

// A callable that takes a const char* keeps it as std::thread would: fine under fork, and
// under the other methods refused by start() naming the argument and its type.
TEST(process, a_const_char_pointer_parameter_is_named_when_it_cannot_travel) {
  auto [reader, writer] = mp::pipe(false);
  mp::process p{send_c_string, std::move(writer), "text"};
  if (mp::testing::suite_start_method() == mp::start_method::fork) {
    p.start();
    EXPECT_EQ(reader.recv<std::string>(), "text");
    p.join();
    return;
  }
  EXPECT_FALSE(p.portable());
  try {
    p.start();
    FAIL() << "a pointer argument was sent to a process that does not share memory";
  } catch (const mp::usage_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("argument 1 (const char*)"), std::string::npos) << what;
    EXPECT_NE(what.find("is a pointer"), std::string::npos) << what;
  }
}

TEST(process, passes_arguments_and_runs_capturing_lambdas_under_fork) {
  MP_FORK_ONLY("a capturing lambda cannot start any other way");
  auto [reader, writer] = mp::pipe(false);
  const std::string suffix = "!";
  mp::process p{[suffix](mp::connection out, int n, const std::string& word) {
                  out.send(word + std::to_string(n) + suffix);
                },
                std::move(writer), 42, std::string{"x"}};
  EXPECT_FALSE(p.portable());
  p.start();
  EXPECT_EQ(reader.recv<std::string>(), "x42!");
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(process, releases_arguments_after_start_so_the_peer_sees_eof) {
  auto [reader, writer] = mp::pipe(false);
  mp::process p{[](mp::connection& out) { out.send(1); }, std::move(writer)};
  p.start();
  EXPECT_EQ(reader.recv<int>(), 1);
  EXPECT_THROW(reader.recv<int>(), mp::eof_error);
  p.join();
}

TEST(process, names_processes_like_python) {
  mp::process a{do_nothing};
  mp::process b{do_nothing};
  EXPECT_EQ(a.name().rfind("Process-", 0), 0u);
  EXPECT_NE(a.name(), b.name());
  mp::process named{{.name = "worker"}, do_nothing};
  EXPECT_EQ(named.name(), "worker");
  named.set_name("renamed");
  EXPECT_EQ(named.name(), "renamed");
  EXPECT_EQ(mp::current_process().name(), "MainProcess");
  EXPECT_FALSE(mp::parent_process().has_value());
}

TEST(process, child_knows_itself_and_its_parent) {
  auto [reader, writer] = mp::pipe(false);
  mp::process p{{.name = "kid"},
                [](mp::connection out) {
                  const auto parent = mp::parent_process();
                  out.send(std::tuple{mp::current_process().name(), *mp::current_process().pid(),
                                      parent ? parent->name() : std::string{},
                                      parent ? *parent->pid() : 0, parent && parent->is_alive()});
                },
                std::move(writer)};
  p.start();
  const auto [name, pid, parent_name, parent_pid, parent_alive] =
      reader.recv<std::tuple<std::string, pid_t, std::string, pid_t, bool>>();
  p.join();
  EXPECT_EQ(name, "kid");
  EXPECT_EQ(pid, *p.pid());
  EXPECT_EQ(parent_name, "MainProcess");
  EXPECT_EQ(parent_pid, ::getpid());
  EXPECT_TRUE(parent_alive);
}

TEST(process, children_inherit_the_authkey_unless_it_is_set_before_start) {
  // Python's authkey: 32 random bytes in the main process, inherited by children
  // under every start method, settable on the current process and on a child not yet
  // started.
  const std::vector<std::byte> ours = mp::current_process().authkey();
  ASSERT_EQ(ours.size(), 32U);
  EXPECT_NE(ours, std::vector<std::byte>(32));
  const auto key_of_child = [](mp::process& p, mp::connection& reader) {
    p.start();
    const auto key = reader.recv<std::vector<std::byte>>();
    p.join();
    return key;
  };
  const auto send_key = [](mp::connection out) { out.send(mp::current_process().authkey()); };
  {
    auto [reader, writer] = mp::pipe(false);
    mp::process p{send_key, std::move(writer)};
    EXPECT_EQ(p.authkey(), ours);
    EXPECT_EQ(key_of_child(p, reader), ours);
    EXPECT_THROW(p.set_authkey("too late"), mp::usage_error);
  }
  {
    auto [reader, writer] = mp::pipe(false);
    mp::process p{send_key, std::move(writer)};
    p.set_authkey("the child's own");
    const auto expected = std::as_bytes(std::span(std::string_view("the child's own")));
    EXPECT_EQ(key_of_child(p, reader), std::vector<std::byte>(expected.begin(), expected.end()));
  }
  mp::current_process().set_authkey("changed");
  {
    auto [reader, writer] = mp::pipe(false);
    mp::process p{send_key, std::move(writer)};
    const auto expected = std::as_bytes(std::span(std::string_view("changed")));
    EXPECT_EQ(key_of_child(p, reader), std::vector<std::byte>(expected.begin(), expected.end()));
  }
  mp::current_process().set_authkey(ours);
  EXPECT_EQ(mp::current_process().authkey(), ours);
}

TEST(process, grandchildren_are_named_with_the_parent_identity) {
  auto [reader, writer] = mp::pipe(false);
  mp::process p{[](mp::connection out) {
                  mp::process inner{[](mp::connection o) { o.send(mp::current_process().name()); },
                                    std::move(out)};
                  inner.start();
                  inner.join();
                },
                std::move(writer)};
  p.start();
  const std::string inner_name = reader.recv<std::string>();
  p.join();
  // "Process-<ours>:<theirs>", as Python's "Process-1:1".
  EXPECT_EQ(inner_name.rfind(p.name() + ":", 0), 0u) << inner_name << " vs " << p.name();
}

TEST(process, join_with_timeout_returns_whether_it_ended) {
  auto [go_reader, go_writer] = mp::pipe(false);
  mp::process p{wait_for_go, std::move(go_reader)};
  p.start();
  EXPECT_FALSE(p.join(10ms));
  EXPECT_TRUE(p.is_alive());
  go_writer.send(1);
  EXPECT_TRUE(p.join(mp::testing::scaled(30s)));
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(process, terminate_and_kill_report_negative_signal_numbers) {
  mp::process t{sleep_forever};
  t.start();
  EXPECT_TRUE(t.is_alive());
  t.terminate();
  t.join();
  EXPECT_EQ(t.exitcode(), -SIGTERM);
  EXPECT_FALSE(t.is_alive());
  t.terminate();  // already ended: nothing happens
  t.kill();

  mp::process k{sleep_forever};
  k.start();
  k.kill();
  k.join();
  EXPECT_EQ(k.exitcode(), -SIGKILL);
}

TEST(process, system_exit_and_std_exit_set_the_exit_code) {
  mp::process a{[] { throw mp::system_exit{7}; }};
  a.start();
  a.join();
  EXPECT_EQ(a.exitcode(), 7);

  mp::process b{[] { std::exit(3); }};
  b.start();
  b.join();
  EXPECT_EQ(b.exitcode(), 3);
}

MP_TEST_ROLE(throwing_child) {
  mp::process p{{.name = "thrower"}, [] { throw std::runtime_error("boom"); }};
  p.start();
  p.join();
  std::printf("exitcode=%d\n", p.exitcode().value_or(-999));
  return 0;
}

TEST(process, an_escaping_exception_is_reported_and_exits_with_one) {
  const auto result = mp::testing::run_role("throwing_child");
  EXPECT_EQ(result.exitcode, 0) << result.err;
  EXPECT_EQ(result.out, "exitcode=1\n");
  EXPECT_NE(result.err.find("Process thrower:\nstd::runtime_error: boom\n"), std::string::npos)
      << result.err;
}

TEST(process, misuse_throws_logic_errors) {
  mp::process p{do_nothing};
  EXPECT_THROW(p.join(), mp::usage_error);
  EXPECT_THROW(p.terminate(), mp::usage_error);
  EXPECT_THROW(p.sentinel(), mp::usage_error);
  p.start();
  EXPECT_THROW(p.start(), mp::usage_error);
  EXPECT_THROW(p.set_name("late"), mp::usage_error);
  EXPECT_THROW(p.set_daemon(true), mp::usage_error);
  p.join();
  EXPECT_THROW(p.start(), mp::usage_error);
  static_assert(std::is_base_of_v<std::logic_error, mp::usage_error>);

  mp::process empty;
  EXPECT_THROW(empty.start(), mp::usage_error);
  mp::process moved{do_nothing};
  mp::process target = std::move(moved);
  EXPECT_THROW(moved.start(), mp::usage_error);  // NOLINT(bugprone-use-after-move): the point
  EXPECT_THROW(mp::current_process().join(), mp::usage_error);
}

TEST(process, close_releases_the_sentinel_and_refuses_a_running_child) {
  auto [go_reader, go_writer] = mp::pipe(false);
  mp::process p{wait_for_go, std::move(go_reader)};
  p.start();
  EXPECT_THROW(p.close(), mp::usage_error);
  go_writer.send(1);
  p.join();
  p.close();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_THROW(p.handle(), mp::usage_error);
  EXPECT_THROW(p.sentinel(), mp::usage_error);
  // As join() and terminate(), and as Python's is_alive() (ValueError: process object is closed).
  EXPECT_THROW(p.join(), mp::usage_error);
  EXPECT_THROW(p.terminate(), mp::usage_error);
  EXPECT_THROW(static_cast<void>(p.is_alive()), mp::usage_error);
}

TEST(process, sentinel_becomes_readable_when_the_child_ends) {
  auto [go_reader, go_writer] = mp::pipe(false);
  mp::process p{wait_for_go, std::move(go_reader)};
  p.start();
  pollfd fd{p.sentinel(), POLLIN, 0};
  EXPECT_EQ(::poll(&fd, 1, 0), 0);
  go_writer.send(1);
  EXPECT_EQ(::poll(&fd, 1, static_cast<int>(mp::testing::scaled(30s).count())), 1);
  p.join();
}

TEST(process, active_children_lists_running_children_only) {
  auto [go_reader, go_writer] = mp::pipe(false);
  mp::process p{wait_for_go, std::move(go_reader)};
  EXPECT_TRUE(mp::active_children().empty());
  p.start();
  const auto children = mp::active_children();
  ASSERT_EQ(children.size(), 1u);
  EXPECT_EQ(children[0].pid(), p.pid());
  go_writer.send(1);
  p.join();
  EXPECT_TRUE(mp::active_children().empty());
}

TEST(process, destructor_joins_non_daemon_and_terminates_daemon_children) {
  std::optional<mp::process_handle> joined, terminated, killed, escalated;
  {
    mp::process p{[] { std::this_thread::sleep_for(50ms); }};
    p.start();
    joined = p.handle();
  }
  EXPECT_EQ(joined->exitcode(), 0);
  {
    mp::process d{{.daemon = true}, sleep_forever};
    EXPECT_TRUE(d.daemon());
    d.start();
    terminated = d.handle();
  }
  EXPECT_EQ(terminated->exitcode(), -SIGTERM);
  {
    mp::process k{{.on_destroy = mp::destroy_action::kill}, sleep_forever};
    k.start();
    killed = k.handle();
  }
  EXPECT_EQ(killed->exitcode(), -SIGKILL);
  {
    auto [ready_reader, ready_writer] = mp::pipe(false);
    mp::process stubborn{{.on_destroy = mp::destroy_action::terminate, .terminate_timeout = 100ms},
                         [](mp::connection ready) {
                           ::signal(SIGTERM, SIG_IGN);
                           ready.send(1);
                           sleep_forever();
                         },
                         std::move(ready_writer)};
    stubborn.start();
    EXPECT_EQ(ready_reader.recv<int>(), 1);
    escalated = stubborn.handle();
  }
  EXPECT_EQ(escalated->exitcode(), -SIGKILL);
}

TEST(process, daemons_may_not_have_children) {
  auto [reader, writer] = mp::pipe(false);
  mp::process d{{.daemon = true},
                [](mp::connection out) {
                  try {
                    mp::process inner{do_nothing};
                    inner.start();
                    out.send(std::string{"started"});
                  } catch (const mp::usage_error& e) {
                    out.send(std::string{e.what()});
                  }
                },
                std::move(writer)};
  d.start();
  EXPECT_EQ(reader.recv<std::string>(), "daemonic processes are not allowed to have children");
  d.join();
}

TEST(process, child_started_from_a_thread_outlives_the_thread) {
  // The parent-death signal is tied to the forking thread; a child started
  // from a short-lived thread must not die with it.
  auto [parent_end, child_end] = mp::pipe();
  std::optional<mp::process> p;
  std::thread starter([&] {
    p.emplace([](mp::connection c) { c.send(c.recv<int>() + 1); }, std::move(child_end));
    p->start();
  });
  starter.join();
  std::this_thread::sleep_for(20ms);  // let a wrongly delivered SIGKILL land
  parent_end.send(41);
  EXPECT_EQ(parent_end.recv<int>(), 42);
  p->join();
  EXPECT_EQ(p->exitcode(), 0);
}

TEST(process, a_child_forked_from_a_thread_can_start_processes_from_its_threads) {
  // The child is forked by the launcher thread; its copy of the launcher must
  // not be used, since that thread does not exist in the child.
  auto [reader, writer] = mp::pipe(false);
  std::optional<mp::process> p;
  std::thread([&] {
    p.emplace(
        [](mp::connection out) {
          std::optional<int> code;
          std::thread([&] {
            mp::process inner{[] { throw mp::system_exit{5}; }};
            inner.start();
            inner.join();
            code = inner.exitcode();
          }).join();
          out.send(code.value_or(-1));
        },
        std::move(writer));
    p->start();
  }).join();
  EXPECT_EQ(reader.recv<int>(), 5);
  p->join();
  EXPECT_EQ(p->exitcode(), 0);
}

bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, comm, state;
  stat >> pid_field >> comm >> state;
  return !stat || state == "Z";  // a zombie waiting for init is dead
}

TEST(process, children_die_with_a_sigkilled_parent) {
  auto [reader, writer] = mp::pipe(false);
  mp::process middle{[](mp::connection out) {
                       mp::process leaf{sleep_forever};
                       leaf.start();
                       out.send(*leaf.pid());
                       sleep_forever();
                     },
                     std::move(writer)};
  middle.start();
  const pid_t leaf = reader.recv<pid_t>();
  middle.kill();
  middle.join();
  const auto deadline = std::chrono::steady_clock::now() + mp::testing::scaled(10s);
  while (!process_gone(leaf) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(process_gone(leaf)) << "grandchild " << leaf << " outlived its killed parent";
}

MP_TEST_ROLE(exit_with_children_running) {
  // Neither process object is destroyed: std::exit skips local destructors, so
  // only the exit handler can join the first child and terminate the daemon.
  auto* worker = new mp::process{[] {
    std::this_thread::sleep_for(100ms);
    std::printf("worker finished\n");
  }};
  auto* daemon = new mp::process{{.daemon = true}, sleep_forever};
  worker->start();
  daemon->start();
  std::printf("daemon=%d\n", *daemon->pid());
  std::fflush(stdout);
  std::exit(0);
}

TEST(process, normal_exit_joins_children_and_terminates_daemons) {
  const auto result = mp::testing::run_role("exit_with_children_running");
  EXPECT_EQ(result.exitcode, 0) << result.err;
  EXPECT_NE(result.out.find("worker finished\n"), std::string::npos) << result.out;
  const auto at = result.out.find("daemon=");
  ASSERT_NE(at, std::string::npos);
  EXPECT_TRUE(process_gone(std::stoi(result.out.substr(at + 7))));
}

MP_TEST_ROLE(child_exits_with_grandchild_running) {
  // The first process this role starts; it inherits the exit handler.
  mp::process child{[] {
    auto* grandchild = new mp::process{[] {
      std::this_thread::sleep_for(50ms);
      std::printf("grandchild finished\n");
    }};
    grandchild->start();
    std::exit(0);
  }};
  child.start();
  child.join();
  return child.exitcode().value_or(-1);
}

TEST(process, a_child_exiting_normally_joins_its_own_children) {
  const auto result = mp::testing::run_role("child_exits_with_grandchild_running");
  EXPECT_EQ(result.exitcode, 0) << result.err;
  EXPECT_EQ(result.out, "grandchild finished\n");
}

MP_TEST_ROLE(print_then_start) {
  std::printf("printed once");  // stdout is a pipe here: fully buffered
  mp::process p{do_nothing};
  p.start();
  p.join();
  return 0;
}

TEST(process, start_flushes_output_so_the_child_does_not_repeat_it) {
  const auto result = mp::testing::run_role("print_then_start");
  EXPECT_EQ(result.out, "printed once");
}

TEST(process, prints_like_python_repr) {
  mp::process p{{.name = "shown"}, sleep_forever};
  std::ostringstream before, running, after;
  before << p;
  EXPECT_EQ(before.str(), "<process name='shown' initial>");
  p.start();
  running << p;
  EXPECT_EQ(running.str(), "<process name='shown' pid=" + std::to_string(*p.pid()) + " started>");
  p.terminate();
  p.join();
  after << p;
  EXPECT_EQ(after.str(),
            "<process name='shown' pid=" + std::to_string(*p.pid()) + " stopped exitcode=-15>");
  p.close();
  std::ostringstream closed;
  closed << p;
  EXPECT_EQ(closed.str(), "<process name='shown' closed>");
}

TEST(process, cpu_count_follows_the_affinity_mask) {
  const unsigned all = mp::cpu_count();
  EXPECT_GE(all, 1u);
  EXPECT_LE(all, std::thread::hardware_concurrency());
  auto [reader, writer] = mp::pipe(false);
  mp::process p{[](mp::connection out) {
                  cpu_set_t one;
                  CPU_ZERO(&one);
                  CPU_SET(0, &one);
                  ::sched_setaffinity(0, sizeof one, &one);
                  out.send(mp::cpu_count());
                },
                std::move(writer)};
  p.start();
  EXPECT_EQ(reader.recv<unsigned>(), 1u);
  p.join();
}

TEST(process, handles_are_copyable_references_to_one_child) {
  mp::process p{do_nothing};
  p.start();
  const mp::process_handle h = p.handle();
  const mp::process_handle copy = h;
  copy.join();
  EXPECT_EQ(h.exitcode(), 0);
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(h.name(), p.name());
}

using method_report = std::pair<int, bool>;

// Sends the child's default start method and whether it was fixed (set_start_method
// without force then throws mp::context_error, as Python's RuntimeError).
void report_start_method(mp::connection out) {
  const mp::start_method method = mp::get_start_method();
  bool fixed = false;
  try {
    mp::set_start_method(method == mp::start_method::fork ? mp::start_method::spawn
                                                          : mp::start_method::fork);
  } catch (const mp::context_error&) {
    fixed = true;
  }
  out.send(method_report{static_cast<int>(method), fixed});
}

// Python: a child started by a context (ctx.Process) has that context's method as its
// default, whatever the parent's default is; a plain Process's child has the parent's.
TEST(process, a_child_started_through_a_context_has_that_method_as_its_default) {
  for (const mp::start_method method : mp::get_all_start_methods()) {
    auto [reader, writer] = mp::pipe(false);
    mp::process child = mp::get_context(method).process(report_start_method, std::move(writer));
    child.start();
    EXPECT_EQ(reader.recv<method_report>(), method_report(static_cast<int>(method), true))
        << mp::to_string(method) << " under " << mp::to_string(mp::get_start_method());
    child.join();
    EXPECT_EQ(child.exitcode(), 0);
  }
  auto [reader, writer] = mp::pipe(false);
  mp::process plain{report_start_method, std::move(writer)};
  plain.start();
  EXPECT_EQ(reader.recv<method_report>(),
            method_report(static_cast<int>(mp::testing::suite_start_method()), true));
  plain.join();
}

TEST(process, many_children_at_once) {
  std::vector<mp::process> children;
  for (int i = 0; i < 16; ++i)
    children.emplace_back([](int code) { throw mp::system_exit{code}; }, i);
  for (auto& c : children) c.start();
  for (int i = 0; i < 16; ++i) {
    children[static_cast<std::size_t>(i)].join();
    EXPECT_EQ(children[static_cast<std::size_t>(i)].exitcode(), i);
  }
}

}  // namespace
