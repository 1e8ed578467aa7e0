// SPDX-License-Identifier: MIT
// test_main(): the shared main() of mp's test binaries, which either runs a child role or runs
// the GoogleTest suites under the resource guard and the watchdog.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "mp/context.hpp"

#include "internal.hpp"

namespace mp::testing {

start_method suite_start_method() {
  static const start_method method = [] {
    const char* name = std::getenv("MP_TEST_START_METHOD");
    if (name == nullptr || *name == '\0') return start_method::fork;
    for (const start_method m : mp::get_all_start_methods())
      if (mp::to_string(m) == name) return m;
    std::fprintf(stderr, "mp::testing: MP_TEST_START_METHOD=%s names no start method\n", name);
    std::exit(2);
  }();
  return method;
}

int test_main(int argc, char** argv) {
  // With force: a role may run test_main again (the watchdog's self-test does).
  mp::set_start_method(suite_start_method(), true);
  constexpr std::string_view role_flag = "--mp-test-role=";
  if (argc >= 2 && std::string_view(argv[1]).starts_with(role_flag)) {
    return detail::run_role_main(
        std::string_view(argv[1]).substr(role_flag.size()),
        std::span<char* const>(argv + 2, static_cast<std::size_t>(argc - 2)));
  }

  // The watchdog thread makes every test process multi-threaded, where "fast" death tests
  // fork() a copy with only one thread; "threadsafe" ones re-execute the binary instead. An
  // explicit --gtest_death_test_style still wins.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ::testing::InitGoogleTest(&argc, argv);
  // The fork server lives as long as the process: started before the first test, so that no
  // test sees it as a child it left behind.
  exempt_child(mp::ensure_forkserver_running());

  detail::watchdog dog;
  auto timer = std::make_unique<detail::watchdog_listener>(dog);
  auto guard = std::make_unique<detail::resource_guard>();
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  // OnTestStart runs listeners in order and OnTestEnd in reverse, so the watchdog also covers
  // the guard's grace period for children.
  listeners.Append(timer.get());
  listeners.Append(guard.get());
  const int status = RUN_ALL_TESTS();
  listeners.Release(guard.get());
  listeners.Release(timer.get());
  return status;
}

}  // namespace mp::testing
