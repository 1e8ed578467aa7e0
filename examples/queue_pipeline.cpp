// SPDX-License-Identifier: MIT
// A three-stage pipeline of processes: fetch sends items over a pipe, process
// squares them and puts them on an mp::queue, save gets them and writes them to
// stdout. Each stage passes a sentinel on when its input ends, so all three stop
// cleanly (the "producer, processor, consumer" pipeline of Python's tutorials).
#include <array>
#include <cstdint>
#include <iostream>
#include <optional>
#include <utility>

#include "mp/mp.hpp"

namespace {

constexpr std::int64_t items = 8;

// An empty optional is the sentinel (Python's None) on the pipe and on the queue.
using item = std::optional<std::int64_t>;

void fetch(mp::connection out) {
  for (std::int64_t i = 1; i <= items; ++i) out.send(item{i});
  out.send(item{});
}

void process_items(mp::connection in, mp::queue<item> out) {
  while (const item i = in.recv<item>()) out.put(*i * *i);
  out.put(std::nullopt);
}

void save(mp::queue<item> in) {
  std::int64_t saved = 0, checksum = 0;
  while (const item i = in.get()) {
    std::cout << "saved " << *i << '\n';
    ++saved;
    checksum += *i;
  }
  std::cout << "saved " << saved << " items, checksum " << checksum << '\n';
  const std::int64_t squares = items * (items + 1) * (2 * items + 1) / 6;  // 1 + 4 + ... + 64
  if (saved != items || checksum != squares) throw mp::system_exit{1};
}

}  // namespace

int main() {
  auto [reader, writer] = mp::pipe(/*duplex=*/false);  // fetch -> process
  mp::queue<item> processed;                           // process -> save

  mp::process fetching{fetch, std::move(writer)};
  mp::process processing{process_items, std::move(reader), processed};
  mp::process saving{save, processed};
  const std::array stages{&fetching, &processing, &saving};
  for (mp::process* stage : stages) stage->start();
  for (mp::process* stage : stages) stage->join();

  for (const mp::process* stage : stages) {
    if (stage->exitcode() != 0) {
      std::cerr << "queue_pipeline: " << stage->name() << " failed\n";
      return 1;
    }
  }
  std::cout << "all three stages stopped at the sentinel\n";
}
