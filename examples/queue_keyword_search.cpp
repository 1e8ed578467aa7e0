// SPDX-License-Identifier: MIT
// Three worker processes search a folder of text files for a keyword: the
// parent puts the file names on an mp::joinable_queue, the workers put each
// match (file, line number) on a results queue and call task_done(), and join()
// tells the parent when every file was searched (the "search files in parallel
// with a JoinableQueue" scenario of Python's tutorials).
#include <stdlib.h>

#include <algorithm>
#include <compare>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mp/mp.hpp"

namespace {

constexpr int workers = 3;
constexpr std::string_view keyword = "queue";
constexpr std::size_t expected_matches = 5;  // in the files write_files() writes

// A struct holding a std::string needs a cereal serialize function to go on a queue.
struct match {
  std::string file;
  int line = 0;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(file, line);
  }
  auto operator<=>(const match&) const = default;
};

// The folder to search, written by the example itself.
void write_files(const std::filesystem::path& folder) {
  const std::vector<std::pair<std::string, std::string>> files{
      {"alpha.txt", "a pipe joins two processes\na queue joins many\n"},
      {"beta.txt", "nothing to see here\n"},
      {"gamma.txt", "put on the queue\nget from the queue\nand join the queue\n"},
      {"delta.txt", "locks\nevents\nsemaphores\nand a joinable queue at the end\n"},
  };
  for (const auto& [name, text] : files) std::ofstream(folder / name) << text;
}

// Python: while True: name = tasks.get(); if name is None: break; ...; tasks.task_done()
void search(mp::joinable_queue<std::optional<std::string>> tasks, mp::queue<match> results,
            const std::string& folder) {
  while (true) {
    const std::optional<std::string> name = tasks.get();
    if (!name) {
      tasks.task_done();
      return;
    }
    std::ifstream in(std::filesystem::path(folder) / *name);
    int number = 0;
    for (std::string line; std::getline(in, line);) {
      ++number;
      if (line.find(keyword) != std::string::npos) results.put({*name, number});
    }
    // After the results are put, so join() returning means they are all on the queue.
    tasks.task_done();
  }
}

}  // namespace

int main() {
  // A new folder with a unique name in the temporary directory; removed at the end.
  std::string folder =
      (std::filesystem::temp_directory_path() / "mp-keyword-search-XXXXXX").string();
  if (::mkdtemp(folder.data()) == nullptr) return 1;
  write_files(folder);

  mp::joinable_queue<std::optional<std::string>> tasks;  // Python: JoinableQueue()
  mp::queue<match> results;
  std::vector<mp::process> processes;
  for (int i = 0; i < workers; ++i) processes.emplace_back(search, tasks, results, folder);
  for (auto& p : processes) p.start();

  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    tasks.put(entry.path().filename().string());
    ++files;
  }
  tasks.join();  // every file searched: each put was matched by a task_done()

  std::vector<match> matches;
  while (std::optional<match> m = results.try_get()) matches.push_back(std::move(*m));
  for (int i = 0; i < workers; ++i) tasks.put(std::nullopt);  // one sentinel per worker
  for (auto& p : processes) p.join();
  std::filesystem::remove_all(folder);

  std::ranges::sort(matches);
  for (const match& m : matches) std::cout << m.file << ':' << m.line << '\n';
  std::cout << matches.size() << " matches for '" << keyword << "' in " << files << " files\n";
  for (auto& p : processes)
    if (p.exitcode() != 0) return 1;
  if (matches.size() != expected_matches) {
    std::cerr << "queue_keyword_search: expected " << expected_matches << " matches\n";
    return 1;
  }
}
