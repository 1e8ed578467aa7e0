// SPDX-License-Identifier: MIT
// Built twice, as two different programs (MP_TEST_VARIANT differs), and run
// by CTest as one MPI job of both (mpirun -n 1 first : -n 1 second): the
// session must refuse it on rank 0 with an mp::mpi::mpi_error naming rank 1
// and both build-ids, since tasks name their functions by the build-id.
#include <cstdio>

#include "mp/mpi.hpp"

int main(int argc, char** argv) {
  try {
    mp::mpi::session mpi(argc, argv);
    std::printf("variant %d: the session started\n", MP_TEST_VARIANT);
  } catch (const mp::mpi::mpi_error& e) {
    std::printf("refused: %s\n", e.what());
  }
  return 0;
}
