// SPDX-License-Identifier: MIT
// Big-endian integers, as Python's framing writes a message's length (the
// connections of mp::listener and mp::client, and their handshake).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mp::detail {

/// Writes the low `count` bytes of `value` at `to`, most significant first.
inline void store_big_endian(std::byte* to, std::uint64_t value, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i)
    to[count - 1 - i] = static_cast<std::byte>(value >> (8 * i));
}

/// Reads `count` bytes (8 at most) at `from`, most significant first.
inline std::uint64_t load_big_endian(const std::byte* from, std::size_t count) noexcept {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < count; ++i) value = value << 8 | static_cast<std::uint8_t>(from[i]);
  return value;
}

}  // namespace mp::detail
