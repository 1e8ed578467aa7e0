// SPDX-License-Identifier: MIT
// main() of every mp test binary (target mp_testing_main); see mp::testing::test_main().
#include "mp/testing/testing.hpp"

int main(int argc, char** argv) {
  return mp::testing::test_main(argc, argv);
}
