// SPDX-License-Identifier: MIT
// The Boost.Interprocess side of the queue scenarios: boost::interprocess::message_queue, the
// C++ library most like mp::queue (a named queue of byte messages in shared memory, between
// processes). Mirrors mp_side's and mp_floor's queue modes.
// Usage: boost_side <mode> [rounds]
//   queue8      a forked child send()s 8-byte messages, the parent receive()s
//               them; millions of messages per second (timed messages)
//   queue4k     the same with 4096-byte messages (the first 8 bytes a sequence number)
//   queue-mpmc  four producer and four consumer children on one queue of 8-byte
//               messages; rounds = messages in all; millions per second, all
//               consumers together
//   queue-rt    the parent sends into q1, a child receives and sends into q2,
//               the parent receives; median round trip µs
// Each mode first runs rounds/10 (at least 1) untimed warm-up rounds. A message_queue is
// bounded: each holds 1 MiB of messages (131072 of 8 bytes, 256 of 4 KiB), as the floor's rings.
//
// A message_queue lives under a name in /dev/shm until removed. Names here are unique per
// process; each is removed before it is created (a stale one from a reused pid), when its
// owner goes out of scope (also when an exception passes), and by SIGINT, SIGTERM or SIGHUP.
// Children are forked with a parent-death signal, and killed and reaped if the parent fails.
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace bip = boost::interprocess;
using clock_type = std::chrono::steady_clock;

constexpr std::size_t queue_bytes = std::size_t{1} << 20;
constexpr std::size_t item_4k = 4096;
constexpr int mpmc_sides = 4;  // producers, and consumers
constexpr std::uint64_t stop = std::numeric_limits<std::uint64_t>::max();

double microseconds(clock_type::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
      .count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// ---- names ------------------------------------------------------------------

// The /dev/shm names alive now, for the signal handler: it may call only async-signal-safe
// functions, so it unlinks by the POSIX name ("/" + name, as Boost forms it on Linux).
constexpr std::size_t max_names = 4;
constexpr std::size_t name_capacity = 64;
std::array<std::array<char, name_capacity>, max_names> posix_names{};
std::array<std::atomic<bool>, max_names> name_alive{};

extern "C" void remove_names_and_die(int signal) {
  for (std::size_t i = 0; i < max_names; ++i)
    if (name_alive[i].load()) ::shm_unlink(posix_names[i].data());
  ::signal(signal, SIG_DFL);
  ::raise(signal);
}

// A message_queue created under a fresh name, removed when this goes out of scope.
class owned_queue {
 public:
  owned_queue(std::size_t max_messages, std::size_t message_size) {
    static int created = 0;
    name_ = "mp-bench-boost-" + std::to_string(::getpid()) + "-" + std::to_string(created++);
    for (slot_ = 0; slot_ < max_names && name_alive[slot_].load(); ++slot_) {
    }
    if (slot_ == max_names || name_.size() + 2 > name_capacity)
      throw std::logic_error("owned_queue: too many names");
    std::snprintf(posix_names[slot_].data(), name_capacity, "/%s", name_.c_str());
    name_alive[slot_].store(true);
    bip::message_queue::remove(name_.c_str());
    try {
      queue_.emplace(bip::create_only, name_.c_str(), max_messages, message_size);
    } catch (...) {
      release();
      throw;
    }
  }
  owned_queue(const owned_queue&) = delete;
  owned_queue& operator=(const owned_queue&) = delete;
  ~owned_queue() {
    queue_.reset();
    release();
  }

  // A forked child uses the parent's mapping: the queue is MAP_SHARED memory.
  bip::message_queue& operator*() { return *queue_; }
  bip::message_queue* operator->() { return &*queue_; }

 private:
  void release() noexcept {
    bip::message_queue::remove(name_.c_str());
    name_alive[slot_].store(false);
  }

  std::string name_;
  std::size_t slot_ = 0;
  std::optional<bip::message_queue> queue_;
};

// ---- children ---------------------------------------------------------------

// Forked children; any still unreaped when this goes out of scope (an exception in the parent)
// are killed and reaped.
class children {
 public:
  children() = default;
  children(const children&) = delete;
  children& operator=(const children&) = delete;
  ~children() {
    for (const pid_t pid : pids_) ::kill(pid, SIGKILL);
    for (const pid_t pid : pids_) reap(pid);
  }

  // Runs `body` in a new child, which dies with this process.
  template <class Body>
  void start(Body body) {
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(3);
      try {
        body();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "boost_side: child: %s\n", e.what());
        ::_exit(2);
      }
      // No destructors, no atexit handlers: the parent owns the names and the memory.
      ::_exit(0);
    }
    pids_.push_back(pid);
  }

  // Waits for every child; throws if one failed.
  void join() {
    bool failed = false;
    while (!pids_.empty()) {
      failed = reap(pids_.back()) != 0 || failed;
      pids_.pop_back();
    }
    if (failed) throw std::runtime_error("a child failed");
  }

 private:
  static int reap(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
      if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  std::vector<pid_t> pids_;
};

// Memory shared with forked children, for the start line.
template <class T>
class shared {
 public:
  shared() {
    void* at =
        ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (at == MAP_FAILED) throw std::runtime_error("mmap failed");
    object_ = ::new (at) T{};
  }
  shared(const shared&) = delete;
  shared& operator=(const shared&) = delete;
  ~shared() { ::munmap(object_, sizeof(T)); }
  T& operator*() const { return *object_; }
  T* operator->() const { return object_; }

 private:
  T* object_;
};

// ---- scenarios --------------------------------------------------------------

void receive_exactly(bip::message_queue& q, void* into, std::size_t size) {
  bip::message_queue::size_type received = 0;
  unsigned priority = 0;
  q.receive(into, size, received, priority);
  if (received != size) throw std::runtime_error("a message of the wrong size");
}

// queue8 and queue4k: the child sends warmup + rounds messages, the parent receives them and
// times the last `rounds`.
double queue_rate(std::size_t message_size, std::size_t rounds, std::size_t warmup) {
  owned_queue q(queue_bytes / message_size, message_size);
  std::vector<unsigned char> message(message_size, 'x');
  children producer;
  producer.start([&] {
    for (std::uint64_t i = 0; i < warmup + rounds; ++i) {
      std::memcpy(message.data(), &i, sizeof i);
      q->send(message.data(), message_size, 0);
    }
  });
  auto start = clock_type::now();
  for (std::uint64_t i = 0; i < warmup + rounds; ++i) {
    if (i == warmup) start = clock_type::now();
    receive_exactly(*q, message.data(), message_size);
    std::uint64_t got = 0;
    std::memcpy(&got, message.data(), sizeof got);
    if (got != i) throw std::runtime_error("messages out of order");
  }
  const double elapsed_us = microseconds(clock_type::now() - start);
  producer.join();
  return static_cast<double>(rounds) / elapsed_us;
}

struct mpmc_flags {
  alignas(64) std::atomic<int> ready{0};
  std::atomic<int> go{0};
  alignas(64) std::array<std::atomic<std::int64_t>, mpmc_sides> end_ns{};
  std::array<std::atomic<std::uint64_t>, mpmc_sides> received{};
};

void wait_for_go(mpmc_flags& flags) {
  flags.ready.fetch_add(1, std::memory_order_acq_rel);
  while (flags.go.load(std::memory_order_acquire) == 0) ::sched_yield();
}

// As in mp_side: each producer sends rounds/4 (rounded up) messages and then a stop message,
// each consumer receives until it receives a stop message; the clock runs from the start line
// to the last consumer's stop message.
double queue_mpmc(std::size_t rounds, std::size_t warmup) {
  constexpr std::size_t size = sizeof(std::uint64_t);
  owned_queue q(queue_bytes / size, size);
  for (std::uint64_t i = 0; i < warmup; ++i) {
    q->send(&i, size, 0);
    std::uint64_t got = 0;
    receive_exactly(*q, &got, size);
  }
  shared<mpmc_flags> flags;
  const std::size_t per_producer = (rounds + mpmc_sides - 1) / mpmc_sides;
  children all;
  for (std::size_t c = 0; c < mpmc_sides; ++c) {
    all.start([&, c] {
      wait_for_go(*flags);
      std::uint64_t count = 0;
      for (;;) {
        std::uint64_t value = 0;
        receive_exactly(*q, &value, size);
        if (value == stop) break;
        ++count;
      }
      flags->end_ns[c].store(now_ns(), std::memory_order_relaxed);
      flags->received[c].store(count, std::memory_order_release);
    });
  }
  for (int p = 0; p < mpmc_sides; ++p) {
    all.start([&] {
      wait_for_go(*flags);
      for (std::uint64_t i = 0; i < per_producer; ++i) q->send(&i, size, 0);
      q->send(&stop, size, 0);
    });
  }
  while (flags->ready.load(std::memory_order_acquire) < 2 * mpmc_sides) ::sched_yield();
  const std::int64_t start = now_ns();
  flags->go.store(1, std::memory_order_release);
  all.join();
  std::int64_t end = start;
  std::uint64_t total = 0;
  for (std::size_t c = 0; c < mpmc_sides; ++c) {
    end = std::max(end, flags->end_ns[c].load(std::memory_order_relaxed));
    total += flags->received[c].load(std::memory_order_acquire);
  }
  if (total != per_producer * mpmc_sides) throw std::runtime_error("lost a message");
  return static_cast<double>(total) / static_cast<double>(end - start) * 1e3;
}

double queue_roundtrip(std::size_t rounds, std::size_t warmup) {
  constexpr std::size_t size = sizeof(std::uint64_t);
  owned_queue there(queue_bytes / size, size);
  owned_queue back(queue_bytes / size, size);
  children echo;
  echo.start([&] {
    for (std::size_t i = 0; i < warmup + rounds; ++i) {
      std::uint64_t value = 0;
      receive_exactly(*there, &value, size);
      back->send(&value, size, 0);
    }
  });
  std::vector<double> times;
  times.reserve(rounds);
  for (std::uint64_t i = 0; i < warmup + rounds; ++i) {
    std::uint64_t reply = 0;
    const auto start = clock_type::now();
    there->send(&i, size, 0);
    receive_exactly(*back, &reply, size);
    const auto end = clock_type::now();
    if (reply != i) throw std::runtime_error("bad reply");
    if (i >= warmup) times.push_back(microseconds(end - start));
  }
  echo.join();
  return median(std::move(times));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fputs("usage: boost_side queue8|queue4k|queue-mpmc|queue-rt [rounds]\n", stderr);
    return 2;
  }
  const long parsed = argc == 3 ? std::strtol(argv[2], nullptr, 10) : 1000;
  if (parsed < 1) {
    std::fputs("boost_side: rounds must be a positive number\n", stderr);
    return 2;
  }
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) ::signal(signal, remove_names_and_die);
  const auto rounds = static_cast<std::size_t>(parsed);
  const std::size_t warmup = std::max<std::size_t>(rounds / 10, 1);
  const std::string_view mode = argv[1];
  try {
    double result = 0;
    if (mode == "queue8")
      result = queue_rate(sizeof(std::uint64_t), rounds, warmup);
    else if (mode == "queue4k")
      result = queue_rate(item_4k, rounds, warmup);
    else if (mode == "queue-mpmc")
      result = queue_mpmc(rounds, warmup);
    else if (mode == "queue-rt")
      result = queue_roundtrip(rounds, warmup);
    else {
      std::fprintf(stderr, "boost_side: unknown mode '%s'\n", argv[1]);
      return 2;
    }
    std::printf("%.3f\n", result);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "boost_side: %s\n", e.what());
    return 2;
  }
  return 0;
}
