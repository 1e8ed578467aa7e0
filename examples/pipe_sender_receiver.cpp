// SPDX-License-Identifier: MIT
// Two child processes talking over a one-way pipe: the sender sends a few messages,
// then a sentinel (an empty std::optional, Python's None); the receiver prints them.
#include <cstddef>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mp/mp.hpp"

namespace {

// Both ends must agree on the type: recv<T> checks that the message was sent as a T.
using message = std::optional<std::string>;

void sender(mp::connection out, const std::vector<std::string>& texts) {
  for (const std::string& text : texts) {
    out.send(message{text});
    std::cout << "sent: " << text << '\n';
  }
  out.send(message{});  // the sentinel: nothing more will come
}

void receiver(mp::connection in, std::size_t expected) {
  std::size_t count = 0;
  while (const message m = in.recv<message>()) {
    std::cout << "received: " << *m << '\n';
    ++count;
  }
  std::cout << "received " << count << " messages and the sentinel\n";
  if (count != expected) throw mp::system_exit{1};  // Python's sys.exit(1)
}

}  // namespace

int main() {
  const std::vector<std::string> texts{"hello", "from the sender", "over a pipe"};

  // Python: reader, writer = Pipe(duplex=False)
  auto [reader, writer] = mp::pipe(/*duplex=*/false);
  // Each end moves into the process that uses it; start() then closes it here,
  // so the receiver would see EOF, not hang, if the sender died early.
  mp::process receiving{receiver, std::move(reader), texts.size()};
  mp::process sending{sender, std::move(writer), texts};
  receiving.start();
  sending.start();
  sending.join();
  receiving.join();

  if (sending.exitcode() != 0 || receiving.exitcode() != 0) {
    std::cerr << "pipe_sender_receiver: a child failed\n";
    return 1;
  }
}
