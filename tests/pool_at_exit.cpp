// SPDX-License-Identifier: MIT
// A program whose pools are alive when it exits: one in a static, one in a
// global smart pointer, and an executor made in an atexit handler. Run by
// CTest under each start method (the argument), which fails it on any output
// but its results, or if it does not end: the exit handler stops the pools'
// workers, and a pool must then neither start replacements (under spawn and
// forkserver they printed "a different build of the program" / "sent by a
// different binary", or respawned for ever) nor hang.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "mp/executor.hpp"
#include "mp/pool.hpp"

namespace {

int square(int x) {
  return x * x;
}

std::unique_ptr<mp::pool> kept;

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fputs("usage: pool_at_exit fork|spawn|forkserver\n", stderr);
    return 2;
  }
  const std::string_view method = argv[1];
  mp::set_start_method(method == "spawn"        ? mp::start_method::spawn
                       : method == "forkserver" ? mp::start_method::forkserver
                                                : mp::start_method::fork);
  static mp::pool in_static(2);
  std::printf("%d\n", in_static.apply(square, 3));
  kept = std::make_unique<mp::pool>(2);
  std::printf("%d\n", kept->apply(square, 4));
  // Runs before the exit handler that stops the children (registered later).
  std::atexit([] {
    mp::process_pool_executor executor(2);
    std::printf("at exit %d\n", executor.submit(square, 5).result());
  });
  return 0;
}
