// SPDX-License-Identifier: MIT
// mp::timeout, the one way every blocking call in mp is told how long it may wait, and
// mp::detail::deadline, the one place that turns a timeout into a point in time.
//
// A call takes `mp::timeout timeout = {}`: leave it out (or pass std::nullopt) to wait with no
// limit, Python's timeout=None; pass any std::chrono duration, integral or floating, to wait at
// most that long (docs/conventions.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>

namespace mp {

/// How long a blocking call may wait: a duration, or no limit. Converts implicitly from any
/// std::chrono::duration, from std::nullopt (no limit) and from a std::optional of a duration,
/// so `q.get(true, 1.5s)`, `p.join(100ms)` and `e.wait()` all read as in Python.
///
/// A negative (or NaN) duration means "do not wait", as in Python; a fraction of a nanosecond
/// rounds up, so a timed wait never ends before the time asked for; a duration too long to
/// count in nanoseconds (about 292 years, or std::chrono::hours::max()) means no limit.
/// One 64-bit count: it passes in a register.
class timeout {
 public:
  /// No limit.
  constexpr timeout() noexcept = default;
  /// No limit (Python's None).
  constexpr timeout(std::nullopt_t) noexcept {}  // NOLINT(google-explicit-constructor)
  template <class Rep, class Period>
  constexpr timeout(std::chrono::duration<Rep, Period> limit) noexcept  // NOLINT
      : ns_(nanoseconds_of(limit)) {}
  /// No limit when empty.
  template <class Rep, class Period>
  constexpr timeout(
      const std::optional<std::chrono::duration<Rep, Period>>& limit) noexcept  // NOLINT
      : ns_(limit ? nanoseconds_of(*limit) : unlimited) {}

  /// True unless the wait has no limit.
  constexpr bool limited() const noexcept { return ns_ != unlimited; }
  /// The limit (zero or more); std::chrono::nanoseconds::max() when there is none.
  constexpr std::chrono::nanoseconds duration() const noexcept {
    return std::chrono::nanoseconds(ns_);
  }
  /// True for a zero limit: look, do not wait.
  constexpr bool zero() const noexcept { return ns_ == 0; }
  /// The limit, or std::nullopt when there is none.
  constexpr std::optional<std::chrono::nanoseconds> as_optional() const noexcept {
    if (!limited()) return std::nullopt;
    return duration();
  }

  friend constexpr bool operator==(timeout, timeout) noexcept = default;

 private:
  static constexpr std::int64_t unlimited = std::numeric_limits<std::int64_t>::max();

  template <class Rep, class Period>
  static constexpr std::int64_t nanoseconds_of(std::chrono::duration<Rep, Period> limit) noexcept {
    // In long double, whose 64-bit mantissa holds every nanosecond count exactly, so neither
    // an integral nor a floating count can overflow on the way.
    constexpr long double scale = static_cast<long double>(Period::num) * 1'000'000'000.0L /
                                  static_cast<long double>(Period::den);
    const long double ns = static_cast<long double>(limit.count()) * scale;
    if (!(ns > 0)) return 0;  // negative, zero or NaN
    if (ns >= static_cast<long double>(unlimited)) return unlimited;
    auto whole = static_cast<std::int64_t>(ns);
    if (static_cast<long double>(whole) < ns) ++whole;  // rounded up
    return whole;
  }

  std::int64_t ns_ = unlimited;
};

namespace detail {

/// The end of a timed wait on the steady clock, or none. Made once when the wait starts, asked
/// what is left on every pass of its loop.
class deadline {
 public:
  using clock = std::chrono::steady_clock;

  explicit deadline(timeout limit) noexcept : end_(end_after(limit)) {}

  /// True unless the wait has no limit.
  bool limited() const noexcept { return end_ != clock::time_point::max(); }
  /// What is left: zero once passed, no limit if there is none.
  timeout left() const noexcept {
    if (!limited()) return {};
    const auto now = clock::now();
    if (now >= end_) return std::chrono::nanoseconds::zero();
    return end_ - now;
  }
  /// True once a limited wait's time is up.
  bool passed() const noexcept { return limited() && clock::now() >= end_; }
  /// The point in time; clock::time_point::max() when there is no limit.
  clock::time_point when() const noexcept { return end_; }

 private:
  static clock::time_point end_after(timeout limit) noexcept {
    if (!limit.limited()) return clock::time_point::max();
    const auto now = clock::now();
    const auto room = clock::time_point::max() - now;  // saturate instead of overflowing
    if (limit.duration() >= room) return clock::time_point::max();
    return now + std::chrono::duration_cast<clock::duration>(limit.duration());
  }

  clock::time_point end_;
};

/// Waits on a std::condition_variable (or _any) until `ready()` or the deadline; the last value
/// of `ready()`.
template <class ConditionVariable, class Lock, class Predicate>
bool wait_until(ConditionVariable& changed, Lock& lock, const deadline& deadline, Predicate ready) {
  if (!deadline.limited()) {
    changed.wait(lock, ready);
    return true;
  }
  return changed.wait_until(lock, deadline.when(), ready);
}

}  // namespace detail
}  // namespace mp
