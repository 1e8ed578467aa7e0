// SPDX-License-Identifier: MIT
// mp::process, mp::process_handle and the process-level functions, the
// program's default start method among them: the top of the process layer (see
// src/start_method.hpp), which starts a child through the start method it
// names and otherwise asks the runtime.
#include "mp/process.hpp"

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <ostream>
#include <string>

#include "os/system.hpp"
#include "runtime.hpp"
#include "start_method.hpp"

namespace mp {

// ---- process_handle ------------------------------------------------------

using detail::process_state;

std::optional<pid_t> process_handle::pid() const {
  std::lock_guard lock(state_->mutex);
  if (state_->pid == 0 && state_->kind_ == process_state::kind::self)
    state_->pid = os::process_id();
  if (state_->pid == 0) return std::nullopt;
  return state_->pid;
}
const std::string& process_handle::name() const {
  return state_->name;
}
bool process_handle::daemon() const {
  return state_->daemon;
}
std::vector<std::byte> process_handle::authkey() const {
  std::lock_guard lock(state_->mutex);
  return state_->authkey;
}
void process_handle::set_authkey(std::span<const std::byte> key) const {
  if (state_->kind_ == process_state::kind::parent)
    throw usage_error("cannot set the authkey of the parent process");
  if (state_->kind_ == process_state::kind::child) state_->check_not_started("set the authkey of");
  std::lock_guard lock(state_->mutex);
  state_->authkey.assign(key.begin(), key.end());
}

bool process_handle::is_alive() const {
  if (state_->kind_ == process_state::kind::self) return true;
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->pidfd && !state_->exitcode && state_->kind_ == process_state::kind::child)
      return false;  // not started
  }
  if (state_->kind_ == process_state::kind::parent) {
    std::lock_guard lock(state_->mutex);
    if (!state_->pidfd) state_->pidfd = detail::open_parent_pidfd(state_->pid);
    if (!state_->pidfd) return false;
  }
  return !state_->poll();
}

std::optional<int> process_handle::exitcode() const {
  if (state_->kind_ != process_state::kind::child) return std::nullopt;
  state_->poll();
  std::lock_guard lock(state_->mutex);
  return state_->exitcode;
}

bool process_handle::join(mp::timeout timeout) const {
  switch (state_->kind_) {
    case process_state::kind::self:
      throw usage_error("a process cannot join itself");
    case process_state::kind::parent: {
      std::lock_guard lock(state_->mutex);
      if (!state_->pidfd) state_->pidfd = detail::open_parent_pidfd(state_->pid);
      if (!state_->pidfd) return true;
      break;
    }
    case process_state::kind::child:
      break;
  }
  return state_->wait(timeout);
}

void process_handle::terminate() const {
  if (state_->kind_ != process_state::kind::child)
    throw usage_error("only a child process can be terminated");
  state_->check_started();
  state_->signal(SIGTERM);
}

void process_handle::kill() const {
  if (state_->kind_ != process_state::kind::child)
    throw usage_error("only a child process can be killed");
  state_->check_started();
  state_->signal(SIGKILL);
}

int process_handle::sentinel() const {
  std::lock_guard lock(state_->mutex);
  if (state_->kind_ == process_state::kind::parent && !state_->pidfd)
    state_->pidfd = detail::open_parent_pidfd(state_->pid);
  if (!state_->pidfd)
    throw usage_error("process '" + state_->name + "' has no sentinel (not started or closed)");
  return state_->sentinel_locked();
}

// ---- process -------------------------------------------------------------

process::process() noexcept = default;

void process::init(process_options options, std::unique_ptr<detail::target> target) {
  options_ = std::move(options);
  target_ = std::move(target);
  state_ = std::make_shared<process_state>(process_state::kind::child);
  detail::init_child(*state_, options_.name, options_.daemon);
}

process::process(process&& other) noexcept
    : options_(std::move(other.options_)),
      target_(std::move(other.target_)),
      state_(std::move(other.state_)) {}

process& process::operator=(process&& other) noexcept {
  if (this != &other) {
    destroy();
    options_ = std::move(other.options_);
    target_ = std::move(other.target_);
    state_ = std::move(other.state_);
  }
  return *this;
}

process::~process() {
  destroy();
}

void process::destroy() noexcept {
  if (!state_) return;
  try {
    bool running = false;
    {
      std::lock_guard lock(state_->mutex);
      running = state_->pidfd && !state_->exitcode;
    }
    if (running) {
      const destroy_action action = options_.on_destroy.value_or(
          state_->daemon ? destroy_action::terminate : destroy_action::join);
      switch (action) {
        case destroy_action::join:
          state_->wait(std::nullopt);
          break;
        case destroy_action::terminate:
          state_->signal(SIGTERM);
          if (!state_->wait(options_.terminate_timeout)) {
            state_->signal(SIGKILL);
            state_->wait(std::nullopt);
          }
          break;
        case destroy_action::kill:
          state_->signal(SIGKILL);
          state_->wait(std::nullopt);
          break;
      }
    }
  } catch (...) {
    // Destructors never throw; the pidfd below is still released.
  }
  detail::remove_child(state_.get());
  state_.reset();
  target_.reset();
}

const process_state& process::state() const {
  if (!state_) throw usage_error("empty mp::process (default-constructed or moved-from)");
  return *state_;
}

void process::start() {
  state();
  {
    std::lock_guard lock(state_->mutex);
    if (state_->closed) throw usage_error("process '" + state_->name + "' is closed");
    if (state_->pidfd || state_->exitcode)
      throw usage_error("process '" + state_->name + "' was already started");
  }
  if (current_process().daemon())
    throw usage_error("daemonic processes are not allowed to have children");
  // Its children are being stopped, and what a new one needs from this
  // process (its statics, the fork server) may be gone already.
  if (detail::exiting())
    throw process_error("process '" + state_->name +
                        "' cannot start: this program is exiting (its exit handler, which stops "
                        "the children, has run)");
  // Output buffered here would otherwise be written twice, by us and by the
  // child's copy of the buffer (Python flushes too).
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  const start_method method = options_.method.value_or(get_start_method());
  if (method != start_method::fork && !target_->portable())
    throw usage_error("process '" + state_->name + "' cannot start with the " +
                      std::string(to_string(method)) + " method: " + target_->why_not_portable());
  switch (method) {
    case start_method::fork:
      detail::start_fork(*target_, state_);
      break;
    case start_method::spawn:
      detail::start_spawn(*target_, state_);
      break;
    case start_method::forkserver:
      detail::start_forkserver(*target_, state_);
      break;
  }
  target_.reset();  // the child has its own copy; release ours (see class comment)
}

bool process::join(mp::timeout timeout) const {
  // Straight to the state: a handle copy would write its reference count on a
  // page the running child shares.
  if (state().closed) throw usage_error("process '" + state_->name + "' is closed");
  return state_->wait(timeout);
}

bool process::is_alive() const {
  if (!state_) return false;
  if (state_->closed) throw usage_error("process '" + state_->name + "' is closed");
  return process_handle(state_).is_alive();
}

std::optional<int> process::exitcode() const {
  if (!state_) return std::nullopt;
  return process_handle(state_).exitcode();
}

std::optional<pid_t> process::pid() const {
  state();
  return process_handle(state_).pid();
}
const std::string& process::name() const {
  return state().name;
}
bool process::daemon() const {
  return state().daemon;
}

void process::set_name(std::string name) {
  state();
  state_->check_not_started("rename");
  state_->name = std::move(name);
}

void process::set_daemon(bool daemon) {
  state();
  state_->check_not_started("set the daemon flag of");
  state_->daemon = daemon;
}

std::vector<std::byte> process::authkey() const {
  state();
  return process_handle(state_).authkey();
}

void process::set_authkey(std::span<const std::byte> key) {
  state();
  process_handle(state_).set_authkey(key);
}

void process::close() {
  state();
  std::lock_guard lock(state_->mutex);
  if (state_->pidfd && !state_->exitcode) {
    // Reap first in case it has just ended.
    state_->exitcode = state_->collect_locked();
    if (!state_->exitcode)
      throw usage_error("cannot close process '" + state_->name + "' while it is still running");
  }
  state_->pidfd.reset();
  state_->status.reset();
  state_->closed = true;
  target_.reset();
}

process_handle process::handle() const {
  const process_state& s = state();
  if (s.closed) throw usage_error("process '" + s.name + "' is closed");
  return process_handle(state_);
}

bool process::portable() const noexcept {
  return target_ && target_->portable();
}

// ---- free functions ------------------------------------------------------

process_handle current_process() {
  return process_handle(detail::self_state());
}

std::optional<process_handle> parent_process() {
  auto parent = detail::parent_state();
  if (!parent) return std::nullopt;
  return process_handle(std::move(parent));
}

std::vector<process_handle> active_children() {
  const std::vector<std::shared_ptr<process_state>> children = detail::listed_children();
  std::vector<process_handle> alive;
  for (const auto& child : children)
    if (!child->poll()) alive.emplace_back(child);
  return alive;
}

unsigned cpu_count() {
  return os::usable_cpu_count();
}

std::ostream& operator<<(std::ostream& out, const process_handle& p) {
  const auto pid = p.pid();
  out << "<process name='" << p.name() << "'";
  if (pid) out << " pid=" << *pid;
  const auto code = p.exitcode();
  if (!pid)
    out << " initial";
  else if (code)
    out << " stopped exitcode=" << *code;
  else
    out << " started";
  if (p.daemon()) out << " daemon";
  return out << '>';
}

std::ostream& operator<<(std::ostream& out, const process& p) {
  if (!p.state_) return out << "<process empty>";
  if (p.state_->closed) return out << "<process name='" << p.state_->name << "' closed>";
  return out << process_handle(p.state_);
}

// ---- the program's default start method -----------------------------------

std::string_view to_string(start_method method) noexcept {
  switch (method) {
    case start_method::fork:
      return "fork";
    case start_method::spawn:
      return "spawn";
    case start_method::forkserver:
      return "forkserver";
  }
  return "unknown";
}

namespace {

/// The default the program has until it chooses one: what MP_START_METHOD
/// names (read once, at the first use of the default), or fork if it is unset
/// or empty. A value that names no method throws mp::usage_error at every use
/// of the default, as Python's get_context('sporn') raises ValueError: running
/// on under fork would hide the typo from a user checking the program under
/// spawn.
start_method environment_default() {
  static const std::string value = [] {
    const char* set = std::getenv("MP_START_METHOD");
    return std::string(set != nullptr ? set : "");
  }();
  if (value.empty()) return start_method::fork;
  for (const start_method method : get_all_start_methods())
    if (to_string(method) == value) return method;
  throw usage_error("MP_START_METHOD=" + value +
                    " names no start method (fork, spawn or forkserver)");
}

}  // namespace

start_method get_start_method() {
  if (const int fixed = detail::fixed_start_method(); fixed >= 0)
    return static_cast<start_method>(fixed);
  detail::fix_start_method(static_cast<int>(environment_default()));
  return static_cast<start_method>(detail::fixed_start_method());
}

void set_start_method(start_method method, bool force) {
  if (detail::fix_start_method(static_cast<int>(method))) return;
  // Python raises even when the method asked is the one in force.
  if (!force)
    throw context_error(
        "the start method is already fixed (to " +
        std::string(to_string(static_cast<start_method>(detail::fixed_start_method()))) +
        "); pass force = true to change it");
  detail::force_start_method(static_cast<int>(method));
}

std::vector<start_method> get_all_start_methods() {
  return {start_method::fork, start_method::spawn, start_method::forkserver};
}

}  // namespace mp
