// SPDX-License-Identifier: MIT
// Fuzzes the decoders of what MPI ranks send each other (src/mpi/mpi_wire.hpp):
// an order as a worker rank reads it, and a reply as the client reads it, in
// place. Each must throw mp::decode_error or decode; what decodes must encode
// back to the same bytes (so no two inputs mean the same, and nothing is read
// but what was there). The decoders call no MPI, so this builds without it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "mpi/mpi_wire.hpp"

namespace {

namespace wire = mp::detail::mpi_wire;

void check_order(std::span<const std::byte> in) {
  wire::order order;
  try {
    order = wire::parse_order(in);
  } catch (const mp::decode_error&) {
    return;
  }
  const wire::order_tail tail(order.what, order.id, order.slot);
  if (order.body.data() != in.data() || order.body.size() + sizeof tail.bytes != in.size() ||
      std::memcmp(in.data() + order.body.size(), tail.bytes, sizeof tail.bytes) != 0)
    std::abort();
}

void check_reply(std::span<const std::byte> in) {
  mp::detail::pool_result result;
  result.value.append(in.data(), in.size());
  wire::kind what{};
  try {
    what = wire::parse_reply(result);
  } catch (const mp::decode_error&) {
    return;
  }
  mp::detail::byte_buffer tail;
  wire::put_reply_tail(tail, what, result);
  if (result.value.size() + tail.size() != in.size() ||
      std::memcmp(in.data(), result.value.data(), result.value.size()) != 0 ||
      std::memcmp(in.data() + result.value.size(), tail.data(), tail.size()) != 0)
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  check_order(in);
  check_reply(in);
  return 0;
}
