// expect: the callable cannot be called with these arguments
#include <mp/process.hpp>

void greet(int times) {
  static_cast<void>(times);
}

int main() {
  mp::process p{greet, 1, 2};
  p.start();
  p.join();
}
