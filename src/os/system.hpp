// SPDX-License-Identifier: MIT
// The thin OS layer: every system call mp makes goes through here. One file per
// platform implements this contract (system.linux.cpp); nothing above this
// header includes platform headers except for plain POSIX types.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <span>
#include <system_error>

#include "mp/detail/unique_fd.hpp"
#include "mp/timeout.hpp"

namespace mp::os {

using detail::unique_fd;

/// Throws std::system_error(errno, "<call>").
[[noreturn]] void throw_errno(const char* call);

/// Calls `f` until it does not fail with EINTR; throws std::system_error named
/// after `call` if it fails otherwise. Returns f's result.
template <class F>
auto check(const char* call, F&& f) {
  for (;;) {
    auto result = f();
    if (result != -1) return result;
    if (errno != EINTR) throw_errno(call);
  }
}

/// Like check, but returns -1 with errno set instead of throwing (for callers
/// that map some errnos to library errors).
template <class F>
auto retry(F&& f) {
  for (;;) {
    auto result = f();
    if (result != -1 || errno != EINTR) return result;
  }
}

/// Milliseconds for poll(): -1 for "no timeout", rounded up otherwise.
int poll_timeout(mp::timeout timeout);

/// Waits until `fd` is readable or the timeout passes; true if readable.
/// Retries EINTR with the remaining time.
bool wait_readable(int fd, mp::timeout timeout);

/// A pidfd for a child that is not yet reaped (so the pid cannot be reused).
unique_fd pidfd_open(pid_t pid);
/// Sends `signal` through the pidfd; false if the process already ended.
bool pidfd_signal(int pidfd, int signal);
/// Reaps the child if it ended: its Python-style exit code (negative signal
/// number), or nullopt if it is still running. `block` waits for the end.
std::optional<int> reap(int pidfd, bool block);

/// Reads until `size` bytes or the end of the stream; returns how many it
/// read. Throws on error.
std::size_t read_full(int fd, void* data, std::size_t size);
/// Writes all `size` bytes; false if the reader is gone (EPIPE). Throws on
/// other errors.
bool write_full(int fd, const void* data, std::size_t size);

/// A second descriptor (CLOEXEC) for what `fd` refers to.
unique_fd duplicate(int fd);

/// A connected pair of CLOEXEC Unix stream sockets.
std::pair<unique_fd, unique_fd> socket_pair();

/// The number of CPUs this process may use: the affinity mask, further limited
/// by a cgroup CPU quota (v2 cpu.max or v1 cfs quota), at least 1.
unsigned usable_cpu_count();

/// Thread id of the caller (gettid).
pid_t thread_id() noexcept;

}  // namespace mp::os

// ---- memory and files ----
// Shared memory files (memfd and /dev/shm), their mappings and their locks.
// Throwing calls throw std::system_error named after the system call; the
// overloads taking a std::error_code& report instead, for callers that turn
// some errors into library errors. All retry EINTR.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mp::os {

/// What fstat or lstat tells about a file.
struct file_status {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::uint64_t size = 0;
  std::uint32_t owner = 0;  // uid
  bool regular = false;
};

/// The status of the open file `fd` (fstat).
file_status status(int fd);
/// The status of what `path` names, not following a final symbolic link
/// (lstat); nullopt if that fails (no such file, say).
std::optional<file_status> status(const char* path) noexcept;

/// Opens the existing file `path` read-write, or read-only if `writable` is
/// false, close-on-exec, never following a final symbolic link nor blocking
/// on a FIFO. Empty, with `error` set, on failure.
unique_fd open_file(const char* path, bool writable, std::error_code& error) noexcept;
/// A new, unnamed regular file (O_TMPFILE, mode 0600) in `directory`, opened
/// read-write and close-on-exec; link_file gives it a name.
unique_fd create_unnamed_file(const char* directory);
/// Gives the unnamed file `fd` the name `path`; fails with EEXIST if the name
/// is taken. Needs no privilege where /proc is mounted.
void link_file(int fd, const char* path, std::error_code& error) noexcept;
/// Removes the name `path` (unlink).
void remove_file(const char* path, std::error_code& error) noexcept;
/// The names in `directory` that are, or may be, regular files (d_type
/// DT_REG or DT_UNKNOWN). Throws std::system_error("opendir") or ("readdir").
std::vector<std::string> regular_file_names(const char* directory);

/// A new anonymous memory file (memfd_create, close-on-exec) of size 0;
/// `name` shows in /proc/<pid>/fd.
unique_fd memory_file(const char* name);
/// Sets the size of the file `fd` (ftruncate). New bytes read as zero and take
/// no memory until written, so a later write may find no memory left.
void resize_file(int fd, std::uint64_t size);
/// Allocates the first `size` bytes of the file `fd` now, growing it to
/// `size` if it is smaller (posix_fallocate): later writes to them never fail
/// for lack of space. Throws std::system_error: ENOSPC if the file system has
/// no room for them (what was allocated for the call is given back).
void reserve_file(int fd, std::uint64_t size);
/// Gives back the memory behind `length` bytes at `offset` of the file `fd`,
/// keeping its size (fallocate PUNCH_HOLE); they read as zero afterwards.
/// False if that failed, which only means the memory stays in use.
bool punch_hole(int fd, std::uint64_t offset, std::uint64_t length) noexcept;
/// Reads up to `size` bytes at `offset` of `fd` (pread); returns how many.
std::size_t read_at(int fd, void* data, std::size_t size, std::uint64_t offset);

/// Takes a shared flock on the open file `fd`, waiting for an exclusive one
/// to be released.
void lock_file_shared(int fd);
/// Takes an exclusive flock on the open file `fd` without waiting: false if
/// another open file holds a lock on it.
bool try_lock_file_exclusive(int fd);

/// Maps the first `length` bytes of `fd`, shared and read-write (mmap).
/// `reserve` false maps without reserving swap (MAP_NORESERVE), for a large
/// range of which little is ever used.
std::byte* map_shared(int fd, std::size_t length, bool reserve = true);
/// Unmaps what map_shared returned; errors are ignored, as a destructor must.
void unmap(void* at, std::size_t length) noexcept;
/// A private anonymous mapping of `length` bytes aligned to `length` (a power
/// of two), asked to be backed by huge pages (madvise MADV_HUGEPAGE), so that
/// touching it costs one page fault per huge page rather than one per 4 KiB;
/// null if it could not be mapped. Freed with unmap(at, length).
std::byte* map_aligned_private(std::size_t length) noexcept;
/// Asks for huge pages for the whole 2 MiB pages inside [at, at + length)
/// (madvise MADV_HUGEPAGE); a hint, without effect where it is refused.
void advise_huge_pages(void* at, std::size_t length) noexcept;
/// Faults in the pages of [at, at + length) now, for writing or for reading
/// (madvise MADV_POPULATE_WRITE/READ, Linux 5.14); false if that failed, which
/// only means the pages fault in one by one when touched.
bool populate(void* at, std::size_t length, bool for_write) noexcept;

/// The effective user id of this process (geteuid).
std::uint32_t effective_user() noexcept;

/// The number of CPUs this thread may run on (sched_getaffinity), without
/// usable_cpu_count's cgroup limit; 1 if unknown.
unsigned affinity_cpu_count() noexcept;
/// Gives the CPU to another runnable thread, if any (sched_yield).
void yield_processor() noexcept;
/// The CPU the caller runs on (sched_getcpu, a few nanoseconds); -1 if unknown.
int current_cpu() noexcept;
/// What /proc/<id>/stat says of a process or thread (any process's).
struct task_stat {
  char state = 0;                ///< field 3: 'R', 'S', 'Z', ...
  std::uint64_t start_time = 0;  ///< field 22: clock ticks after boot
  int cpu = -1;                  ///< field 39: the CPU it runs on or last ran on
};
/// Reads /proc/<id>/stat; nullopt if there is no such process or thread.
std::optional<task_stat> read_task_stat(pid_t id) noexcept;
/// The CPU thread `tid` (of any process) runs on, or last ran on if it
/// sleeps, from /proc; -1 if unknown.
int thread_cpu(pid_t tid) noexcept;
/// The CPUs thread `tid` may run on (its affinity mask); empty if unknown.
std::vector<int> thread_allowed_cpus(pid_t tid);
/// Moves thread `tid` to `cpu` now and leaves its affinity mask as it was
/// (narrowed to `cpu` for a moment, then restored, so the scheduler may move
/// it later as it would have). False if `cpu` is not in its mask or the
/// move failed.
bool move_thread(pid_t tid, int cpu) noexcept;
/// Names the calling thread as ps and perf show it (its first 15 bytes);
/// failures are ignored.
void set_thread_name(const char* name) noexcept;

}  // namespace mp::os

// ---- terminals ----

namespace mp::os {

/// Whether `fd` is a terminal (isatty).
bool is_terminal(int fd) noexcept;

}  // namespace mp::os

// ---- processes and signals ----
//
// For the process layer (src/runtime.cpp, src/start_*.cpp, src/fresh_run.cpp).
// The calls marked "child path" run in a child between fork and the target:
// they never throw or allocate, and (but for fstat, which not every
// architecture has as a system call) reach the kernel through one raw syscall
// entry resolved at load time, so a child binds no symbol lazily and maps
// little code on its way (see child_boot in src/runtime.hpp).

#include <signal.h>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace mp::os {

/// getpid(), getppid() and getuid(). Never fail.
pid_t process_id() noexcept;
pid_t parent_process_id() noexcept;
uid_t user_id() noexcept;

/// The calling thread's signal mask.
sigset_t signal_mask() noexcept;
/// Sets the calling thread's signal mask; returns the one it replaced.
sigset_t set_signal_mask(const sigset_t& mask) noexcept;
/// Blocks every signal in the calling thread; returns the mask it replaced.
sigset_t block_all_signals() noexcept;
/// Adds `signal` to the calling thread's blocked signals.
void block_signal(int signal) noexcept;
/// Ignores `signal` (SIG_IGN), or gives it back its default action (SIG_DFL).
void ignore_signal(int signal) noexcept;
void default_signal(int signal) noexcept;
/// A non-blocking CLOEXEC signalfd for `signal`, which the caller blocks.
unique_fd signal_fd(int signal);
/// Reads and drops what a signal_fd holds.
void drain_signal_fd(int fd) noexcept;

/// fork(): 0 in the child, the child's pid in the parent. Throws std::system_error.
pid_t fork_process();
/// posix_spawn of `path` with `argv` and `envp`, each ending in a null
/// pointer: `start` becomes descriptor `start_as` in the child, every
/// descriptor above `start_as` is closed there, and `mask` is its signal mask.
/// Returns its pid. Throws std::system_error.
pid_t spawn(const char* path, char* const argv[], char* const envp[], int start, int start_as,
            const sigset_t& mask);
/// SIGKILLs our child `pid`, then reaps it: a child that a start cannot keep.
void kill_and_reap(pid_t pid) noexcept;
/// Sends `signal` to process `pid` (kill); false if it is gone. For our own
/// unreaped child only, whose pid cannot name another process.
bool signal_process(pid_t pid, int signal) noexcept;
/// Reaps our child `pid` if it has ended, without blocking; false only if it
/// still runs (an error, such as ECHILD for a child reaped already, counts as
/// ended).
bool reap_if_ended(pid_t pid) noexcept;
/// Reaps one child of ours that has ended, without blocking: its pid and its
/// Python-style exit code (minus the signal number), or nullopt if none has.
std::optional<std::pair<pid_t, int>> reap_any_ended() noexcept;

/// A CLOEXEC pipe: its read end, then its write end. Throws std::system_error.
std::pair<unique_fd, unique_fd> pipe();
/// Makes a directory from `pattern`, whose last six characters are XXXXXX
/// (mkdtemp: mode 0700); its path, or nullopt with errno set.
std::optional<std::string> make_private_directory(std::string pattern);
/// Removes a file, or an empty directory; errors are ignored (for clean-up).
void remove_file(const std::string& path) noexcept;
void remove_directory(const std::string& path) noexcept;

/// A CLOEXEC Unix stream socket bound at `path` with mode 0600 and
/// listening. Throws std::system_error.
unique_fd listen_unix(const std::string& path);
/// A CLOEXEC Unix stream socket connected to `path`, or empty if nothing
/// listens there (ECONNREFUSED, ENOENT). Throws std::system_error otherwise.
unique_fd connect_unix(const std::string& path);
/// The next connection to `listener` (CLOEXEC), or empty if accepting failed
/// (the peer gave up, or descriptors ran out).
unique_fd accept_connection(int listener) noexcept;
/// The pid and uid of a Unix socket's peer at connect time (SO_PEERCRED).
struct peer_credentials {
  pid_t pid;
  uid_t uid;
};
std::optional<peer_credentials> peer_of(int socket) noexcept;
/// Ends the sending direction of a socket: the peer reads end of stream,
/// whoever else holds the socket. False on error (errno set).
bool shutdown_sending(int socket) noexcept;
/// Ends both directions of a socket, as shutdown_sending.
bool shutdown_both(int socket) noexcept;

/// Bounds each receive on `socket` (SO_RCVTIMEO): one that waits longer fails
/// with EAGAIN. nullopt: no bound. Throws std::system_error.
void set_receive_timeout(int socket, mp::timeout timeout);

/// Child path: the signal this process gets when the thread that forked it
/// ends (PR_SET_PDEATHSIG).
void set_parent_death_signal(int signal) noexcept;
/// Child path: getppid(), as set_parent_death_signal's race check needs it.
pid_t current_parent_id() noexcept;
/// Child path: sets the calling thread's signal mask.
void restore_signal_mask(const sigset_t& mask) noexcept;
/// Child path: makes /dev/null our stdin.
void stdin_from_null() noexcept;
/// Child path: closes `fd`, ignoring errors.
void close_now(int fd) noexcept;
/// Child path: which file `fd` is (device and inode), or nullopt if not open.
std::optional<std::pair<dev_t, ino_t>> file_identity(int fd) noexcept;
/// Child path: one write of `size` bytes, ignoring errors.
void write_now(int fd, const void* data, std::size_t size) noexcept;
/// Ends the process at once (_exit): no atexit handlers, no static destructors.
[[noreturn]] void exit_now(int code) noexcept;

}  // namespace mp::os

// ---- sockets ----
// (Its own includes, so that this section only adds to the file.)
#include <cstddef>
#include <vector>

namespace mp::os {

/// What kind of socket a descriptor is.
struct socket_kind {
  bool stream = false;       ///< SOCK_STREAM: a byte stream (not datagrams or records)
  bool unix_domain = false;  ///< AF_UNIX: can carry descriptors (SCM_RIGHTS)
};
/// The kind of socket `fd` is. Throws std::system_error: EBADF if `fd` is not
/// open, ENOTSOCK if it is not a socket.
socket_kind socket_kind_of(int fd);

/// Shuts down the sending side of socket `fd` (the peer then reads EOF).
void shut_down_sending(int fd);
/// Shuts down the receiving side of socket `fd`.
void shut_down_receiving(int fd);

/// Waits until at least one of `fds` is readable, at its end or in error (a read
/// would not block), or the timeout passes (nullopt: no limit); returns the
/// indices of those ready, in order, none on timeout. Retries EINTR with the
/// remaining time. Throws std::system_error(EBADF) naming the first descriptor
/// that is not open (or negative).
std::vector<std::size_t> wait_any_readable(std::span<const int> fds, mp::timeout timeout);

/// The most descriptors one message carries (the kernel's SCM_MAX_FD); callers
/// name their own limit, at most this (mp's is detail::max_handles).
inline constexpr std::size_t max_fds_per_message = 253;

/// Sends all of `pieces`, in order, as one run of bytes on stream socket `fd`,
/// with `fds` attached to the first byte (SCM_RIGHTS; they stay open here).
/// Blocks until the kernel has taken every byte, waiting also on a
/// non-blocking socket; retries EINTR and partial writes; never raises
/// SIGPIPE. Throws std::invalid_argument for more than max_fds_per_message
/// descriptors, or descriptors with no byte to carry them; std::system_error
/// ("sendmsg") on failure, EPIPE or ECONNRESET when the peer is gone (how much
/// went out is then unknown). At most 8 pieces.
void send_with_fds(int fd, std::span<const std::span<const std::byte>> pieces,
                   std::span<const int> fds = {});
/// The same for one run of bytes.
inline void send_with_fds(int fd, std::span<const std::byte> bytes, std::span<const int> fds = {}) {
  const std::span<const std::byte> pieces[] = {bytes};
  send_with_fds(fd, std::span<const std::span<const std::byte>>(pieces), fds);
}

/// What one receive_with_fds got.
struct received {
  std::size_t size = 0;        ///< bytes received; 0 at the end of the stream
  std::vector<unique_fd> fds;  ///< the descriptors that came with them (CLOEXEC)
};

/// Thrown by receive_with_fds when descriptors that came with the bytes were
/// lost (the kernel truncated the control data, MSG_CTRUNC). The ones that did
/// arrive are closed, and the bytes received are dropped: the stream is out of
/// step, so the caller gives it up. code() is EMFILE when this process could
/// not take them all (its descriptor limit), EMSGSIZE when more than `max_fds`
/// came.
class descriptors_lost : public std::system_error {
 public:
  using std::system_error::system_error;
};

/// Receives at most `buffer.size()` (at least 1) bytes from stream socket `fd`
/// into `buffer`, with the descriptors that came with them, at most `max_fds`
/// (at most max_fds_per_message). Blocks until at least one byte arrives or the
/// stream ends, waiting also on a non-blocking socket; retries EINTR. The end
/// of the stream is size 0, also after ECONNRESET (a peer that closed with
/// bytes unread). Throws descriptors_lost (see there), std::system_error
/// ("recvmsg") on other failures.
received receive_with_fds(int fd, std::span<std::byte> buffer, std::size_t max_fds);

}  // namespace mp::os

// ---- network sockets ----
// (Its own includes, so that this section only adds to the file.)
#include <cstdint>
#include <string>

namespace mp::os {

/// Where a socket listens or connects, as the kernel names it: a Unix socket
/// path (a leading '\0' names Linux's abstract namespace; empty is an unbound
/// peer), or an IP host and port.
struct endpoint {
  enum class kind : std::uint8_t { unix_path, inet, inet6 };
  kind family = kind::unix_path;
  std::string host;  // the path for unix_path; a name or a literal for inet and inet6
  std::uint16_t port = 0;
};

/// A CLOEXEC, non-blocking stream socket bound at `at` and listening with
/// `backlog`; an IP host is resolved (getaddrinfo) within its family, and its
/// address reused at once after a previous listener (SO_REUSEADDR, as Python).
/// Throws std::system_error: "bind" with EADDRINUSE if the path exists or the
/// port is taken; "getaddrinfo" with EHOSTUNREACH if the host does not resolve.
unique_fd listen_at(const endpoint& at, int backlog);
/// A CLOEXEC, blocking stream socket connected to `to` (TCP_NODELAY for IP).
/// Throws std::system_error ("connect": ECONNREFUSED if nothing listens, ENOENT
/// for a missing path).
unique_fd connect_to(const endpoint& to);
/// The next pending connection on non-blocking listener `listener` (CLOEXEC,
/// blocking, TCP_NODELAY for IP), with its peer's address; empty if none is
/// pending now (or the peer gave up already). Throws std::system_error
/// ("accept4") on other failures: EMFILE, EINVAL once shut down.
unique_fd accept_from(int listener, endpoint& peer);
/// The address socket `fd` is bound to (the port the kernel picked for port 0).
endpoint local_endpoint(int fd);
/// Fills `out` from the kernel's random source (getrandom). Throws std::system_error.
void fill_random(std::span<std::byte> out);

}  // namespace mp::os
