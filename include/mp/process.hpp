// SPDX-License-Identifier: MIT
// mp::process and the process-level functions of Python's multiprocessing:
// Process, current_process, parent_process, active_children, cpu_count.
//
// Only differences from Python are documented here; see
// https://docs.python.org/3/library/multiprocessing.html#process-and-exceptions
//
// Lifetime: `~process` joins a running non-daemon child and terminates (then
// kills) a running daemon child; `options.on_destroy` overrides this. When the
// program exits normally, children still running are handled the same way, as
// Python's exit handler does. A child never outlives a SIGKILLed parent: it
// gets SIGKILL itself (parent-death signal, with the race at start closed).
//
// Thread-safety: a process object may be used from one thread at a time;
// process_handle copies may be used from any thread. Starting processes from
// several threads at once is safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/detail/checks.hpp"
#include "mp/detail/code_identity.hpp"
#include "mp/detail/target.hpp"
#include "mp/errors.hpp"
#include "mp/export.hpp"
#include "mp/timeout.hpp"

namespace mp {

/// What `~process` does with a child that is still running.
enum class destroy_action {
  join,       ///< wait for it to end (default for non-daemon children)
  terminate,  ///< SIGTERM, then SIGKILL after `terminate_timeout` (default for daemons)
  kill,       ///< SIGKILL at once
};

/// Python's Process keyword arguments (`name`, `daemon`) and mp's destroy policy.
struct process_options {
  /// Empty: "Process-N[:M...]" as Python names them.
  std::string name{};
  /// Unset: inherit the current process's flag (false in the main process).
  std::optional<bool> daemon{};
  /// Unset: join for non-daemon, terminate for daemon children.
  std::optional<destroy_action> on_destroy{};
  /// How long `terminate` in the destructor waits before escalating to SIGKILL.
  mp::timeout terminate_timeout = std::chrono::seconds(2);
  /// Unset: mp::get_start_method(), the default of the program.
  std::optional<start_method> method{};
};

namespace detail {

struct process_state;

/// Why a call of Fn with Args cannot travel to a process that does not share
/// our memory, naming the culprit: the callable, or an argument by position
/// (from 0) and type. Empty if it can.
template <class Fn, class... Args>
std::string why_not_portable_call() {
  if constexpr (!(is_function_pointer_v<Fn> || is_stateless_callable_v<Fn> ||
                  (std::is_class_v<Fn> && serializable<Fn>))) {
    return "the callable (" + std::string(type_name<Fn>()) +
           ") captures state the codec cannot encode (a capturing lambda?): use a function, a "
           "capture-less lambda taking that state as arguments, or a function object with a "
           "serialize function";
  } else {
    std::string why;
    std::size_t position = 0;
    const auto check = [&]<class A>(std::type_identity<A>) {
      if (why.empty() && !serializable<wire_t<A>>) {
        why = "argument " + std::to_string(position) + " (" + std::string(type_name<A>()) + ") ";
        why += std::is_pointer_v<A> ? "is a pointer, which means nothing in another process: pass "
                                      "the value (a std::string for a C string)"
                                    : "has a type the codec cannot encode: give it a "
                                      "serialize(Archive&) member function or make it trivially "
                                      "copyable (see docs/serialization.md)";
      }
      ++position;
    };
    (check(std::type_identity<Args>{}), ...);
    return why;
  }
}

template <class Fn, class... Args>
class target_impl final : public target {
 public:
  template <class F, class... A>
  explicit target_impl(F&& fn, A&&... args)
      : fn_(std::forward<F>(fn)), args_(std::forward<A>(args)...) {}

  void run() override { apply_stored(fn_, args_); }
  bool portable() const noexcept override { return is_portable_v<Fn, Args...>; }
  const char* why_not_portable() const noexcept override {
    static const std::string why = why_not_portable_call<Fn, Args...>();
    return why.c_str();
  }
  void encode(output_archive& out) const override {
    if constexpr (is_portable_v<Fn, Args...>) {
      encode_call(out, fn_, args_);
    } else {
      throw usage_error(why_not_portable());
    }
  }

 private:
  Fn fn_;
  std::tuple<Args...> args_;
};

/// The target of a process started with `fn` and `args`: arguments stored as
/// stored_t (a string literal as a std::string, so that it can travel), unless
/// the callable cannot take them so (a `const char*` parameter), when they are
/// stored decayed as std::thread stores them.
template <class Fn, class... Args>
using process_target_t = std::conditional_t<invocable_stored_v<std::decay_t<Fn>, stored_t<Args>...>,
                                            target_impl<std::decay_t<Fn>, stored_t<Args>...>,
                                            target_impl<std::decay_t<Fn>, std::decay_t<Args>...>>;

}  // namespace detail

class process;

/// A non-owning, copyable reference to a process: a child (from
/// `process::handle()` or `active_children()`), the current process or the
/// parent. Copies share one state; the owning `process` decides the child's fate.
class MP_EXPORT process_handle {
 public:
  /// The pid, or nullopt if the process was not started yet.
  std::optional<pid_t> pid() const;
  const std::string& name() const;
  bool daemon() const;
  /// Python's authkey: the key mp::listener and mp::client use when asked to
  /// authenticate with no key of their own. The main process makes 32 random
  /// bytes at start-up; a child inherits its creator's, under every start
  /// method, unless set before it starts.
  std::vector<std::byte> authkey() const;
  /// Sets the authkey: of the current process (its children made after this
  /// inherit it), or of a child not started yet. Throws mp::usage_error for a
  /// started child or the parent.
  void set_authkey(std::span<const std::byte> key) const;
  void set_authkey(std::string_view key) const { set_authkey(std::as_bytes(std::span(key))); }
  /// Reaps the child if it ended. True for the current process.
  bool is_alive() const;
  /// Python's exitcode: nullopt while running or before start; the exit status,
  /// or minus the signal number that ended it. Always nullopt for the parent.
  std::optional<int> exitcode() const;
  /// Waits for the process to end, at most `timeout` (no limit if left out);
  /// true if it has ended. Throws mp::usage_error for the current process.
  bool join(mp::timeout timeout = {}) const;
  /// SIGTERM; does nothing if the process already ended. Children only.
  void terminate() const;
  /// SIGKILL; does nothing if the process already ended. Children only.
  void kill() const;
  /// A descriptor that becomes readable when the process ends (a pidfd), valid
  /// until the process is closed. Use with poll, epoll or mp::wait.
  int sentinel() const;

  explicit process_handle(std::shared_ptr<detail::process_state> state) noexcept
      : state_(std::move(state)) {}

 private:
  friend class process;
  std::shared_ptr<detail::process_state> state_;
};

/// A child process running a callable with arguments, as Python's Process.
///
/// Callables: any function, lambda (capturing too) or function object under the
/// fork start method. Under start methods that do not share memory the callable
/// must be portable (see `detail::is_portable_v`), or start() throws
/// mp::usage_error saying why. The target's return value is ignored; throw
/// mp::system_exit to choose the exit code. An exception escaping the target
/// prints "Process <name>:" and its type and message on stderr and exits with 1.
///
/// Arguments are stored by value and, after start(), released in the parent:
/// a connection passed to the child is then open only in the child, so its
/// peer sees EOF when the child ends (in Python the parent's copy stays open).
class MP_EXPORT process {
 public:
  /// An empty process that cannot be started (a moved-from one is the same).
  process() noexcept;

  template <class Fn, class... Args>
  requires(!std::same_as<std::remove_cvref_t<Fn>, process_options> &&
           !std::same_as<std::remove_cvref_t<Fn>, process>) explicit process(Fn&& fn,
                                                                             Args&&... args)
      : process(process_options{}, std::forward<Fn>(fn), std::forward<Args>(args)...) {}

  template <class Fn, class... Args>
  process(process_options options, Fn&& fn, Args&&... args) {
    // Called as stored (a string literal as std::string), or else decayed.
    constexpr bool callable =
        detail::invocable_stored_v<std::decay_t<Fn>, detail::stored_t<Args>...> ||
        detail::invocable_stored_v<std::decay_t<Fn>, std::decay_t<Args>...>;
    if constexpr (callable)
      init(std::move(options), std::make_unique<detail::process_target_t<Fn, Args...>>(
                                   std::forward<Fn>(fn), std::forward<Args>(args)...));
    else
      static_cast<void>(detail::check_invocable<std::decay_t<Fn>, std::decay_t<Args>...>());
  }

  process(process&& other) noexcept;
  /// Applies the destroy policy to the current child first.
  process& operator=(process&& other) noexcept;
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  /// Applies the destroy policy (see the file comment). Never throws.
  ~process();

  /// Starts the child with its start method (options.method, else the
  /// program's default). Throws mp::usage_error if already started, closed,
  /// empty, or if the current process is a daemon (daemons may not have
  /// children), or, under spawn and forkserver, if the target is not portable
  /// (naming the callable or the argument and its type); std::system_error if
  /// fork, exec or another system call fails; mp::process_error if the fork
  /// server cannot be reached or its reply is unusable. A start that throws
  /// leaves no child behind: one already created is killed and reaped.
  void start();
  /// Waits for the child to end, at most `timeout` (no limit if left out);
  /// true if it has ended (Python returns None and leaves you to check
  /// exitcode). Throws mp::usage_error if not started or closed.
  bool join(mp::timeout timeout = {}) const;
  /// True from start() until the child ends; false for an empty process.
  /// Throws mp::usage_error after close(), as join() and terminate() do.
  bool is_alive() const;
  void terminate() { handle().terminate(); }
  void kill() { handle().kill(); }
  /// See process_handle::exitcode.
  std::optional<int> exitcode() const;
  std::optional<pid_t> pid() const;
  const std::string& name() const;
  /// Renames the process; only before start().
  void set_name(std::string name);
  bool daemon() const;
  /// Sets the daemon flag; only before start(). Throws mp::usage_error after.
  void set_daemon(bool daemon);
  /// See process_handle::authkey: the creator's unless set.
  std::vector<std::byte> authkey() const;
  /// Sets the key the child starts with; only before start().
  void set_authkey(std::span<const std::byte> key);
  void set_authkey(std::string_view key) { set_authkey(std::as_bytes(std::span(key))); }
  int sentinel() const { return handle().sentinel(); }
  /// Releases the sentinel. Throws mp::usage_error if the child is still
  /// running. After close() only name(), daemon() and exitcode() may be used.
  void close();
  /// A copyable reference to this process. Throws mp::usage_error if empty or closed.
  process_handle handle() const;
  /// True if the target can be sent to a process that does not share memory.
  bool portable() const noexcept;

 private:
  friend MP_EXPORT std::ostream& operator<<(std::ostream& out, const process& p);
  void init(process_options options, std::unique_ptr<detail::target> target);
  void destroy() noexcept;
  const detail::process_state& state() const;
  process_options options_;
  std::unique_ptr<detail::target> target_;
  std::shared_ptr<detail::process_state> state_;
};

/// Python's repr of a process: "<process name='Process-1' pid=42 started>",
/// "... stopped exitcode=-15>", "... initial>", with " daemon" when it is one.
MP_EXPORT std::ostream& operator<<(std::ostream& out, const process_handle& p);
MP_EXPORT std::ostream& operator<<(std::ostream& out, const process& p);

/// The current process (Python's current_process()). In the main process its
/// name is "MainProcess".
MP_EXPORT process_handle current_process();

/// The parent of the current process, or nullopt in the main process.
/// is_alive() and join() watch the parent through a pidfd.
MP_EXPORT std::optional<process_handle> parent_process();

/// Children of the current process that are still running; reaps any that ended.
MP_EXPORT std::vector<process_handle> active_children();

/// The start method of processes whose options name none: the one
/// set_start_method chose, else the one the environment variable
/// MP_START_METHOD names (fork, spawn or forkserver; read at this first use),
/// else fork. Fixes it. Throws mp::usage_error if MP_START_METHOD names no method.
MP_EXPORT start_method get_start_method();

/// "fork", "spawn" or "forkserver", as Python names them.
MP_EXPORT std::string_view to_string(start_method method) noexcept;

/// Python's set_start_method: the method of processes whose options name none.
/// As in Python, the default is fixed on first use (get_start_method(), or a
/// process started without a method), and setting it afterwards needs
/// `force`, even to the method in force; otherwise mp::context_error.
MP_EXPORT void set_start_method(start_method method, bool force = false);

/// Python's get_all_start_methods(): the methods this platform has, the
/// default first.
MP_EXPORT std::vector<start_method> get_all_start_methods();

/// The number of CPUs this process may use: its affinity mask, limited by a
/// cgroup CPU quota. Python's os.cpu_count() counts the machine's CPUs, and
/// os.process_cpu_count() (3.13) ignores quotas.
MP_EXPORT unsigned cpu_count();

}  // namespace mp
