// SPDX-License-Identifier: MIT
// Python's authentication handshake, with HMAC from OpenSSL's libcrypto.
#include "handshake.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>
#include <system_error>

#include "big_endian.hpp"
#include "mp/errors.hpp"
#include "os/system.hpp"

namespace mp::detail::handshake {
namespace {

using byte_span = std::span<const std::byte>;

constexpr std::string_view challenge_tag = "#CHALLENGE#";
constexpr std::string_view welcome = "#WELCOME#";
constexpr std::string_view failure = "#FAILURE#";
constexpr std::size_t legacy_challenge = 20;  // Python 3.11's challenge
constexpr std::size_t md5_size = 16;          // a bare HMAC-MD5 answer
constexpr std::size_t longest_digest_name = 8;

byte_span as_bytes(std::string_view text) {
  return std::as_bytes(std::span(text));
}
bool starts_with(byte_span bytes, std::string_view prefix) {
  return bytes.size() >= prefix.size() &&
         std::memcmp(bytes.data(), prefix.data(), prefix.size()) == 0;
}
std::string printable(byte_span bytes) {
  std::string out;
  for (const std::byte b : bytes.first(std::min<std::size_t>(bytes.size(), 24))) {
    const auto c = static_cast<unsigned char>(b);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (bytes.size() > 24) out += "...";
  return out;
}

// The digests Python 3.12 allows (its _ALLOWED_DIGESTS).
const EVP_MD* digest_named(std::string_view name) {
  if (name == "md5") return EVP_md5();
  if (name == "sha256") return EVP_sha256();
  if (name == "sha384") return EVP_sha384();
  if (name == "sha3_256") return EVP_sha3_256();
  if (name == "sha3_384") return EVP_sha3_384();
  return nullptr;
}

std::vector<std::byte> hmac(std::string_view digest, byte_span key, byte_span message) {
  const EVP_MD* md = digest_named(digest);
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int size = 0;
  if (md == nullptr || HMAC(md, key.data(), static_cast<int>(key.size()),
                            reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                            out.data(), &size) == nullptr)
    throw authentication_error("HMAC-" + std::string(digest) + " is not available");
  const auto* begin = reinterpret_cast<const std::byte*>(out.data());
  return {begin, begin + size};
}

[[noreturn]] void refuse_md5(const settings& how, const char* what) {
  throw authentication_error(std::string(how.peer) + " " + what +
                             " HMAC-MD5, the legacy handshake of Python 3.11 and older; accept "
                             "it with the option .legacy_md5 = true");
}

// Reads exactly `out.size()` bytes, before the deadline.
void read_exact(int socket, std::span<std::byte> out, const settings& how) {
  std::size_t done = 0;
  while (done < out.size()) {
    const int fds[] = {socket, how.cancel_fd};
    const std::size_t count = how.cancel_fd >= 0 ? 2 : 1;
    const auto ready = os::wait_any_readable(std::span(fds, count), how.until.left());
    if (ready.empty())
      throw authentication_error(std::string("the handshake timed out: ") + how.peer +
                                 " did not send its part in time");
    if (ready.back() == 1)
      throw std::system_error(std::make_error_code(std::errc::bad_file_descriptor),
                              "the listener was closed during a handshake");
    os::received got;
    try {
      got = os::receive_with_fds(socket, out.subspan(done), 0);
    } catch (const os::descriptors_lost&) {
      throw authentication_error(std::string(how.peer) + " sent descriptors during the handshake");
    } catch (const std::system_error& e) {
      throw authentication_error(std::string("the handshake failed: ") + e.what());
    }
    if (got.size == 0)
      throw authentication_error(std::string(how.peer) +
                                 " closed the connection during the handshake");
    done += got.size;
  }
}

std::vector<std::byte> read_message(int socket, const settings& how) {
  std::array<std::byte, 4> header{};
  read_exact(socket, header, how);
  const auto length = static_cast<std::uint32_t>(load_big_endian(header.data(), header.size()));
  if (length > max_message)  // also -1 (a large message) and other negative lengths
    throw authentication_error(
        std::string(how.peer) + " sent a handshake message of " +
        (length > 0x7fffffff ? std::string("negative or large") : std::to_string(length)) +
        " bytes; the handshake allows at most " + std::to_string(max_message));
  std::vector<std::byte> message(length);
  read_exact(socket, message, how);
  return message;
}

void write_message(int socket, byte_span message, const settings& how) {
  std::array<std::byte, 4> header{};
  store_big_endian(header.data(), message.size(), header.size());
  const byte_span pieces[] = {header, message};
  try {
    os::send_with_fds(socket, std::span<const byte_span>(pieces));
  } catch (const std::system_error& e) {
    throw authentication_error(std::string("the handshake failed: ") + how.peer + " is gone (" +
                               e.what() + ")");
  }
}

}  // namespace

named_digest split_digest(byte_span message) {
  if (message.size() == legacy_challenge || message.size() == md5_size) return {"", message};
  if (!message.empty() && message[0] == std::byte{'{'}) {
    const std::size_t limit = std::min(message.size(), longest_digest_name + 2);
    for (std::size_t at = 1; at < limit; ++at) {
      if (message[at] != std::byte{'}'}) continue;
      std::string name(reinterpret_cast<const char*>(message.data()) + 1, at - 1);
      if (digest_named(name) != nullptr) return {std::move(name), message.subspan(at + 1)};
      break;
    }
  }
  throw authentication_error(
      "unsupported message length, missing digest prefix, or unsupported digest in a handshake "
      "message of " +
      std::to_string(message.size()) + " bytes: '" + printable(message) + "'");
}

std::vector<std::byte> respond(byte_span key, byte_span message, bool legacy_md5) {
  std::string digest = split_digest(message).digest;
  if (digest.empty()) {
    if (!legacy_md5) refuse_md5(settings{.peer = "the peer"}, "challenges with");
    return hmac("md5", key, message);  // the legacy answer: bare, without a prefix
  }
  if (digest == "md5" && !legacy_md5) refuse_md5(settings{.peer = "the peer"}, "challenges with");
  std::vector<std::byte> out;
  const std::string prefix = "{" + digest + "}";
  out.insert(out.end(), as_bytes(prefix).begin(), as_bytes(prefix).end());
  const std::vector<std::byte> mac = hmac(digest, key, message);  // over the whole message
  out.insert(out.end(), mac.begin(), mac.end());
  return out;
}

void verify(byte_span key, byte_span message, byte_span response, bool legacy_md5) {
  named_digest answer = split_digest(response);
  if (answer.digest.empty()) answer.digest = "md5";
  if (answer.digest == "md5" && !legacy_md5)
    refuse_md5(settings{.peer = "the peer"}, "answered with");
  const std::vector<std::byte> expected = hmac(answer.digest, key, message);
  if (expected.size() != answer.payload.size())
    throw authentication_error("expected an HMAC-" + answer.digest + " of " +
                               std::to_string(expected.size()) + " bytes, got " +
                               std::to_string(answer.payload.size()));
  if (CRYPTO_memcmp(expected.data(), answer.payload.data(), expected.size()) != 0)
    throw authentication_error("digest received was wrong: the peer holds another key");
}

void deliver_challenge(int socket, const settings& how) {
  std::vector<std::byte> message;
  const std::string prefix = "{sha256}";
  message.insert(message.end(), as_bytes(prefix).begin(), as_bytes(prefix).end());
  message.resize(prefix.size() + challenge_bytes);
  os::fill_random(std::span(message).subspan(prefix.size()));
  std::vector<std::byte> challenge(as_bytes(challenge_tag).begin(), as_bytes(challenge_tag).end());
  challenge.insert(challenge.end(), message.begin(), message.end());
  write_message(socket, challenge, how);
  const std::vector<std::byte> response = read_message(socket, how);
  try {
    verify(how.key, message, response, how.legacy_md5);
  } catch (const authentication_error& e) {
    try {
      write_message(socket, as_bytes(failure), how);
    } catch (const authentication_error&) {
      // It is gone already; the reason stays the failed answer.
    }
    throw authentication_error(std::string(how.peer) + " failed to authenticate: " + e.what());
  }
  write_message(socket, as_bytes(welcome), how);
}

void answer_challenge(int socket, const settings& how) {
  const std::vector<std::byte> challenge = read_message(socket, how);
  if (!starts_with(challenge, challenge_tag))
    throw authentication_error(std::string("protocol error: expected a challenge from ") +
                               how.peer + ", got '" + printable(challenge) + "'");
  const byte_span message = std::span(challenge).subspan(challenge_tag.size());
  if (message.size() < legacy_challenge)
    throw authentication_error(std::string("the challenge from ") + how.peer +
                               " is too short: " + std::to_string(message.size()) + " bytes");
  std::vector<std::byte> answer;
  try {
    answer = respond(how.key, message, how.legacy_md5);
  } catch (const authentication_error& e) {
    throw authentication_error(std::string("cannot answer ") + how.peer + ": " + e.what());
  }
  write_message(socket, answer, how);
  const std::vector<std::byte> verdict = read_message(socket, how);
  if (verdict.size() != welcome.size() || !starts_with(verdict, welcome))
    throw authentication_error(std::string(how.peer) + " rejected our digest: the keys differ");
}

}  // namespace mp::detail::handshake
