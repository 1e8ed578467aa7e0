// SPDX-License-Identifier: MIT
// What the MPI backend's ranks say to each other, one MPI message each (of
// MPI_BYTE, on the session's own communicator). Every message carries its
// fixed-size header at its *end*, so that the bulk (a task's encoded call, a
// result's encoded value) is received straight into the buffer it is used
// from, and sent straight from the buffer it was encoded into, without a copy
// to put a header in front of it.
//
//   client -> worker rank (an order):
//     body | kind (1) | id (8, little-endian) | slot (4, little-endian)
//       task:     body = the encoded call; id, slot as in the pool's ring
//       engage:   body = the executor's initializer (an encoded bound_call);
//                 id = the tag its executor's messages go on
//       stop:     leave the executor (the rank answers `released`)
//       exit:     the session ends: finalize and exit
//   worker rank -> client (a reply, on the executor's tag):
//     value | fault | fault size (4) | failure (1) | skipped (1) | kind (1) | id (8)
//       result:   a pool_result (id 0: the initializer failed)
//       released: the rank has left the executor
//       alive:    a heartbeat, while the rank serves an executor
//
// Nothing here calls MPI, so the decoders are fuzzed without it
// (tests/fuzz/fuzz_mpi_wire.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <tuple>

#include "mp/detail/byte_buffer.hpp"
#include "mp/detail/codec.hpp"
#include "mp/errors.hpp"
#include "pool_engine.hpp"

namespace mp::detail::mpi_wire {

enum class kind : std::uint8_t {
  task = 1,
  engage = 2,
  stop = 3,
  exit = 4,
  result = 5,
  released = 6,
  alive = 7,
};

inline constexpr std::size_t order_trailer = 1 + 8 + 4;
inline constexpr std::size_t reply_trailer = 4 + 1 + 1 + 1 + 8;

/// An order as a worker rank reads it: `body` points into the message.
struct order {
  kind what{};
  std::uint64_t id = 0;
  std::uint32_t slot = 0;
  std::span<const std::byte> body;
};

/// The trailer of an order, to send after its body.
struct order_tail {
  std::byte bytes[order_trailer];
  order_tail(kind what, std::uint64_t id, std::uint32_t slot) {
    bytes[0] = static_cast<std::byte>(what);
    std::memcpy(bytes + 1, &id, 8);
    std::memcpy(bytes + 9, &slot, 4);
  }
};

/// Reads an order; throws mp::decode_error if it is too short or of no kind
/// a worker takes.
inline order parse_order(std::span<const std::byte> in) {
  if (in.size() < order_trailer)
    throw decode_error("an MPI order of " + std::to_string(in.size()) +
                       " bytes is shorter than its header (" + std::to_string(order_trailer) + ")");
  const std::byte* tail = in.data() + (in.size() - order_trailer);
  const auto code = static_cast<std::uint8_t>(tail[0]);
  if (code < static_cast<std::uint8_t>(kind::task) || code > static_cast<std::uint8_t>(kind::exit))
    throw decode_error("an MPI order names kind " + std::to_string(code) +
                       ", which no worker rank takes");
  order out;
  out.what = static_cast<kind>(code);
  std::memcpy(&out.id, tail + 1, 8);
  std::memcpy(&out.slot, tail + 9, 4);
  out.body = in.first(in.size() - order_trailer);
  return out;
}

using fault_tuple = std::tuple<std::string, std::string, std::int32_t, std::int32_t, std::string>;

/// Appends to `tail` what follows a reply's value: its fault, and the trailer.
inline void put_reply_tail(byte_buffer& tail, kind what, const pool_result& r) {
  tail.clear();
  if (r.failure != task_failure::none)
    encode_into(tail, fault_tuple(r.fault.type, r.fault.message, r.fault.pid, r.fault.code,
                                  r.fault.category));
  const auto fault_size = static_cast<std::uint32_t>(tail.size());
  tail.append(&fault_size, 4);
  const auto failure = static_cast<std::uint8_t>(r.failure);
  const std::uint8_t skipped = r.skipped ? 1 : 0;
  const auto code = static_cast<std::uint8_t>(what);
  tail.append(&failure, 1);
  tail.append(&skipped, 1);
  tail.append(&code, 1);
  tail.append(&r.id, 8);
}

/// Reads the reply that `out.value` holds as it arrived, in place: the rest of
/// `out` from its tail, and `out.value` cut down to the value (no copy).
/// Returns its kind. Throws mp::decode_error for a malformed reply.
inline kind parse_reply(pool_result& out) {
  byte_buffer& in = out.value;
  const std::size_t size = in.size();
  if (size < reply_trailer)
    throw decode_error("an MPI reply of " + std::to_string(size) +
                       " bytes is shorter than its header (" + std::to_string(reply_trailer) + ")");
  const std::byte* tail = in.data() + (size - reply_trailer);
  std::uint32_t fault_size = 0;
  std::memcpy(&fault_size, tail, 4);
  const auto failure = static_cast<std::uint8_t>(tail[4]);
  const auto skipped = static_cast<std::uint8_t>(tail[5]);
  const auto code = static_cast<std::uint8_t>(tail[6]);
  std::memcpy(&out.id, tail + 7, 8);
  if (code < static_cast<std::uint8_t>(kind::result) ||
      code > static_cast<std::uint8_t>(kind::alive))
    throw decode_error("an MPI reply names kind " + std::to_string(code) +
                       ", which no client takes");
  if (failure > static_cast<std::uint8_t>(last_task_failure) || skipped > 1)
    throw decode_error("an MPI reply names failure kind " + std::to_string(failure) + " (skipped " +
                       std::to_string(skipped) + "), which does not exist");
  if (fault_size > size - reply_trailer)
    throw decode_error("an MPI reply's fault of " + std::to_string(fault_size) +
                       " bytes runs past its " + std::to_string(size) + " bytes");
  out.failure = static_cast<task_failure>(failure);
  out.skipped = skipped != 0;
  const std::size_t value_size = size - reply_trailer - fault_size;
  out.fault = {};
  if (fault_size != 0 && out.failure == task_failure::none)
    throw decode_error("an MPI reply carries a fault but says its task did not fail");
  if (fault_size != 0) {
    fault_tuple fault;
    decode_into(std::span<const std::byte>(in.data() + value_size, fault_size), fault);
    out.fault = {std::move(std::get<0>(fault)), std::move(std::get<1>(fault)), std::get<2>(fault),
                 std::get<3>(fault), std::move(std::get<4>(fault))};
  } else if (out.failure != task_failure::none) {
    throw decode_error("an MPI reply says its task failed but carries no fault");
  }
  in.resize(value_size);
  return static_cast<kind>(code);
}

}  // namespace mp::detail::mpi_wire
