// SPDX-License-Identifier: MIT
// Fuzzes what a consumer reads from a queue's shared memory: the input is
// written over the first segment's records and the start of the segment after
// it (its header included), as a broken or hostile process sharing the queue
// could write them, and then taken with get() until the queue says it is empty.
// Anything but items, mp::decode_error or an empty queue is a bug: no read
// outside the queue, no endless loop, no crash.
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "mp/queues.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2 || size > 65536) return 0;
  using mp::detail::queue_core;
  using item = std::vector<std::string>;
  queue_core queue(mp::type_fingerprint<item>, 0);
  // The first two bytes say how much of the rest goes over the first segment;
  // what remains goes over the second.
  const std::size_t split = std::min<std::size_t>(size - 2, data[0] | (data[1] << 8));
  std::byte* memory = queue.memory_for_testing();
  std::memcpy(memory + queue_core::first_record, data + 2, split);
  std::memcpy(memory + 2 * queue_core::first_segment, data + 2 + split, size - 2 - split);
  for (int i = 0; i < 64; ++i) {
    std::optional<item> out;
    try {
      if (!queue.get(&out, &mp::detail::decode_item<item>, false, {})) break;
    } catch (const mp::decode_error&) {
    }
  }
  return 0;
}
