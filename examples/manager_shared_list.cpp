// SPDX-License-Identifier: MIT
// A child process appends to a list that a manager's server process holds;
// the parent prints it. Python's tutorial:
//
//   def modify_shared_list(shared_list):
//       shared_list.append("Hello")
//       shared_list.append("World")
//
//   with Manager() as manager:
//       shared_list = manager.list()
//       p = Process(target=modify_shared_list, args=(shared_list,))
//       p.start(); p.join()
//       print(shared_list)  # ['Hello', 'World']
#include <iostream>
#include <string>

#include "mp/mp.hpp"

namespace {

// The proxy is a value: the child's copy talks to the same server.
void modify_shared_list(mp::list_proxy<std::string> shared_list) {
  shared_list.append("Hello");
  shared_list.append("World");
}

}  // namespace

int main() {
  mp::manager manager;  // Python: with Manager() as manager: (the destructor shuts it down)
  auto shared_list = manager.list<std::string>();  // typed: a list of strings
  mp::process p(modify_shared_list, shared_list);
  p.start();
  p.join();
  std::cout << shared_list << '\n';  // printed as Python prints a list

  if (p.exitcode() != 0 || shared_list.size() != 2) {
    std::cerr << "manager_shared_list: the child's appends are missing\n";
    return 1;
  }
}
