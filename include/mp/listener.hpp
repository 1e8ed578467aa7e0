// SPDX-License-Identifier: MIT
// Listener and Client: Python's multiprocessing.connection.Listener and
// Client. Processes that share no parent connect by address, over a Unix
// socket (a path, or a name in Linux's abstract namespace) or TCP over IPv4
// or IPv6, and prove with an authentication key that they may.
//
// Only differences from Python are documented here; see
// https://docs.python.org/3/library/multiprocessing.html#module-multiprocessing.connection
// and docs/listener.md.
//
// The connections accepted or made here are mp::connection objects that speak
// Python's framing (wire_format::python), so a Python program's Client or
// Listener talks to them with send_bytes/recv_bytes; typed values keep mp's
// codec; descriptors do not travel over them.
//
// Authentication is Python's mutual challenge-response with HMAC-SHA256 (the
// form Python 3.12 introduced); Python 3.11 and older speak a bare HMAC-MD5
// form, accepted only with `.legacy_md5 = true`. The key protects who gets in;
// it does not encrypt what follows (see docs/listener.md for tunnelling).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mp/connection.hpp"
#include "mp/export.hpp"
#include "mp/timeout.hpp"

namespace mp {

/// Python's address families: 'AF_UNIX' (a path, or an abstract name that
/// starts with '\0'), 'AF_INET' and 'AF_INET6'.
enum class address_family : std::uint8_t { af_unix, af_inet, af_inet6 };

/// Where a listener listens: a Unix socket path; a name in Linux's abstract
/// namespace (a string that starts with '\0', as in Python: "\0name"s, or
/// mp::abstract_address("name")); or a host and a port (`{"127.0.0.1", 5000}`;
/// port 0 lets the kernel pick one, which the listener's address() tells).
/// The family follows from the address as Python's address_type decides it: a
/// string is AF_UNIX, a host and port AF_INET, or AF_INET6 when the host is an
/// IPv6 literal (it contains ':'), where Python needs the family named.
class MP_EXPORT address {
 public:
  /// A Unix socket path, or an abstract name if it starts with '\0'.
  address(std::string path);  // NOLINT: implicit, as Python takes a str
  address(const char* path) : address(std::string(path)) {}  // NOLINT
  /// A host (a name, or an IPv4 or IPv6 literal) and a port, 0 to 65535.
  /// Throws std::invalid_argument for a port out of range.
  address(std::string host, int port);
  /// The same, in a family named explicitly (for a name that resolves in both).
  address(address_family family, std::string host, int port);

  address_family family() const noexcept { return family_; }
  /// For AF_UNIX: true for a name in the abstract namespace.
  bool abstract() const noexcept;
  /// For AF_UNIX: the path, or '\0' and the abstract name.
  const std::string& path() const noexcept { return text_; }
  /// For AF_INET and AF_INET6: the host as given, or as the kernel reports it.
  const std::string& host() const noexcept { return text_; }
  std::uint16_t port() const noexcept { return port_; }
  /// For messages and logs: "/tmp/sock", "@name" (abstract, as ss(8) shows
  /// it), "127.0.0.1:5000", "[::1]:5000".
  std::string to_string() const;

  friend bool operator==(const address&, const address&) = default;

 private:
  address_family family_ = address_family::af_unix;
  std::string text_;
  std::uint16_t port_ = 0;
};

/// A name in Linux's abstract namespace: address("\0" + name). Never a file;
/// gone when its listener closes.
MP_EXPORT address abstract_address(std::string_view name);

/// Python's arbitrary_address(family): a fresh address nothing listens on. A
/// Unix socket path in the temporary directory ($TMPDIR or /tmp), or
/// 127.0.0.1 (::1) with port 0.
MP_EXPORT address arbitrary_address(address_family family);

/// Python's Listener(address, family, backlog, authkey), keyword arguments as fields.
/// Authentication, here and in client_options: with `authkey` if given; with
/// mp::current_process().authkey() if `authenticate` is set and no key is
/// given; not at all otherwise (as Python, whose authkey defaults to None).
struct listener_options {
  /// With an address: checked against its family. Without: the family of
  /// the arbitrary address chosen (AF_UNIX if unset).
  std::optional<address_family> family{};
  /// Connections the kernel queues before accept(). Python's default is 1,
  /// which makes clients that connect together wait or fail; 128 here.
  int backlog = 128;
  std::optional<std::vector<std::byte>> authkey{};
  bool authenticate = false;
  /// Accept the bare HMAC-MD5 handshake of Python 3.11 and older.
  bool legacy_md5 = false;
  /// How long a client has to complete the handshake: the longest one silent
  /// client holds up accept(). Python has no limit.
  mp::timeout handshake_timeout = std::chrono::seconds(20);
};

/// Python's Client(address, family, authkey), keyword arguments as fields.
struct client_options {
  std::optional<address_family> family{};
  std::optional<std::vector<std::byte>> authkey{};
  bool authenticate = false;
  bool legacy_md5 = false;
  mp::timeout handshake_timeout = std::chrono::seconds(20);
};

/// A key given as text: mp::key("secret password").
inline std::vector<std::byte> key(std::string_view text) {
  const auto view = std::as_bytes(std::span(text));
  return {view.begin(), view.end()};
}

/// Python's multiprocessing.connection.Listener: a bound, listening socket
/// that hands out authenticated connections. Move-only; closing it (or
/// destroying it) removes its socket file, if it made one.
///
/// Thread-safety: accept() may be called from several threads at once, and
/// close() from another thread while they wait: they then throw
/// std::system_error with EBADF. Destroying it while another thread uses it
/// is undefined, as for any object.
class MP_EXPORT listener {
 public:
  /// Listens at `at`. Throws std::system_error: EADDRINUSE if the path exists
  /// or the port is taken; std::invalid_argument if options.family
  /// contradicts the address or the backlog is not positive.
  listener(const mp::address& at, listener_options options = {});
  /// Listens at arbitrary_address(options.family), AF_UNIX if unset (as
  /// Python on Linux).
  explicit listener(listener_options options = {});
  listener(listener&&) noexcept;
  listener& operator=(listener&&) noexcept;
  ~listener();

  /// Waits for a client (at most `timeout`: then mp::timeout_error), and, if
  /// the listener authenticates, runs the handshake with it: a client that
  /// fails it (a wrong key, garbage, a message over 256 bytes, silence past
  /// handshake_timeout, a close) makes accept() throw mp::authentication_error,
  /// after which the next accept() serves the next client. Throws
  /// std::system_error with EBADF if the listener is or gets closed.
  connection accept(mp::timeout timeout = {});

  /// Closes the listening socket and removes its socket file; wakes accept()
  /// calls in other threads. Idempotent.
  void close() noexcept;
  bool closed() const noexcept;

  /// The address it listens at: for port 0, with the port the kernel picked.
  /// Throws std::system_error (EBADF) once closed.
  const mp::address& address() const;
  /// The peer of the connection accept() last returned: (host, port) for
  /// TCP, usually an empty path for a Unix socket; nullopt before the first.
  std::optional<mp::address> last_accepted() const;
  /// The listening socket, readable when a client is waiting (for poll, or
  /// mp::wait, which takes the listener itself). Throws EBADF once closed.
  int fileno() const;

 private:
  struct state;
  std::unique_ptr<state> state_;
};

/// mp::wait's hook: a listener is ready when a client is waiting.
inline detail::wait_target wait_target_of(const listener& l) {
  return {l.fileno(), false};
}

/// Python's multiprocessing.connection.Client: connects to a listener at
/// `to` and, if asked to, authenticates (answering the listener's challenge,
/// then challenging it). Throws std::system_error if nothing listens there
/// (ECONNREFUSED, or ENOENT for a missing path); mp::authentication_error if
/// the handshake fails (a wrong key on either side, a peer that is not a
/// listener, silence past handshake_timeout).
MP_EXPORT connection client(const address& to, client_options options = {});

}  // namespace mp
