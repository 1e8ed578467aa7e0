// SPDX-License-Identifier: MIT
// The pool engine's third kind of worker: the ranks of an MPI job
// (include/mp/mpi.hpp, src/pool_engine.hpp).
//
// Rank 0 (the client) runs the program; every other rank waits in its session
// for orders (src/mpi/mpi_wire.hpp). An executor or pool takes some of the
// free ranks, engages each (its initializer, and a tag of its own for what
// its ranks send back), hands them tasks, and at its end releases them for
// the next one. The session's end sends every rank its exit.
//
// Every MPI call of a process goes under one mutex (MPI_THREAD_SERIALIZED is
// all we need of MPI, whatever threads call us), and the client never blocks
// in MPI under it but in a receive it has probed for: tasks go out with
// MPI_Isend, so a rank sending a large result (which waits for our receive)
// is never waiting for us while we wait for it.
#include <mpi.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mp/detail/code_identity.hpp"
#include "mp/mpi.hpp"
#include "mpi_wire.hpp"
#include "pool_engine.hpp"

namespace mp::mpi {
namespace {

namespace wire = mp::detail::mpi_wire;
enum : char { rank_free = 0, rank_held = 1, rank_dead = 2 };
using mp::detail::byte_buffer;
using mp::detail::pool_result;
using mp::detail::task_ring;
using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Tag of the orders that are not an executor's: engage and exit.
constexpr int control_tag = 1;
// An exit order's id, when a rank of the job was lost: leave without MPI_Finalize.
constexpr std::uint64_t exit_without_finalize = 1;
// Tasks this small are copied in front of their trailer (one contiguous send);
// larger ones go from where they are, with the trailer, as one message.
constexpr std::size_t copy_below = 16 * 1024;

std::string error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS)
    return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(length));
}

void check(int code, const char* what) {
  if (code != MPI_SUCCESS)
    throw mpi_error(std::string("mp::mpi: ") + what + " failed: " + error_text(code));
}

struct world_state {
  bool active = false;
  bool initialized_here = false;  // we called MPI_Init, so we finalize
  int rank = 0;
  int size = 1;
  MPI_Comm comm = MPI_COMM_NULL;  // our own duplicate of MPI_COMM_WORLD
  session_options options;
  std::vector<std::string> argv;  // for ranks started by MPI_Comm_spawn
  std::mutex mpi;                 // every MPI call of this process
  std::mutex ranks;               // held, next_tag
  std::vector<char> held;         // by world rank: free, held (by an executor or pool), or dead
  // A rank was taken for dead: MPI_Finalize would wait for it (Open MPI 4.1's
  // finalize fences every rank of the job, and with a dead one it may never
  // end), so the ranks left leave without it.
  std::atomic<bool> lost_rank{false};
  bool finalize = true;  // a worker rank: false once told to leave without it
  int next_tag = 16;
};

world_state& world() {
  static world_state* state = new world_state;  // used until the process ends
  return *state;
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "?";
  return name;
}

// Polls with `probe` until it returns true or `until`: without sleeping while
// there has been traffic within `wait.spin`, then sleeping between polls, at
// first 50 µs, twice as long each time up to `wait.sleep`.
template <class Probe>
bool poll_until(Probe&& probe, clock::time_point until, const polling& wait,
                const std::atomic<clock::rep>& last_activity) {
  std::chrono::microseconds nap =
      std::min<std::chrono::microseconds>(std::chrono::microseconds(50), wait.sleep);
  for (;;) {
    if (probe()) return true;
    const auto now = clock::now();
    if (now >= until) return false;
    const clock::time_point active{clock::duration(last_activity.load(std::memory_order_relaxed))};
    if (now - active < wait.spin) {
      ::sched_yield();
      continue;
    }
    std::this_thread::sleep_for(std::min<clock::duration>(nap, until - now));
    nap = std::min(nap * 2, wait.sleep);
  }
}

void touch(std::atomic<clock::rep>& last_activity) {
  last_activity.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
}

// Waits for `request` (started under the lock, and tested once there),
// taking the lock only to test it: a large transfer does not keep the other
// threads of the process (a rank's heartbeat, a client's submitting threads)
// out of MPI while it goes.
void complete(MPI_Request& request, const char* what) {
  auto& w = world();
  for (;;) {
    {
      std::lock_guard lock(w.mpi);
      int done = 0;
      check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
      if (done != 0) return;
    }
    ::sched_yield();
  }
}

// Receives the next message from `source` (any tag) into `into`, sized to
// it; false at `until`.
bool receive(MPI_Comm comm, int source, int tag, byte_buffer& into, MPI_Status& status,
             clock::time_point until, const polling& wait, std::atomic<clock::rep>& activity) {
  auto& w = world();
  MPI_Request request = MPI_REQUEST_NULL;
  const bool got = poll_until(
      [&] {
        std::lock_guard lock(w.mpi);
        int flag = 0;
        check(MPI_Iprobe(source, tag, comm, &flag, &status), "MPI_Iprobe");
        if (flag == 0) return false;
        int count = 0;
        check(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
        into.clear();
        into.resize(static_cast<std::size_t>(count));
        // The message probed: only this thread receives from that source
        // with that tag.
        check(MPI_Irecv(into.data(), count, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG, comm,
                        &request),
              "MPI_Irecv");
        int done = 0;
        check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
        return true;
      },
      until, wait, activity);
  if (!got) return false;
  complete(request, "MPI_Irecv");
  touch(activity);
  return true;
}

int message_size(std::size_t body, std::size_t tail) {
  if (body > static_cast<std::size_t>(INT_MAX) - tail)
    throw usage_error("mp::mpi: a message of " + std::to_string(body) +
                      " bytes is more than one MPI message carries (2 GiB less a few bytes); "
                      "split the work into smaller tasks");
  return static_cast<int>(body + tail);
}

// A datatype for `body` then `tail` as one message, sent from MPI_BOTTOM.
MPI_Datatype two_parts(std::span<const std::byte> body, std::span<const std::byte> tail) {
  MPI_Aint at[2];
  check(MPI_Get_address(body.data(), &at[0]), "MPI_Get_address");
  check(MPI_Get_address(tail.data(), &at[1]), "MPI_Get_address");
  const int lengths[2] = {static_cast<int>(body.size()), static_cast<int>(tail.size())};
  MPI_Datatype type = MPI_DATATYPE_NULL;
  check(MPI_Type_create_hindexed(2, lengths, at, MPI_BYTE, &type), "MPI_Type_create_hindexed");
  check(MPI_Type_commit(&type), "MPI_Type_commit");
  return type;
}

// ---- A worker rank ----

// Sends a reply, and waits until it has gone (the client always comes to
// receive it).
void send_reply(MPI_Comm comm, int client, int tag, wire::kind what, const pool_result& r,
                byte_buffer& tail) {
  wire::put_reply_tail(tail, what, r);
  const int size = message_size(r.value.size(), tail.size());
  auto& w = world();
  MPI_Request request = MPI_REQUEST_NULL;
  byte_buffer whole;
  {
    std::lock_guard lock(w.mpi);
    if (r.value.size() < copy_below) {
      whole.reserve(static_cast<std::size_t>(size));
      whole.append(r.value.data(), r.value.size());
      whole.append(tail.data(), tail.size());
      check(MPI_Isend(whole.data(), size, MPI_BYTE, client, tag, comm, &request), "MPI_Isend");
    } else {
      MPI_Datatype type = two_parts(r.value.span(), tail.span());
      const int sent = MPI_Isend(MPI_BOTTOM, 1, type, client, tag, comm, &request);
      MPI_Type_free(&type);
      check(sent, "MPI_Isend");
    }
    int done = 0;
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done != 0) return;
  }
  complete(request, "MPI_Isend");
}

// Serves the client at rank `client` of `comm` until it sends exit.
void serve(MPI_Comm comm, int client, const session_options& options) {
  const polling& wait = options.wait;
  std::atomic<clock::rep> activity{0};
  touch(activity);
  task_ring ring{};
  byte_buffer message;
  byte_buffer scratch;
  byte_buffer tail;
  pool_result result;
  MPI_Status status;
  int tag = -1;  // of the executor this rank serves, or none
  // The heartbeat: while an executor holds this rank, a thread of its own
  // says so every options.heartbeat, also while a task runs.
  struct heartbeat {
    std::mutex mutex;
    std::condition_variable changed;
    int tag = -1;  // whom to tell, under the mutex
    bool quit = false;
  } beat;
  std::thread beating;
  if (options.heartbeat.count() > 0)
    beating = std::thread([&] {
      byte_buffer beat_tail;
      const pool_result nothing;
      std::unique_lock lock(beat.mutex);
      try {
        while (!beat.changed.wait_for(lock, options.heartbeat, [&] { return beat.quit; }))
          if (beat.tag >= 0)
            send_reply(comm, client, beat.tag, wire::kind::alive, nothing, beat_tail);
      } catch (const std::exception& e) {
        // MPI failed under us: the client will take this rank for dead.
        std::fprintf(stderr, "mp::mpi: worker rank %d stops its heartbeat: %s\n", world().rank,
                     e.what());
      }
    });
  const auto tell = [&](int to) {
    std::lock_guard lock(beat.mutex);
    beat.tag = to;
  };
  struct stopper {
    heartbeat& b;
    std::thread& t;
    ~stopper() {
      {
        std::lock_guard lock(b.mutex);
        b.quit = true;
      }
      b.changed.notify_all();
      if (t.joinable()) t.join();
    }
  } stop_beating{beat, beating};
  for (;;) {
    (void)receive(comm, client, MPI_ANY_TAG, message, status, clock::time_point::max(), wait,
                  activity);
    const wire::order order = wire::parse_order(message.span());
    switch (order.what) {
      case wire::kind::exit:
        if (order.id == exit_without_finalize) world().finalize = false;
        return;
      case wire::kind::engage: {
        tag = static_cast<int>(order.id);
        tell(tag);
        for (std::uint32_t i = 0; i < task_ring::depth; ++i) ring.slot[i].store(0);
        ring.ready.store(0);
        bound_call initializer;
        try {
          initializer = mp::decode<bound_call>(order.body);
        } catch (...) {
          pool_result failed;
          failed.failure = mp::detail::task_failure::raised;
          mp::detail::capture_fault(failed.fault);
          send_reply(comm, client, tag, wire::kind::result, failed, tail);
          break;
        }
        (void)mp::detail::initialize_worker(initializer, ring, [&](pool_result& failed) {
          send_reply(comm, client, tag, wire::kind::result, failed, tail);
        });
        break;
      }
      case wire::kind::task:
        if (tag < 0) throw decode_error("an MPI task came to a rank no executor engaged");
        if (order.slot < task_ring::depth)
          ring.slot[order.slot].store(task_ring::encode(order.id, task_ring::queued));
        mp::detail::run_task(ring, order.id, order.slot, order.body, nullptr, result, scratch);
        if (result.value.size() > static_cast<std::size_t>(INT_MAX) - 4096) {
          // Too big for one MPI message: the task fails, the rank goes on.
          const std::size_t size = result.value.size();
          result.value.clear();
          result.failure = mp::detail::task_failure::raised;
          result.fault = {};
          try {
            throw usage_error("mp::mpi: the task's result of " + std::to_string(size) +
                              " bytes is more than one MPI message carries (2 GiB less a few "
                              "bytes); return it in parts from smaller tasks");
          } catch (...) {
            mp::detail::capture_fault(result.fault);
          }
        }
        send_reply(comm, client, tag, wire::kind::result, result, tail);
        // One huge task or result does not pin its memory on the rank.
        message.clear();
        message.shrink_if_above(std::size_t{16} << 20);
        scratch.clear();
        scratch.shrink_if_above(std::size_t{16} << 20);
        result.value.clear();
        result.value.shrink_if_above(std::size_t{16} << 20);
        break;
      case wire::kind::stop: {
        if (tag < 0) break;
        tell(-1);  // no heartbeat after `released`
        pool_result released;
        send_reply(comm, client, tag, wire::kind::released, released, tail);
        tag = -1;
        break;
      }
      default:
        throw decode_error("an MPI order of a kind no worker takes");
    }
  }
}

[[noreturn]] void leave(int status) {
  auto& w = world();
  if (w.comm != MPI_COMM_NULL && w.comm != MPI_COMM_WORLD) MPI_Comm_free(&w.comm);
  if (w.initialized_here && w.finalize) MPI_Finalize();
  std::fflush(nullptr);
  std::exit(status);
}

// A worker rank's life, from its session's constructor: serves, then leaves.
[[noreturn]] void worker_main(MPI_Comm comm, int client, bool spawned) {
  auto& w = world();
  int status = 0;
  try {
    serve(comm, client, w.options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp::mpi: worker rank %d on %s: %s\n", w.rank, host_name().c_str(),
                 e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
    status = 1;
  }
  if (spawned) MPI_Comm_disconnect(&comm);
  leave(status);
}

// ---- The client: an executor's ranks ----

class rank_workers;

class rank_site final : public mp::detail::worker_site {
 public:
  rank_site(rank_workers& owner, int rank) : owner_(owner), rank_(rank) {
    ring_.ready.store(1);  // a rank is running already
    heard.store(clock::now().time_since_epoch().count());
  }
  ~rank_site() override;

  task_ring& ring() override { return ring_; }
  bool deliver(const mp::detail::job& task, std::uint32_t slot) override;
  bool alive() override;
  bool stop_now() override { return false; }
  void finish() override;
  void join() override;
  std::string who() override;
  std::string how_it_ended() override;
  bool killed_from_outside() override { return false; }

  // A result of this rank's came in: its next task (if any) starts now.
  void advance() {
    std::lock_guard lock(mutex_);
    if (!outstanding_.empty()) outstanding_.pop_front();
    if (!outstanding_.empty())
      ring_.started[outstanding_.front()].store(clock::now().time_since_epoch().count());
  }
  std::atomic<bool> released{false};
  std::atomic<bool> dead{false};
  std::atomic<clock::rep> heard{0};  // when its last message came

 private:
  rank_workers& owner_;
  int rank_;
  task_ring ring_{};
  std::mutex mutex_;
  std::deque<std::uint32_t> outstanding_;  // slots of the tasks it holds, in order
  bool finished_ = false;
};

class rank_workers final : public mp::detail::worker_backend {
 public:
  rank_workers(MPI_Comm comm, std::vector<int> ranks, int tag, bool spawned, bound_call initializer)
      : comm_(comm), ranks_(std::move(ranks)), tag_(tag), spawned_(spawned) {
    mp::detail::encode_into(initializer_, initializer);
    touch(activity_);
  }

  ~rank_workers() override {
    auto& w = world();
    try {
      // A rank engaged but never released (a pool that failed to start) is
      // told to leave, so it serves the next executor.
      for (const int rank : ranks_)
        if (engaged_.contains(rank) && !released_.contains(rank) && !dead_.contains(rank))
          send_order(rank, tag_, wire::kind::stop, 0, 0, {});
      drain_sends();
      if (spawned_) {
        // Our own ranks: they exit, and the communicator to them goes. A
        // child taken for dead cannot take part in the disconnect.
        for (const int rank : ranks_)
          if (!dead_.contains(rank)) send_order(rank, control_tag, wire::kind::exit, 0, 0, {});
        drain_sends();
        std::lock_guard lock(w.mpi);
        if (dead_.empty())
          MPI_Comm_disconnect(&comm_);
        else
          MPI_Comm_free(&comm_);
        return;
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mp::mpi: while an executor ended: %s\n", e.what());
    }
    if (spawned_) return;
    std::lock_guard lock(w.ranks);
    for (const int rank : ranks_)
      if (w.held[static_cast<std::size_t>(rank)] == rank_held)
        w.held[static_cast<std::size_t>(rank)] = rank_free;
  }

  std::unique_ptr<mp::detail::worker_site> start(std::size_t index) override {
    const int rank = ranks_.at(index);
    auto site = std::make_unique<rank_site>(*this, rank);
    {
      std::lock_guard lock(sites_mutex_);
      sites_[rank] = site.get();
    }
    send_order(rank, control_tag, wire::kind::engage, static_cast<std::uint64_t>(tag_), 0,
               initializer_.span());
    engaged_.insert(rank);  // (the engine's thread, or the constructor's)
    return site;
  }

  bool next_result(pool_result& out, std::chrono::nanoseconds wait) override {
    const auto until = wait.count() <= 0 ? clock::now() : clock::now() + wait;
    for (;;) {
      if (broken_.load()) return false;
      MPI_Status status;
      wire::kind what{};
      try {
        progress_sends();
        if (!receive(comm_, MPI_ANY_SOURCE, tag_, out.value, status, until, world().options.wait,
                     activity_))
          return false;
        what = wire::parse_reply(out);
      } catch (const decode_error& e) {
        // Not from a rank of this program's build (the session checked):
        // said, and dropped.
        std::fprintf(stderr, "mp::mpi: a reply from rank %d dropped: %s\n", status.MPI_SOURCE,
                     e.what());
        continue;
      } catch (const std::exception& e) {
        // MPI itself failed: no rank of this executor can be reached; the
        // engine fails their tasks and the pool is broken.
        std::fprintf(stderr, "mp::mpi: the executor's ranks are lost: %s\n", e.what());
        broken_.store(true);
        return false;
      }
      rank_site* site = nullptr;
      {
        std::lock_guard lock(sites_mutex_);
        const auto found = sites_.find(status.MPI_SOURCE);
        if (found != sites_.end()) site = found->second;
      }
      if (site == nullptr) continue;  // from a rank not (or no longer) this executor's
      site->heard.store(clock::now().time_since_epoch().count());
      if (what == wire::kind::alive) continue;
      if (what == wire::kind::released) {
        site->released.store(true, std::memory_order_release);
        released_.insert(status.MPI_SOURCE);
        continue;
      }
      if (out.id != 0) site->advance();
      return true;
    }
  }

  bool broken() const noexcept { return broken_.load(); }

  bool processes() const override { return true; }
  // A task handed to a rank cannot be taken back once sent: few at a time.
  std::uint32_t depth() const override { return 4; }

  bool replaceable(std::size_t index) override {
    std::lock_guard lock(sites_mutex_);
    return !dead_.contains(ranks_.at(index));
  }

  // Whether a message from `rank` waits to be received; false if MPI cannot say.
  bool pending_from(int rank) noexcept {
    std::lock_guard lock(world().mpi);
    int flag = 0;
    MPI_Status status;
    return MPI_Iprobe(rank, tag_, comm_, &flag, &status) == MPI_SUCCESS && flag != 0;
  }

  void mark_dead(int rank) {
    world().lost_rank.store(true);
    {
      std::lock_guard lock(sites_mutex_);
      dead_.insert(rank);
    }
    {
      // What was on its way to it never arrives: its buffers are kept (MPI
      // may hold them yet) and its requests let go, so nothing waits for them.
      std::lock_guard lock(world().mpi);
      for (std::size_t i = 0; i < sends_.size();) {
        if (sends_[i].rank != rank) {
          ++i;
          continue;
        }
        MPI_Request_free(&sends_[i].request);
        abandoned_.push_back(std::move(sends_[i]));
        std::swap(sends_[i], sends_.back());
        sends_.pop_back();
      }
    }
    if (spawned_) return;
    auto& w = world();
    std::lock_guard lock(w.ranks);
    w.held[static_cast<std::size_t>(rank)] = rank_dead;
  }

  void forget(int rank) {
    std::lock_guard lock(sites_mutex_);
    sites_.erase(rank);
  }

  // Sends an order: `body` then its trailer, as one message, without
  // waiting; `keep` holds the body until it has gone.
  void send_order(int rank, int tag, wire::kind what, std::uint64_t id, std::uint32_t slot,
                  std::span<const std::byte> body,
                  std::shared_ptr<const byte_buffer> keep = nullptr) {
    auto& w = world();
    pending_send send;
    send.rank = rank;
    const wire::order_tail tail(what, id, slot);
    const int size = message_size(body.size(), sizeof tail.bytes);
    std::lock_guard lock(w.mpi);
    if (body.size() < copy_below) {
      send.owned.reserve(static_cast<std::size_t>(size));
      send.owned.append(body.data(), body.size());
      send.owned.append(tail.bytes, sizeof tail.bytes);
      check(MPI_Isend(send.owned.data(), size, MPI_BYTE, rank, tag, comm_, &send.request),
            "MPI_Isend");
    } else {
      send.owned.append(tail.bytes, sizeof tail.bytes);
      send.keep = std::move(keep);
      MPI_Datatype type = two_parts(body, send.owned.span());
      const int sent = MPI_Isend(MPI_BOTTOM, 1, type, rank, tag, comm_, &send.request);
      MPI_Type_free(&type);
      check(sent, "MPI_Isend");
    }
    sends_.push_back(std::move(send));
    touch(activity_);
    progress_sends_locked();
  }

  int tag() const noexcept { return tag_; }

  // Waits until `site`'s rank has left the executor, discarding what else it
  // sends (results of tasks the engine has given up on).
  void wait_released(rank_site& site) {
    pool_result scrap;
    while (!site.released.load(std::memory_order_acquire) && site.alive())
      (void)next_result(scrap, 20ms);
  }

  // Sends not yet complete.
  void drain_sends() {
    while (true) {
      {
        std::lock_guard lock(world().mpi);
        progress_sends_locked();
        if (sends_.empty()) return;
      }
      std::this_thread::yield();
    }
  }

 private:
  struct pending_send {
    int rank = -1;
    MPI_Request request = MPI_REQUEST_NULL;
    byte_buffer owned;  // the trailer, or the whole message
    std::shared_ptr<const byte_buffer> keep;
  };

  void progress_sends() {
    std::lock_guard lock(world().mpi);
    progress_sends_locked();
  }
  void progress_sends_locked() {
    for (std::size_t i = 0; i < sends_.size();) {
      int done = 0;
      check(MPI_Test(&sends_[i].request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done != 0) {
        std::swap(sends_[i], sends_.back());
        sends_.pop_back();
      } else {
        ++i;
      }
    }
  }

  MPI_Comm comm_;
  std::vector<int> ranks_;
  int tag_;
  bool spawned_;
  byte_buffer initializer_;
  std::atomic<clock::rep> activity_{0};
  std::vector<pending_send> sends_;  // under world().mpi
  std::mutex sites_mutex_;
  std::unordered_map<int, rank_site*> sites_;
  std::unordered_set<int> dead_;                // ranks taken for dead
  std::unordered_set<int> engaged_, released_;  // the engine's thread's
  std::vector<pending_send> abandoned_;         // to ranks taken for dead
  std::atomic<bool> broken_{false};             // MPI failed under it
};

rank_site::~rank_site() {
  owner_.forget(rank_);
}

bool rank_site::deliver(const mp::detail::job& task, std::uint32_t slot) {
  if (task.handles && !task.handles->empty())
    throw usage_error(
        "mp::mpi: this task's arguments hold " + std::to_string(task.handles->size()) +
        " descriptor(s) (a queue, lock, pipe or shared memory block): they cannot reach another "
        "MPI rank, which may be on another machine; pass the data itself, or use a manager's "
        "proxies (mp::manager) to share state across ranks");
  {
    // The engine cannot take a task back from a rank: to it, every task a
    // rank holds has started. Its time counts from when the rank finishes
    // the one before it.
    std::lock_guard lock(mutex_);
    auto queued = task_ring::encode(task.id, task_ring::queued);
    ring_.slot[slot].compare_exchange_strong(queued,
                                             task_ring::encode(task.id, task_ring::running));
    if (outstanding_.empty()) ring_.started[slot].store(clock::now().time_since_epoch().count());
    outstanding_.push_back(slot);
  }
  try {
    owner_.send_order(rank_, owner_.tag(), wire::kind::task, task.id, slot, task.payload->span(),
                      task.payload);
  } catch (...) {
    std::lock_guard lock(mutex_);
    outstanding_.pop_back();
    throw;  // the task's own failure (too big), or MPI's
  }
  return true;
}

bool rank_site::alive() {
  if (dead.load()) return false;
  if (owner_.broken()) {
    dead.store(true);
    owner_.mark_dead(rank_);
    return false;
  }
  const auto& options = world().options;
  if (options.heartbeat.count() <= 0 || options.presumed_dead.count() <= 0)
    return true;  // silence says nothing without a heartbeat
  const clock::time_point last{clock::duration(heard.load())};
  if (clock::now() - last < options.presumed_dead) return true;
  if (owner_.pending_from(rank_)) return true;  // we are late, not the rank
  dead.store(true);
  owner_.mark_dead(rank_);
  return false;
}

std::string rank_site::how_it_ended() {
  if (!dead.load()) return "ended";
  if (owner_.broken()) return "cannot be reached (MPI failed)";
  return "has been silent for " +
         std::to_string(
             std::chrono::duration_cast<std::chrono::milliseconds>(world().options.presumed_dead)
                 .count()) +
         " ms and is taken for dead";
}

void rank_site::finish() {
  std::lock_guard lock(mutex_);
  if (finished_ || dead.load()) return;
  finished_ = true;
  try {
    owner_.send_order(rank_, owner_.tag(), wire::kind::stop, 0, 0, {});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mp::mpi: MPI rank %d was not told to stop: %s\n", rank_, e.what());
    dead.store(true);
    owner_.mark_dead(rank_);
  }
}

void rank_site::join() {
  finish();
  owner_.wait_released(*this);
}

std::string rank_site::who() {
  return "MPI rank " + std::to_string(rank_);
}

// The ranks this executor takes: free world ranks, or new ones spawned.
struct claimed {
  MPI_Comm comm = MPI_COMM_NULL;
  std::vector<int> ranks;
  int tag = 0;
  bool spawned = false;
};

claimed claim_ranks(const executor_options& options) {
  auto& w = world();
  claimed out;
  std::unique_lock lock(w.ranks);
  out.tag = w.next_tag++;
  if (w.next_tag > 30000) w.next_tag = 16;  // MPI_TAG_UB is at least 32767
  std::vector<int> free;
  for (int r = 1; r < w.size; ++r)
    if (w.held[static_cast<std::size_t>(r)] == rank_free) free.push_back(r);
  if (free.empty() && options.spawn != 0) {
    lock.unlock();
    out.spawned = true;
    const unsigned count =
        options.max_workers != 0 ? std::min(options.max_workers, options.spawn) : options.spawn;
    std::vector<char*> args;
    for (auto& a : w.argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<int> codes(count, MPI_SUCCESS);
    std::lock_guard mpi(w.mpi);
    // Errors of the spawn come back as codes, not as an abort.
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    char program[] = "/proc/self/exe";
    std::string exe(4096, '\0');
    const auto length = ::readlink(program, exe.data(), exe.size() - 1);
    if (length <= 0) throw mpi_error("mp::mpi: cannot read /proc/self/exe to spawn worker ranks");
    exe.resize(static_cast<std::size_t>(length));
    check(MPI_Comm_spawn(exe.c_str(), args.data(), static_cast<int>(count), MPI_INFO_NULL, 0,
                         MPI_COMM_SELF, &out.comm, codes.data()),
          "MPI_Comm_spawn (Open MPI on a small machine: set OMPI_MCA_rmaps_base_oversubscribe=1)");
    MPI_Comm_set_errhandler(out.comm, MPI_ERRORS_RETURN);
    for (unsigned i = 0; i < count; ++i) {
      if (codes[i] == MPI_SUCCESS) continue;
      MPI_Comm_free(&out.comm);
      throw mpi_error("mp::mpi: MPI_Comm_spawn could not start worker " + std::to_string(i) +
                      " of " + std::to_string(count) + ": " + error_text(codes[i]));
    }
    for (unsigned i = 0; i < count; ++i) out.ranks.push_back(static_cast<int>(i));
    return out;
  }
  const std::size_t want = options.max_workers != 0 ? options.max_workers : free.size();
  if (free.empty() || want > free.size())
    throw usage_error(
        "mp::mpi: an executor or pool asks for " +
        (options.max_workers != 0 ? std::to_string(options.max_workers) : std::string("the")) +
        " worker ranks, and " + std::to_string(free.size()) + " of the job's " +
        std::to_string(w.size - 1) +
        " are free (the others serve another executor or pool); start more ranks (mpirun -n), "
        "ask for fewer, or set executor_options::spawn to start them with MPI_Comm_spawn");
  out.comm = w.comm;
  out.ranks.assign(free.begin(), free.begin() + static_cast<std::ptrdiff_t>(want));
  for (const int r : out.ranks) w.held[static_cast<std::size_t>(r)] = rank_held;
  return out;
}

}  // namespace

namespace detail {

std::shared_ptr<mp::detail::pool_core> make_rank_pool(const executor_options& options,
                                                      destroy_action on_destroy) {
  auto& w = world();
  if (!w.active)
    throw usage_error(
        "mp::mpi: an executor or pool on MPI ranks needs an mp::mpi::session: make one first "
        "thing in main (mp::mpi::session mpi(argc, argv);), on every rank");
  if (options.initializer && !options.initializer.portable())
    throw usage_error(
        "mp::mpi: the initializer cannot travel to other ranks: it captures state or takes "
        "arguments the codec cannot encode; pass a function or capture-less lambda and its "
        "arguments, {init, args...}");
  claimed ranks = claim_ranks(options);
  const auto count = static_cast<unsigned>(ranks.ranks.size());
  std::unique_ptr<rank_workers> backend;
  try {
    backend = std::make_unique<rank_workers>(ranks.comm, ranks.ranks, ranks.tag, ranks.spawned,
                                             options.initializer);
  } catch (...) {
    // Nothing engaged yet: the ranks go back (spawned ones, with their link).
    if (ranks.spawned) {
      std::lock_guard lock(w.mpi);
      MPI_Comm_free(&ranks.comm);
    } else {
      std::lock_guard lock(w.ranks);
      for (const int r : ranks.ranks) w.held[static_cast<std::size_t>(r)] = rank_free;
    }
    throw;
  }
  // From here the backend gives them back, also if the pool fails to start.
  return std::make_shared<mp::detail::pool_core>(
      pool_options{
          .processes = count, .initializer = options.initializer, .on_destroy = on_destroy},
      std::move(backend));
}

}  // namespace detail

namespace {

// What a rank's program is: the build-id of the image main() is in, and of
// mp's own (the same image, for a static mp).
struct identity {
  mp::detail::code_ref program;
  mp::detail::code_ref library;
  char host[64] = {};
};

std::string hex(const mp::detail::code_ref& ref) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < ref.build_id_size && i < ref.build_id.size(); ++i) {
    out += digits[ref.build_id[i] >> 4];
    out += digits[ref.build_id[i] & 15];
  }
  return out.empty() ? std::string("(none)") : out;
}

bool same_build(const identity& a, const identity& b) {
  return a.program.build_id == b.program.build_id &&
         a.program.build_id_size == b.program.build_id_size &&
         a.library.build_id == b.library.build_id &&
         a.library.build_id_size == b.library.build_id_size;
}

// Gathers every rank's identity at rank 0, which tells them all whether they
// match. "" if they do; otherwise what differs.
std::string check_identities(const void* caller) {
  auto& w = world();
  identity mine;
  mine.program = mp::detail::code_ref_of(caller);
  mine.library = mp::detail::code_ref_of(reinterpret_cast<const void*>(&mp::detail::invoke_call));
  mine.program.offset = 0;
  mine.library.offset = 0;
  const std::string host = host_name();
  std::memcpy(mine.host, host.data(), std::min(host.size(), sizeof mine.host - 1));
  std::vector<identity> all(w.rank == 0 ? static_cast<std::size_t>(w.size) : 1);
  check(MPI_Gather(&mine, sizeof mine, MPI_BYTE, all.data(), sizeof mine, MPI_BYTE, 0, w.comm),
        "MPI_Gather");
  std::string verdict;
  if (w.rank == 0) {
    for (int r = 1; r < w.size; ++r) {
      const identity& other = all[static_cast<std::size_t>(r)];
      if (same_build(other, mine)) continue;
      if (!verdict.empty()) verdict += "; ";
      verdict += "rank " + std::to_string(r) + " (on " + std::string(other.host) +
                 ") runs a program of build-id " + hex(other.program) +
                 (other.library != other.program && other.library != mine.library
                      ? " with mp of build-id " + hex(other.library)
                      : std::string()) +
                 ", rank 0 one of " + hex(mine.program);
    }
  }
  int length = static_cast<int>(verdict.size());
  check(MPI_Bcast(&length, 1, MPI_INT, 0, w.comm), "MPI_Bcast");
  verdict.resize(static_cast<std::size_t>(length));
  if (length != 0) check(MPI_Bcast(verdict.data(), length, MPI_CHAR, 0, w.comm), "MPI_Bcast");
  return verdict;
}

}  // namespace

session::session(int& argc, char**& argv, session_options options) {
  const void* caller = __builtin_return_address(0);
  auto& w = world();
  if (w.active) throw usage_error("mp::mpi::session: there is one already in this program");
  w.options = options;
  for (int i = 1; i < argc; ++i) w.argv.emplace_back(argv[i]);
  if (options.heartbeat.count() > 0 && options.presumed_dead.count() > 0 &&
      options.heartbeat >= options.presumed_dead)
    throw usage_error("mp::mpi::session: a heartbeat every " +
                      std::to_string(options.heartbeat.count()) + " ms cannot show a rank alive " +
                      "within presumed_dead (" + std::to_string(options.presumed_dead.count()) +
                      " ms): make presumed_dead several heartbeats long, or 0 for never");
  int already = 0;
  check(MPI_Initialized(&already), "MPI_Initialized");
  if (already == 0) {
    int provided = 0;
    check(MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    w.initialized_here = true;
    if (provided < MPI_THREAD_SERIALIZED) {
      MPI_Finalize();
      throw mpi_error(
          "mp::mpi: this MPI library gives thread level " + std::to_string(provided) +
          "; mp needs MPI_THREAD_SERIALIZED at least (an executor's own thread receives results)");
    }
  }
  if (already != 0) {
    int level = 0;
    check(MPI_Query_thread(&level), "MPI_Query_thread");
    if (level < MPI_THREAD_SERIALIZED)
      throw mpi_error("mp::mpi: MPI was initialized with thread level " + std::to_string(level) +
                      "; mp needs MPI_THREAD_SERIALIZED at least: call MPI_Init_thread so, or "
                      "let the session initialize MPI");
  }
  MPI_Comm parent = MPI_COMM_NULL;
  check(MPI_Comm_get_parent(&parent), "MPI_Comm_get_parent");
  check(MPI_Comm_dup(MPI_COMM_WORLD, &w.comm), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(w.comm, MPI_ERRORS_RETURN);
  check(MPI_Comm_rank(w.comm, &w.rank), "MPI_Comm_rank");
  check(MPI_Comm_size(w.comm, &w.size), "MPI_Comm_size");
  w.active = true;
  if (parent != MPI_COMM_NULL) {
    MPI_Comm_set_errhandler(parent, MPI_ERRORS_RETURN);
    worker_main(parent, 0, true);  // started by an executor's MPI_Comm_spawn
  }
  const std::string mismatch = check_identities(caller);
  if (!mismatch.empty()) {
    if (w.rank != 0) {
      // Rank 0 throws, naming every rank that differs; this one leaves
      // quietly (status 0), so that mpirun does not abort rank 0 before it
      // has said why.
      leave(0);
    }
    w.active = false;
    MPI_Comm_free(&w.comm);
    if (w.initialized_here) MPI_Finalize();
    throw mpi_error(
        "mp::mpi: the ranks do not all run the same build of the program, so tasks "
        "cannot name their functions on every rank: " +
        mismatch + ". Start the same binary on every rank");
  }
  if (w.rank != 0) worker_main(w.comm, 0, false);
  w.held.assign(static_cast<std::size_t>(w.size), rank_free);
  w.held[0] = rank_held;
}

session::~session() {
  auto& w = world();
  if (!w.active) return;
  const bool lost = w.lost_rank.load();
  {
    std::lock_guard lock(w.mpi);
    const wire::order_tail tail(wire::kind::exit, lost ? exit_without_finalize : 0, 0);
    for (int r = 1; r < w.size; ++r) {
      if (w.held[static_cast<std::size_t>(r)] != rank_dead) {
        MPI_Send(tail.bytes, sizeof tail.bytes, MPI_BYTE, r, control_tag, w.comm);
        continue;
      }
      // Taken for dead, but perhaps only silent too long: told too, without
      // waiting, so that a rank still alive leaves and MPI_Finalize ends.
      MPI_Request request = MPI_REQUEST_NULL;
      if (MPI_Isend(tail.bytes, sizeof tail.bytes, MPI_BYTE, r, control_tag, w.comm, &request) ==
          MPI_SUCCESS)
        MPI_Request_free(&request);
    }
    MPI_Comm_free(&w.comm);
    w.active = false;
  }
  if (!w.initialized_here) return;
  if (lost) {
    std::fprintf(stderr,
                 "mp::mpi: a rank of the job was lost, so its ranks leave without MPI_Finalize, "
                 "which would wait for it\n");
    return;
  }
  MPI_Finalize();
}

int session::rank() const noexcept {
  return world().rank;
}

int session::size() const noexcept {
  return world().size;
}

int session::free_workers() const {
  auto& w = world();
  std::lock_guard lock(w.ranks);
  return static_cast<int>(std::count(w.held.begin(), w.held.end(), rank_free));
}

}  // namespace mp::mpi
