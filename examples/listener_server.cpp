// SPDX-License-Identifier: MIT
// The server of the Python documentation's Listener/Client pair: it accepts
// clients over TCP that hold the key, sends each a value, raw bytes and an
// array, then does the work it is sent (squaring numbers) until it leaves.
//
//   ./listener_server          listens on localhost:6000, as in Python's docs
//   ./listener_client          in another terminal (or on another machine)
//
//   ./listener_server 0 1 | ./listener_client
//     any free port, one client, which reads the address from the server
//
// A client with another key is refused and the server goes on serving.
#include <mp/listener.hpp>

#include <array>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

int main(int argc, char** argv) {
  const int port = argc > 1 ? std::stoi(argv[1]) : 6000;
  const int clients = argc > 2 ? std::stoi(argv[2]) : 0;  // 0: until stopped
  mp::listener listener({"localhost", port}, {.authkey = mp::key("secret password")});
  std::cout << "listening on " << listener.address().to_string() << std::endl;

  for (int served = 0; clients == 0 || served < clients;) {
    mp::connection conn;
    try {
      conn = listener.accept();
    } catch (const mp::authentication_error& e) {
      std::cerr << "refused a client: " << e.what() << '\n';
      continue;
    }
    ++served;
    std::cerr << "connection accepted from " << listener.last_accepted()->to_string() << '\n';
    // Python sends [2.25, None, 'junk', float]; a typed value here.
    conn.send(std::tuple<double, std::optional<int>, std::string>{2.25, std::nullopt, "junk"});
    conn.send_bytes("hello");
    const std::array<int, 2> numbers{42, 1729};
    conn.send_bytes(std::as_bytes(std::span(numbers)));
    try {
      for (;;) {  // the work: square what comes, until the client closes
        auto work = conn.recv<std::vector<long>>();
        for (long& x : work) x *= x;
        conn.send(work);
      }
    } catch (const mp::eof_error&) {
      std::cerr << "the client left\n";
    }
  }
}
