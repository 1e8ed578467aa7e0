// SPDX-License-Identifier: MIT
// The client of "Using a remote manager" in Python's docs (see
// manager_queue_server.cpp): it connects to the server with the key, gets
// the queue served under "get_queue" and puts 'hello' on it.
//
//   class QueueManager(BaseManager): pass
//   QueueManager.register('get_queue')
//   m = QueueManager(address=('foo.bar.org', 50000), authkey=b'abracadabra')
//   m.connect()
//   queue = m.get_queue()
//   queue.put('hello')
//
//   ./manager_queue_client            connects to 127.0.0.1:50000
//   ./manager_queue_client 7000       to another port
//   ./manager_queue_server 0 1 | ./manager_queue_client
//                                     to the address the server prints
#include <unistd.h>

#include <mp/managers.hpp>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  int port = 50000;
  const bool fed_by_server = argc == 1 && !::isatty(0);
  if (argc > 1) {
    port = std::stoi(argv[1]);
  } else if (std::string line; fed_by_server && std::getline(std::cin, line)) {
    port = std::stoi(line.substr(line.rfind(':') + 1));  // "serving on 127.0.0.1:43117"
  }
  mp::manager m({.address = mp::address("127.0.0.1", port),
                 .authkey = mp::key("abracadabra"),
                 .start = false});
  for (int tries = 0;; ++tries) {  // the server may still be starting
    try {
      m.connect();
      break;
    } catch (const mp::manager_error&) {
      if (tries == 500) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  std::cout << "connected to " << m.address().to_string() << '\n';

  const auto queue = m.get<mp::queue_proxy<std::string>>("get_queue");
  queue.put("hello");
  std::cout << "put 'hello' on the queue\n";

  // Fed by the server: show what it printed after its address.
  if (fed_by_server)
    for (std::string line; std::getline(std::cin, line);) std::cout << "server: " << line << '\n';
}
