// SPDX-License-Identifier: MIT
// A program whose manager and proxies are alive when it exits: the manager in
// a static, proxies in globals, and a child that inherited them. Run by CTest
// under each start method (the argument), which fails it on any output but its
// results, or if it does not end: the server must stop with the program (its
// parent), and nothing may print or hang on the way out.
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "mp/managers.hpp"
#include "mp/process.hpp"

namespace {

std::unique_ptr<mp::list_proxy<std::string>> kept;

void append_world(mp::list_proxy<std::string> shared) {
  shared.append("World");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fputs("usage: manager_at_exit fork|spawn|forkserver\n", stderr);
    return 2;
  }
  const std::string_view method = argv[1];
  mp::set_start_method(method == "spawn"        ? mp::start_method::spawn
                       : method == "forkserver" ? mp::start_method::forkserver
                                                : mp::start_method::fork);
  static mp::manager manager;
  kept = std::make_unique<mp::list_proxy<std::string>>(manager.list<std::string>({"Hello"}));
  mp::process child(append_world, *kept);
  child.start();
  child.join();
  std::printf("%s\n", kept->str().c_str());
  return 0;
}
