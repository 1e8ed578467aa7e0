// SPDX-License-Identifier: MIT
// Five processes append lines to one file, each line written in pieces; an
// mp::lock keeps the lines whole ("Synchronization between processes" in
// Python's docs, where the processes print under a Lock).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "mp/mp.hpp"

namespace {

constexpr int writers = 5;
constexpr int lines_each = 200;

void append_lines(mp::lock lock, std::string path, int writer) {
  for (int n = 0; n < lines_each; ++n) {
    std::scoped_lock guard(lock);  // Python: with lock:
    std::FILE* file = std::fopen(path.c_str(), "a");
    if (file == nullptr) throw mp::system_exit{2};
    // Three separate writes: without the lock, other writers' pieces land in between.
    std::fprintf(file, "writer %d ", writer);
    std::fflush(file);
    std::fprintf(file, "line %d ", n);
    std::fflush(file);
    std::fprintf(file, "end\n");
    std::fclose(file);
  }
}

}  // namespace

int main() {
  char path[] = "/tmp/mp-lines-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return 1;
  ::close(fd);

  mp::lock lock;  // copies given to the children share this one lock
  std::vector<mp::process> processes;
  for (int i = 0; i < writers; ++i)
    processes.emplace_back(append_lines, lock, std::string{path}, i);
  for (auto& p : processes) p.start();
  for (auto& p : processes) p.join();

  int lines = 0, torn = 0;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line); ++lines) {
    int writer = 0, n = 0;
    char end[4] = {};
    if (std::sscanf(line.c_str(), "writer %d line %d %3s", &writer, &n, end) != 3 ||
        std::string{end} != "end")
      ++torn;
  }
  std::remove(path);

  std::cout << writers << " processes wrote " << lines << " lines, " << torn << " torn\n";
  for (auto& p : processes)
    if (p.exitcode() != 0) return 1;
  return lines == writers * lines_each && torn == 0 ? 0 : 1;
}
