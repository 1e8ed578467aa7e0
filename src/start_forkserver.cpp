// SPDX-License-Identifier: MIT
// The forkserver start method. On first use a process spawns its fork server:
// a fresh run of this program (see src/fresh_run.cpp) that runs the static
// initializers and the preload functions, then, single-threaded, forks a
// child for each request. So a child never copies its parent's threads or the
// locks they held, and starts nearly as fast as a fork.
//
// The rendezvous is Python's: the parent binds a Unix socket in a directory of
// its own (mode 0700, the socket 0600; never an abstract socket, which anyone
// on the host may connect to: CVE-2022-42919) and hands the listening socket
// to the server. The server accepts only connections whose peer credentials
// (SO_PEERCRED) name its parent and our uid. A request is one connection: the
// start message's size and the message, with the arguments' descriptors; the
// reply is the child's pid with a pidfd for it and the read end of a pipe for
// its exit code; then the parent sends the child one byte, its word to go on,
// once it has taken the child as its own. A start that fails after the fork
// (the parent cannot receive the reply's descriptors, say) hangs up instead,
// and the child ends without running anything: no child runs unwatched. The
// child writes its code to the pipe itself as it exits, so the parent learns
// of its end from the pidfd alone; after a signal the server writes it when
// it reaps the child, since only the server can.
//
// The server serves a connection once its request begins to arrive, so a
// connection that says nothing holds up no other; a request that stops
// halfway is dropped after request_time_limit.
//
// The server is spawned with LD_BIND_NOW (taken out of its environment again
// before main, unless the user set it): its symbols are resolved once, at
// load, instead of in each child, which would otherwise resolve every
// function it calls the first time (the server itself calls few of them).
//
// The server watches its parent through a pidfd: when the parent ends, it
// removes the socket and its directory and exits, and its children, whose
// parent-death signal is tied to it, end too, as forked children end with
// their parent. A forked copy of a process starts a fork server of its own.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include "fresh_run.hpp"
#include "mp/errors.hpp"
#include "os/system.hpp"
#include "start_method.hpp"

namespace mp::detail {
namespace {

/// This process's side: its server, if it started one. The server is our
/// child, so its pid stays its own until we reap it; no descriptor is kept.
struct forkserver_client {
  std::mutex mutex;
  pid_t owner = 0;   // the process that started the server; a forked copy starts its own
  pid_t server = 0;  // 0: none
  std::string path;
  std::vector<code_ref> preload;
};

forkserver_client& client() {
  // Never destroyed: used at exit. Held across fork, so that a forked copy
  // never inherits it locked by a thread it does not have.
  static forkserver_client* instance = [] {
    auto* c = new forkserver_client;
    ::pthread_atfork([] { client().mutex.lock(); }, [] { client().mutex.unlock(); },
                     [] { client().mutex.unlock(); });
    return c;
  }();
  return *instance;
}

/// Removes the socket at `path` and the private directory that holds it.
void remove_socket(const std::string& path) noexcept {
  os::remove_file(path);
  os::remove_directory(path.substr(0, path.rfind('/')));
}

/// A private directory for the socket: $TMPDIR if its path is short enough.
std::string make_socket_directory() {
  std::string base = "/tmp";
  if (const char* tmp = std::getenv("TMPDIR");
      tmp != nullptr && *tmp != '\0' && std::strlen(tmp) < 64)
    base = tmp;
  // mkdtemp makes it 0700.
  if (auto made = os::make_private_directory(base + "/mp-forkserver-XXXXXX")) return *made;
  if (auto made = os::make_private_directory("/tmp/mp-forkserver-XXXXXX")) return *made;
  os::throw_errno("mkdtemp");
}

void remove_socket_of_ended_server() noexcept;
[[noreturn]] void forkserver_main(spawn_message& message, handle_source& handles);

/// Under the client's mutex: starts the server (the caller checked it is not
/// running). Takes no other lock: fork takes ours while holding the runtime's.
void start_server(forkserver_client& c, const std::string& parent_name) {
  const std::string directory = make_socket_directory();
  const std::string path = directory + "/socket";
  unique_fd listener;
  try {
    listener = os::listen_unix(path);
  } catch (...) {
    remove_socket(path);
    throw;
  }

  spawn_message message;
  message.hook = code_ref_of(reinterpret_cast<const void*>(&forkserver_main));
  message.what = spawn_message::role::forkserver;
  message.name = "ForkServer";
  message.parent_name = parent_name;
  message.parent_pid = os::process_id();
  message.preload = c.preload;
  message.socket_path = path;
  const bytes encoded = mp::encode(message);

  sigset_t none;
  ::sigemptyset(&none);
  auto [ours, theirs] = os::socket_pair();
  pid_t pid = 0;
  try {
    pid = spawn_program(theirs.get(), none, /*bind_now=*/true);
  } catch (...) {
    remove_socket(path);
    throw;
  }
  theirs.reset();
  if (!send_with_fds(ours.get(), encoded, {listener.get()})) {
    os::kill_and_reap(pid);
    remove_socket(path);
    throw process_error("the fork server ended before it started");
  }
  c.owner = os::process_id();
  c.server = pid;
  c.path = path;
  static const bool registered = std::atexit(remove_socket_of_ended_server) == 0;
  static_cast<void>(registered);
}

/// Under the client's mutex: forgets a server that ended, reaping it; with
/// `block`, first waits a while for its end (it is known to be ending).
void forget_ended_server(forkserver_client& c, bool block) {
  if (c.owner != os::process_id()) {
    c.server = 0;  // our parent's: not ours to use
    return;
  }
  if (c.server == 0) return;
  if (block) {
    // It is known to be ending; a server that is not (it never hangs up on
    // us otherwise) is left alone after a while rather than waited for.
    try {
      const unique_fd pidfd = os::pidfd_open(c.server);
      os::wait_readable(pidfd.get(), std::chrono::seconds(10));
    } catch (const std::system_error&) {
    }
  }
  if (!os::reap_if_ended(c.server)) return;
  remove_socket(c.path);
  c.server = 0;
}

/// At exit: a server that ended before us (killed, say) could not remove its
/// socket, so we do. A live one removes it when it sees us end.
void remove_socket_of_ended_server() noexcept {
  forkserver_client& c = client();
  const std::unique_lock guard(c.mutex, std::try_to_lock);
  if (guard.owns_lock()) forget_ended_server(c, false);
}

/// Under the client's mutex: the server's socket path, starting the server if
/// this process has none or it ended.
const std::string& ensure_running_locked(forkserver_client& c, const std::string& parent_name) {
  forget_ended_server(c, false);
  if (c.server == 0) start_server(c, parent_name);
  return c.path;
}

// ---- the server ----------------------------------------------------------

// A request: its size (std::uint64_t, native order) with the arguments'
// descriptors, then the start message. Framed, not ended by a shutdown, so
// that the parent can still send the child its word (see become_child).
using request_size = std::uint64_t;
// How long the server waits for more of a request whose first bytes came. A
// request is written at once, so this only bounds a peer that stops halfway;
// one that has sent nothing yet costs nothing (see forkserver_main).
constexpr std::chrono::seconds request_time_limit{5};
// Connections of our parent that have sent nothing yet; beyond this, the
// oldest is dropped, so that the server's descriptors stay bounded.
constexpr std::size_t max_waiting_connections = 64;

struct server_state {
  unique_fd listener;
  unique_fd parent_pidfd;
  unique_fd signals;                      // SIGCHLD, through a signalfd
  std::map<pid_t, unique_fd> exit_pipes;  // each live child's: where its exit code goes
  std::deque<unique_fd> waiting;          // our parent's connections with no request yet
  pid_t parent = 0;
  std::string path;
};

/// Reaps every child that ended and writes its exit code (Python's: negative
/// for a signal) to its pipe.
void reap_children(server_state& s) {
  os::drain_signal_fd(s.signals.get());
  while (const auto ended = os::reap_any_ended()) {
    const auto pipe = s.exit_pipes.find(ended->first);
    if (pipe == s.exit_pipes.end()) continue;
    const std::int32_t code = ended->second;
    try {
      static_cast<void>(os::write_full(pipe->second.get(), &code, sizeof code));
    } catch (const std::system_error&) {
      // Nobody to tell: the pipe's reader is gone.
    }
    s.exit_pipes.erase(pipe);
  }
}

/// The forked child's side of a request: drop the server's descriptors, wait
/// for the parent's word, and become the process the message describes. The
/// parent gives its word once it has taken the child as its own; if it cannot
/// (its start failed after the fork), it hangs up and the child ends here,
/// never having run anything, for the server to reap.
[[noreturn]] void become_child(server_state& s, unique_fd connection,
                               const std::vector<std::byte>& bytes, handle_source& handles,
                               pid_t server, int exit_status_fd) {
  s.listener.reset();
  s.signals.reset();
  s.exit_pipes.clear();
  s.waiting.clear();
  os::default_signal(SIGINT);
  os::default_signal(SIGPIPE);
  spawn_message message;
  try {
    decode_into(bytes, message);
  } catch (...) {
    die_before_start(
        "mp: a fork server's child got a start message that does not decode; the task was not "
        "run\n");
  }
  std::byte word{};
  bool told = false;
  try {
    os::set_receive_timeout(connection.get(), std::nullopt);  // the parent may be slow
    told = os::read_full(connection.get(), &word, sizeof word) == sizeof word;
  } catch (const std::system_error&) {
  }
  if (!told) os::exit_now(1);
  connection.reset();
  run_start_message(message, handles, server, std::move(s.parent_pidfd), exit_status_fd);
}

/// Serves a connection of our parent whose request has begun to arrive: reads
/// it, forks the child, replies.
void serve(server_state& s, unique_fd connection) {
  request_size size = 0;
  std::vector<std::byte> bytes;
  handle_source handles;
  try {
    os::set_receive_timeout(connection.get(), request_time_limit);
    if (!receive_exactly(connection.get(), reinterpret_cast<std::byte*>(&size), sizeof size,
                         handles) ||
        size == 0 || size > bytes.max_size())
      return;
    bytes.resize(static_cast<std::size_t>(size));
    if (!receive_exactly(connection.get(), bytes.data(), bytes.size(), handles)) return;
  } catch (const std::exception&) {
    return;  // no memory for it, or the socket failed: the parent sees it hang up
  }

  std::int32_t reply = 0;
  std::vector<int> reply_fds;
  unique_fd exit_read, exit_write, pidfd;
  try {
    std::tie(exit_read, exit_write) = os::pipe();
    const pid_t server = os::process_id();
    const pid_t pid = os::fork_process();
    if (pid == 0) {
      exit_read.reset();
      become_child(s, std::move(connection), bytes, handles, server, exit_write.release());
    }
    reply = pid;
    // Reaped by reap_children, whatever happens next.
    s.exit_pipes.emplace(pid, std::move(exit_write));
    // Ours until we reap it, so the pidfd cannot name another process.
    try {
      pidfd = os::pidfd_open(pid);
    } catch (const std::system_error& e) {
      os::signal_process(pid, SIGKILL);
      reply = -e.code().value();
    }
    reply_fds = {pidfd.get(), exit_read.get()};
  } catch (const std::system_error& e) {
    reply = -e.code().value();
  }
  if (reply < 0) reply_fds.clear();
  static_cast<void>(send_with_fds(
      connection.get(), {reinterpret_cast<const std::byte*>(&reply), sizeof reply}, reply_fds));
}

/// Accepts a connection and keeps it until its request comes, if it is our
/// parent's: only our parent may ask.
void accept_one(server_state& s) {
  unique_fd connection = os::accept_connection(s.listener.get());
  if (!connection) return;
  const auto peer = os::peer_of(connection.get());
  if (!peer || peer->pid != s.parent || peer->uid != os::user_id()) return;
  if (s.waiting.size() == max_waiting_connections) s.waiting.pop_front();
  s.waiting.push_back(std::move(connection));
}

[[noreturn]] void forkserver_main(spawn_message& message, handle_source& handles) {
  server_state s;
  s.parent = message.parent_pid;
  s.path = message.socket_path;
  if (handles.fds.size() != 1) die_before_start("mp: the fork server got no listening socket\n");
  s.listener = std::move(handles.fds[0]);
  s.parent_pidfd = open_parent_pidfd(s.parent);
  if (!s.parent_pidfd) {
    remove_socket(s.path);
    os::exit_now(0);
  }
  // Python's server ignores SIGINT, so that ^C reaches the parent, which
  // decides; its children restore it.
  os::ignore_signal(SIGINT);
  os::ignore_signal(SIGPIPE);
  os::stdin_from_null();
  os::block_signal(SIGCHLD);
  try {
    s.signals = os::signal_fd(SIGCHLD);
  } catch (const std::system_error&) {
    die_before_start("mp: the fork server could not watch its children\n");
  }

  for (const code_ref& ref : message.preload) {
    try {
      reinterpret_cast<void (*)()>(const_cast<void*>(resolve(ref)))();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mp: a fork server preload function threw: %s\n", e.what());
    } catch (...) {
      std::fputs("mp: a fork server preload function threw\n", stderr);
    }
  }

  // A connection is served once its request begins to arrive, in the order
  // requests arrive: one that says nothing holds up no other.
  std::vector<int> watched;
  for (;;) {
    watched = {s.parent_pidfd.get(), s.signals.get(), s.listener.get()};
    for (const unique_fd& connection : s.waiting) watched.push_back(connection.get());
    std::vector<std::size_t> ready;
    try {
      ready = os::wait_any_readable(watched, std::nullopt);
    } catch (const std::exception&) {
      break;
    }
    std::optional<std::size_t> arrived;
    bool accept = false;
    bool reap = false;
    for (const std::size_t i : ready) {
      if (i == 0) {
        remove_socket(s.path);  // the parent ended
        os::exit_now(0);
      }
      reap = reap || i == 1;
      accept = accept || i == 2;
      if (i >= 3 && !arrived) arrived = i - 3;
    }
    if (reap) reap_children(s);
    // One request a round: the child forked for it must find every other
    // connection in `waiting`, which it closes (see become_child). The next
    // round finds the others still readable.
    if (arrived) {
      const auto at = s.waiting.begin() + static_cast<std::ptrdiff_t>(*arrived);
      unique_fd connection = std::move(*at);
      s.waiting.erase(at);
      serve(s, std::move(connection));
    }
    if (accept) accept_one(s);
  }
  remove_socket(s.path);
  os::exit_now(0);
}

// A fresh run whose message says role::forkserver becomes the server.
[[maybe_unused]] const bool server_registered =
    register_fresh_run_main(spawn_message::role::forkserver, &forkserver_main);

// How reading the server's reply (the child's pid or an errno, then its
// pidfd and status pipe) went.
enum class reply_outcome { received, server_gone, descriptors_lost };

reply_outcome receive_reply(int fd, std::int32_t& reply, handle_source& fds) {
  auto* at = reinterpret_cast<std::byte*>(&reply);
  std::size_t left = sizeof reply;
  while (left != 0) {
    try {
      os::received got = os::receive_with_fds(fd, {at, left}, max_handles);
      if (got.size == 0) return reply_outcome::server_gone;
      for (unique_fd& received : got.fds) fds.fds.push_back(std::move(received));
      at += got.size;
      left -= got.size;
    } catch (const os::descriptors_lost&) {
      return reply_outcome::descriptors_lost;  // the server forked: the caller stops the child
    } catch (const std::system_error&) {
      return reply_outcome::server_gone;
    }
  }
  return reply_outcome::received;
}

}  // namespace

void start_forkserver(target& work, const std::shared_ptr<process_state>& child) {
  spawn_message message = start_message_for(*child, static_cast<int>(start_method::forkserver));
  handle_sink handles;
  encode_target(work, message, handles);
  const bytes encoded = mp::encode(message);
  const request_size size = encoded.size();

  // A server that ends during a request (killed, say) closes the connection
  // unanswered, and any child it forked dies with it: ask its successor.
  forkserver_client& c = client();
  unique_fd connection;
  std::int32_t reply = 0;
  handle_source reply_fds;
  reply_outcome outcome = reply_outcome::server_gone;
  for (int attempt = 0; attempt < 2 && !connection; ++attempt) {
    std::string path;
    {
      std::lock_guard guard(c.mutex);
      path = ensure_running_locked(c, message.parent_name);
    }
    connection = os::connect_unix(path);
    reply_fds.fds.clear();
    if (!connection ||
        !send_with_fds(connection.get(), {reinterpret_cast<const std::byte*>(&size), sizeof size},
                       handles.fds) ||
        !send_with_fds(connection.get(), encoded, {}) ||
        (outcome = receive_reply(connection.get(), reply, reply_fds)) ==
            reply_outcome::server_gone) {
      connection.reset();
      // Its socket closes only when it ends: reap it, so that the next
      // attempt starts another.
      std::lock_guard guard(c.mutex);
      if (c.path == path) forget_ended_server(c, true);
    }
  }
  if (!connection)
    throw process_error("the fork server did not start process '" + child->name + "'");
  if (reply < 0)
    throw std::system_error(-reply, std::system_category(),
                            "the fork server could not fork process '" + child->name + "'");
  // A child exists now, waiting for our word. Without it, the child ends
  // without running anything once we hang up, and the server reaps it: a
  // child we cannot watch must not run on.
  if (outcome == reply_outcome::descriptors_lost || reply_fds.fds.size() != 2) {
    os::shutdown_both(connection.get());
    throw process_error("the fork server's reply for process '" + child->name +
                        "' lacks its descriptors (the child was stopped)" +
                        std::string(outcome == reply_outcome::descriptors_lost
                                        ? ": this process could not take them (EMFILE?)"
                                        : ""));
  }
  try {
    adopt_child(child, reply, std::move(reply_fds.fds[0]), std::move(reply_fds.fds[1]));
  } catch (...) {
    os::shutdown_both(connection.get());
    throw;
  }
  // If the child is gone, its exit code will say why. (Not waiting for the
  // server to hang up spares waiting for the child, which holds the
  // connection until it has read this.)
  const std::byte word{1};
  static_cast<void>(send_with_fds(connection.get(), {&word, 1}, {}));
}

pid_t ensure_fork_server_running() {
  const std::string name = self_state()->name;
  forkserver_client& c = client();
  std::lock_guard guard(c.mutex);
  ensure_running_locked(c, name);
  return c.server;
}

void set_fork_server_preload(std::vector<code_ref> functions) {
  forkserver_client& c = client();
  std::lock_guard guard(c.mutex);
  c.preload = std::move(functions);
}

}  // namespace mp::detail
