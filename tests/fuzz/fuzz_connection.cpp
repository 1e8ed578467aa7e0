// SPDX-License-Identifier: MIT
// Fuzzes connection framing: the input is written raw into one end of a pipe,
// the other end receives until EOF. The first byte picks how it receives.
// Anything but messages or mp::process_error (EOF, decode errors, bad lengths,
// after which the connection may have closed itself) is a bug.
#include <unistd.h>

#include <string>
#include <vector>

#include "mp/connection.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0 || size > 60000) return 0;  // stay under the socket buffer
  auto [reader, writer] = mp::pipe(false);
  const std::uint8_t mode = data[0];
  if (::write(writer.fileno(), data + 1, size - 1) != static_cast<ssize_t>(size - 1)) return 0;
  writer.close();
  std::vector<std::byte> buffer(64);
  for (int i = 0; i < 1000 && !reader.closed(); ++i) {
    try {
      switch (mode % 4) {
        case 0:
          static_cast<void>(reader.recv_bytes());
          break;
        case 1:
          static_cast<void>(reader.recv_bytes(100));
          break;
        case 2:
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
  return 0;
}
