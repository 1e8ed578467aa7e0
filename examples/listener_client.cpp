// SPDX-License-Identifier: MIT
// The client of the Python documentation's Listener/Client pair (see
// listener_server.cpp): it connects by address with the key, receives a value,
// raw bytes and an array, and sends work to be done.
//
//   ./listener_client          connects to localhost:6000
//   ./listener_client 7000     to another port
//   ./listener_server 0 1 | ./listener_client
//                              to the address the server prints
#include <unistd.h>

#include <mp/listener.hpp>

#include <array>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

int main(int argc, char** argv) {
  int port = 6000;
  if (argc > 1) {
    port = std::stoi(argv[1]);
  } else if (std::string line; !::isatty(0) && std::getline(std::cin, line)) {
    port = std::stoi(line.substr(line.rfind(':') + 1));  // "listening on 127.0.0.1:43117"
  }
  mp::connection conn = mp::client({"localhost", port}, {.authkey = mp::key("secret password")});

  const auto [number, nothing, junk] =
      conn.recv<std::tuple<double, std::optional<int>, std::string>>();
  std::cout << number << ' ' << (nothing ? "a number" : "none") << ' ' << junk << '\n';

  const mp::bytes hello = conn.recv_bytes();
  std::cout << std::string(reinterpret_cast<const char*>(hello.data()), hello.size()) << '\n';

  std::array<int, 5> array{};  // Python: array('i', [0, 0, 0, 0, 0])
  std::cout << conn.recv_bytes_into(std::as_writable_bytes(std::span(array))) << " bytes:";
  for (const int x : array) std::cout << ' ' << x;
  std::cout << '\n';

  conn.send(std::vector<long>{1, 2, 3, 4, 1000000});
  std::cout << "squares:";
  for (const long x : conn.recv<std::vector<long>>()) std::cout << ' ' << x;
  std::cout << '\n';
}
