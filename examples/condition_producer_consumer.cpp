// SPDX-License-Identifier: MIT
// A producer and a consumer process pass 20 items through a ring buffer of 4
// slots in shared memory, waiting on an mp::condition when it is full or empty
// (the producer-consumer example of Python's threading.Condition docs).
#include <cstddef>
#include <iostream>
#include <mutex>

#include "mp/mp.hpp"

namespace {

constexpr int slots = 4;
constexpr int items = 20;

// The ring buffer: its slots, the oldest item's slot and the number of items,
// all guarded by the condition's lock.
struct ring {
  mp::rlock lock;
  mp::condition changed{lock};              // notified when an item is added or taken
  mp::shared_array<int> slot{slots, lock};  // Python: Array('i', 4, lock=lock)
  mp::raw_value<int> head{0};
  mp::raw_value<int> count{0};
};

std::size_t index(int i) {
  return static_cast<std::size_t>(i % slots);
}

void produce(ring buffer) {
  for (int item = 0; item < items; ++item) {
    std::scoped_lock guard(buffer.changed);  // Python: with cv:
    buffer.changed.wait_for([&] { return buffer.count.get() < slots; });
    buffer.slot[index(buffer.head.get() + buffer.count.get())] = item;
    buffer.count.set(buffer.count.get() + 1);
    buffer.changed.notify_all();
  }
}

void consume(ring buffer, mp::raw_value<int> sum) {
  int total = 0;
  for (int n = 0; n < items; ++n) {
    std::scoped_lock guard(buffer.changed);
    buffer.changed.wait_for([&] { return buffer.count.get() > 0; });
    total += buffer.slot[index(buffer.head.get())];
    buffer.head.set((buffer.head.get() + 1) % slots);
    buffer.count.set(buffer.count.get() - 1);
    buffer.changed.notify_all();
  }
  std::cout << "consumer: the sum of " << items << " items is " << total << '\n';
  sum.set(total);
}

}  // namespace

int main() {
  ring buffer;  // copies handed to the children share the same lock and memory
  mp::raw_value<int> sum{0};
  mp::process producer{produce, buffer};
  mp::process consumer{consume, buffer, sum};
  producer.start();
  consumer.start();
  producer.join();
  consumer.join();

  constexpr int expected = items * (items - 1) / 2;  // 0 + 1 + ... + 19
  if (producer.exitcode() != 0 || consumer.exitcode() != 0 || sum.get() != expected) {
    std::cerr << "condition_producer_consumer: expected the sum " << expected << '\n';
    return 1;
  }
  std::cout << "parent: " << sum.get() << " == 0 + 1 + ... + " << items - 1 << '\n';
}
