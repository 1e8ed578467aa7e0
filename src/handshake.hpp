// SPDX-License-Identifier: MIT
// Python's authentication handshake (multiprocessing.connection's
// deliver_challenge and answer_challenge), on a socket before it becomes an
// mp::connection: nothing a peer sends is decoded as a typed value before it
// has proven it holds the key. A header of its own so that the fuzz target
// (tests/fuzz, through a private include directory) can drive it; not installed.
//
// The exchange, each message in Python's framing (4-byte big-endian length):
//   the side that delivers a challenge sends "#CHALLENGE#{sha256}" + 40 random
//   bytes; the other answers "{sha256}" + HMAC-SHA256(key, "{sha256}" + bytes);
//   the first replies "#WELCOME#" or "#FAILURE#". A listener delivers, then
//   answers the client's challenge; a client answers, then delivers.
// Python 3.11 and older send a 20-byte challenge without a prefix and answer
// with a bare 16-byte HMAC-MD5: accepted only when `legacy_md5` is set.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "mp/timeout.hpp"

namespace mp::detail::handshake {

/// The largest handshake message either side accepts (Python's recv_bytes(256)).
inline constexpr std::size_t max_message = 256;
/// The random bytes of a challenge (Python 3.12's MESSAGE_LENGTH).
inline constexpr std::size_t challenge_bytes = 40;

struct settings {
  std::span<const std::byte> key;
  bool legacy_md5 = false;  // accept Python 3.11's bare HMAC-MD5
  deadline until{timeout{}};
  int cancel_fd = -1;         // when readable, give up (the listener was closed)
  const char* peer = "peer";  // for messages: "the client", "the listener"
};

/// Python's _get_digest_name_and_payload: the digest a challenge or response
/// names ("" for the legacy 16- and 20-byte forms) and the bytes after its
/// prefix. Throws mp::authentication_error for anything else.
struct named_digest {
  std::string digest;
  std::span<const std::byte> payload;
};
named_digest split_digest(std::span<const std::byte> message);

/// Python's _create_response: the answer to challenge `message` under `key`.
/// Throws mp::authentication_error for an MD5 challenge unless `legacy_md5`.
std::vector<std::byte> respond(std::span<const std::byte> key, std::span<const std::byte> message,
                               bool legacy_md5);

/// Python's _verify_challenge: throws mp::authentication_error unless
/// `response` is the answer to `message` under `key` (compared in constant
/// time), or if it uses MD5 and `legacy_md5` is not set.
void verify(std::span<const std::byte> key, std::span<const std::byte> message,
            std::span<const std::byte> response, bool legacy_md5);

/// Sends a challenge on `socket` and checks the answer; sends "#WELCOME#" or
/// "#FAILURE#". Throws mp::authentication_error if the peer fails, sends
/// something malformed or too large, closes, or is silent past the deadline;
/// std::system_error (EBADF) if `cancel_fd` becomes readable.
void deliver_challenge(int socket, const settings& how);

/// Answers the peer's challenge on `socket`; throws as deliver_challenge, and
/// mp::authentication_error if the peer does not welcome the answer.
void answer_challenge(int socket, const settings& how);

}  // namespace mp::detail::handshake
