// expect: the value's type .* cannot cross a process boundary
#include <mp/connection.hpp>
#include <string>

struct point {
  std::string label;
  double x, y;
};

int main() {
  auto [a, b] = mp::pipe();
  a.send(point{"origin", 0, 0});
  auto p = b.recv<point>();
}
