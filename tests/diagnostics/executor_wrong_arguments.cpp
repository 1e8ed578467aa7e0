// expect: the callable cannot be called with these arguments
#include <mp/executor.hpp>

int twice(int x) {
  return 2 * x;
}

int main() {
  mp::process_pool_executor executor(2);
  auto result = executor.submit(twice, "21");
  return result.result();
}
