// SPDX-License-Identifier: MIT
// Pool tasks read a manager's list and count words into a manager's dict.
// Python:
//
//   def worker(x):
//       return x * x
//
//   def count_words(counts, line):
//       for word in line.split():
//           counts[word] = counts.get(word, 0) + 1  # a read, then a write
//
//   with Manager() as manager, Pool(2) as pool:
//       print(pool.map(worker, manager.list([1, 2, 3, 4])))  # [1, 4, 9, 16]
//       counts = manager.dict()
//       pool.starmap(count_words, [(counts, line) for line in lines])
//       print(counts)
//
// Python's read-then-write loses counts when two workers meet on one word;
// here d.apply(fn, key) runs fn on the dict inside the server, atomically,
// and `counts[word] += 1` does not compile.
#include <cstddef>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "mp/mp.hpp"

namespace {

int worker(int x) {
  return x * x;
}

// Runs in the server, on the dict itself.
void add_one(std::map<std::string, int>& counts, const std::string& word) {
  ++counts[word];
}

void count_words(mp::dict_proxy<std::string, int> counts, const std::string& line) {
  std::istringstream words(line);
  for (std::string word; words >> word;) counts.apply(add_one, word);
}

}  // namespace

int main() {
  mp::manager manager;
  mp::pool pool(2);

  // Python prints the list pool.map returns: [1, 4, 9, 16].
  const std::vector<int> squares = pool.map(worker, manager.list<int>({1, 2, 3, 4}));
  std::cout << '[';
  for (std::size_t i = 0; i < squares.size(); ++i) std::cout << (i == 0 ? "" : ", ") << squares[i];
  std::cout << "]\n";

  auto counts = manager.dict<std::string, int>();
  std::vector<std::tuple<mp::dict_proxy<std::string, int>, std::string>> tasks;
  for (const char* line : {"the cat sat on the mat", "the dog ate the bone", "a cat and a dog"})
    tasks.emplace_back(counts, line);
  pool.starmap(count_words, tasks, 1);  // one line per task
  std::cout << counts << '\n';          // a std::map: sorted by key

  if (counts.at("the") != 4 || counts.size() != 10) {
    std::cerr << "manager_pool_map: counts were lost\n";
    return 1;
  }
}
