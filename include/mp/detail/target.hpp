// SPDX-License-Identifier: MIT
// What a child process runs and how it starts, as the bottom of the process layer sees them:
// mp::start_method, a type-erased call, and mp::system_exit, which ends the process with a
// chosen code. Part of <mp/process.hpp>, which builds targets from callables; the runtime
// (src/runtime.cpp), fresh_run and the start methods include only this, so nothing below
// mp::process depends on <mp/process.hpp>.
#pragma once

namespace mp {

/// How a child process starts (Python's start methods; see mp/context.hpp).
enum class start_method {
  /// A copy of this process (fork()): fast, and any callable works, capturing
  /// lambdas too; but the copy holds whatever locks other threads held.
  fork,
  /// A fresh run of this program that runs only the target: no copied threads
  /// or locks, but the callable and its arguments must be encodable.
  spawn,
  /// A copy of the fork server, a clean single-threaded run of this program
  /// started on first use: as safe as spawn and nearly as fast as fork; the
  /// callable and its arguments must be encodable.
  forkserver,
};

/// Throw from a process target to end the process with `code`: Python's
/// `sys.exit(code)`. Deliberately not a std::exception, as SystemExit is not an
/// Exception, so `catch (const std::exception&)` lets it through.
struct system_exit {
  int code = 0;
};

namespace detail {

class output_archive;

/// A callable with its arguments, type-erased for the process to run.
class target {
 public:
  virtual ~target() = default;
  /// Runs the call in this process (a forked child).
  virtual void run() = 0;
  /// True if encode() can describe the call to a process that does not share
  /// our memory; otherwise `why_not_portable()` says why.
  virtual bool portable() const noexcept = 0;
  virtual const char* why_not_portable() const noexcept = 0;
  virtual void encode(output_archive& out) const = 0;
};

}  // namespace detail
}  // namespace mp
