// SPDX-License-Identifier: MIT
// The floor: the side-by-side scenarios done with bare system calls, as the
// lower bound mp is measured against. Usage: mp_floor <mode> [rounds]
//   spawn        fork + _exit(0) + waitpid; prints the median microseconds
//   pingpong     an 8-byte message there and back over a socketpair with a
//                forked child; prints the median round trip in microseconds
//   throughput   the child writes 1 MiB messages with an 8-byte length prefix
//                over a socketpair, the parent reads them; prints GB/s
//   lock         uncontended acquire + release of a bare futex lock (Drepper's
//                three-state mutex) in MAP_SHARED memory; rounds are batches
//                of 1000 pairs; prints the median nanoseconds per pair
//   lock-robust  the same with a process-shared robust pthread mutex
//   increments   the parent and a forked child each add 1 to one shared
//                counter `rounds` times, each increment under the futex lock;
//                prints the total timed increments per second, in millions
//   event        ping-pong of two processes over two futex-word events: A sets
//                e1 and waits for e2, B waits for e1, clears it and sets e2;
//                prints the median round trip in microseconds
// Each mode first runs rounds/10 (at least 1) untimed warm-up rounds, exactly
// as mp_side and the Python baselines do.
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { message_size = 1 << 20, lock_batch = 1000 };

static void die(const char* what) {
  perror(what);
  exit(2);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int compare_doubles(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static double median(double* values, size_t count) {
  qsort(values, count, sizeof *values, compare_doubles);
  return count % 2 == 1 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

// Reads exactly `size` bytes; returns 0 at EOF before the first byte.
static int read_exactly(int fd, void* into, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t got = read(fd, (char*)into + done, size - done);
    if (got < 0) {
      if (errno == EINTR) continue;
      die("read");
    }
    if (got == 0) {
      if (done == 0) return 0;
      fputs("read: EOF in the middle of a message\n", stderr);
      exit(2);
    }
    done += (size_t)got;
  }
  return 1;
}

static void write_exactly(int fd, const void* from, size_t size) {
  size_t done = 0;
  while (done < size) {
    const ssize_t put = write(fd, (const char*)from + done, size - done);
    if (put < 0) {
      if (errno == EINTR) continue;
      die("write");
    }
    done += (size_t)put;
  }
}

static void wait_child(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) die("waitpid");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fputs("child failed\n", stderr);
    exit(2);
  }
}

static void spawn(size_t rounds, size_t warmup) {
  double* times = malloc(rounds * sizeof *times);
  if (times == NULL) die("malloc");
  for (size_t i = 0; i < warmup + rounds; ++i) {
    const double start = now_us();
    const pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) _exit(0);
    wait_child(pid);
    if (i >= warmup) times[i - warmup] = now_us() - start;
  }
  printf("%.3f\n", median(times, rounds));
  free(times);
}

static void pingpong(size_t rounds, size_t warmup) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) die("socketpair");
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(fds[0]);
    uint64_t value;
    while (read_exactly(fds[1], &value, sizeof value)) write_exactly(fds[1], &value, sizeof value);
    _exit(0);
  }
  close(fds[1]);
  double* times = malloc(rounds * sizeof *times);
  if (times == NULL) die("malloc");
  for (size_t i = 0; i < warmup + rounds; ++i) {
    uint64_t value = i;
    const double start = now_us();
    write_exactly(fds[0], &value, sizeof value);
    if (!read_exactly(fds[0], &value, sizeof value) || value != i) {
      fputs("pingpong: bad reply\n", stderr);
      exit(2);
    }
    if (i >= warmup) times[i - warmup] = now_us() - start;
  }
  close(fds[0]);
  wait_child(pid);
  printf("%.3f\n", median(times, rounds));
  free(times);
}

static void throughput(size_t rounds, size_t warmup) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) die("socketpair");
  char* buffer = malloc(message_size);
  if (buffer == NULL) die("malloc");
  memset(buffer, 'x', message_size);
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(fds[0]);
    uint64_t header = message_size;
    for (size_t i = 0; i < warmup + rounds; ++i) {
      // Header and payload in one call, as mp's send_bytes does.
      struct iovec iov[2] = {{&header, sizeof header}, {buffer, message_size}};
      size_t left = sizeof header + message_size;
      struct iovec* at = iov;
      int count = 2;
      while (left > 0) {
        ssize_t put = writev(fds[1], at, count);
        if (put < 0) {
          if (errno == EINTR) continue;
          die("writev");
        }
        left -= (size_t)put;
        while (count > 0 && (size_t)put >= at->iov_len) {
          put -= (ssize_t)at->iov_len;
          ++at;
          --count;
        }
        if (count > 0) {
          at->iov_base = (char*)at->iov_base + put;
          at->iov_len -= (size_t)put;
        }
      }
    }
    _exit(0);
  }
  close(fds[1]);
  double start = now_us();
  for (size_t i = 0; i < warmup + rounds; ++i) {
    if (i == warmup) start = now_us();
    uint64_t header = 0;
    if (!read_exactly(fds[0], &header, sizeof header) || header != message_size) {
      fputs("throughput: bad header\n", stderr);
      exit(2);
    }
    read_exactly(fds[0], buffer, message_size);
  }
  const double elapsed_us = now_us() - start;
  close(fds[0]);
  wait_child(pid);
  printf("%.3f\n", (double)rounds * message_size / elapsed_us / 1e3);
  free(buffer);
}

// Memory shared with forked children, as mp's locks and Python's semaphores live in.
static void* map_shared(size_t size) {
  void* at = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (at == MAP_FAILED) die("mmap");
  return at;
}

// Shared futexes (no FUTEX_PRIVATE_FLAG): the words are in memory several processes map.
static void futex_wait(atomic_uint* word, unsigned expected) {
  if (syscall(SYS_futex, word, FUTEX_WAIT, expected, NULL, NULL, 0) < 0 && errno != EAGAIN &&
      errno != EINTR)
    die("futex(FUTEX_WAIT)");
}

static void futex_wake(atomic_uint* word, int count) {
  if (syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0) < 0) die("futex(FUTEX_WAKE)");
}

// The classic futex mutex ("Futexes Are Tricky", mutex 3): 0 free, 1 held, 2 held and
// someone may sleep. No spinning, no owner, no holder-death detection.
static void futex_lock(atomic_uint* word) {
  unsigned c = 0;
  if (atomic_compare_exchange_strong_explicit(word, &c, 1, memory_order_acquire,
                                              memory_order_relaxed))
    return;
  if (c != 2) c = atomic_exchange_explicit(word, 2, memory_order_acquire);
  while (c != 0) {
    futex_wait(word, 2);
    c = atomic_exchange_explicit(word, 2, memory_order_acquire);
  }
}

static void futex_unlock(atomic_uint* word) {
  if (atomic_exchange_explicit(word, 0, memory_order_release) == 2) futex_wake(word, 1);
}

static void lock(size_t rounds, size_t warmup) {
  atomic_uint* word = map_shared(sizeof *word);
  double* times = malloc(rounds * sizeof *times);
  if (times == NULL) die("malloc");
  for (size_t i = 0; i < warmup + rounds; ++i) {
    const int64_t start = now_ns();
    for (int j = 0; j < lock_batch; ++j) {
      futex_lock(word);
      futex_unlock(word);
    }
    if (i >= warmup) times[i - warmup] = (double)(now_ns() - start) / lock_batch;
  }
  printf("%.3f\n", median(times, rounds));
  free(times);
}

static void lock_robust(size_t rounds, size_t warmup) {
  pthread_mutex_t* mutex = map_shared(sizeof *mutex);
  pthread_mutexattr_t attributes;
  if (pthread_mutexattr_init(&attributes) != 0 ||
      pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED) != 0 ||
      pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST) != 0 ||
      pthread_mutex_init(mutex, &attributes) != 0) {
    fputs("pthread_mutex_init failed\n", stderr);
    exit(2);
  }
  pthread_mutexattr_destroy(&attributes);
  double* times = malloc(rounds * sizeof *times);
  if (times == NULL) die("malloc");
  for (size_t i = 0; i < warmup + rounds; ++i) {
    const int64_t start = now_ns();
    for (int j = 0; j < lock_batch; ++j) {
      if (pthread_mutex_lock(mutex) != 0) {
        fputs("pthread_mutex_lock failed\n", stderr);
        exit(2);
      }
      pthread_mutex_unlock(mutex);
    }
    if (i >= warmup) times[i - warmup] = (double)(now_ns() - start) / lock_batch;
  }
  printf("%.3f\n", median(times, rounds));
  free(times);
}

struct counter {
  atomic_uint lock;  // the counter beside its lock, in one cache line
  long value;
  _Alignas(64) atomic_int ready;  // the start line, away from the counter's cache line
  atomic_int go;
  _Atomic int64_t child_end_ns;
};

static void add(struct counter* c, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    futex_lock(&c->lock);
    ++c->value;
    futex_unlock(&c->lock);
  }
}

// The two lowest CPUs this process may use, in cpus[0] and cpus[1]; false if it has only one.
static int two_cpus(size_t cpus[2]) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) die("sched_getaffinity");
  int found = 0;
  for (size_t cpu = 0; cpu < CPU_SETSIZE && found < 2; ++cpu)
    if (CPU_ISSET(cpu, &set)) cpus[found++] = cpu;
  return found == 2;
}

static void pin(size_t cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

static void increments(size_t rounds, size_t warmup) {
  struct counter* c = map_shared(sizeof *c);
  // Each process on its own CPU, so that they contend (left alone, the scheduler often keeps
  // the child on its parent's CPU for the whole run, and the increments run one after another).
  size_t cpus[2];
  const int spread = two_cpus(cpus);
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    if (spread) pin(cpus[1]);
    add(c, warmup);
    atomic_store_explicit(&c->ready, 1, memory_order_release);
    while (atomic_load_explicit(&c->go, memory_order_acquire) == 0) sched_yield();
    add(c, rounds);
    atomic_store_explicit(&c->child_end_ns, now_ns(), memory_order_release);
    _exit(0);
  }
  if (spread) pin(cpus[0]);
  add(c, warmup);
  while (atomic_load_explicit(&c->ready, memory_order_acquire) == 0) sched_yield();
  const int64_t start = now_ns();
  atomic_store_explicit(&c->go, 1, memory_order_release);
  add(c, rounds);
  int64_t end = now_ns();
  wait_child(pid);
  const int64_t child_end = atomic_load_explicit(&c->child_end_ns, memory_order_acquire);
  if (child_end > end) end = child_end;
  if (c->value != (long)(2 * (warmup + rounds))) {
    fputs("increments: lost an increment\n", stderr);
    exit(2);
  }
  printf("%.3f\n", 2.0 * (double)rounds / (double)(end - start) * 1e3);
}

// An event on one futex word: 0 clear, 1 set, 2 clear and someone may sleep.
static void event_set(atomic_uint* word) {
  if (atomic_exchange_explicit(word, 1, memory_order_release) == 2) futex_wake(word, INT_MAX);
}

static void event_clear(atomic_uint* word) {
  unsigned set = 1;
  atomic_compare_exchange_strong_explicit(word, &set, 0, memory_order_relaxed,
                                          memory_order_relaxed);
}

static void event_wait(atomic_uint* word) {
  for (;;) {
    unsigned c = atomic_load_explicit(word, memory_order_acquire);
    if (c == 1) return;
    if (c == 0 && !atomic_compare_exchange_weak_explicit(word, &c, 2, memory_order_relaxed,
                                                         memory_order_relaxed))
      continue;
    futex_wait(word, 2);
  }
}

static void event(size_t rounds, size_t warmup) {
  atomic_uint* e = map_shared(2 * sizeof *e);  // e[0] is e1, e[1] is e2
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    for (size_t i = 0; i < warmup + rounds; ++i) {
      event_wait(&e[0]);
      event_clear(&e[0]);
      event_set(&e[1]);
    }
    _exit(0);
  }
  double* times = malloc(rounds * sizeof *times);
  if (times == NULL) die("malloc");
  for (size_t i = 0; i < warmup + rounds; ++i) {
    const double start = now_us();
    event_set(&e[0]);
    event_wait(&e[1]);
    event_clear(&e[1]);
    if (i >= warmup) times[i - warmup] = now_us() - start;
  }
  wait_child(pid);
  printf("%.3f\n", median(times, rounds));
  free(times);
}

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fputs("usage: mp_floor spawn|pingpong|throughput|lock|lock-robust|increments|event [rounds]\n",
          stderr);
    return 2;
  }
  const long parsed = argc == 3 ? strtol(argv[2], NULL, 10) : 1000;
  if (parsed < 1) {
    fputs("rounds must be a positive number\n", stderr);
    return 2;
  }
  const size_t rounds = (size_t)parsed;
  const size_t warmup = rounds / 10 > 0 ? rounds / 10 : 1;
  if (strcmp(argv[1], "spawn") == 0)
    spawn(rounds, warmup);
  else if (strcmp(argv[1], "pingpong") == 0)
    pingpong(rounds, warmup);
  else if (strcmp(argv[1], "throughput") == 0)
    throughput(rounds, warmup);
  else if (strcmp(argv[1], "lock") == 0)
    lock(rounds, warmup);
  else if (strcmp(argv[1], "lock-robust") == 0)
    lock_robust(rounds, warmup);
  else if (strcmp(argv[1], "increments") == 0)
    increments(rounds, warmup);
  else if (strcmp(argv[1], "event") == 0)
    event(rounds, warmup);
  else {
    fprintf(stderr, "unknown mode '%s'\n", argv[1]);
    return 2;
  }
  return 0;
}
