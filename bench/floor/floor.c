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
//   queue8       a forked child puts 8-byte records into a bare single-producer
//                single-consumer ring in MAP_SHARED memory (futex sleep when
//                empty or full, after a short spin), the parent takes them;
//                prints millions of records per second
//   queue4k      the same with 4 KiB records
//   queue-mpmc   four producers and four consumers on one bounded ring of
//                8-byte records under the futex lock (rounds = records in all);
//                prints millions of records per second, all consumers together
//   queue-big    memcpy of 64 MiB within one process; prints GB/s
//   queue-rt     an 8-byte record there and back through two bare rings with
//                a forked child; prints the median round trip in microseconds
//   tcp-connect  connect to a forked child's TCP listener on loopback (TCP_NODELAY),
//                an 8-byte message there and back, close; prints the median
//                microseconds of the whole (the floor of connect + authenticate +
//                one round trip: no authentication)
//   tcp-rt       an 8-byte message there and back over one TCP connection on
//                loopback (TCP_NODELAY) with a forked child; median round trip µs
// Each mode first runs rounds/10 (at least 1) untimed warm-up rounds, exactly
// as mp_side and the Python baselines do.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
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

/* fork + waitpid; the child runs `program` with "noop" if it is not NULL, else
   exits at once. Prints the median microseconds. */
static void start_and_wait(const char* program, size_t rounds, size_t warmup) {
  double* times = malloc(rounds * sizeof *times);
  if (times == NULL) die("malloc");
  for (size_t i = 0; i < warmup + rounds; ++i) {
    const double start = now_us();
    const pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      if (program != NULL) execl(program, "mp_side", "noop", (char*)NULL);
      _exit(program != NULL ? 127 : 0);
    }
    wait_child(pid);
    if (i >= warmup) times[i - warmup] = now_us() - start;
  }
  printf("%.3f\n", median(times, rounds));
  free(times);
}

static void spawn(size_t rounds, size_t warmup) {
  start_and_wait(NULL, rounds, warmup);
}

/* fork + exec of mp_side (beside this program) with "noop", which exits at
   once: the floor of a start method that runs a fresh copy of the program. */
static void exec_side(size_t rounds, size_t warmup) {
  char path[4096];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
  if (n < 0) die("readlink");
  path[n] = '\0';
  char* slash = strrchr(path, '/');
  if (slash == NULL) die("no directory in /proc/self/exe");
  strcpy(slash + 1, "mp_side");
  start_and_wait(path, rounds, warmup);
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

// ---- queues -------------------------------------------------------------------------------
//
// The queue scenarios' floor: a bare single-producer single-consumer ring of fixed-size records
// in MAP_SHARED memory, mapped before fork. The producer owns `tail` (records written), the
// consumer `head` (records taken); each keeps a private copy of the other's counter and reloads
// it only when the ring looks full or empty. A side that finds nothing to do spins for 5 µs,
// then sleeps on a futex word that the other side bumps when it sees a sleeper; looking for one
// costs the other side one atomic read-modify-write per record, as in mp's queue. No locks, no
// framing, no serialisation: a record is one memcpy in and one out.

// How long a side that finds nothing to do spins before it sleeps: a few microseconds, what mp's
// queue header promises. A time, not a count of pauses, because a pause lasts very differently
// from one core to another (25 ns on the Zen 4 of the reference VM, about 140 cycles on Skylake,
// a few cycles on some older cores).
#define SPIN_NS 5000

enum {
  ring_bytes = 1 << 20,  // each ring holds 1 MiB of records (131072 of 8 bytes, 256 of 4 KiB)
  record_4k = 4096,
  mpmc_sides = 4,  // producers, and consumers
};
#define BIG_ITEM ((size_t)64 << 20)
#define STOP UINT64_MAX

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// A counter that the other side may wait on: `signal` is the futex word; `sleepers` is set by
// a side about to sleep, and cleared by the owner of the counter, who then bumps `signal` and
// wakes them all. Clearing it means one FUTEX_WAKE per sleep, not one per record until the
// woken side gets to run.
struct waitable {
  _Alignas(64) _Atomic uint64_t count;
  atomic_uint signal;
  atomic_uint sleepers;
};

static void wake_sleepers(struct waitable* w) {
  // A read-modify-write, so that it is ordered against the sleeper's own: either the sleeper
  // sees the new count, or this sees the sleeper.
  if (atomic_exchange_explicit(&w->sleepers, 0, memory_order_acq_rel) == 0) return;
  atomic_fetch_add_explicit(&w->signal, 1, memory_order_release);
  futex_wake(&w->signal, INT_MAX);
}

// Waits until w->count is no longer `unwanted`; returns the new count.
static uint64_t await_change(struct waitable* w, uint64_t unwanted) {
  const int64_t spin_end = now_ns() + SPIN_NS;
  for (unsigned i = 1;; ++i) {
    const uint64_t now = atomic_load_explicit(&w->count, memory_order_acquire);
    if (now != unwanted) return now;
    cpu_relax();
    if (i % 16 == 0 && now_ns() >= spin_end) break;
  }
  for (;;) {
    const unsigned seen = atomic_load_explicit(&w->signal, memory_order_acquire);
    atomic_exchange_explicit(&w->sleepers, 1, memory_order_acq_rel);
    const uint64_t now = atomic_load_explicit(&w->count, memory_order_acquire);
    if (now != unwanted) return now;
    futex_wait(&w->signal, seen);
  }
}

struct ring {
  struct waitable tail;  // the producer's
  struct waitable head;  // the consumer's
  _Alignas(64) size_t record_size;
  size_t capacity;  // records, a power of two
  // Private to one side each (the producer's copy of head, the consumer's of tail), on lines
  // of their own.
  _Alignas(64) uint64_t producer_head;
  _Alignas(64) uint64_t consumer_tail;
  _Alignas(64) unsigned char records[];
};

static struct ring* ring_new(size_t record_size) {
  struct ring* r = map_shared(sizeof(struct ring) + ring_bytes);
  r->record_size = record_size;
  r->capacity = ring_bytes / record_size;
  return r;
}

static void ring_put(struct ring* r, const void* record) {
  const uint64_t tail = atomic_load_explicit(&r->tail.count, memory_order_relaxed);
  if (tail - r->producer_head == r->capacity) {
    r->producer_head = atomic_load_explicit(&r->head.count, memory_order_acquire);
    if (tail - r->producer_head == r->capacity)
      r->producer_head = await_change(&r->head, tail - r->capacity);
  }
  memcpy(r->records + (tail & (r->capacity - 1)) * r->record_size, record, r->record_size);
  atomic_store_explicit(&r->tail.count, tail + 1, memory_order_release);
  wake_sleepers(&r->tail);
}

static void ring_get(struct ring* r, void* record) {
  const uint64_t head = atomic_load_explicit(&r->head.count, memory_order_relaxed);
  if (r->consumer_tail == head) {
    r->consumer_tail = atomic_load_explicit(&r->tail.count, memory_order_acquire);
    if (r->consumer_tail == head) r->consumer_tail = await_change(&r->tail, head);
  }
  memcpy(record, r->records + (head & (r->capacity - 1)) * r->record_size, r->record_size);
  atomic_store_explicit(&r->head.count, head + 1, memory_order_release);
  wake_sleepers(&r->head);
}

// Forks a child that dies with its parent (so that a failed run leaves no child behind).
static pid_t fork_child(void) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0 && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)) _exit(3);
  return pid;
}

// queue8 and queue4k: the child puts warmup + rounds records, the parent takes them and times
// the last `rounds`. Prints millions of records per second.
static void queue_rate(size_t record_size, size_t rounds, size_t warmup) {
  struct ring* r = ring_new(record_size);
  unsigned char* record = malloc(record_size);
  if (record == NULL) die("malloc");
  memset(record, 'x', record_size);
  const pid_t pid = fork_child();
  if (pid == 0) {
    for (uint64_t i = 0; i < warmup + rounds; ++i) {
      memcpy(record, &i, sizeof i);  // a sequence number, checked by the consumer
      ring_put(r, record);
    }
    _exit(0);
  }
  int64_t start = now_ns();
  for (uint64_t i = 0; i < warmup + rounds; ++i) {
    if (i == warmup) start = now_ns();
    ring_get(r, record);
    uint64_t got;
    memcpy(&got, record, sizeof got);
    if (got != i) {
      fputs("queue: records out of order\n", stderr);
      exit(2);
    }
  }
  const int64_t end = now_ns();
  wait_child(pid);
  printf("%.3f\n", (double)rounds / (double)(end - start) * 1e3);
  free(record);
}

// queue-rt: the parent puts to r1, the child takes from r1 and puts to r2, the parent takes
// from r2. Prints the median round trip in microseconds.
static void queue_roundtrip(size_t rounds, size_t warmup) {
  struct ring* there = ring_new(sizeof(uint64_t));
  struct ring* back = ring_new(sizeof(uint64_t));
  const pid_t pid = fork_child();
  if (pid == 0) {
    for (size_t i = 0; i < warmup + rounds; ++i) {
      uint64_t value;
      ring_get(there, &value);
      ring_put(back, &value);
    }
    _exit(0);
  }
  double* times = malloc(rounds * sizeof *times);
  if (times == NULL) die("malloc");
  for (uint64_t i = 0; i < warmup + rounds; ++i) {
    uint64_t value = i;
    const double start = now_us();
    ring_put(there, &value);
    ring_get(back, &value);
    if (i >= warmup) times[i - warmup] = now_us() - start;
    if (value != i) {
      fputs("queue-rt: bad reply\n", stderr);
      exit(2);
    }
  }
  wait_child(pid);
  printf("%.3f\n", median(times, rounds));
  free(times);
}

// queue-big: the floor is memcpy of 64 MiB within one process, both buffers faulted in first.
// Prints GB/s.
static void queue_big(size_t rounds, size_t warmup) {
  unsigned char* from = malloc(BIG_ITEM);
  unsigned char* to = malloc(BIG_ITEM);
  if (from == NULL || to == NULL) die("malloc");
  memset(from, 'x', BIG_ITEM);
  memset(to, 0, BIG_ITEM);
  int64_t start = now_ns();
  for (size_t i = 0; i < warmup + rounds; ++i) {
    if (i == warmup) start = now_ns();
    from[i % BIG_ITEM] = (unsigned char)i;  // so no two copies are the same work
    memcpy(to, from, BIG_ITEM);
    if (to[i % BIG_ITEM] != (unsigned char)i) {
      fputs("queue-big: bad copy\n", stderr);
      exit(2);
    }
  }
  const int64_t end = now_ns();
  printf("%.3f\n", (double)rounds * (double)BIG_ITEM / (double)(end - start));
  free(from);
  free(to);
}

// queue-mpmc: a bounded ring of 8-byte records under one futex mutex, with a waitable
// "records put" and "records taken" count for sleeping when empty or full.
struct locked_ring {
  _Alignas(64) atomic_uint lock;
  struct waitable put;    // records put
  struct waitable taken;  // records taken
  _Alignas(64) uint64_t records[ring_bytes / sizeof(uint64_t)];
};
enum { locked_capacity = ring_bytes / sizeof(uint64_t) };

static void locked_put(struct locked_ring* r, uint64_t value) {
  for (;;) {
    futex_lock(&r->lock);
    const uint64_t put = atomic_load_explicit(&r->put.count, memory_order_relaxed);
    const uint64_t taken = atomic_load_explicit(&r->taken.count, memory_order_relaxed);
    if (put - taken < locked_capacity) {
      r->records[put % locked_capacity] = value;
      atomic_store_explicit(&r->put.count, put + 1, memory_order_release);
      futex_unlock(&r->lock);
      wake_sleepers(&r->put);
      return;
    }
    futex_unlock(&r->lock);
    await_change(&r->taken, taken);
  }
}

static uint64_t locked_get(struct locked_ring* r) {
  for (;;) {
    futex_lock(&r->lock);
    const uint64_t put = atomic_load_explicit(&r->put.count, memory_order_relaxed);
    const uint64_t taken = atomic_load_explicit(&r->taken.count, memory_order_relaxed);
    if (put != taken) {
      const uint64_t value = r->records[taken % locked_capacity];
      atomic_store_explicit(&r->taken.count, taken + 1, memory_order_release);
      futex_unlock(&r->lock);
      wake_sleepers(&r->taken);
      return value;
    }
    futex_unlock(&r->lock);
    await_change(&r->put, put);
  }
}

// The start line of queue-mpmc, and what the consumers report.
struct mpmc_flags {
  _Alignas(64) atomic_int ready;
  atomic_int go;
  _Alignas(64) _Atomic int64_t end_ns[mpmc_sides];  // when each consumer took its stop record
  _Atomic uint64_t received[mpmc_sides];
};

static void wait_for_go(struct mpmc_flags* f) {
  atomic_fetch_add_explicit(&f->ready, 1, memory_order_acq_rel);
  while (atomic_load_explicit(&f->go, memory_order_acquire) == 0) sched_yield();
}

// Four producers each put rounds/4 (rounded up) records and then a stop record; four consumers
// each take records until they take a stop record. Each producer's stop record follows its
// records, so the last record of all is a stop record, and each consumer takes exactly one.
// The clock runs from the start line to the last consumer's stop record. Prints millions of
// records per second, all consumers together. Warm-up: the parent puts and takes `warmup`
// records before forking.
static void queue_mpmc(size_t rounds, size_t warmup) {
  struct locked_ring* r = map_shared(sizeof *r);
  struct mpmc_flags* f = map_shared(sizeof *f);
  for (size_t i = 0; i < warmup; ++i) {
    locked_put(r, i);
    locked_get(r);
  }
  const size_t per_producer = (rounds + mpmc_sides - 1) / mpmc_sides;
  pid_t children[2 * mpmc_sides];
  for (int c = 0; c < mpmc_sides; ++c) {
    children[c] = fork_child();
    if (children[c] == 0) {
      wait_for_go(f);
      uint64_t count = 0;
      while (locked_get(r) != STOP) ++count;
      atomic_store_explicit(&f->end_ns[c], now_ns(), memory_order_relaxed);
      atomic_store_explicit(&f->received[c], count, memory_order_release);
      _exit(0);
    }
  }
  for (int p = 0; p < mpmc_sides; ++p) {
    children[mpmc_sides + p] = fork_child();
    if (children[mpmc_sides + p] == 0) {
      wait_for_go(f);
      for (size_t i = 0; i < per_producer; ++i) locked_put(r, i);
      locked_put(r, STOP);
      _exit(0);
    }
  }
  while (atomic_load_explicit(&f->ready, memory_order_acquire) < 2 * mpmc_sides) sched_yield();
  const int64_t start = now_ns();
  atomic_store_explicit(&f->go, 1, memory_order_release);
  for (int i = 0; i < 2 * mpmc_sides; ++i) wait_child(children[i]);
  int64_t end = start;
  uint64_t total = 0;
  for (int c = 0; c < mpmc_sides; ++c) {
    const int64_t at = atomic_load_explicit(&f->end_ns[c], memory_order_relaxed);
    if (at > end) end = at;
    total += atomic_load_explicit(&f->received[c], memory_order_acquire);
  }
  if (total != per_producer * mpmc_sides) {
    fputs("queue-mpmc: lost a record\n", stderr);
    exit(2);
  }
  printf("%.3f\n", (double)total / (double)(end - start) * 1e3);
}

/* A TCP listener on 127.0.0.1 with a port picked by the kernel. */
static int tcp_listener(struct sockaddr_in* at) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  memset(at, 0, sizeof *at);
  at->sin_family = AF_INET;
  at->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof *at;
  if (bind(fd, (struct sockaddr*)at, size) < 0) die("bind");
  if (listen(fd, 128) < 0) die("listen");
  if (getsockname(fd, (struct sockaddr*)at, &size) < 0) die("getsockname");
  return fd;
}

static void no_delay(int fd) {
  const int on = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) < 0) die("setsockopt");
}

/* The child's side: echo 8-byte messages on each connection until it closes. */
static void tcp_echo_server(int listener, size_t connections) {
  for (size_t c = 0; c < connections; ++c) {
    const int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) die("accept4");
    no_delay(fd);
    uint64_t value;
    while (read_exactly(fd, &value, sizeof value)) write_exactly(fd, &value, sizeof value);
    close(fd);
  }
  _exit(0);
}

static int tcp_connect(const struct sockaddr_in* at) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  if (connect(fd, (const struct sockaddr*)at, sizeof *at) < 0) die("connect");
  no_delay(fd);
  return fd;
}

static void tcp_connect_rounds(size_t rounds, size_t warmup) {
  struct sockaddr_in at;
  const int listener = tcp_listener(&at);
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) tcp_echo_server(listener, warmup + rounds);
  close(listener);
  double* times = malloc(rounds * sizeof *times);
  if (times == NULL) die("malloc");
  for (size_t i = 0; i < warmup + rounds; ++i) {
    uint64_t value = i;
    const double start = now_us();
    const int fd = tcp_connect(&at);
    write_exactly(fd, &value, sizeof value);
    if (!read_exactly(fd, &value, sizeof value) || value != i) die("tcp-connect: bad reply");
    close(fd);
    if (i >= warmup) times[i - warmup] = now_us() - start;
  }
  wait_child(pid);
  printf("%.3f\n", median(times, rounds));
  free(times);
}

static void tcp_roundtrip(size_t rounds, size_t warmup) {
  struct sockaddr_in at;
  const int listener = tcp_listener(&at);
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) tcp_echo_server(listener, 1);
  close(listener);
  const int fd = tcp_connect(&at);
  double* times = malloc(rounds * sizeof *times);
  if (times == NULL) die("malloc");
  for (size_t i = 0; i < warmup + rounds; ++i) {
    uint64_t value = i;
    const double start = now_us();
    write_exactly(fd, &value, sizeof value);
    if (!read_exactly(fd, &value, sizeof value) || value != i) die("tcp-rt: bad reply");
    if (i >= warmup) times[i - warmup] = now_us() - start;
  }
  close(fd);
  wait_child(pid);
  printf("%.3f\n", median(times, rounds));
  free(times);
}

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fputs(
        "usage: mp_floor "
        "spawn|exec-side|pingpong|throughput|lock|lock-robust|increments|event|queue8|"
        "queue4k|queue-mpmc|queue-big|queue-rt|tcp-connect|tcp-rt [rounds]\n",
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
  else if (strcmp(argv[1], "exec-side") == 0)
    exec_side(rounds, warmup);
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
  else if (strcmp(argv[1], "queue8") == 0)
    queue_rate(sizeof(uint64_t), rounds, warmup);
  else if (strcmp(argv[1], "queue4k") == 0)
    queue_rate(record_4k, rounds, warmup);
  else if (strcmp(argv[1], "queue-mpmc") == 0)
    queue_mpmc(rounds, warmup);
  else if (strcmp(argv[1], "queue-big") == 0)
    queue_big(rounds, warmup);
  else if (strcmp(argv[1], "tcp-connect") == 0)
    tcp_connect_rounds(rounds, warmup);
  else if (strcmp(argv[1], "tcp-rt") == 0)
    tcp_roundtrip(rounds, warmup);
  else if (strcmp(argv[1], "queue-rt") == 0)
    queue_roundtrip(rounds, warmup);
  else {
    fprintf(stderr, "unknown mode '%s'\n", argv[1]);
    return 2;
  }
  return 0;
}
