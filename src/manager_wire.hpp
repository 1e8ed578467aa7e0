// SPDX-License-Identifier: MIT
// The manager's protocol, one request and at most one reply per message, in
// Python's framing over an authenticated mp::connection:
//
//   request: op (1 byte) | object or ticket id (8, little-endian) |
//            name length (2, little-endian) | name | payload (the rest)
//   reply:   status (1 byte) | payload
//
// A call's payload is its encoded argument tuple (with the codec's type
// fingerprint, so a wrong type is a decode error, not a misread); its reply's
// is the encoded result. A raised reply carries the exception as a
// remote_fault; a refused one (a malformed request, an unknown object or
// method) the server's message. decref has no reply.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mp/detail/byte_buffer.hpp"

namespace mp::detail::manager_wire {

enum class op : std::uint8_t {
  call = 1,       // id: object; name: method; payload: arguments
  create = 2,     // name: server type; payload: constructor arguments -> id
  incref = 3,     // payload: count (8) and ids (8 each)
  decref = 4,     // id: object; no reply
  ticket = 5,     // id: object -> ticket id, a reference held until claimed
  claim = 6,      // id: ticket; payload: object id (8) -> the reference, now the session's
  get_named = 7,  // name: registered name -> id (8) and server type (the rest)
  count = 8,      // -> number of objects (8)
  shutdown = 9,   // -> ok, then the server stops
  hello = 10,     // id: the client process's token, first on each connection; no reply
};

enum class status : std::uint8_t { ok = 0, raised = 1, refused = 2 };

inline constexpr std::size_t header_size = 1 + 8 + 2;
inline constexpr std::size_t max_name = 65535;

struct request_header {
  op what{};
  std::uint64_t id = 0;
  std::string_view name;
  std::span<const std::byte> payload;
};

inline void put_u64(byte_buffer& out, std::uint64_t value) {
  out.append(&value, sizeof value);
}

inline std::uint64_t get_u64(std::span<const std::byte> in, std::size_t at) {
  std::uint64_t value = 0;
  std::memcpy(&value, in.data() + at, sizeof value);
  return value;
}

/// Starts a request in `out` (cleared); the payload is appended after.
inline void begin_request(byte_buffer& out, op what, std::uint64_t id, std::string_view name) {
  out.clear();
  const auto code = static_cast<std::uint8_t>(what);
  out.append(&code, 1);
  put_u64(out, id);
  const auto length = static_cast<std::uint16_t>(name.size());
  out.append(&length, 2);
  out.append(name.data(), name.size());
}

/// Parses a request; false if it is malformed (too short, a bad op, a name
/// running past the end).
inline bool parse_request(std::span<const std::byte> in, request_header& header) {
  if (in.size() < header_size) return false;
  const auto code = static_cast<std::uint8_t>(in[0]);
  if (code < static_cast<std::uint8_t>(op::call) || code > static_cast<std::uint8_t>(op::hello))
    return false;
  header.what = static_cast<op>(code);
  header.id = get_u64(in, 1);
  std::uint16_t length16 = 0;
  std::memcpy(&length16, in.data() + 9, 2);
  const std::size_t length = length16;
  if (in.size() - header_size < length) return false;
  header.name = std::string_view(reinterpret_cast<const char*>(in.data() + header_size), length);
  header.payload = in.subspan(header_size + length);
  return true;
}

}  // namespace mp::detail::manager_wire
