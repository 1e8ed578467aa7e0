// SPDX-License-Identifier: MIT
// Start methods and contexts: Python's get_context, set_start_method,
// get_start_method and get_all_start_methods.
//
// The default start method is fork, as Python's on Linux before 3.14: it is
// the fastest, and the only one under which any callable works (a lambda that
// captures, say). Choose spawn for a program whose other threads may hold
// locks when it starts a child: a forked child inherits those locks held, by
// threads it does not have. See docs/start-methods.md.
#pragma once

#include <concepts>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/export.hpp"
#include "mp/process.hpp"

namespace mp {

/// "fork" or "spawn", as Python names them.
MP_EXPORT std::string_view to_string(start_method method) noexcept;

/// Python's set_start_method: the method of processes whose options name none.
/// As in Python, the default is fixed on first use (get_start_method(), or a
/// process started without a method), and changing it afterwards needs
/// `force`; otherwise mp::usage_error.
MP_EXPORT void set_start_method(start_method method, bool force = false);

/// Python's get_all_start_methods(): the methods this platform has, the
/// default first.
MP_EXPORT std::vector<start_method> get_all_start_methods();

/// Python's context object: the library's factories bound to one start method.
class context {
 public:
  explicit context(start_method method) noexcept : method_(method) {}

  start_method get_start_method() const noexcept { return method_; }

  /// ctx.Process(target, args): a process that starts with this method.
  template <class Fn, class... Args>
  requires(!std::same_as<std::remove_cvref_t<Fn>, process_options>) mp::process
      process(Fn&& fn, Args&&... args)
  const { return process(process_options{}, std::forward<Fn>(fn), std::forward<Args>(args)...); }
  template <class Fn, class... Args>
  mp::process process(process_options options, Fn&& fn, Args&&... args) const {
    options.method = method_;
    return mp::process(std::move(options), std::forward<Fn>(fn), std::forward<Args>(args)...);
  }

 private:
  start_method method_;
};

/// Python's get_context(method): the context of `method`, or of the default.
MP_EXPORT context get_context(std::optional<start_method> method = std::nullopt);

}  // namespace mp
