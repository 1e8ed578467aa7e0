// SPDX-License-Identifier: MIT
// Keyword search over a folder of text files with pool.map (the homework of
// Python's multiprocessing tutorials): each task searches one file and returns
// the numbers of the lines holding the keyword; the parent prints them per
// file, checks them against a serial search and reports the speedup.
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "mp/mp.hpp"

namespace {

constexpr int files = 6;
constexpr int lines_per_file = 200'000;
constexpr std::string_view keyword = "needle";

std::string file_name(int i) {
  return "notes_" + std::to_string(i) + ".txt";
}

// File i holds the keyword on lines 7 * (i + 1) and 150000 + i.
void write_file(const std::filesystem::path& path, int i) {
  std::ofstream out(path);
  for (int line = 1; line <= lines_per_file; ++line) {
    if (line == 7 * (i + 1) || line == 150'000 + i)
      out << "a line with a needle in the haystack\n";
    else
      out << "line " << line << " of a haystack of plain words and nothing else\n";
  }
}

// The numbers of the lines of folder/name that hold the keyword.
std::vector<int> search(std::string folder, std::string name) {
  std::ifstream in(std::filesystem::path(folder) / name);
  std::vector<int> found;
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.find(keyword) != std::string::npos) found.push_back(number);
  }
  return found;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main() {
  std::string folder = (std::filesystem::temp_directory_path() / "mp-pool-search-XXXXXX").string();
  if (::mkdtemp(folder.data()) == nullptr) return 1;
  std::vector<std::tuple<std::string, std::string>> jobs;
  for (int i = 0; i < files; ++i) {
    write_file(std::filesystem::path(folder) / file_name(i), i);
    jobs.emplace_back(folder, file_name(i));
  }

  auto start = std::chrono::steady_clock::now();
  std::vector<std::vector<int>> serial;
  for (const auto& [dir, name] : jobs) serial.push_back(search(dir, name));
  const double serial_seconds = seconds_since(start);

  mp::pool pool;
  start = std::chrono::steady_clock::now();
  const std::vector<std::vector<int>> found = pool.starmap(search, jobs, 1);
  const double pool_seconds = seconds_since(start);
  std::filesystem::remove_all(folder);

  for (int i = 0; i < files; ++i) {
    std::cout << file_name(i) << ':';
    for (int line : found[static_cast<std::size_t>(i)]) std::cout << ' ' << line;
    std::cout << '\n';
  }
  std::cout << "serial search agrees: " << std::boolalpha << (serial == found) << '\n';
  std::cout << "speedup over serial on " << pool.processes()
            << " workers: " << serial_seconds / pool_seconds << "x\n";
  return serial == found ? 0 : 1;
}
