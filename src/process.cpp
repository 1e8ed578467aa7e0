// SPDX-License-Identifier: MIT
// mp::process under the fork start method, the per-process runtime (who am I,
// who are my children) and the exit handler.
#include "mp/process.hpp"

#include <cxxabi.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <iostream>
#include <mutex>
#include <ostream>
#include <thread>

#include "os/system.hpp"
#include "process_state.hpp"

namespace mp {
namespace detail {
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
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, nullptr);
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
  dev_t exit_status_device = 0;
  ino_t exit_status_inode = 0;
};

runtime& rt() {
  static runtime* instance = [] {
    auto* r = new runtime;
    r->self = std::make_shared<process_state>(process_state::kind::self);
    r->self->name = "MainProcess";
    r->self->pid = ::getpid();
    return r;
  }();
  return *instance;
}

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? out.get() : name;
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

void remove_child(const process_state* state) {
  runtime& r = rt();
  std::lock_guard lock(r.mutex);
  std::erase_if(r.children, [&](const auto& c) { return c.get() == state; });
}

/// Python's _exit_function: terminate daemonic children, then join them all.
void exit_function() noexcept {
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

// Called through pointers taken at load time: a first call through the PLT
// would run the dynamic linker in every child (lazy binding) for functions
// the parent never calls itself. Volatile, or the compiler calls the PLT anyway.
long (*volatile raw_syscall)(long, ...) = ::syscall;
void (*volatile raw_exit)(int) = ::_exit;

[[noreturn]] void exit_now(int code) {
  raw_exit(code);
  __builtin_unreachable();
}

// Captured before main: after sync_with_stdio(false) cout has its own buffer
// to flush, otherwise flushing stdout is enough.
std::streambuf* const stdio_synced_cout = std::cout.rdbuf();

}  // namespace

/// The child's side of start(). Raw system calls all go through one libc
/// function, so they cost one code mapping between them (see child_boot).
[[noreturn]] void child_main(target& work, child_boot& boot) {
  runtime& r = rt();
  r.self.swap(boot.self);
  r.parent.swap(boot.parent);
  r.children.swap(boot.children);  // our parent's children stay in `boot`, never destroyed
  r.identity.swap(boot.identity);
  r.counter = 0;
  r.forker = nullptr;  // its thread was not copied; a new one starts on demand
  // A forked child of a fork server's child does not report its parent's code.
  if (r.exit_status_fd >= 0 && r.exit_status_fd != boot.exit_status_fd)
    raw_syscall(SYS_close, r.exit_status_fd);
  r.exit_status_fd = boot.exit_status_fd;
  if (struct stat info{}; r.exit_status_fd >= 0 && ::fstat(r.exit_status_fd, &info) == 0) {
    r.exit_status_device = info.st_dev;
    r.exit_status_inode = info.st_ino;
  }

  // Die with the parent; if it already died before prctl, the signal will
  // never come, so check by hand (the race the man page warns about).
  raw_syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (raw_syscall(SYS_getppid) != boot.real_parent) exit_now(1);
  raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, &boot.caller_mask, nullptr, _NSIG / 8);

  // As Python's bootstrap does: the child must not compete for our stdin.
  const long null = raw_syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY);
  if (null > STDIN_FILENO) {
    raw_syscall(SYS_dup3, null, STDIN_FILENO, 0);
    raw_syscall(SYS_close, null);
  }

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
  if (struct stat info{}; r.exit_status_fd >= 0 && ::fstat(r.exit_status_fd, &info) == 0 &&
                          info.st_dev == r.exit_status_device &&
                          info.st_ino == r.exit_status_inode) {
    const std::int32_t reported = code & 0xff;
    raw_syscall(SYS_write, r.exit_status_fd, &reported, sizeof reported);
  }
  exit_now(code);
}

// ---- process_state -------------------------------------------------------

bool process_state::signal(int sig) {
  std::lock_guard lock(mutex);
  if (!pidfd || exitcode) return false;
  return os::pidfd_signal(pidfd.get(), sig);
}

bool process_state::wait(std::optional<std::chrono::nanoseconds> timeout) {
  int fd = -1;
  {
    std::lock_guard lock(mutex);
    if (exitcode) return true;
    if (!pidfd) throw usage_error("process '" + name + "' was not started");
    fd = sentinel_locked();
  }
  using clock = std::chrono::steady_clock;
  const auto deadline = timeout ? clock::now() + *timeout : clock::time_point::max();
  auto left = [&]() -> std::optional<std::chrono::nanoseconds> {
    if (!timeout) return std::nullopt;
    return std::max<std::chrono::nanoseconds>(deadline - clock::now(), {});
  };
  if (!os::wait_readable(fd, left())) return false;
  for (;;) {
    if (poll()) return true;
    // A fork server's child that ended before its code came (a signal): the
    // server writes it when it reaps the child, or hangs up if it died.
    int code_fd = -1;
    {
      std::lock_guard lock(mutex);
      if (status) code_fd = status.get();
    }
    if (code_fd < 0 || !os::wait_readable(code_fd, left())) return poll();
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
    if (::getppid() == parent) return fd;
  } catch (const std::system_error&) {
    // ESRCH: the parent is gone.
  }
  return {};
}

// ---- forking -------------------------------------------------------------

namespace {

/// Under the runtime's lock: what `child` is to become (all but the signal mask).
void fill_boot(runtime& r, const process_state& child, pid_t parent_pid, child_boot& boot) {
  boot.self = std::make_shared<process_state>(process_state::kind::self);
  boot.self->name = child.name;
  boot.self->daemon = child.daemon;
  boot.parent = std::make_shared<process_state>(process_state::kind::parent);
  boot.parent->name = r.self->name;
  boot.parent->pid = parent_pid;
  boot.identity.reserve(r.identity.size() + 1);
  boot.identity = r.identity;
  boot.identity.push_back(child.identity_index);
  boot.parent_pid = parent_pid;
  boot.real_parent = parent_pid;
  // Registered before the first child, so every child inherits it too.
  if (!r.exit_handler_registered) {
    r.exit_handler_registered = true;
    std::atexit(exit_function);
  }
}

}  // namespace

void prepare_child(const process_state& child, child_boot& boot) {
  runtime& r = rt();
  std::lock_guard lock(r.mutex);
  fill_boot(r, child, ::getpid(), boot);
}

void adopt_child(const std::shared_ptr<process_state>& child, pid_t pid) {
  adopt_child(child, pid, os::pidfd_open(pid), {});
}

void adopt_child(const std::shared_ptr<process_state>& child, pid_t pid, unique_fd pidfd,
                 unique_fd status) {
  runtime& r = rt();
  std::lock_guard lock(r.mutex);
  {
    std::lock_guard state_lock(child->mutex);
    child->pid = pid;
    child->pidfd = std::move(pidfd);
    child->status = std::move(status);
  }
  r.children.push_back(child);
}

void run_on_forking_thread(const std::function<void()>& job) {
  runtime& r = rt();
  if (os::thread_id() == ::getpid()) {
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

void start_fork(target& work, const std::shared_ptr<process_state>& child) {
  runtime& r = rt();
  sigset_t all, caller_mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &caller_mask);
  const pid_t parent_pid = ::getpid();

  auto fork_here = [&] {
    // Holding the runtime lock across fork keeps any other thread from holding
    // it at that instant, so the child's copy is never locked forever.
    std::unique_lock lock(r.mutex);
    // Allocated, and released only after the child is reaped: freeing it while
    // the child shares our pages would copy them (see child_boot).
    auto boot_owner = std::make_shared<child_boot>();
    child_boot& boot = *boot_owner;
    r.children.reserve(r.children.size() + 1);
    fill_boot(r, *child, parent_pid, boot);
    boot.caller_mask = caller_mask;
    const pid_t pid = ::fork();
    if (pid == 0) {
      lock.unlock();
      child_main(work, boot);
    }
    if (pid < 0) os::throw_errno("fork");
    // Until we reap it the pid cannot be reused, so the pidfd is the child's.
    // It is set before the child is listed, so no one sees it half started.
    try {
      os::unique_fd fd = os::pidfd_open(pid);
      std::lock_guard state_lock(child->mutex);
      child->pid = pid;
      child->pidfd = std::move(fd);
      child->keep_until_reaped = std::move(boot_owner);
    } catch (...) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      throw;
    }
    r.children.push_back(child);
  };

  try {
    run_on_forking_thread(fork_here);
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &caller_mask, nullptr);
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &caller_mask, nullptr);
}

}  // namespace detail

// ---- process_handle ------------------------------------------------------

using detail::process_state;

std::optional<pid_t> process_handle::pid() const {
  std::lock_guard lock(state_->mutex);
  if (state_->pid == 0 && state_->kind_ == process_state::kind::self) state_->pid = ::getpid();
  if (state_->pid == 0) return std::nullopt;
  return state_->pid;
}
const std::string& process_handle::name() const {
  return state_->name;
}
bool process_handle::daemon() const {
  return state_->daemon;
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

void process_handle::join() const {
  join_for(std::nullopt);
}

bool process_handle::join_for(std::optional<std::chrono::nanoseconds> timeout) const {
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
  detail::runtime& r = detail::rt();
  std::lock_guard lock(r.mutex);
  state_->identity_index = ++r.counter;
  if (options_.name.empty()) {
    std::string name = "Process-";
    for (unsigned i : r.identity) name += std::to_string(i) + ":";
    name += std::to_string(state_->identity_index);
    state_->name = std::move(name);
  } else {
    state_->name = options_.name;
  }
  state_->daemon = options_.daemon.value_or(r.self->daemon);
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

bool process::join_for(std::optional<std::chrono::nanoseconds> timeout) {
  // Straight to the state: a handle copy would write its reference count on a
  // page the running child shares.
  if (state().closed) throw usage_error("process '" + state_->name + "' is closed");
  return state_->wait(timeout);
}

bool process::is_alive() const {
  if (!state_) return false;
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
  detail::runtime& r = detail::rt();
  std::lock_guard lock(r.mutex);
  return process_handle(r.self);
}

std::optional<process_handle> parent_process() {
  detail::runtime& r = detail::rt();
  std::lock_guard lock(r.mutex);
  if (!r.parent) return std::nullopt;
  return process_handle(r.parent);
}

std::vector<process_handle> active_children() {
  std::vector<std::shared_ptr<process_state>> children;
  {
    detail::runtime& r = detail::rt();
    std::lock_guard lock(r.mutex);
    children = r.children;
  }
  std::vector<process_handle> alive;
  for (auto& child : children)
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

}  // namespace mp
