// SPDX-License-Identifier: MIT
// mp::testing: support for mp's GoogleTest suites, never installed. Child roles run by
// re-executing the test binary, a per-test guard against leaked children, fds and /dev/shm
// names, and a watchdog that kills a hung test together with everything it started.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "mp/process.hpp"

// Inside this namespace `testing` means mp::testing: spell GoogleTest's as `::testing`.
namespace mp::testing {

/// A child role: receives the arguments that follow `--mp-test-role=<name>` and returns the
/// child's exit status.
using role_function = int (*)(std::span<char* const> args);

namespace detail {
/// Registers a role during static initialisation; aborts with a message on a duplicate name.
struct role_registrar {
  role_registrar(std::string_view name, role_function function) noexcept;
};
}  // namespace detail

/// The outcome of run_role(). `exitcode` follows Python's Process.exitcode: the exit status,
/// or minus the number of the signal that killed the child.
struct role_result {
  int exitcode;
  std::string out;
  std::string err;
};

/// Thrown by run_role() when the role outlives its timeout; the child is killed and reaped
/// first, and what() carries the output captured so far.
class role_timeout : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Runs `/proc/self/exe --mp-test-role=<role> args...` with stdin on /dev/null, default signal
/// dispositions and an empty signal mask, and returns its exit code and captured stdout/stderr.
/// Blocks until the child exits; a grandchild that keeps the pipes open does not delay it.
/// `timeout` is scaled by scaled(). Throws role_timeout on expiry, std::system_error if the
/// spawn fails. Never leaves a zombie or an fd behind. Thread-safe.
role_result run_role(std::string_view role, std::vector<std::string> args = {},
                     std::chrono::milliseconds timeout = std::chrono::seconds{60});

/// Returns "/<prefix>-<pid>-<suite_test>-<n>" with everything but [A-Za-z0-9_-] replaced by
/// '_', unique within this process and across concurrently running test processes, and short
/// enough for shm_open and sem_open. Outside a test, the role name (or "notest") stands in for
/// the test name. Thread-safe.
std::string unique_name(std::string_view prefix);

/// Multiplies `duration` by the environment variable MP_TEST_TIMEOUT_MULTIPLIER (a positive
/// number; 1 when unset or invalid). Sanitizer presets set it.
std::chrono::milliseconds scaled(std::chrono::milliseconds duration);

/// True in a build with AddressSanitizer or ThreadSanitizer: their shadow memory takes
/// terabytes of address space, so a test cannot set a virtual-memory limit (ulimit -v) there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool shadow_memory = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool shadow_memory = true;
#else
inline constexpr bool shadow_memory = false;
#endif
#else
inline constexpr bool shadow_memory = false;
#endif

/// True in a build with ThreadSanitizer, which instruments every byte a test copies: a test of
/// sheer size (a gibibyte through a pipe) is left to the other builds there, as it tests no
/// concurrency and takes minutes.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool thread_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool thread_sanitizer = true;
#else
inline constexpr bool thread_sanitizer = false;
#endif
#else
inline constexpr bool thread_sanitizer = false;
#endif

/// The fds open in this process, from /proc/self/fd (without the one used to read it).
std::set<int> open_fds();
/// This process's address space in KiB (VmSize in /proc/self/status); -1 if unknown.
long address_space_kib();

/// This process's direct children, zombies included (they stay until somebody reaps them).
std::vector<pid_t> child_pids();

/// Children, grandchildren and so on, from one snapshot of /proc. A grandchild whose parent
/// has died is re-parented away and no longer counts.
std::vector<pid_t> descendant_pids();

/// The names in /dev/shm (POSIX shared memory, and named semaphores as "sem.<name>").
std::set<std::string> shm_entries();

/// Tells the resource guard that `pid` is a helper meant to outlive tests (a forkserver, a
/// resource tracker), so that it is never reported or killed. Thread-safe.
void exempt_child(pid_t pid);
/// Same for an fd kept open for the rest of the process. Thread-safe.
void exempt_fd(int fd);
/// Same for a /dev/shm entry, named as in shm_entries(). Thread-safe.
void exempt_shm(std::string name);

/// The default start method of this run of the suite: the environment variable
/// MP_TEST_START_METHOD ("fork", "spawn" or "forkserver"; fork when unset), which test_main()
/// passes to mp::set_start_method before anything runs. CTest runs the suites of processes,
/// connections, queues, synchronization and pools once under each method.
mp::start_method suite_start_method();

/// The body of every test binary's main(): runs a role if argv[1] is `--mp-test-role=<name>`,
/// otherwise runs the GoogleTest suites with the resource guard and the watchdog installed.
int test_main(int argc, char** argv);

}  // namespace mp::testing

/// Defines a child role `name` that run_role("name") can run; use at namespace scope in a test
/// file, followed by the body, which sees `std::span<char* const> args` and returns the exit
/// status:  MP_TEST_ROLE(echo) { std::puts(args[0]); return 0; }
/// Skips the rest of a test unless the suite runs under fork, saying why: for what only fork
/// can do, such as a target that captures by reference or memory copied into the child.
#define MP_FORK_ONLY(why)                                              \
  if (::mp::testing::suite_start_method() != ::mp::start_method::fork) \
  GTEST_SKIP() << "fork only: " << (why)

/// Runs the rest of a test once, in the fork run of a suite that CTest runs under every start
/// method, for a test that picks its own start method (the other runs would repeat it).
#define MP_ONE_RUN_ONLY(why)                                           \
  if (::mp::testing::suite_start_method() != ::mp::start_method::fork) \
  GTEST_SKIP() << "run once, in the fork run: " << (why)

#define MP_TEST_ROLE(name)                                                          \
  static int mp_test_role_##name(std::span<char* const> args);                      \
  static const ::mp::testing::detail::role_registrar mp_test_role_registrar_##name{ \
      #name, &mp_test_role_##name};                                                 \
  static int mp_test_role_##name([[maybe_unused]] std::span<char* const> args)
