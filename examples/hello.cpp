// SPDX-License-Identifier: MIT
// Hello from a child process: the first example of Python's multiprocessing docs.
// info() shows which process runs each line, and who its parent is.
#include <iostream>
#include <string>

#include "mp/mp.hpp"

namespace {

// Python prints the module name, os.getppid() and os.getpid(); mp names its
// processes as Python does ("MainProcess", "Process-1", ...), so we print those.
void info(const std::string& title) {
  const mp::process_handle me = mp::current_process();
  std::cout << title << '\n';
  std::cout << "process name: " << me.name() << '\n';
  if (const std::optional<mp::process_handle> parent = mp::parent_process())
    std::cout << "parent process: " << parent->name() << " (pid " << *parent->pid() << ")\n";
  else
    std::cout << "parent process: none\n";  // the main process has no mp parent
  std::cout << "process id: " << *me.pid() << '\n';
}

void f(const std::string& name) {
  info("function f");
  std::cout << "hello " << name << '\n';
}

}  // namespace

int main() {
  info("main line");
  std::cout << '\n';
  mp::process p{f, std::string{"bob"}};  // Python: Process(target=f, args=('bob',))
  p.start();
  p.join();

  if (p.exitcode() != 0) {
    std::cerr << "hello: " << p.name() << " failed\n";
    return 1;
  }
}
