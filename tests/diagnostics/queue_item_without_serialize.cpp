// expect: the queue's item type .* cannot cross a process boundary
// A struct holding a std::string is not trivially copyable and has no serialize().
#include <mp/queues.hpp>
#include <string>

struct job {
  std::string name;
  int priority;
};

int main() {
  mp::queue<job> jobs;
  jobs.put(job{"build", 1});
}
