// SPDX-License-Identifier: MIT
// The manager's server: the registries of served types and their methods,
// the object table with its reference counts, and a thread per session.
#include "manager_server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <list>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>

#include "manager_wire.hpp"
#include "mp/errors.hpp"
#include "remote_errors.hpp"

namespace mp::detail {
namespace {

namespace wire = manager_wire;

struct type_table {
  std::mutex mutex;
  std::unordered_map<std::string, server_type> types;
  std::unordered_map<std::string, method_handler> methods;  // type '\n' method
};

type_table& registry() {
  static auto* table = new type_table;  // used by static initializers, never destroyed
  return *table;
}

std::string method_key(std::string_view type, std::string_view method) {
  std::string key;
  key.reserve(type.size() + method.size() + 1);
  key.append(type).append(1, '\n').append(method);
  return key;
}

const server_type* find_type(std::string_view name) {
  auto& table = registry();
  std::lock_guard lock(table.mutex);
  const auto found = table.types.find(std::string(name));
  return found == table.types.end() ? nullptr : &found->second;
}

// Entries are never removed, so the pointer stays valid.
const method_handler* find_method(std::string_view type, std::string_view method) {
  auto& table = registry();
  std::lock_guard lock(table.mutex);
  const auto found = table.methods.find(method_key(type, method));
  return found == table.methods.end() ? nullptr : &found->second;
}

std::atomic<bool> stopping_flag{false};

// The object and type an apply runs on (set around the call).
thread_local void* apply_object = nullptr;
thread_local std::uint64_t apply_fingerprint = 0;
thread_local const std::string* apply_type = nullptr;

// The server and session a method runs for (to serve the objects it returns).
thread_local manager_server* current_server = nullptr;
thread_local manager_session* current_session = nullptr;

struct refusal {
  std::string message;
};

void reply_status(byte_buffer& reply, wire::status status) {
  reply.clear();
  const auto code = static_cast<std::uint8_t>(status);
  reply.append(&code, 1);
}

void reply_refused(byte_buffer& reply, const std::string& message) {
  reply_status(reply, wire::status::refused);
  reply.append(message.data(), message.size());
}

void reply_raised(byte_buffer& reply) {
  remote_fault fault;
  capture_fault(fault);
  reply_status(reply, wire::status::raised);
  encode_into(reply, std::tuple(fault.type, fault.message, fault.pid, fault.code, fault.category));
}

std::uint64_t payload_u64(std::span<const std::byte> payload, const char* what) {
  if (payload.size() != 8) throw refusal{std::string(what) + ": expected 8 bytes of payload"};
  return wire::get_u64(payload, 0);
}

}  // namespace

bool register_server_type(std::string_view type, const server_type& entry) {
  auto& table = registry();
  std::lock_guard lock(table.mutex);
  table.types.emplace(std::string(type), entry);
  return true;
}

bool register_method(std::string_view type, std::string_view method, method_fn fn) {
  return register_method_handler(type, method, fn);
}

bool register_method_handler(std::string_view type, std::string_view method,
                             method_handler handler) {
  auto& table = registry();
  std::lock_guard lock(table.mutex);
  table.methods.emplace(method_key(type, method), std::move(handler));
  return true;
}

bool is_served_type(std::string_view type) {
  return find_type(type) != nullptr;
}

std::pair<std::uint64_t, std::uint64_t> serve_new_object(std::string_view type, void* object) {
  const server_type* entry = find_type(type);
  if (entry == nullptr || current_server == nullptr || current_session == nullptr)
    throw manager_error("a method returned an object of type " + std::string(type) +
                        ", which the manager does not serve (register it with mp::register_type)");
  auto box = std::make_shared<managed_box>();
  box->type = entry;
  box->type_name = std::string(type);
  box->object = object;
  box->refs = 1;  // the ticket's, until the caller claims it
  return current_server->adopt(std::move(box), *current_session);
}

void* apply_target(std::uint64_t fingerprint) {
  if (apply_object == nullptr) throw manager_error("apply: no object to apply to here");
  if (fingerprint != apply_fingerprint)
    throw manager_error("apply: the function takes another type than the object's, " +
                        (apply_type != nullptr ? *apply_type : std::string("?")));
  return apply_object;
}

bool manager_server_stopping() noexcept {
  return stopping_flag.load(std::memory_order_relaxed);
}

manager_server::manager_server() {
  static_cast<void>(server_objects_registered());  // links them in: see there
  stopping_flag.store(false);
}

manager_server::~manager_server() = default;

void manager_server::add_named(const std::string& name, const std::string& type) {
  const server_type* entry = find_type(type);
  if (entry == nullptr)
    throw manager_error("the manager's server does not know the type " + type +
                        " (is it the same program?)");
  auto box = std::make_shared<managed_box>();
  box->type = entry;
  box->type_name = type;
  box->object = entry->create({});  // no arguments: a default-built object
  std::lock_guard lock(mutex_);
  const std::uint64_t id = next_id_++;
  box->refs = 1;  // the name's own, for the server's life
  objects_.emplace(id, std::move(box));
  named_[name] = id;
}

// A session that never says hello is a process of its own.
constexpr std::uint64_t own_process = std::uint64_t{1} << 63;

manager_session manager_server::open_session() {
  std::lock_guard lock(mutex_);
  const std::uint64_t id = next_session_++;
  ++sessions_of_process_[own_process | id];
  return manager_session{.id = id, .process = own_process | id, .refs = {}};
}

void manager_server::close_session(manager_session& session) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> held(session.refs.begin(),
                                                            session.refs.end());
  session.refs.clear();
  std::vector<std::shared_ptr<managed_box>> lockers;
  bool process_gone = false;
  {
    std::lock_guard lock(mutex_);
    const auto count = sessions_of_process_.find(session.process);
    if (count != sessions_of_process_.end() && --count->second == 0) {
      sessions_of_process_.erase(count);
      process_gone = true;
    }
    for (auto it = tickets_.begin(); it != tickets_.end();) {
      if (it->second.session == session.id) {
        held.emplace_back(it->second.object, 1);
        it = tickets_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& [id, box] : objects_)
      if (box->type->session_ended != nullptr) lockers.push_back(box);
  }
  const call_context ended{.session = session.id, .process = session.process};
  for (const auto& box : lockers) box->type->session_ended(box->object, ended, process_gone);
  for (const auto& [id, count] : held) release(id, count);
}

std::shared_ptr<managed_box> manager_server::find(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  const auto found = objects_.find(id);
  if (found == objects_.end())
    throw refusal{"the manager holds no object " + std::to_string(id) +
                  " (its last reference is gone, or it never was)"};
  return found->second;
}

void manager_server::add_ref(manager_session& session, std::uint64_t id) {
  std::lock_guard lock(mutex_);
  const auto found = objects_.find(id);
  if (found == objects_.end())
    throw refusal{"the manager holds no object " + std::to_string(id) + " to refer to"};
  ++found->second->refs;
  ++session.refs[id];
}

bool manager_server::drop_ref(manager_session& session, std::uint64_t id) {
  const auto held = session.refs.find(id);
  if (held == session.refs.end()) return false;
  if (--held->second == 0) session.refs.erase(held);
  release(id, 1);
  return true;
}

void manager_server::release(std::uint64_t id, std::uint64_t count) {
  std::shared_ptr<managed_box> freed;
  {
    std::lock_guard lock(mutex_);
    const auto found = objects_.find(id);
    if (found == objects_.end()) return;
    auto& box = *found->second;
    box.refs = box.refs > count ? box.refs - count : 0;
    if (box.refs == 0) {
      freed = std::move(found->second);
      objects_.erase(found);
    }
  }
  // Destroyed here, outside the lock (or by the last call still running on it).
}

std::uint64_t manager_server::add_object(std::shared_ptr<managed_box> box) {
  std::lock_guard lock(mutex_);
  const std::uint64_t id = next_id_++;
  objects_.emplace(id, std::move(box));
  return id;
}

std::pair<std::uint64_t, std::uint64_t> manager_server::adopt(std::shared_ptr<managed_box> box,
                                                              manager_session& session) {
  std::lock_guard lock(mutex_);
  const std::uint64_t id = next_id_++;
  objects_.emplace(id, std::move(box));
  const std::uint64_t ticket_id = next_ticket_++;
  tickets_.emplace(ticket_id, ticket{.object = id, .session = session.id});
  return {id, ticket_id};
}

std::size_t manager_server::object_count() {
  std::lock_guard lock(mutex_);
  return objects_.size();
}

void manager_server::do_call(manager_session& session, std::uint64_t id, std::string_view method,
                             std::span<const std::byte> args, byte_buffer& reply) {
  const std::shared_ptr<managed_box> box = find(id);
  const bool apply = method == "__apply__";
  const method_handler* fn = nullptr;
  if (apply) {
    if (box->type->self_locking)
      throw refusal{"apply is for containers and values; " + box->type_name +
                    " objects lock themselves"};
  } else {
    fn = find_method(box->type_name, method);
    if (fn == nullptr)
      throw refusal{"an object of type " + box->type_name + " has no method '" +
                    std::string(method) + "'"};
  }
  reply_status(reply, wire::status::ok);
  call_context context{.session = session.id, .process = session.process};
  try {
    std::unique_lock lock(box->mutex, std::defer_lock);
    if (!box->type->self_locking) lock.lock();
    if (apply) {
      apply_object = box->object;
      apply_fingerprint = box->type->fingerprint;
      apply_type = &box->type_name;
      struct reset {
        ~reset() {
          apply_object = nullptr;
          apply_type = nullptr;
        }
      } reset_after;
      invoke_call(args, nullptr, &reply);
    } else {
      current_server = this;
      current_session = &session;
      struct reset {
        ~reset() {
          current_server = nullptr;
          current_session = nullptr;
        }
      } reset_after;
      (*fn)(box->object, context, args, reply);
    }
  } catch (...) {
    reply_raised(reply);
  }
}

void manager_server::handle(manager_session& session, std::span<const std::byte> request,
                            byte_buffer& reply) {
  reply.clear();
  wire::request_header header;
  if (!wire::parse_request(request, header)) {
    reply_refused(reply, "a malformed request (" + std::to_string(request.size()) + " bytes)");
    return;
  }
  try {
    switch (header.what) {
      case wire::op::call:
        do_call(session, header.id, header.name, header.payload, reply);
        return;
      case wire::op::create: {
        const server_type* entry = find_type(header.name);
        if (entry == nullptr)
          throw refusal{"the manager's server does not know the type " + std::string(header.name) +
                        " (is it a run of the same program?)"};
        auto box = std::make_shared<managed_box>();
        box->type = entry;
        box->type_name = std::string(header.name);
        try {
          box->object = entry->create(header.payload);
        } catch (...) {
          reply_raised(reply);
          return;
        }
        box->refs = 1;
        const std::uint64_t id = add_object(std::move(box));
        ++session.refs[id];
        reply_status(reply, wire::status::ok);
        wire::put_u64(reply, id);
        return;
      }
      case wire::op::incref: {
        const auto payload = header.payload;
        if (payload.size() < 8) throw refusal{"incref: no count"};
        const std::uint64_t count = wire::get_u64(payload, 0);
        if (count != (payload.size() - 8) / 8 || (payload.size() - 8) % 8 != 0)
          throw refusal{"incref: the count does not match the ids"};
        std::string missing;
        for (std::uint64_t i = 0; i < count; ++i) {
          try {
            add_ref(session, wire::get_u64(payload, 8 + 8 * i));
          } catch (const refusal& r) {
            missing = r.message;
          }
        }
        if (!missing.empty()) throw refusal{missing};
        reply_status(reply, wire::status::ok);
        return;
      }
      case wire::op::decref:
        drop_ref(session, header.id);
        return;  // no reply
      case wire::op::ticket: {
        add_ref(session, header.id);  // the ticket's reference, moved from the session's count
        std::uint64_t ticket_id = 0;
        {
          std::lock_guard lock(mutex_);
          ticket_id = next_ticket_++;
          tickets_.emplace(ticket_id, ticket{.object = header.id, .session = session.id});
        }
        if (--session.refs[header.id] == 0) session.refs.erase(header.id);
        reply_status(reply, wire::status::ok);
        wire::put_u64(reply, ticket_id);
        return;
      }
      case wire::op::claim: {
        const std::uint64_t object = payload_u64(header.payload, "claim");
        bool claimed = false;
        {
          std::lock_guard lock(mutex_);
          const auto found = tickets_.find(header.id);
          if (found != tickets_.end() && found->second.object == object) {
            tickets_.erase(found);
            claimed = true;
          }
        }
        if (claimed) {
          ++session.refs[object];
        } else {
          // Decoded a second time: a new reference, if the object is still there.
          add_ref(session, object);
        }
        reply_status(reply, wire::status::ok);
        return;
      }
      case wire::op::get_named: {
        std::uint64_t id = 0;
        {
          std::lock_guard lock(mutex_);
          const auto found = named_.find(std::string(header.name));
          if (found == named_.end())
            throw refusal{"the manager serves nothing under the name '" + std::string(header.name) +
                          "'"};
          id = found->second;
        }
        add_ref(session, id);
        const std::string type = find(id)->type_name;
        reply_status(reply, wire::status::ok);
        wire::put_u64(reply, id);
        reply.append(type.data(), type.size());
        return;
      }
      case wire::op::count:
        reply_status(reply, wire::status::ok);
        wire::put_u64(reply, object_count());
        return;
      case wire::op::shutdown:
        reply_status(reply, wire::status::ok);
        request_stop();
        return;
      case wire::op::hello: {
        // The process this connection belongs to: its locks outlive this
        // thread's connection, until the process's last one closes.
        const std::uint64_t process = header.id & ~own_process;
        std::lock_guard lock(mutex_);
        if (--sessions_of_process_[session.process] == 0)
          sessions_of_process_.erase(session.process);
        session.process = process;
        ++sessions_of_process_[process];
        return;  // no reply
      }
    }
  } catch (const refusal& r) {
    reply_refused(reply, r.message);
    return;
  } catch (const std::exception& e) {
    reply_refused(reply, std::string("the server failed: ") + e.what());
    return;
  }
}

void manager_server::request_stop() {
  stopping_.store(true);
  stopping_flag.store(true);
  std::lock_guard lock(mutex_);
  if (listener_ != nullptr) listener_->close();
  if (wake_fd_ >= 0) {
    const char byte = 1;
    [[maybe_unused]] const auto written = ::write(wake_fd_, &byte, 1);
  }
}

namespace {

struct session_thread {
  std::thread thread;
  std::shared_ptr<mp::connection> conn;
  std::atomic<bool> done{false};
};

}  // namespace

void manager_server::serve(mp::listener& listener, std::stop_token stop, mp::connection* watch) {
  {
    std::lock_guard lock(mutex_);
    listener_ = &listener;
  }
  std::stop_callback on_stop(stop, [this] { request_stop(); });
  // The watcher ends the server when its parent is gone (the report
  // connection's other end closed), and wakes at once when it stops otherwise.
  std::thread watcher;
  int wake_read = -1;
  if (watch != nullptr && !watch->closed()) {
    int wake[2];
    if (::pipe2(wake, O_CLOEXEC) != 0)
      throw std::system_error(errno, std::generic_category(), "pipe2");
    wake_read = wake[0];
    {
      std::lock_guard lock(mutex_);
      wake_fd_ = wake[1];
    }
    watcher = std::thread([this, watch, wake_read] {
      pollfd fds[2] = {{.fd = watch->fileno(), .events = POLLIN, .revents = 0},
                       {.fd = wake_read, .events = POLLIN, .revents = 0}};
      while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
      }
      if (!stopping_.load()) request_stop();  // the parent is gone
    });
  }
  std::list<session_thread> sessions;
  std::mutex sessions_mutex;
  while (!stopping_.load()) {
    mp::connection client;
    try {
      client = listener.accept();
    } catch (const authentication_error&) {
      continue;  // a client with the wrong key, or garbage: the next one
    } catch (const std::system_error& e) {
      if (stopping_.load() || listener.closed()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // EMFILE and the like
      continue;
    } catch (...) {
      if (stopping_.load()) break;
      continue;
    }
    // Reap the threads of ended sessions.
    {
      std::lock_guard lock(sessions_mutex);
      for (auto it = sessions.begin(); it != sessions.end();) {
        if (it->done.load()) {
          it->thread.join();
          it = sessions.erase(it);
        } else {
          ++it;
        }
      }
    }
    auto conn = std::make_shared<mp::connection>(std::move(client));
    std::lock_guard lock(sessions_mutex);
    auto& slot = sessions.emplace_back();
    slot.conn = conn;
    slot.thread = std::thread([this, conn, &slot] {
      manager_session session = open_session();
      byte_buffer reply;
      try {
        while (!stopping_.load()) {
          const mp::bytes request = conn->recv_bytes();
          handle(session, request, reply);
          if (reply.size() != 0) conn->send_bytes({reply.data(), reply.size()});
        }
      } catch (...) {
        // The client went away (or the server is stopping): end the session.
      }
      close_session(session);
      slot.done.store(true);
    });
  }
  request_stop();
  {
    std::lock_guard lock(sessions_mutex);
    // Wakes each recv; a reply being sent still goes out.
    for (auto& s : sessions) ::shutdown(s.conn->fileno(), SHUT_RD);
  }
  for (auto& s : sessions) s.thread.join();
  if (watcher.joinable()) watcher.join();
  {
    // Both ends closed together, after the watcher: a wake-up written to a
    // pipe without a reader would raise SIGPIPE.
    std::lock_guard lock(mutex_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
    wake_fd_ = -1;
  }
  if (wake_read >= 0) ::close(wake_read);
  std::lock_guard lock(mutex_);
  listener_ = nullptr;
  named_.clear();
  tickets_.clear();
  auto objects = std::move(objects_);
  objects_.clear();
}

}  // namespace mp::detail
