// expect: a pool or executor task must be a function, a capture-less lambda
// A lambda that captures cannot be sent to a worker process by name.
#include <mp/pool.hpp>
#include <vector>

int main() {
  int factor = 3;
  mp::pool pool(2);
  std::vector<int> numbers{1, 2, 3};
  auto scaled = pool.map([factor](int x) { return x * factor; }, numbers);
}
