// SPDX-License-Identifier: MIT
// Worker processes for the pool engine (src/pool_engine.hpp), under any
// start method.
//
// Each worker has a queue of its own for the tasks it holds, a ring of task
// states in shared memory, and a socket over which the descriptors of the
// resources among a task's arguments go, just before the task. Results come
// back over one queue that all the workers share.
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "mp/connection.hpp"
#include "mp/detail/shared_region.hpp"
#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "pool_engine.hpp"

namespace mp::detail {
namespace {

// What a worker's handle channel carries: the descriptors of the resources
// among one task's arguments, sent just before the task is queued for it, so
// they wait on the channel when the worker takes the task.
struct handle_message {
  std::uint64_t id = 0;
  const std::vector<unique_fd>* outgoing = nullptr;  // when sending
  std::vector<unique_fd> fds;                        // when received
  template <class Archive>
  void save(Archive& archive) const {
    archive(id, static_cast<std::uint32_t>(outgoing->size()));
    for (const unique_fd& fd : *outgoing) archive(archive.add_handle(fd.get()));
  }
  template <class Archive>
  void load(Archive& archive) {
    std::uint32_t count = 0;
    archive(id, count);
    if (count > archive.remaining()) throw_bad_length(count, 1, archive.remaining());
    fds.clear();
    for (std::uint32_t i = 0; i < count; ++i) {
      std::uint32_t index = 0;
      archive(index);
      fds.push_back(archive.take_handle(index));
    }
  }
};

// A task's slot that says "not a task": it only takes away the descriptors
// that were sent for a task that then never reached the worker (its batch
// could not be queued), so that the handle channel stays in step with the
// task queue.
constexpr std::uint32_t handles_only = std::numeric_limits<std::uint32_t>::max();

// Takes the descriptors that came for `task` off the handle channel.
handle_message take_handles(mp::connection& channel, const pool_task& task) {
  auto message = channel.recv<handle_message>();
  if (message.id != task.id || message.fds.size() != task.fds)
    throw decode_error("a pool worker's handle channel is out of step with its tasks");
  return message;
}

// Runs one task a worker process took (false: the stop task), with the
// descriptors that came for it, and puts its result.
bool run_one(pool_task& task, task_ring& ring, mp::queue<pool_result>& results,
             mp::connection& channel, handle_source& handles, pool_result& result,
             byte_buffer& scratch) {
  if (task.id == 0) return false;
  handle_source* given = nullptr;
  if (task.fds != 0) {
    // Taken even for a task skipped below, so the next task's come next.
    // The pool sent them before it queued the task: they are here.
    handles.fds = take_handles(channel, task).fds;
    given = &handles;
  }
  run_task(ring, task.id, task.slot, task.payload.span(), given, result, scratch);
  handles.fds.clear();  // any the call did not take: a connection among them sees its peer go
  results.put(result);
  return true;
}

// A worker process: runs the tasks of its queue until the stop task, or until
// it has taken `max_tasks` (0: no limit). It takes and returns buffers of the
// same sizes over and over, so it keeps freed memory for reuse rather than
// unmapping it and faulting fresh pages in for the next task (glibc unmaps
// every freed block over 128 KiB at first, and trims the heap's top beyond
// 128 KiB).
void worker_process_main(mp::queue<pool_task_batch> tasks, mp::queue<pool_result> results,
                         const shared_object<task_ring>& ring, const bound_call& initializer,
                         unsigned max_tasks, mp::connection& channel) {
  ::mallopt(M_MMAP_THRESHOLD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
  // A failed initializer has said so over `results`; the exit is quiet.
  if (!initialize_worker(initializer, *ring, [&](pool_result& r) { results.put(r); }))
    throw system_exit{1};
  // Reused from task to task, with their buffers.
  pool_task_batch batch;
  pool_result result;
  byte_buffer scratch;
  handle_source handles;
  for (unsigned done = 0;;) {
    tasks.get_into(batch);
    for (std::size_t i = 0; i < batch.count; ++i) {
      if (batch.tasks[i].slot == handles_only) {
        if (batch.tasks[i].fds == 0)
          throw decode_error("a pool worker was given a handles-only task without descriptors");
        (void)take_handles(channel, batch.tasks[i]);  // closed here
        continue;
      }
      if (!run_one(batch.tasks[i], *ring, results, channel, handles, result, scratch)) return;
      if (max_tasks != 0 && ++done >= max_tasks) return;
    }
  }
}

// A worker process started by spawn or forkserver: its initializer arrives encoded.
void worker_spawn_main(mp::queue<pool_task_batch> tasks, mp::queue<pool_result> results,
                       const shared_object<task_ring>& ring, bound_call initializer,
                       unsigned max_tasks, mp::connection& channel) {
  worker_process_main(std::move(tasks), std::move(results), ring, initializer, max_tasks, channel);
}

std::string describe_end(std::optional<int> exitcode) {
  if (!exitcode) return "ended";
  if (*exitcode < 0) {
    const char* name = ::sigabbrev_np(-*exitcode);
    return "was killed by signal " + std::to_string(-*exitcode) +
           (name != nullptr ? std::string(" (SIG") + name + ")" : std::string());
  }
  return "exited with code " + std::to_string(*exitcode);
}

class process_site final : public worker_site {
 public:
  process_site(const pool_options& options, start_method method, std::size_t index,
               const mp::queue<pool_result>& results) {
    auto ends = mp::pipe();
    channel_ = std::move(ends.first);
    const process_options how{.name = "PoolWorker-" + std::to_string(index + 1),
                              .daemon = true,
                              .on_destroy = destroy_action::kill,
                              .method = method};
    if (method != start_method::fork)
      process_ = mp::process(how, &worker_spawn_main, tasks_, results, ring_, options.initializer,
                             options.maxtasksperchild, std::move(ends.second));
    else
      process_ = mp::process(how, &worker_process_main, tasks_, results, ring_, options.initializer,
                             options.maxtasksperchild, std::move(ends.second));
    process_.start();
  }

  task_ring& ring() override { return *ring_; }

  bool deliver(const job& task, std::uint32_t slot) override {
    const auto fds = task.handles ? static_cast<std::uint32_t>(task.handles->size()) : 0;
    // Room first: once its descriptors are sent, the task must be queued too.
    outgoing_.reserve(outgoing_.size() + 1);
    if (fds != 0) {
      try {
        channel_.send(handle_message{task.id, task.handles.get(), {}});
      } catch (const std::system_error& e) {
        if (e.code().value() == EPIPE || e.code().value() == ECONNRESET) return false;
        throw;
      }
    }
    outgoing_.push_back(pool_task{task.id, slot, fds, task.payload->span(), {}});
    return true;
  }

  void flush() override {
    if (outgoing_.empty()) return;
    try {
      tasks_.put(pool_task_batch{outgoing_, {}, 0});
    } catch (...) {
      // None of them reached the worker, and the engine fails them all: a
      // later flush must not send them (their slots go to other tasks).
      drop_unsent();
      throw;
    }
    outgoing_.clear();
  }

  bool alive() override { return process_.is_alive(); }

  bool stop_now() override {
    process_.kill();
    process_.join();
    return true;
  }

  void finish() override {
    flush();
    const pool_task stop{};
    tasks_.put(pool_task_batch{std::span(&stop, 1), {}, 0});
  }

  void join() override { process_.join(); }

  // After a batch failed to be queued: forgets its tasks, and has the worker
  // take away the descriptors already sent for them, in a small batch of
  // handles_only tasks (which fits where the failed batch did not: that one
  // failed for its size, or for memory). If even that cannot be queued, the
  // worker could only fall out of step later: it is stopped now, and the
  // pool replaces it.
  void drop_unsent() noexcept {
    std::vector<pool_task> markers;
    try {
      for (const pool_task& task : outgoing_)
        if (task.fds != 0) markers.push_back(pool_task{task.id, handles_only, task.fds, {}, {}});
      if (!markers.empty()) tasks_.put(pool_task_batch{markers, {}, 0});
    } catch (...) {
      try {
        process_.kill();
      } catch (...) {  // (it has gone already)
      }
    }
    outgoing_.clear();
  }

  // A worker process runs its tasks on its one thread, whose id is its pid.
  pid_t task_thread() override { return process_.pid().value_or(0); }

  std::string who() override {
    return process_.name() + ", pid " + std::to_string(process_.pid().value_or(0));
  }

  std::string how_it_ended() override { return describe_end(process_.exitcode()); }

  bool killed_from_outside() override {
    const auto code = process_.exitcode();
    return code && (*code == -SIGKILL || *code == -SIGTERM || *code == -SIGINT || *code == -SIGHUP);
  }

 private:
  mp::queue<pool_task_batch> tasks_;
  std::vector<pool_task> outgoing_;  // delivered, not yet flushed
  shared_object<task_ring> ring_ = shared_object<task_ring>::make();
  mp::connection channel_;  // the descriptors of tasks' arguments go this way
  mp::process process_;
};

class process_workers final : public worker_backend {
 public:
  explicit process_workers(const pool_options& options)
      : options_(options), method_(options.method.value_or(get_start_method())) {
    if (method_ != start_method::fork && options.initializer && !options.initializer.portable())
      throw usage_error("a pool's initializer cannot travel to workers started by " +
                        std::string(to_string(method_)) +
                        ": it captures state or takes arguments the codec cannot encode; pass a "
                        "function or capture-less lambda and its arguments, {init, args...}");
  }

  std::unique_ptr<worker_site> start(std::size_t index) override {
    return std::make_unique<process_site>(options_, method_, index, results_);
  }

  bool next_result(pool_result& out, std::chrono::nanoseconds wait) override {
    if (wait.count() <= 0) return results_.try_get_into(out);
    return results_.try_get_into(out, wait);
  }

  bool processes() const override { return true; }

 private:
  pool_options options_;
  start_method method_;
  mp::queue<pool_result> results_;
};

}  // namespace

std::unique_ptr<worker_backend> make_process_workers(const pool_options& options) {
  return std::make_unique<process_workers>(options);
}

}  // namespace mp::detail
