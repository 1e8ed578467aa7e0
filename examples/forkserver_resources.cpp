// SPDX-License-Identifier: MIT
// The forkserver start method, with resources as task arguments: a pool on
// a fork server's workers fills a shared memory block and reports progress
// on a queue that its tasks receive as arguments. Python's pool refuses a
// queue as a task argument ("Queue objects should only be shared between
// processes through inheritance").
#include <cstdint>
#include <functional>
#include <iostream>
#include <numeric>
#include <span>
#include <vector>

#include "mp/mp.hpp"

namespace {

constexpr std::size_t rows = 8;
constexpr std::size_t row_length = 1000;

// Fills row `row` of the block with row * row_length + column, and says so.
int fill_row(std::size_t row, const mp::shared_memory& block, mp::queue<int> done) {
  auto* cells = reinterpret_cast<std::int64_t*>(block.data());
  for (std::size_t column = 0; column < row_length; ++column)
    cells[row * row_length + column] = static_cast<std::int64_t>(row * row_length + column);
  done.put(static_cast<int>(row));
  return static_cast<int>(row);
}

}  // namespace

int main() {
  auto block = mp::shared_memory::create(rows * row_length * sizeof(std::int64_t));  // anonymous
  mp::queue<int> done;
  mp::pool pool({.processes = 2, .method = mp::start_method::forkserver});
  std::vector<mp::async_result<int>> filled;
  for (std::size_t row = 0; row < rows; ++row)
    filled.push_back(pool.apply_async(fill_row, row, std::ref(block), done));
  for (auto& f : filled) f.get();
  std::cout << "rows filled by the fork server's workers: " << filled.size() << '\n';

  int reported = 0;
  for (std::size_t i = 0; i < rows; ++i) reported += done.get();
  std::cout << "progress reports on the queue: rows 0 to 7, summing to " << reported << '\n';

  const std::span<const std::int64_t> cells(reinterpret_cast<const std::int64_t*>(block.data()),
                                            rows * row_length);
  const std::int64_t total = std::accumulate(cells.begin(), cells.end(), std::int64_t{0});
  const std::int64_t n = static_cast<std::int64_t>(rows * row_length);
  std::cout << "sum of the block: " << total << " (expected " << n * (n - 1) / 2 << ")\n";
  return total == n * (n - 1) / 2 && reported == 28 ? 0 : 1;
}
