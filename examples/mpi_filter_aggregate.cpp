// SPDX-License-Identifier: MIT
// pool_filter_aggregate.cpp on the ranks of an MPI job: `mpirun -n 3
// ./mpi_filter_aggregate` filters and sums one million numbers in chunks of
// 10,000 on ranks 1 and 2. Two lines differ from the local version: the session
// at the top of main, and the pool's type.
#include <cstdint>
#include <iostream>
#include <numeric>
#include <vector>

#include "mp/mpi.hpp"

namespace {

constexpr std::int64_t count = 1'000'000;
constexpr std::int64_t chunk = 10'000;

struct partial {
  std::int64_t kept = 0;
  std::int64_t sum = 0;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(kept, sum);
  }
};

partial filter_and_sum(std::vector<std::int64_t> numbers) {
  partial out;
  for (std::int64_t n : numbers) {
    if (n % 3 == 0 || n % 5 == 0) {
      ++out.kept;
      out.sum += n;
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  mp::mpi::session mpi(argc, argv);  // ranks other than 0 serve the pool here
  std::vector<std::vector<std::int64_t>> chunks;
  for (std::int64_t from = 1; from <= count; from += chunk) {
    std::vector<std::int64_t>& c = chunks.emplace_back(static_cast<std::size_t>(chunk));
    std::iota(c.begin(), c.end(), from);
  }

  mp::mpi::pool pool;  // every other rank of the job is a worker
  const std::vector<partial> partials = pool.map(filter_and_sum, chunks);

  partial total;
  for (const partial& p : partials) {
    total.kept += p.kept;
    total.sum += p.sum;
  }
  std::cout << chunks.size() << " chunks of " << chunk << " numbers\n";
  std::cout << "kept " << total.kept << " multiples of 3 or 5, sum " << total.sum << '\n';

  // The same, serially.
  const partial serial = filter_and_sum([] {
    std::vector<std::int64_t> all(static_cast<std::size_t>(count));
    std::iota(all.begin(), all.end(), 1);
    return all;
  }());
  std::cout << "serial agrees: " << std::boolalpha
            << (serial.kept == total.kept && serial.sum == total.sum) << '\n';
}
