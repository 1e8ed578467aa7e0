// SPDX-License-Identifier: MIT
// The server of "Using a remote manager" in Python's docs: it serves a queue
// under the name "get_queue" over TCP to clients holding the key.
//
//   queue = Queue()
//   class QueueManager(BaseManager): pass
//   QueueManager.register('get_queue', callable=lambda: queue)
//   m = QueueManager(address=('', 50000), authkey=b'abracadabra')
//   m.get_server().serve_forever()
//
//   ./manager_queue_server            serves on 127.0.0.1:50000 until stopped
//   ./manager_queue_client            in another terminal: puts 'hello'
//
//   ./manager_queue_server 0 1 | ./manager_queue_client
//     any free port; the server itself gets one item off the queue, prints
//     it and stops, and the client reads the address from the server
#include <mp/managers.hpp>

#include <iostream>
#include <stop_token>
#include <string>
#include <thread>  // std::jthread

namespace {

mp::manager_options options(int port) {
  return {
      .address = mp::address("127.0.0.1", port), .authkey = mp::key("abracadabra"), .start = false};
}

}  // namespace

int main(int argc, char** argv) {
  const int port = argc > 1 ? std::stoi(argv[1]) : 50000;
  const int items = argc > 2 ? std::stoi(argv[2]) : 0;  // 0: serve until stopped

  mp::manager m(options(port));
  m.register_object<mp::queue_proxy<std::string>>("get_queue");  // made when serving starts
  auto server = m.get_server();  // listening now: for port 0, the port the kernel picked
  std::cout << "serving on " << server.address().to_string() << std::endl;
  if (items == 0) {
    server.serve_forever();
    return 0;
  }

  // Serve on a thread, and be a client of it here, as Python's docs' other
  // client is (`m.connect(); m.get_queue().get()`): the manager that serves
  // is connected to its server already.
  std::jthread serving([&server](std::stop_token stop) { server.serve_forever(stop); });
  const auto queue = m.get<mp::queue_proxy<std::string>>("get_queue");
  for (int i = 0; i < items; ++i) std::cout << "got: " << queue.get() << std::endl;
  serving.request_stop();  // the destructor joins
}
