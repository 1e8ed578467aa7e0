// expect: the task's result type .* cannot cross a process boundary
#include <mp/pool.hpp>
#include <string>
#include <vector>

struct report {
  std::string name;
  int count;
};

report make_report(int n) {
  return {"n", n};
}

int main() {
  mp::pool pool(2);
  std::vector<int> numbers{1, 2, 3};
  auto reports = pool.map(make_report, numbers);
}
