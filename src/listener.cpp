// SPDX-License-Identifier: MIT
// Listener and client: sockets by address, Python's handshake, Python's framing.
#include "mp/listener.hpp"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "handshake.hpp"
#include "mp/process.hpp"
#include "os/system.hpp"

namespace mp {
namespace {

os::endpoint endpoint_of(const address& at) {
  os::endpoint out;
  out.host = at.host();
  out.port = at.port();
  switch (at.family()) {
    case address_family::af_unix:
      out.family = os::endpoint::kind::unix_path;
      break;
    case address_family::af_inet:
      out.family = os::endpoint::kind::inet;
      break;
    case address_family::af_inet6:
      out.family = os::endpoint::kind::inet6;
      break;
  }
  return out;
}

address address_of(const os::endpoint& at) {
  switch (at.family) {
    case os::endpoint::kind::inet:
      return address(address_family::af_inet, at.host, at.port);
    case os::endpoint::kind::inet6:
      return address(address_family::af_inet6, at.host, at.port);
    case os::endpoint::kind::unix_path:
      break;
  }
  return address(at.host);
}

const char* family_name(address_family family) {
  switch (family) {
    case address_family::af_unix:
      return "AF_UNIX";
    case address_family::af_inet:
      return "AF_INET";
    case address_family::af_inet6:
      return "AF_INET6";
  }
  return "an unknown family";
}

void check_family(const address& at, std::optional<address_family> family) {
  if (family && *family != at.family())
    throw std::invalid_argument(std::string("the address ") + at.to_string() + " is " +
                                family_name(at.family()) + ", not " + family_name(*family));
}

// The key to authenticate with, or nullopt for none.
std::optional<std::vector<std::byte>> key_for(const std::optional<std::vector<std::byte>>& authkey,
                                              bool authenticate) {
  if (authkey) return authkey;
  if (authenticate) return current_process().authkey();
  return std::nullopt;
}

[[noreturn]] void throw_closed(const char* what) {
  throw std::system_error(std::make_error_code(std::errc::bad_file_descriptor), what);
}

std::atomic<unsigned> arbitrary_counter{0};

}  // namespace

// ---- address -------------------------------------------------------------

address::address(std::string path) : family_(address_family::af_unix), text_(std::move(path)) {}

namespace {
// Python's address_type for a (host, port) pair is always AF_INET; an IPv6
// literal (it has a ':') can only mean AF_INET6.
address_family family_of_host(const std::string& host) {
  return host.find(':') != std::string::npos ? address_family::af_inet6 : address_family::af_inet;
}
}  // namespace

address::address(std::string host, int port) : address(family_of_host(host), host, port) {}

address::address(address_family family, std::string host, int port)
    : family_(family), text_(std::move(host)) {
  if (family == address_family::af_unix)
    throw std::invalid_argument("an AF_UNIX address is a path, not a host and a port");
  if (port < 0 || port > 65535)
    throw std::invalid_argument("port " + std::to_string(port) + " is not in 0 to 65535");
  port_ = static_cast<std::uint16_t>(port);
}

bool address::abstract() const noexcept {
  return family_ == address_family::af_unix && !text_.empty() && text_[0] == '\0';
}

std::string address::to_string() const {
  std::string out;
  switch (family_) {
    case address_family::af_unix:
      if (!abstract()) return text_;
      out.append(1, '@').append(text_, 1);
      return out;
    case address_family::af_inet:
      out.append(text_);
      break;
    case address_family::af_inet6:
      out.append(1, '[').append(text_).append(1, ']');
      break;
  }
  out.append(1, ':').append(std::to_string(port_));
  return out;
}

address abstract_address(std::string_view name) {
  std::string path(name.size() + 1, '\0');
  name.copy(path.data() + 1, name.size());
  return address(std::move(path));
}

address arbitrary_address(address_family family) {
  switch (family) {
    case address_family::af_inet:
      return address(address_family::af_inet, "127.0.0.1", 0);
    case address_family::af_inet6:
      return address(address_family::af_inet6, "::1", 0);
    case address_family::af_unix:
      break;
  }
  const char* dir = std::getenv("TMPDIR");
  std::string path = dir != nullptr && *dir != '\0' ? dir : "/tmp";
  std::byte noise[6];
  os::fill_random(noise);
  static constexpr char hex[] = "0123456789abcdef";
  std::string tag;
  for (const std::byte b : noise) {
    tag += hex[static_cast<unsigned>(b) >> 4];
    tag += hex[static_cast<unsigned>(b) & 15];
  }
  path += "/mp-listener-" + std::to_string(os::process_id()) + "-" +
          std::to_string(arbitrary_counter.fetch_add(1) + 1) + "-" + tag;
  return address(std::move(path));
}

// ---- listener ------------------------------------------------------------

struct listener::state {
  std::mutex mutex;
  unique_fd socket;
  std::pair<unique_fd, unique_fd> wake;  // close() writes to first; accept() polls second
  int accepting = 0;                     // accept() calls under way
  bool closing = false;
  mp::address at{std::string()};
  std::optional<mp::address> last;
  std::string socket_file;  // removed on close
  std::optional<std::vector<std::byte>> key;
  listener_options options;

  // Under the mutex: releases the socket once nobody waits on it.
  void release_locked() noexcept {
    if (!closing || accepting > 0) return;
    socket.reset();
    wake = {};
    if (!socket_file.empty()) os::remove_file(socket_file);
    socket_file.clear();
  }
};

listener::listener(listener_options options)
    : listener(arbitrary_address(options.family.value_or(address_family::af_unix)), options) {}

listener::listener(const mp::address& at, listener_options options)
    : state_(std::make_unique<state>()) {
  check_family(at, options.family);
  if (options.backlog <= 0)
    throw std::invalid_argument("listener: the backlog must be positive, not " +
                                std::to_string(options.backlog));
  state& s = *state_;
  s.socket = os::listen_at(endpoint_of(at), options.backlog);
  if (at.family() == address_family::af_unix) {
    s.at = at;
    if (!at.abstract()) s.socket_file = at.path();
  } else {  // as the kernel has it: the port it picked for 0, the host resolved
    s.at = address_of(os::local_endpoint(s.socket.get()));
  }
  s.wake = os::socket_pair();
  s.key = key_for(options.authkey, options.authenticate);
  s.options = std::move(options);
}

listener::listener(listener&&) noexcept = default;
listener& listener::operator=(listener&& other) noexcept {
  if (this != &other) {
    close();
    state_ = std::move(other.state_);
  }
  return *this;
}
listener::~listener() {
  close();
}

void listener::close() noexcept {
  if (!state_) return;
  std::lock_guard lock(state_->mutex);
  if (state_->closing) return;
  state_->closing = true;
  if (state_->wake.first) {
    const std::byte one{1};
    static_cast<void>(os::write_full(state_->wake.first.get(), &one, 1));
  }
  state_->release_locked();
}

bool listener::closed() const noexcept {
  if (!state_) return true;
  std::lock_guard lock(state_->mutex);
  return state_->closing;
}

const mp::address& listener::address() const {
  if (closed()) throw_closed("the listener is closed");
  return state_->at;
}

std::optional<mp::address> listener::last_accepted() const {
  if (!state_) return std::nullopt;
  std::lock_guard lock(state_->mutex);
  return state_->last;
}

int listener::fileno() const {
  if (!state_) throw_closed("the listener is closed");
  std::lock_guard lock(state_->mutex);
  if (state_->closing) throw_closed("the listener is closed");
  return state_->socket.get();
}

connection listener::accept(mp::timeout timeout) {
  if (!state_) throw_closed("the listener is closed");
  state& s = *state_;
  int fds[2];
  {
    std::lock_guard lock(s.mutex);
    if (s.closing) throw_closed("the listener is closed");
    ++s.accepting;
    fds[0] = s.socket.get();
    fds[1] = s.wake.second.get();
  }
  struct leave {
    state& s;
    ~leave() {
      std::lock_guard lock(s.mutex);
      --s.accepting;
      s.release_locked();
    }
  } on_leave{s};

  const detail::deadline until(timeout);
  unique_fd socket;
  os::endpoint peer;
  while (!socket) {
    const auto ready = os::wait_any_readable(fds, until.left());
    if (ready.empty()) throw timeout_error("accept: no client connected in time");
    if (ready.back() == 1) throw_closed("the listener was closed while accept() waited");
    socket = os::accept_from(fds[0], peer);  // empty if the client gave up meanwhile
  }
  if (s.key) {
    detail::handshake::settings how{.key = *s.key,
                                    .legacy_md5 = s.options.legacy_md5,
                                    .until = detail::deadline(s.options.handshake_timeout),
                                    .cancel_fd = fds[1],
                                    .peer = "the client"};
    detail::handshake::deliver_challenge(socket.get(), how);
    detail::handshake::answer_challenge(socket.get(), how);
  }
  {
    std::lock_guard lock(s.mutex);
    s.last = address_of(peer);
  }
  return connection(std::move(socket), true, true, wire_format::python);
}

// ---- client --------------------------------------------------------------

connection client(const address& to, client_options options) {
  check_family(to, options.family);
  unique_fd socket = os::connect_to(endpoint_of(to));
  if (const auto key = key_for(options.authkey, options.authenticate)) {
    detail::handshake::settings how{.key = *key,
                                    .legacy_md5 = options.legacy_md5,
                                    .until = detail::deadline(options.handshake_timeout),
                                    .peer = "the listener"};
    detail::handshake::answer_challenge(socket.get(), how);
    detail::handshake::deliver_challenge(socket.get(), how);
  }
  return connection(std::move(socket), true, true, wire_format::python);
}

}  // namespace mp
