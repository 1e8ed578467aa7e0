// SPDX-License-Identifier: MIT
// A manager's server: the objects, their reference counts, and the sessions
// (one per client connection, each served by its own thread) that call them.
// Internal; the fuzz target drives handle() directly.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mp/detail/byte_buffer.hpp"
#include "mp/export.hpp"
#include "mp/listener.hpp"
#include "mp/managers.hpp"

namespace mp::detail {

/// An object the server holds.
struct managed_box {
  const server_type* type = nullptr;
  std::string type_name;
  void* object = nullptr;
  std::mutex mutex;        // serializes calls unless the type locks itself
  std::uint64_t refs = 0;  // under the server's mutex
  managed_box() = default;
  managed_box(const managed_box&) = delete;
  managed_box& operator=(const managed_box&) = delete;
  ~managed_box() {
    if (object != nullptr) type->destroy(object);
  }
};

/// One client connection's part: the references it holds.
struct manager_session {
  std::uint64_t id = 0;
  std::uint64_t process = 0;  // the client's token (hello), or one of the session's own
  std::unordered_map<std::uint64_t, std::uint64_t> refs;
};

class MP_EXPORT manager_server {
 public:
  manager_server();
  ~manager_server();
  manager_server(const manager_server&) = delete;
  manager_server& operator=(const manager_server&) = delete;

  /// Makes a default-built object of `type` served under `name`. Throws
  /// mp::manager_error for an unknown type.
  void add_named(const std::string& name, const std::string& type);

  manager_session open_session();
  /// Gives back what the session held: its references, its tickets, and any
  /// lock it owned.
  void close_session(manager_session& session);

  /// Answers one request; `reply` is left empty when none is due (decref).
  /// Never throws for bad input: malformed requests get a refused reply.
  void handle(manager_session& session, std::span<const std::byte> request, byte_buffer& reply);

  /// Accepts and serves clients until `stop` is requested, a shutdown request
  /// arrives, or `watch` (if open) reports its peer gone.
  void serve(mp::listener& listener, std::stop_token stop, mp::connection* watch);

  std::size_t object_count();
  /// Serves a new object, its one reference held by a ticket of `session`;
  /// returns its id and the ticket.
  std::pair<std::uint64_t, std::uint64_t> adopt(std::shared_ptr<managed_box> box,
                                                manager_session& session);

 private:
  struct ticket {
    std::uint64_t object = 0;
    std::uint64_t session = 0;
  };
  std::shared_ptr<managed_box> find(std::uint64_t id);
  std::uint64_t add_object(std::shared_ptr<managed_box> box);
  void add_ref(manager_session& session, std::uint64_t id);
  bool drop_ref(manager_session& session, std::uint64_t id);
  void release(std::uint64_t id, std::uint64_t count);
  void do_call(manager_session& session, std::uint64_t id, std::string_view method,
               std::span<const std::byte> args, byte_buffer& reply);
  void request_stop();

  std::mutex mutex_;
  std::unordered_map<std::uint64_t, std::shared_ptr<managed_box>> objects_;
  std::unordered_map<std::uint64_t, ticket> tickets_;
  std::unordered_map<std::string, std::uint64_t> named_;
  std::unordered_map<std::uint64_t, std::uint64_t> sessions_of_process_;
  std::uint64_t next_id_ = 1;
  std::uint64_t next_ticket_ = 1;
  std::uint64_t next_session_ = 1;
  std::atomic<bool> stopping_{false};
  mp::listener* listener_ = nullptr;
  int wake_fd_ = -1;  // the watcher's wake-up pipe, while serving
};

/// True while the server of this process is stopping: blocking waits in
/// server objects check it and give up.
bool manager_server_stopping() noexcept;

/// True once the server's own types (the namespace, queues, locks...) are
/// registered (src/manager_objects.cpp).
bool server_objects_registered() noexcept;

}  // namespace mp::detail
