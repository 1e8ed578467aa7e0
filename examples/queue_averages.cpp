// SPDX-License-Identifier: MIT
// Three processes each average one dataset and put the dataset's index and its
// average on an mp::queue; the parent gathers them, which arrive in any order,
// and prints them in dataset order (the "collect results from several processes
// with a Queue" scenario of Python's tutorials).
#include <cstddef>
#include <iostream>
#include <numeric>
#include <optional>
#include <vector>

#include "mp/mp.hpp"

namespace {

// A trivially copyable struct goes on a queue as it is.
struct average {
  std::size_t dataset;
  double value;
};

void compute_average(mp::queue<average> results, std::size_t dataset,
                     const std::vector<double>& numbers) {
  const double sum = std::accumulate(numbers.begin(), numbers.end(), 0.0);
  results.put({dataset, sum / static_cast<double>(numbers.size())});
}

}  // namespace

int main() {
  const std::vector<std::vector<double>> datasets{
      {1, 2, 3, 4, 5}, {10, 20, 30, 40}, {2.5, 3.5, 4.5}};

  mp::queue<average> results;
  std::vector<mp::process> processes;
  for (std::size_t i = 0; i < datasets.size(); ++i)
    processes.emplace_back(compute_average, results, i, datasets[i]);
  for (auto& p : processes) p.start();

  // The index carried with each result puts it back in its place.
  std::vector<std::optional<double>> averages(datasets.size());
  for (std::size_t n = 0; n < datasets.size(); ++n) {
    const average result = results.get();
    averages.at(result.dataset) = result.value;
  }
  for (auto& p : processes) p.join();

  bool all_ok = true;
  for (std::size_t i = 0; i < averages.size(); ++i) {
    if (!averages[i]) all_ok = false;
    std::cout << "dataset " << i << ": average " << averages[i].value_or(0) << '\n';
  }
  for (auto& p : processes)
    if (p.exitcode() != 0) all_ok = false;
  if (!all_ok) {
    std::cerr << "queue_averages: a result is missing\n";
    return 1;
  }
}
