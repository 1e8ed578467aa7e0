// SPDX-License-Identifier: MIT
// Linux implementation of the network section of src/os/system.hpp: sockets
// that listen and connect by address, for mp::listener and mp::client.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "os/system.hpp"

namespace mp::os {
namespace {

struct raw_address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

raw_address resolve(const endpoint& at) {
  raw_address out;
  if (at.family == endpoint::kind::unix_path) {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    if (at.host.empty() || at.host.size() >= sizeof un.sun_path)
      throw std::system_error(std::make_error_code(std::errc::filename_too_long),
                              "a Unix socket address must be 1 to " +
                                  std::to_string(sizeof un.sun_path - 1) + " bytes, not " +
                                  std::to_string(at.host.size()));
    std::memcpy(un.sun_path, at.host.data(), at.host.size());
    // An abstract name is exactly its bytes; a path ends at its NUL.
    out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + at.host.size() +
                                        (at.host[0] == '\0' ? 0 : 1));
    std::memcpy(&out.storage, &un, sizeof un);
    return out;
  }
  addrinfo hints{};
  hints.ai_family = at.family == endpoint::kind::inet ? AF_INET : AF_INET6;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(at.port);
  const int status =
      ::getaddrinfo(at.host.empty() ? nullptr : at.host.c_str(), port.c_str(), &hints, &found);
  if (status != 0 || found == nullptr)
    throw std::system_error(std::make_error_code(std::errc::host_unreachable),
                            "getaddrinfo: cannot resolve '" + at.host + "' as an " +
                                (at.family == endpoint::kind::inet ? "IPv4" : "IPv6") +
                                " address: " + ::gai_strerror(status));
  std::memcpy(&out.storage, found->ai_addr, found->ai_addrlen);
  out.length = found->ai_addrlen;
  ::freeaddrinfo(found);
  return out;
}

endpoint from_raw(const sockaddr_storage& storage, socklen_t length) {
  endpoint out;
  char text[INET6_ADDRSTRLEN] = {};
  if (storage.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(storage);
    out.family = endpoint::kind::inet;
    ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
    out.host = text;
    out.port = ntohs(in.sin_port);
  } else if (storage.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(storage);
    out.family = endpoint::kind::inet6;
    ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    out.host = text;
    out.port = ntohs(in6.sin6_port);
  } else {
    const auto& un = reinterpret_cast<const sockaddr_un&>(storage);
    out.family = endpoint::kind::unix_path;
    const auto offset = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path));
    if (length > offset) {
      const std::size_t size = length - offset;
      if (un.sun_path[0] == '\0')
        out.host.assign(un.sun_path, size);  // abstract: every byte counts
      else
        out.host.assign(un.sun_path, ::strnlen(un.sun_path, size));
    }
  }
  return out;
}

void set_no_delay(int fd, int family) {
  if (family != AF_INET && family != AF_INET6) return;
  const int on = 1;
  check("setsockopt", [&] { return ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on); });
}

}  // namespace

unique_fd listen_at(const endpoint& at, int backlog) {
  const raw_address address = resolve(at);
  unique_fd socket(check("socket", [&] {
    return ::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  }));
  if (address.family() != AF_UNIX) {
    const int on = 1;
    check("setsockopt",
          [&] { return ::setsockopt(socket.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on); });
  }
  check("bind", [&] { return ::bind(socket.get(), address.get(), address.length); });
  check("listen", [&] { return ::listen(socket.get(), backlog); });
  return socket;
}

unique_fd connect_to(const endpoint& to) {
  const raw_address address = resolve(to);
  unique_fd socket(
      check("socket", [&] { return ::socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0); }));
  if (::connect(socket.get(), address.get(), address.length) != 0) {
    if (errno != EINTR) throw_errno("connect");
    // Interrupted: the connection goes on in the background; wait for its outcome.
    pollfd p{socket.get(), POLLOUT, 0};
    check("poll", [&] { return ::poll(&p, 1, -1); });
    int error = 0;
    socklen_t size = sizeof error;
    check("getsockopt",
          [&] { return ::getsockopt(socket.get(), SOL_SOCKET, SO_ERROR, &error, &size); });
    if (error != 0) throw std::system_error(error, std::system_category(), "connect");
  }
  set_no_delay(socket.get(), address.family());
  return socket;
}

unique_fd accept_from(int listener, endpoint& peer) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  const int fd = retry([&] {
    return ::accept4(listener, reinterpret_cast<sockaddr*>(&storage), &length, SOCK_CLOEXEC);
  });
  if (fd < 0) {
    // Nothing pending, or a client that gave up between poll and accept.
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EPROTO)
      return {};
    throw_errno("accept4");
  }
  unique_fd socket(fd);
  peer = from_raw(storage, length);
  set_no_delay(fd, storage.ss_family);
  return socket;
}

endpoint local_endpoint(int fd) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  check("getsockname",
        [&] { return ::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length); });
  return from_raw(storage, length);
}

void fill_random(std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const auto got =
        check("getrandom", [&] { return ::getrandom(out.data() + done, out.size() - done, 0); });
    done += static_cast<std::size_t>(got);
  }
}

}  // namespace mp::os
