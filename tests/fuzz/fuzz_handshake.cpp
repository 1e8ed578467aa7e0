// SPDX-License-Identifier: MIT
// Fuzzes what a listener or a client reads before and after authentication:
// the input stands for the peer's bytes, written raw into one end of a socket
// pair whose other end runs the handshake or receives in Python's framing. The
// first byte picks the side (and whether HMAC-MD5 is accepted); the rest is
// the peer's part. Anything but mp::process_error (mp::authentication_error,
// eof, decode errors) is a bug; so is a handshake that succeeds without the key.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "handshake.hpp"
#include "mp/connection.hpp"
#include "mp/listener.hpp"

namespace {

namespace hs = mp::detail::handshake;

const std::vector<std::byte> the_key = mp::key("fuzz key");

void receive_python_framed(mp::connection& reader, int mode) {
  std::vector<std::byte> buffer(64);
  for (int i = 0; i < 1000 && !reader.closed(); ++i) {
    try {
      switch (mode % 3) {
        case 0:
          static_cast<void>(reader.recv_bytes(256));
          break;
        case 1:
          static_cast<void>(reader.recv_bytes_into(buffer));
          break;
        default:
          static_cast<void>(reader.recv<std::vector<std::string>>());
          break;
      }
    } catch (const mp::eof_error&) {
      break;
    } catch (const mp::process_error&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0 || size > 60000) return 0;  // stay under the socket buffer
  const std::uint8_t mode = data[0];
  const auto peer_bytes = std::as_bytes(std::span(data + 1, size - 1));
  const bool legacy = (mode & 0x80) != 0;

  // The pure parts first: the input as an answer to a fixed challenge.
  try {
    static_cast<void>(hs::split_digest(peer_bytes));
    const auto challenge = std::as_bytes(std::span(std::string_view("{sha256}0123456789")));
    hs::verify(the_key, challenge, peer_bytes, legacy);
    std::abort();  // a forged answer passed
  } catch (const mp::authentication_error&) {
  }

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 0;
  mp::unique_fd ours(fds[0]);
  mp::unique_fd theirs(fds[1]);
  if (::write(theirs.get(), peer_bytes.data(), peer_bytes.size()) !=
      static_cast<ssize_t>(peer_bytes.size()))
    return 0;
  ::shutdown(theirs.get(), SHUT_WR);  // what we send still has room to go
  const hs::settings how{.key = the_key,
                         .legacy_md5 = legacy,
                         .until = mp::detail::deadline(std::chrono::seconds(5)),
                         .peer = "the fuzzer"};
  switch (mode & 0x3) {
    case 0:  // a listener challenging a client that answers with the input
      try {
        hs::deliver_challenge(ours.get(), how);
        std::abort();  // the random challenge was answered without the key
      } catch (const mp::authentication_error&) {
      }
      break;
    case 1:  // a client answering a listener that sends the input
      try {
        hs::answer_challenge(ours.get(), how);
        hs::deliver_challenge(ours.get(), how);
        std::abort();
      } catch (const mp::authentication_error&) {
      }
      break;
    default: {  // an authenticated connection in Python's framing
      mp::connection reader(std::move(ours), true, true, mp::wire_format::python);
      receive_python_framed(reader, mode >> 2);
    }
  }
  return 0;
}
