// expect: a pool or executor task must be a function, a capture-less lambda
#include <mp/executor.hpp>

int main() {
  int offset = 1;
  mp::process_pool_executor executor(2);
  auto result = executor.submit([offset](int x) { return x + offset; }, 41);
  return result.result();
}
