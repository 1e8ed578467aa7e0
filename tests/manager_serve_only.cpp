// SPDX-License-Identifier: MIT
// A program that only serves: it makes a manager's server and no proxies, so
// nothing in it names the server's own types (namespace, queue, locks...). A
// client speaking the manager's protocol asks it for a namespace and a queue;
// the server must know them, whichever objects the static library linked in.
// Run by CTest, which passes it on its output alone.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mp/listener.hpp"
#include "mp/managers.hpp"
#include "mp/process.hpp"

namespace {

// A request in the manager's framing (src/manager_wire.hpp): op (1) | id (8,
// little-endian) | name length (2, little-endian) | name | no payload.
std::vector<std::byte> request(std::uint8_t op, std::uint64_t id, std::string_view name) {
  std::vector<std::byte> out(1 + 8 + 2 + name.size());
  out[0] = std::byte{op};
  std::memcpy(out.data() + 1, &id, 8);
  const auto length = static_cast<std::uint16_t>(name.size());
  std::memcpy(out.data() + 9, &length, 2);
  std::memcpy(out.data() + 11, name.data(), name.size());
  return out;
}

}  // namespace

int main() {
  mp::manager manager({.start = false});
  auto server = manager.get_server();
  std::jthread serving([&server](std::stop_token stop) { server.serve_forever(stop); });

  auto link = mp::client(server.address(),
                         {.authkey = mp::current_process().authkey(), .authenticate = true});
  link.send_bytes(request(10, 1, ""));  // hello, with this process's token
  for (const std::string_view type : {"server_namespace", "server_lock"}) {
    link.send_bytes(request(2, 0, type));  // create, no constructor arguments
    const auto reply = link.recv_bytes();
    if (reply.empty()) return 1;
    const auto status = static_cast<unsigned>(reply[0]);
    const std::string message(reinterpret_cast<const char*>(reply.data()) + 1, reply.size() - 1);
    std::printf("%s: %s\n", std::string(type).c_str(),
                status == 0 ? "ok" : ("refused: " + message).c_str());
  }
  link.close();
  serving.request_stop();
  return 0;
}
