// SPDX-License-Identifier: MIT
// Install-consumer check of mp::mpi: run under mpirun with two ranks or more, it exits 0 only
// if rank 0's executor ran tasks on the other ranks and got their results back, through an
// installed mp (linked by CMake's mp::mpi or by pkg-config's mp-mpi).
#include <mp/mpi.hpp>

#include <cstdint>
#include <iostream>
#include <vector>

namespace {

std::int64_t square(std::int64_t x) {
  return x * x;
}

}  // namespace

int main(int argc, char** argv) {
  mp::mpi::session mpi(argc, argv);  // the other ranks serve here, then exit
  mp::mpi::pool_executor executor;
  std::int64_t sum = 0;
  std::vector<mp::future<std::int64_t>> futures;
  for (std::int64_t i = 0; i < 100; ++i) futures.push_back(executor.submit(square, i));
  for (auto& f : futures) sum += f.result();
  std::cout << "the sum of the squares below 100, from " << mpi.size() - 1
            << " worker rank(s): " << sum << '\n';
  return sum == 328350 ? 0 : 1;
}
