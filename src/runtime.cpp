// SPDX-License-Identifier: MIT
// The per-process runtime (src/runtime.hpp): who this process is, who its
// children are, the exit handler, the default start method, the launcher
// thread, and child_main.
#include "runtime.hpp"

#include <cxxabi.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <iostream>
#include <mutex>
#include <ostream>
#include <thread>

#include "mp/detail/target.hpp"
#include "os/system.hpp"

namespace mp::detail {
namespace {

using namespace std::chrono_literals;

/// Forks run on the main thread when called there; from any other thread they
/// run on this long-lived thread instead. The parent-death signal fires when the
/// *thread* that forked exits, so a child forked by a short-lived thread would
/// be killed with it.
class launcher {
 public:
  void run(const std::function<void()>& job) {
    std::unique_lock lock(mutex_);
    if (!thread_started_) {
      std::thread([this] { loop(); }).detach();
      thread_started_ = true;
    }
    std::exception_ptr error;
    bool done = false;
    jobs_.push_back({&job, &error, &done});
    wake_.notify_all();
    finished_.wait(lock, [&] { return done; });
    if (error) std::rethrow_exception(error);
  }

 private:
  struct job_slot {
    const std::function<void()>* job;
    std::exception_ptr* error;
    bool* done;
  };
  void loop() {
    os::block_all_signals();
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return !jobs_.empty(); });
      job_slot slot = jobs_.front();
      jobs_.pop_front();
      lock.unlock();
      try {
        (*slot.job)();
      } catch (...) {
        *slot.error = std::current_exception();
      }
      lock.lock();
      *slot.done = true;
      finished_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  std::deque<job_slot> jobs_;
  bool thread_started_ = false;
};

/// Per-process bookkeeping. Heap-allocated and never destroyed, so the exit
/// handler and late destructors can always use it.
struct runtime {
  std::mutex mutex;
  std::shared_ptr<process_state> self;
  std::shared_ptr<process_state> parent;
  std::vector<std::shared_ptr<process_state>> children;
  std::vector<unsigned> identity;  // ours, as Python's _identity
  unsigned counter = 0;            // for our children's names
  bool exit_handler_registered = false;
  launcher* forker = nullptr;  // created on first use, never destroyed
  // A fork server's child: the pipe its exit code goes to, and which file
  // that is (the program may have closed the number and opened another).
  int exit_status_fd = -1;
  std::optional<std::pair<dev_t, ino_t>> exit_status_file;
};

runtime& rt() {
  static runtime* instance = [] {
    auto* r = new runtime;
    r->self = std::make_shared<process_state>(process_state::kind::self);
    r->self->name = "MainProcess";
    r->self->pid = os::process_id();
    r->self->authkey.resize(32);  // as Python's os.urandom(32)
    os::fill_random(r->self->authkey);
    return r;
  }();
  return *instance;
}

/// "type: message" for the exception being handled, for the child's report.
std::string describe_current_exception() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  const std::string type_name = type != nullptr ? demangle(type->name()) : "unknown exception";
  try {
    throw;
  } catch (const std::exception& e) {
    return type_name + ": " + e.what();
  } catch (...) {
    return type_name;
  }
}

std::atomic<bool> exit_begun{false};

/// Python's _exit_function: terminate daemonic children, then join them all.
void exit_function() noexcept {
  exit_begun.store(true, std::memory_order_release);
  std::vector<std::shared_ptr<process_state>> children;
  {
    runtime& r = rt();
    std::lock_guard lock(r.mutex);
    children = r.children;
  }
  for (auto& child : children)
    if (child->daemon) child->signal(SIGTERM);
  for (auto& child : children) {
    try {
      child->wait(std::nullopt);
    } catch (...) {
      // Nothing to report to at exit; the kernel reaps what is left.
    }
  }
}

// Captured before main: after sync_with_stdio(false) cout has its own buffer
// to flush, otherwise flushing stdout is enough.
std::streambuf* const stdio_synced_cout = std::cout.rdbuf();

// The program's default start method: -1 while not fixed; otherwise a start_method.
std::atomic<int> default_method{-1};

}  // namespace

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? out.get() : name;
}

// ---- this process ----------------------------------------------------------

bool exiting() noexcept {
  return exit_begun.load(std::memory_order_acquire);
}

std::shared_ptr<process_state> self_state() {
  runtime& r = rt();
  std::lock_guard lock(r.mutex);
  return r.self;
}

std::shared_ptr<process_state> parent_state() {
  runtime& r = rt();
  std::lock_guard lock(r.mutex);
  return r.parent;
}

std::vector<std::shared_ptr<process_state>> listed_children() {
  runtime& r = rt();
  std::lock_guard lock(r.mutex);
  return r.children;
}

void remove_child(const process_state* state) {
  runtime& r = rt();
  std::lock_guard lock(r.mutex);
  std::erase_if(r.children, [&](const auto& c) { return c.get() == state; });
}

void init_child(process_state& child, const std::string& name, std::optional<bool> daemon) {
  {
    const std::shared_ptr<process_state> self = self_state();
    std::lock_guard lock(self->mutex);
    child.authkey = self->authkey;
  }
  runtime& r = rt();
  std::lock_guard lock(r.mutex);
  child.identity_index = ++r.counter;
  if (name.empty()) {
    std::string numbered = "Process-";
    for (unsigned i : r.identity) numbered += std::to_string(i) + ":";
    numbered += std::to_string(child.identity_index);
    child.name = std::move(numbered);
  } else {
    child.name = name;
  }
  child.daemon = daemon.value_or(r.self->daemon);
}

// ---- the program's default start method -------------------------------------

int fixed_start_method() noexcept {
  return default_method.load();
}

bool fix_start_method(int method) noexcept {
  int expected = -1;
  return default_method.compare_exchange_strong(expected, method);
}

void force_start_method(int method) noexcept {
  default_method.store(method);
}

// ---- the child's side --------------------------------------------------------

/// The child's side of start(). Its system calls are os's "child path" ones,
/// which bind no symbol lazily and share one libc entry (see child_boot).
[[noreturn]] void child_main(target& work, child_boot& boot) {
  runtime& r = rt();
  r.self.swap(boot.self);
  r.parent.swap(boot.parent);
  r.children.swap(boot.children);  // our parent's children stay in `boot`, never destroyed
  r.identity.swap(boot.identity);
  r.counter = 0;
  r.forker = nullptr;  // its thread was not copied; a new one starts on demand
  // Compared first: a write would copy the page (see child_boot).
  if (boot.start_method >= 0 && default_method.load() != boot.start_method)
    default_method.store(boot.start_method);
  // A forked child of a fork server's child does not report its parent's code.
  if (r.exit_status_fd >= 0 && r.exit_status_fd != boot.exit_status_fd)
    os::close_now(r.exit_status_fd);
  r.exit_status_fd = boot.exit_status_fd;
  if (r.exit_status_fd >= 0) r.exit_status_file = os::file_identity(r.exit_status_fd);

  // Die with the parent; if it already died before prctl, the signal will
  // never come, so check by hand (the race the man page warns about).
  os::set_parent_death_signal(SIGKILL);
  if (os::current_parent_id() != boot.real_parent) os::exit_now(1);
  os::restore_signal_mask(boot.caller_mask);

  // As Python's bootstrap does: the child must not compete for our stdin.
  os::stdin_from_null();

  int code = 0;
  try {
    try {
      work.run();
    } catch (const system_exit& e) {
      code = e.code;
    } catch (...) {
      const std::string report =
          "Process " + r.self->name + ":\n" + describe_current_exception() + "\n";
      std::fflush(stdout);
      std::cerr << report << std::flush;
      code = 1;
    }
    exit_function();
  } catch (...) {
    code = 1;
  }
  if (std::cout.rdbuf() != stdio_synced_cout) std::cout.flush();
  std::fflush(stdout);  // stderr is unbuffered, as is cerr
  if (r.exit_status_fd >= 0 && r.exit_status_file &&
      os::file_identity(r.exit_status_fd) == r.exit_status_file) {
    const std::int32_t reported = code & 0xff;
    os::write_now(r.exit_status_fd, &reported, sizeof reported);
  }
  os::exit_now(code);
}

// ---- process_state -----------------------------------------------------------

bool process_state::signal(int sig) {
  std::lock_guard lock(mutex);
  if (!pidfd || exitcode) return false;
  return os::pidfd_signal(pidfd.get(), sig);
}

bool process_state::wait(mp::timeout timeout) {
  int fd = -1;
  {
    std::lock_guard lock(mutex);
    if (exitcode) return true;
    if (!pidfd) throw usage_error("process '" + name + "' was not started");
    fd = sentinel_locked();
  }
  const detail::deadline deadline(timeout);
  if (!os::wait_readable(fd, deadline.left())) return false;
  for (;;) {
    if (poll()) return true;
    // A fork server's child that ended before its code came (a signal): the
    // server writes it when it reaps the child, or hangs up if it died.
    int code_fd = -1;
    {
      std::lock_guard lock(mutex);
      if (status) code_fd = status.get();
    }
    if (code_fd < 0 || !os::wait_readable(code_fd, deadline.left())) return poll();
  }
}

bool process_state::poll() {
  bool ended = false;
  {
    std::lock_guard lock(mutex);
    if (exitcode) return true;
    if (!pidfd) return false;
    if (kind_ == kind::parent) {
      ended = os::wait_readable(pidfd.get(), std::chrono::nanoseconds::zero());
      return ended;
    }
    exitcode = collect_locked();
    ended = exitcode.has_value();
    if (ended) keep_until_reaped.reset();
  }
  if (ended) remove_child(this);
  return ended;
}

std::optional<int> process_state::collect_locked() {
  if (!status) return os::reap(pidfd.get(), false);
  if (!os::wait_readable(pidfd.get(), std::chrono::nanoseconds::zero())) return std::nullopt;
  // It has ended. Its code is there if it wrote it; after a signal it comes
  // when the server reaps the child (wait() waits for it; a poll does not).
  if (!os::wait_readable(status.get(), std::chrono::nanoseconds::zero())) return std::nullopt;
  // Python's forkserver says 255 when the server died before telling.
  std::int32_t code = 255;
  if (os::read_full(status.get(), &code, sizeof code) != sizeof code) code = 255;
  status.reset();
  return code;
}

unique_fd open_parent_pidfd(pid_t parent) {
  try {
    unique_fd fd = os::pidfd_open(parent);
    if (os::parent_process_id() == parent) return fd;
  } catch (const std::system_error&) {
    // ESRCH: the parent is gone.
  }
  return {};
}

// ---- starting a child --------------------------------------------------------

std::unique_lock<std::mutex> lock_runtime() {
  return std::unique_lock(rt().mutex);
}

void prepare_child_locked(const process_state& child, pid_t parent_pid, int method,
                          child_boot& boot) {
  runtime& r = rt();
  boot.self = std::make_shared<process_state>(process_state::kind::self);
  boot.self->name = child.name;
  boot.self->daemon = child.daemon;
  boot.self->authkey = child.authkey;
  boot.parent = std::make_shared<process_state>(process_state::kind::parent);
  boot.parent->name = r.self->name;
  boot.parent->pid = parent_pid;
  boot.identity.reserve(r.identity.size() + 1);
  boot.identity = r.identity;
  boot.identity.push_back(child.identity_index);
  boot.parent_pid = parent_pid;
  boot.real_parent = parent_pid;
  boot.start_method = method;
  // Registered before the first child, so every child inherits it too.
  if (!r.exit_handler_registered) {
    r.exit_handler_registered = true;
    std::atexit(exit_function);
  }
}

void reserve_child_locked() {
  runtime& r = rt();
  r.children.reserve(r.children.size() + 1);
}

void list_child_locked(const std::shared_ptr<process_state>& child) {
  rt().children.push_back(child);
}

void prepare_child(const process_state& child, int method, child_boot& boot) {
  const auto lock = lock_runtime();
  prepare_child_locked(child, os::process_id(), method, boot);
}

void adopt_child(const std::shared_ptr<process_state>& child, pid_t pid) {
  adopt_child(child, pid, os::pidfd_open(pid), {});
}

void adopt_child(const std::shared_ptr<process_state>& child, pid_t pid, unique_fd pidfd,
                 unique_fd status) {
  const auto lock = lock_runtime();
  {
    std::lock_guard state_lock(child->mutex);
    child->pid = pid;
    child->pidfd = std::move(pidfd);
    child->status = std::move(status);
  }
  list_child_locked(child);
}

void run_on_forking_thread(const std::function<void()>& job) {
  runtime& r = rt();
  if (os::thread_id() == os::process_id()) {
    job();
    return;
  }
  launcher* forker = nullptr;
  {
    std::lock_guard lock(r.mutex);
    if (r.forker == nullptr) r.forker = new launcher;
    forker = r.forker;
  }
  forker->run(job);
}

}  // namespace mp::detail
