// SPDX-License-Identifier: MIT
// Tests of mp::testing itself: child roles, unique names, timeout scaling, the /proc readers
// and the watchdog. (The resource guard fails the test that leaks, so it is not tested here.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mp/process.hpp"
#include "mp/testing/testing.hpp"

namespace {

using namespace std::chrono_literals;
using mp::testing::run_role;

bool contains(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

// Gone, or a zombie that init has yet to reap.
bool is_dead(pid_t pid) {
  std::FILE* file = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (file == nullptr) return true;
  std::array<char, 512> buffer{};
  const std::size_t n = std::fread(buffer.data(), 1, buffer.size() - 1, file);
  std::fclose(file);
  const std::string stat(buffer.data(), n);
  const auto close_paren = stat.rfind(')');
  return close_paren == std::string::npos || stat.substr(close_paren + 2, 1) == "Z";
}

bool becomes_dead(pid_t pid, std::chrono::milliseconds within) {
  const auto deadline = std::chrono::steady_clock::now() + mp::testing::scaled(within);
  while (!is_dead(pid)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

class hanging_test : public ::testing::Test {
  void TestBody() override {
    const pid_t child = ::fork();
    if (child == 0) {
      while (true) ::pause();
    }
    std::printf("child %d\n", static_cast<int>(child));
    std::fflush(stdout);
    std::this_thread::sleep_for(1h);
  }
};

void sleep_until_killed() {
  for (;;) ::pause();
}

// Leaves a forkserver child running: the server's child, not the test process's.
class leaky_forkserver_test : public ::testing::Test {
  void TestBody() override {
    static std::optional<mp::process> kept;  // joined at exit, after the guard killed it
    kept.emplace(mp::process_options{.method = mp::start_method::forkserver}, sleep_until_killed);
    kept->start();
  }
};

}  // namespace

MP_TEST_ROLE(print_and_exit) {
  std::cout << "to stdout" << std::flush;
  std::cerr << "to stderr";
  return 7;
}

MP_TEST_ROLE(echo_args) {
  for (const char* arg : args) std::cout << arg << '\n';
  return 0;
}

MP_TEST_ROLE(die_of_sigterm) {
  std::raise(SIGTERM);
  return 0;
}

MP_TEST_ROLE(throw_error) {
  throw std::runtime_error("boom");
}

MP_TEST_ROLE(flood) {
  const std::string chunk(4096, 'x');
  for (int i = 0; i < 256; ++i) {
    std::cout << chunk;
    std::cerr << chunk;
  }
  return 0;
}

MP_TEST_ROLE(sleep_forever) {
  std::this_thread::sleep_for(1h);
  return 0;
}

MP_TEST_ROLE(print_unique_name) {
  std::cout << mp::testing::unique_name("x");
  return 0;
}

// Leaves a grandchild that holds our stdout and stderr until fd args[0] reaches end of file.
MP_TEST_ROLE(leave_grandchild_holding_output) {
  const int fd = std::atoi(args[0]);
  const pid_t grandchild = ::fork();
  if (grandchild == 0) {
    char byte = 0;
    while (::read(fd, &byte, 1) != 0) {
    }
    ::_exit(0);
  }
  std::cout << grandchild << std::flush;
  return 0;
}

// Runs the suites with one test registered here only, which hangs holding a child.
MP_TEST_ROLE(run_hanging_test) {
  ::setenv("MP_TEST_TIMEOUT", "0.5", 1);
  ::testing::RegisterTest("watchdog_selftest", "hangs", nullptr, nullptr, __FILE__, __LINE__,
                          []() -> ::testing::Test* { return new hanging_test; });
  std::array<std::string, 2> strings{"testing_test", "--gtest_filter=watchdog_selftest.hangs"};
  std::array<char*, 3> argv{strings[0].data(), strings[1].data(), nullptr};
  return mp::testing::test_main(2, argv.data());
}

TEST(run_role, captures_stdout_stderr_and_the_exit_status) {
  const auto result = run_role("print_and_exit");
  EXPECT_EQ(result.exitcode, 7);
  EXPECT_EQ(result.out, "to stdout");
  EXPECT_EQ(result.err, "to stderr");
}

TEST(run_role, passes_the_arguments) {
  const auto result = run_role("echo_args", {"one", "two words", ""});
  EXPECT_EQ(result.exitcode, 0);
  EXPECT_EQ(result.out, "one\ntwo words\n\n");
}

TEST(run_role, reports_a_signal_death_as_minus_the_signal) {
  EXPECT_EQ(run_role("die_of_sigterm").exitcode, -SIGTERM);
}

TEST(run_role, restores_default_dispositions_for_the_child) {
  struct sigaction ignore {};
  struct sigaction previous {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGTERM, &ignore, &previous), 0);
  const auto result = run_role("die_of_sigterm");
  ::sigaction(SIGTERM, &previous, nullptr);
  EXPECT_EQ(result.exitcode, -SIGTERM);
}

TEST(run_role, exits_with_status_1_when_a_role_throws_as_python_does) {
  const auto result = run_role("throw_error");
  EXPECT_EQ(result.exitcode, 1);
  EXPECT_NE(result.err.find("boom"), std::string::npos) << result.err;
}

TEST(run_role, exits_with_status_2_for_an_unknown_role) {
  const auto result = run_role("no_such_role");
  EXPECT_EQ(result.exitcode, 2);
  EXPECT_NE(result.err.find("unknown role 'no_such_role'"), std::string::npos) << result.err;
}

TEST(run_role, reads_both_streams_past_the_pipe_buffer_without_deadlock) {
  const auto result = run_role("flood");
  EXPECT_EQ(result.exitcode, 0);
  EXPECT_EQ(result.out.size(), 256u * 4096u);
  EXPECT_EQ(result.err.size(), 256u * 4096u);
}

TEST(run_role, kills_and_reaps_a_role_that_outlives_its_timeout) {
  const auto fds_before = mp::testing::open_fds();
  const auto children_before = mp::testing::child_pids();  // the fork server
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(run_role("sleep_forever", {}, 200ms), mp::testing::role_timeout);
  EXPECT_LT(std::chrono::steady_clock::now() - start, mp::testing::scaled(30s));
  EXPECT_EQ(mp::testing::child_pids(), children_before);
  EXPECT_EQ(mp::testing::open_fds(), fds_before);
}

TEST(run_role, returns_when_the_role_exits_although_a_grandchild_holds_its_output) {
  std::array<int, 2> release{};
  ASSERT_EQ(::pipe(release.data()), 0);
  // Only the read end is inherited; the test keeps the write end.
  ASSERT_EQ(::fcntl(release[1], F_SETFD, FD_CLOEXEC), 0);

  const auto result = run_role("leave_grandchild_holding_output", {std::to_string(release[0])});
  ::close(release[0]);
  EXPECT_EQ(result.exitcode, 0);
  const pid_t grandchild = static_cast<pid_t>(std::stol(result.out));
  EXPECT_FALSE(is_dead(grandchild));
  ::close(release[1]);
  EXPECT_TRUE(becomes_dead(grandchild, 10s));
}

TEST(run_role, gives_the_role_its_own_name_in_unique_names) {
  const auto result = run_role("print_unique_name");
  EXPECT_NE(result.out.find("-role_print_unique_name-1"), std::string::npos) << result.out;
}

TEST(unique_name, holds_prefix_pid_test_name_and_a_counter) {
  const std::string name = mp::testing::unique_name("shm");
  const std::regex format("/shm-" + std::to_string(::getpid()) +
                          "-unique_name_holds_prefix_pid_test_name_and_a_counter-[0-9]+");
  EXPECT_TRUE(std::regex_match(name, format)) << name;
}

TEST(unique_name, differs_on_each_call_and_works_with_shm_open) {
  const std::string first = mp::testing::unique_name("a/b c");
  const std::string second = mp::testing::unique_name("a/b c");
  EXPECT_NE(first, second);
  EXPECT_EQ(first.rfind("/a_b_c-", 0), 0u) << first;
  EXPECT_LE(first.size(), 200u);
  const int fd = ::shm_open(first.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << first;
  ::close(fd);
  EXPECT_EQ(::shm_unlink(first.c_str()), 0);
}

TEST(scaled, multiplies_by_the_environment_variable) {
  const char* saved = std::getenv("MP_TEST_TIMEOUT_MULTIPLIER");
  const std::string previous = saved == nullptr ? "" : saved;
  ::setenv("MP_TEST_TIMEOUT_MULTIPLIER", "2.5", 1);
  EXPECT_EQ(mp::testing::scaled(100ms), 250ms);
  ::setenv("MP_TEST_TIMEOUT_MULTIPLIER", "nonsense", 1);
  EXPECT_EQ(mp::testing::scaled(100ms), 100ms);
  ::unsetenv("MP_TEST_TIMEOUT_MULTIPLIER");
  EXPECT_EQ(mp::testing::scaled(100ms), 100ms);
  if (saved != nullptr) ::setenv("MP_TEST_TIMEOUT_MULTIPLIER", previous.c_str(), 1);
}

TEST(open_fds, sees_a_new_pipe_until_it_is_closed) {
  const auto before = mp::testing::open_fds();
  std::array<int, 2> fds{};
  ASSERT_EQ(::pipe2(fds.data(), O_CLOEXEC), 0);
  const auto during = mp::testing::open_fds();
  EXPECT_TRUE(during.contains(fds[0]));
  EXPECT_TRUE(during.contains(fds[1]));
  EXPECT_EQ(during.size(), before.size() + 2);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(mp::testing::open_fds(), before);
}

TEST(child_pids, lists_a_child_until_it_is_reaped_even_as_a_zombie) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  siginfo_t info{};
  // Wait for the exit without reaping, so that the child is a zombie now.
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  EXPECT_TRUE(contains(mp::testing::child_pids(), child));
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(contains(mp::testing::child_pids(), child));
}

TEST(descendant_pids, includes_grandchildren_but_child_pids_does_not) {
  std::array<int, 2> report{};
  std::array<int, 2> release{};
  ASSERT_EQ(::pipe2(report.data(), O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(release.data(), O_CLOEXEC), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(release[1]);
    const pid_t grandchild = ::fork();
    if (grandchild == 0) {
      char byte = 0;
      while (::read(release[0], &byte, 1) != 0) {
      }
      ::_exit(0);
    }
    if (::write(report[1], &grandchild, sizeof grandchild) < 0) ::_exit(1);
    ::waitpid(grandchild, nullptr, 0);
    ::_exit(0);
  }
  ::close(report[1]);
  ::close(release[0]);
  pid_t grandchild = 0;
  ASSERT_EQ(::read(report[0], &grandchild, sizeof grandchild),
            static_cast<ssize_t>(sizeof grandchild));
  ::close(report[0]);

  const auto descendants = mp::testing::descendant_pids();
  const auto children = mp::testing::child_pids();
  ::close(release[1]);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_TRUE(contains(descendants, child));
  EXPECT_TRUE(contains(descendants, grandchild));
  EXPECT_TRUE(contains(children, child));
  EXPECT_FALSE(contains(children, grandchild));
}

TEST(shm_entries, sees_a_new_shared_memory_object_until_it_is_unlinked) {
  const std::string name = mp::testing::unique_name("shm");
  const int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_TRUE(mp::testing::shm_entries().contains(name.substr(1)));
  ::shm_unlink(name.c_str());
  EXPECT_FALSE(mp::testing::shm_entries().contains(name.substr(1)));
}

// Runs the suites with one test registered here only, which leaves a forkserver child behind.
MP_TEST_ROLE(run_leaky_forkserver_test) {
  ::testing::RegisterTest("guard_selftest", "leaks", nullptr, nullptr, __FILE__, __LINE__,
                          []() -> ::testing::Test* { return new leaky_forkserver_test; });
  std::array<std::string, 2> strings{"testing_test", "--gtest_filter=guard_selftest.leaks"};
  std::array<char*, 3> argv{strings[0].data(), strings[1].data(), nullptr};
  return mp::testing::test_main(2, argv.data());
}

TEST(resource_guard, catches_a_forkserver_child_left_running) {
  const auto result = run_role("run_leaky_forkserver_test");
  EXPECT_EQ(result.exitcode, 1) << result.err;
  EXPECT_NE(result.out.find("mp resource guard: the test left 1 child process(es) running"),
            std::string::npos)
      << result.out;
}

TEST(watchdog, kills_a_hung_test_and_its_children) {
  const auto result = run_role("run_hanging_test");
  EXPECT_EQ(result.exitcode, 1);
  EXPECT_NE(result.err.find("mp watchdog: watchdog_selftest.hangs exceeded"), std::string::npos)
      << result.err;
  EXPECT_NE(result.err.find("s; killing descendants"), std::string::npos) << result.err;
  // The stacks of the test process and of its child come first, through gdb where there is one.
  EXPECT_NE(result.err.find("mp watchdog: thread stacks of pid"), std::string::npos) << result.err;
  if (std::system("command -v gdb > /dev/null 2>&1") == 0) {
    EXPECT_NE(result.err.find("hanging_test::TestBody"), std::string::npos) << result.err;
  }
  const auto at = result.out.find("child ");
  ASSERT_NE(at, std::string::npos) << result.out;
  const pid_t child = static_cast<pid_t>(std::stol(result.out.substr(at + 6)));
  EXPECT_TRUE(becomes_dead(child, 5s)) << "pid " << child;
}
