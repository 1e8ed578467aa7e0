// SPDX-License-Identifier: MIT
// The floor of the MPI side-by-side scenarios: the same work as mp_mpi_side and
// mpi4py.futures, done with bare MPI point-to-point calls, as the lower bound
// the executors are measured against. Run it as they run: `mpiexec -n 3
// mp_mpi_floor <mode> [rounds]`; rank 0 measures and prints one number, ranks
// 1 and 2 are the workers. Modes:
//   submit     rank 0 streams `rounds` one-int messages to the two workers,
//              keeping 64 in flight per worker (the next goes to whichever
//              worker replied); each worker replies with x+1. Prints millions
//              of tasks per second, from the first send to the last reply
//   roundtrip  one int to rank 1 and x+1 back; prints the median round trip
//              in microseconds (rank 2 only waits for the end)
//   map        `rounds` ints in 8 chunks (chunksize: rounds/8, rounded up; 125000
//              for a million), chunk i to worker 1 + i % 2, all sent at once; each
//              worker adds 1 to every int of a chunk and sends it back; rank 0
//              reads every result. A warm-up map, then the median rate of five
//              timed ones; prints millions of items per second
// Each mode first runs rounds/10 (at least 1) untimed warm-up rounds (map: one
// warm-up map), as mp_mpi_side and the Python scripts do.
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  // Tags: work carries tag_work (a chunk: tag_work + its index); tag_stop ends a worker.
  tag_stop = 1,
  tag_work = 2,
  // Messages in flight per worker in `submit`: enough that a worker always has
  // the next one queued, as an executor's dispatcher keeps its workers busy.
  window = 64,
  map_chunks = 8,
  map_timed = 5,
};

static void fail(const char* what) {
  fprintf(stderr, "mp_mpi_floor: %s\n", what);
  MPI_Abort(MPI_COMM_WORLD, 2);
}

static int compare_doubles(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static double median(double* values, size_t n) {
  qsort(values, n, sizeof *values, compare_doubles);
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

static double now_us(void) {
  return MPI_Wtime() * 1e6;
}

// A worker rank, whatever the mode: each message from rank 0 is an array of
// ints (one for a task, a chunk for map), sent back with 1 added to each, under
// the same tag, until tag_stop.
static void serve(void) {
  int* buffer = NULL;
  int capacity = 0;
  for (;;) {
    MPI_Status status;
    MPI_Probe(0, MPI_ANY_TAG, MPI_COMM_WORLD, &status);
    int count = 0;
    MPI_Get_count(&status, MPI_INT, &count);
    if (count > capacity) {
      free(buffer);
      capacity = count;
      buffer = malloc((size_t)capacity * sizeof *buffer);
      if (buffer == NULL) fail("out of memory");
    }
    MPI_Recv(buffer, count, MPI_INT, 0, status.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (status.MPI_TAG == tag_stop) break;
    for (int i = 0; i < count; ++i) buffer[i] += 1;
    MPI_Send(buffer, count, MPI_INT, 0, status.MPI_TAG, MPI_COMM_WORLD);
  }
  free(buffer);
}

// `count` tasks through the window: returns the sum of the replies, which the
// caller checks (replies come from either worker, so not in submission order).
static int64_t stream(int workers, size_t count) {
  size_t sent = 0, received = 0;
  int64_t sum = 0;
  for (int w = 1; w <= workers; ++w)
    for (int k = 0; k < window && sent < count; ++k, ++sent) {
      const int x = (int)sent;
      MPI_Send(&x, 1, MPI_INT, w, tag_work, MPI_COMM_WORLD);
    }
  while (received < count) {
    int reply = 0;
    MPI_Status status;
    MPI_Recv(&reply, 1, MPI_INT, MPI_ANY_SOURCE, tag_work, MPI_COMM_WORLD, &status);
    ++received;
    sum += reply;
    if (sent < count) {
      const int x = (int)sent++;
      MPI_Send(&x, 1, MPI_INT, status.MPI_SOURCE, tag_work, MPI_COMM_WORLD);
    }
  }
  return sum;
}

static double submit(int workers, size_t rounds, size_t warmup) {
  const int64_t n = (int64_t)warmup;
  if (stream(workers, warmup) != n * (n + 1) / 2) fail("submit: wrong results");
  const double start = now_us();
  const int64_t sum = stream(workers, rounds);
  const double elapsed_us = now_us() - start;
  const int64_t r = (int64_t)rounds;
  if (sum != r * (r + 1) / 2) fail("submit: wrong results");
  return (double)rounds / elapsed_us;
}

static double roundtrip(size_t rounds, size_t warmup) {
  double* times = malloc(rounds * sizeof *times);
  if (times == NULL) fail("out of memory");
  for (size_t i = 0; i < warmup + rounds; ++i) {
    int x = (int)i;
    const double start = now_us();
    MPI_Send(&x, 1, MPI_INT, 1, tag_work, MPI_COMM_WORLD);
    MPI_Recv(&x, 1, MPI_INT, 1, tag_work, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    const double end = now_us();
    if (x != (int)i + 1) fail("roundtrip: wrong result");
    if (i >= warmup) times[i - warmup] = end - start;
  }
  const double result = median(times, rounds);
  free(times);
  return result;
}

// One map of x+1 over `input`: every chunk sent at once (nonblocking: a chunk
// of 500 KB goes by rendezvous), every result received straight into `output`,
// then read through as a consumer of the results would.
static void map_once(int workers, const int* input, int* output, size_t count) {
  const size_t chunksize = (count + map_chunks - 1) / map_chunks;
  MPI_Request requests[2 * map_chunks];
  int used = 0;
  for (size_t c = 0, at = 0; at < count; ++c, at += chunksize) {
    const int n = (int)(count - at < chunksize ? count - at : chunksize);
    const int worker = 1 + (int)(c % (size_t)workers);
    const int tag = tag_work + (int)c;
    MPI_Irecv(output + at, n, MPI_INT, worker, tag, MPI_COMM_WORLD, &requests[used++]);
    MPI_Isend(input + at, n, MPI_INT, worker, tag, MPI_COMM_WORLD, &requests[used++]);
  }
  MPI_Waitall(used, requests, MPI_STATUSES_IGNORE);
  for (size_t i = 0; i < count; ++i)
    if (output[i] != input[i] + 1) fail("map: wrong results");
}

static double map(int workers, size_t rounds) {
  int* input = malloc(rounds * sizeof *input);
  int* output = malloc(rounds * sizeof *output);
  if (input == NULL || output == NULL) fail("out of memory");
  for (size_t i = 0; i < rounds; ++i) input[i] = (int)i;
  double rates[map_timed];
  for (int i = 0; i <= map_timed; ++i) {
    memset(output, 0, rounds * sizeof *output);
    const double start = now_us();
    map_once(workers, input, output, rounds);
    const double elapsed_us = now_us() - start;
    if (i > 0) rates[i - 1] = (double)rounds / elapsed_us;
  }
  free(input);
  free(output);
  return median(rates, map_timed);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char* mode = argc >= 2 ? argv[1] : "";
  const int known =
      strcmp(mode, "submit") == 0 || strcmp(mode, "roundtrip") == 0 || strcmp(mode, "map") == 0;
  const long parsed = argc == 3 ? strtol(argv[2], NULL, 10) : 1000;
  if (argc < 2 || argc > 3 || !known || parsed < 1 || parsed > 100000000 || size < 2) {
    if (rank == 0)
      fputs("usage: mpiexec -n 3 mp_mpi_floor submit|roundtrip|map [rounds]  (rounds >= 1)\n",
            stderr);
    MPI_Finalize();
    return 2;
  }
  if (rank != 0) {
    serve();
    MPI_Finalize();
    return 0;
  }
  const int workers = size - 1;
  const size_t rounds = (size_t)parsed;
  const size_t warmup = rounds / 10 > 0 ? rounds / 10 : 1;
  double result = 0;
  if (strcmp(mode, "submit") == 0)
    result = submit(workers, rounds, warmup);
  else if (strcmp(mode, "roundtrip") == 0)
    result = roundtrip(rounds, warmup);
  else
    result = map(workers, rounds);
  for (int w = 1; w < size; ++w) MPI_Send(NULL, 0, MPI_INT, w, tag_stop, MPI_COMM_WORLD);
  printf("%.6f\n", result);
  MPI_Finalize();
  return 0;
}
