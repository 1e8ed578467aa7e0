// expect: a manager's list, dict, value or queue holds values .* cannot cross a process boundary
// A struct holding a std::string is not trivially copyable and has no serialize().
#include <mp/managers.hpp>
#include <string>

struct job {
  std::string name;
  int priority;
};

int main() {
  mp::manager manager;
  auto jobs = manager.list<job>();
  jobs.append(job{"build", 1});
}
