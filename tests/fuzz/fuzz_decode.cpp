// SPDX-License-Identifier: MIT
// Fuzzes the value codec: the first byte picks a type, the rest is decoded as
// a message of that type (with a valid fingerprint, so decoding goes deep).
// The types include a pool's tasks and results and its in-place chunk decoder,
// and a spawned child's start message.
// Anything but success or mp::decode_error is a bug.
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "mp/pool.hpp"
#include "mp/queues.hpp"
#include "mp/serialization.hpp"
#include "mp/shared_memory.hpp"
#include "mp/sharedctypes.hpp"
#include "mp/synchronize.hpp"
#include "pool_engine.hpp"    // src/, not installed
#include "spawn_message.hpp"  // src/, not installed

namespace {

struct point {
  double x, y;
  int tag;
};

struct record {
  std::string name;
  std::vector<point> points;
  std::optional<std::map<int, std::string>> extra;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(name, points, extra);
  }
};

template <class T>
void decode_as(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> message(8 + size);
  const std::uint64_t fingerprint = mp::type_fingerprint<T>;
  std::memcpy(message.data(), &fingerprint, 8);
  if (size != 0) std::memcpy(message.data() + 8, data, size);
  try {
    static_cast<void>(mp::decode<T>(message));
  } catch (const mp::decode_error&) {
  }
  try {  // the raw bytes too, fingerprint and all
    static_cast<void>(mp::decode<T>(std::as_bytes(std::span(data, size))));
  } catch (const mp::decode_error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t selector = data[0];
  ++data;
  --size;
  switch (selector % 18) {
    case 0:
      decode_as<std::string>(data, size);
      break;
    case 1:
      decode_as<std::vector<std::string>>(data, size);
      break;
    case 2:
      decode_as<std::map<int, std::string>>(data, size);
      break;
    case 3:
      decode_as<std::unordered_map<std::string, std::vector<double>>>(data, size);
      break;
    case 4:
      decode_as<std::variant<int, std::string, std::vector<bool>>>(data, size);
      break;
    case 5:
      decode_as<std::tuple<bool, std::optional<int>, std::set<long>>>(data, size);
      break;
    case 6:
      decode_as<record>(data, size);
      break;
    case 7:
      decode_as<std::vector<record>>(data, size);
      break;
    case 8:
      decode_as<std::vector<std::vector<point>>>(data, size);
      break;
    case 9:
      decode_as<std::pair<std::chrono::nanoseconds, std::string>>(data, size);
      break;
    // What a pool's workers and its thread decode.
    case 10:
      decode_as<mp::detail::pool_task_batch>(data, size);
      break;
    case 11:
      decode_as<mp::detail::pool_result>(data, size);
      break;
    case 12:  // what a spawned child decodes before anything else
      decode_as<mp::detail::spawn_message>(data, size);
      break;
    case 13:  // a primitive names its memory's descriptor, which never comes here
      decode_as<mp::condition>(data, size);
      break;
    case 14:  // likewise a queue
      decode_as<mp::queue<int>>(data, size);
      break;
    case 15:  // and shared values and arrays
      decode_as<std::pair<mp::shared_value<long>, mp::raw_array<double>>>(data, size);
      break;
    case 16:  // shared memory blocks and lists name their descriptor too
      decode_as<std::pair<mp::shared_memory, mp::shareable_list>>(data, size);
      break;
    default: {
      // A map chunk's results, decoded in place: 0 to 7 ints.
      std::vector<int> out(size % 8);
      std::vector<std::byte> message(8 + size);
      const std::uint64_t fingerprint = mp::type_fingerprint<std::vector<int>>;
      std::memcpy(message.data(), &fingerprint, 8);
      if (size != 0) std::memcpy(message.data() + 8, data, size);
      try {
        mp::detail::decode_elements_into<int>(message, out);
      } catch (const mp::decode_error&) {
      }
      break;
    }
  }
  return 0;
}
