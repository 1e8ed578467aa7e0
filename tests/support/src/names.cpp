// SPDX-License-Identifier: MIT
// Per-test unique names for named resources, and timeouts scaled for slow (sanitizer) builds.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>

#include "internal.hpp"

namespace mp::testing {
namespace {

// Names must fit shm_open and sem_open ("sem." + name <= NAME_MAX): keep the test part short.
constexpr std::size_t max_test_part = 120;

std::string sanitized(std::string_view text) {
  std::string result(text);
  for (char& c : result) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!allowed) c = '_';
  }
  return result;
}

double positive_number_from_env(const char* variable, double fallback) {
  const char* text = std::getenv(variable);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (*end != '\0' || !std::isfinite(value) || value <= 0) return fallback;
  return value;
}

}  // namespace

std::string unique_name(std::string_view prefix) {
  static std::atomic<unsigned long> counter{0};
  std::string test;
  if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
    test = std::string(info->test_suite_name()) + "_" + info->name();
  } else if (!detail::current_role().empty()) {
    test = "role_" + std::string(detail::current_role());
  } else {
    test = "notest";
  }
  // Appended piece by piece: `"/" + std::string + ...` trips GCC 12's -Wrestrict at -O3.
  std::string name = "/";
  name += sanitized(prefix);
  name += '-';
  name += std::to_string(::getpid());
  name += '-';
  name += sanitized(test).substr(0, max_test_part);
  name += '-';
  name += std::to_string(++counter);
  return name;
}

std::chrono::milliseconds scaled(std::chrono::milliseconds duration) {
  const double factor = positive_number_from_env("MP_TEST_TIMEOUT_MULTIPLIER", 1.0);
  return std::chrono::milliseconds{static_cast<std::chrono::milliseconds::rep>(
      std::ceil(static_cast<double>(duration.count()) * factor))};
}

std::chrono::milliseconds detail::test_timeout() {
  const double seconds = positive_number_from_env("MP_TEST_TIMEOUT", 120.0);
  return scaled(std::chrono::milliseconds{
      static_cast<std::chrono::milliseconds::rep>(std::ceil(seconds * 1000.0))});
}

}  // namespace mp::testing
