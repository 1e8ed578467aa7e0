// SPDX-License-Identifier: MIT
// The floor: the side-by-side scenarios done with bare system calls, as the
// lower bound mp is measured against. Usage: mp_floor <mode> [rounds]
//   spawn       fork + _exit(0) + waitpid; prints the median microseconds
//   pingpong    an 8-byte message there and back over a socketpair with a
//               forked child; prints the median round trip in microseconds
//   throughput  the child writes 1 MiB messages with an 8-byte length prefix
//               over a socketpair, the parent reads them; prints GB/s
// Each mode first runs rounds/10 (at least 1) untimed warm-up rounds, exactly
// as mp_side and the Python baselines do.
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { message_size = 1 << 20 };

static void die(const char* what) {
  perror(what);
  exit(2);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
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

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fputs("usage: mp_floor spawn|pingpong|throughput [rounds]\n", stderr);
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
  else {
    fprintf(stderr, "unknown mode '%s'\n", argv[1]);
    return 2;
  }
  return 0;
}
