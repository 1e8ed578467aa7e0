// SPDX-License-Identifier: MIT
// A writer process puts messages on an mp::queue and a reader process gets and
// prints them until a sentinel (Python's None, here an empty std::optional): the
// writer/reader pair of Python's Queue tutorials, and pipe_sender_receiver with a queue.
#include <cstddef>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "mp/mp.hpp"

namespace {

// Every process that uses the queue agrees on its item type.
using message = std::optional<std::string>;

void writer(mp::queue<message> queue, const std::vector<std::string>& texts) {
  for (const std::string& text : texts) queue.put(text);
  queue.put(std::nullopt);  // the sentinel: nothing more will come
}

void reader(mp::queue<message> queue, std::size_t expected) {
  std::size_t count = 0;
  while (const message m = queue.get()) {  // blocks until an item is there
    std::cout << "reader got: " << *m << '\n';
    ++count;
  }
  std::cout << "reader got " << count << " messages and the sentinel\n";
  if (count != expected) throw mp::system_exit{1};  // Python's sys.exit(1)
}

}  // namespace

int main() {
  const std::vector<std::string> texts{"hello", "from the writer", "through a queue"};

  mp::queue<message> queue;  // Python: Queue(); copies given to the children share it
  mp::process reading{reader, queue, texts.size()};
  mp::process writing{writer, queue, texts};
  reading.start();
  writing.start();
  // put() has written the item to shared memory when it returns, so the writer
  // may end before the reader took anything: joining it first cannot deadlock.
  writing.join();
  reading.join();

  if (writing.exitcode() != 0 || reading.exitcode() != 0) {
    std::cerr << "queue_writer_reader: a child failed\n";
    return 1;
  }
}
