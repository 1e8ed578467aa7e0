// expect: this argument .* cannot cross a process boundary
#include <mp/pool.hpp>
#include <string>

struct settings {
  std::string path;
  int depth;
};

int count(int base, settings how) {
  return base + how.depth;
}

int main() {
  mp::pool pool(2);
  return pool.apply(count, 1, settings{"/tmp", 2});
}
