// expect: #include <mp/serialization.hpp>
// The codec's support for std::map comes with <mp/serialization.hpp> (or <mp/mp.hpp>).
#include <map>
#include <mp/connection.hpp>
#include <string>

int main() {
  auto [a, b] = mp::pipe();
  a.send(std::map<std::string, int>{{"one", 1}});
}
