// SPDX-License-Identifier: MIT
// The manager's client side: connections to servers, the references proxies
// hold, how proxies travel (tickets) and survive a fork (pinned before it),
// and mp::manager, which starts, connects to or runs a server.
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "manager_server.hpp"
#include "manager_wire.hpp"
#include "mp/connection.hpp"
#include "mp/managers.hpp"
#include "mp/process.hpp"
#include "remote_errors.hpp"

namespace mp::detail {
namespace {

namespace wire = manager_wire;

// getpid() is a system call (about a microsecond here, a twentieth of a
// round trip): every call checks that its connection is this process's, so
// the pid is cached and renewed in a forked child.
std::atomic<int> cached_pid{0};

// This process's token for the server (hello): the pid, and the clock, so
// that a reused pid is another process. (Not a random device: this runs in a
// fork's child handler.)
std::atomic<std::uint64_t> process_token{0};

void renew_pid() noexcept {
  const int pid = ::getpid();
  cached_pid.store(pid, std::memory_order_relaxed);
  const auto noise =
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  process_token.store(
      (static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid)) << 32) ^ (noise & 0x7fffffffU),
      std::memory_order_relaxed);
}

[[maybe_unused]] const bool pid_cache_installed = [] {
  renew_pid();
  ::pthread_atfork(nullptr, nullptr, &renew_pid);
  return true;
}();

// A manager_error a server raises arrives as itself (the table of known
// exceptions sits below the managers, which add their own).
[[maybe_unused]] const bool manager_error_known = [] {
  add_exception_type(typeid(manager_error), &rebuild_as<manager_error>);
  return true;
}();

int this_pid() noexcept {
  int pid = cached_pid.load(std::memory_order_relaxed);
  if (pid == 0) {  // used by a static initializer that ran before ours
    renew_pid();
    pid = cached_pid.load(std::memory_order_relaxed);
  }
  return pid;
}

// A connection to a server, usable only by the process that made it.
struct link {
  mp::connection conn;
  int pid = 0;
};

[[noreturn]] void throw_gone(const server_endpoint& server, const char* why) {
  throw manager_error("the manager at " + server.where.to_string() + " cannot be reached: " + why +
                      " (it shut down or died)");
}

link open_link(const server_endpoint& server) {
  try {
    link made{mp::client(server.where, {.authkey = server.authkey}), this_pid()};
    server.reached.store(true, std::memory_order_relaxed);
    byte_buffer hello;
    wire::begin_request(hello, wire::op::hello, process_token.load(std::memory_order_relaxed), {});
    made.conn.send_bytes({hello.data(), hello.size()});
    return made;
  } catch (const authentication_error& e) {
    if (server.reached.load(std::memory_order_relaxed)) throw_gone(server, e.what());
    throw;  // a wrong key
  } catch (const std::system_error& e) {
    throw_gone(server, e.what());
  } catch (const process_error& e) {
    throw_gone(server, e.what());
  }
}

// Sends a request and waits for its reply; a dead server drops the link.
bytes exchange(link& l, const server_endpoint& server, const byte_buffer& request) {
  try {
    l.conn.send_bytes({request.data(), request.size()});
    return l.conn.recv_bytes();
  } catch (const std::system_error& e) {
    l.conn = mp::connection();
    throw_gone(server, e.what());
  } catch (const process_error& e) {
    l.conn = mp::connection();
    throw_gone(server, e.what());
  }
}

// The payload of an ok reply; throws what a raised or refused one says.
std::span<const std::byte> check_reply(const bytes& reply) {
  if (reply.empty()) throw manager_error("the manager sent an empty reply");
  const auto status = static_cast<wire::status>(reply[0]);
  const std::span<const std::byte> payload(reply.data() + 1, reply.size() - 1);
  switch (status) {
    case wire::status::ok:
      return payload;
    case wire::status::raised: {
      std::tuple<std::string, std::string, std::int32_t, std::int32_t, std::string> fields;
      decode_into(payload, fields);
      remote_fault fault;
      std::tie(fault.type, fault.message, fault.pid, fault.code, fault.category) =
          std::move(fields);
      std::rethrow_exception(rebuild_fault(fault));
    }
    case wire::status::refused:
      throw manager_error(
          std::string(reinterpret_cast<const char*>(payload.data()), payload.size()));
  }
  throw manager_error("the manager sent a reply of unknown status " +
                      std::to_string(static_cast<int>(reply[0])));
}

// Calls go over a connection of the calling thread's own, so that one thread
// blocked in a call (a queue's get, a lock's acquire) holds up no other.
// The table outlives nothing: once the thread's table is destroyed (a proxy
// or manager destroyed among the statics at exit), it is simply not there.
using link_table = std::unordered_map<std::string, link>;
thread_local link_table* live_call_links = nullptr;

struct call_link_owner {
  link_table links;
  call_link_owner() { live_call_links = &links; }
  ~call_link_owner() { live_call_links = nullptr; }
  call_link_owner(const call_link_owner&) = delete;
  call_link_owner& operator=(const call_link_owner&) = delete;
};

link_table& call_links() {
  thread_local call_link_owner owner;
  return owner.links;
}

link& call_link(const server_endpoint& server) {
  auto& l = call_links()[server.key];
  if (l.pid != this_pid() || l.conn.closed()) l = open_link(server);  // none yet, or a fork's copy
  return l;
}

// References go over one connection per server and process, so that they
// last as long as the process, whatever its threads do, and are given back
// when it dies (the server sees the connection close).
struct reference_links {
  std::mutex mutex;
  std::unordered_map<std::string, link> links;
};

reference_links& references() {
  static auto* links = new reference_links;  // proxies in globals decref at exit
  return *links;
}

link& reference_link(const server_endpoint& server) {  // under references().mutex
  auto& l = references().links[server.key];
  if (l.pid != this_pid() || l.conn.closed()) l = open_link(server);
  return l;
}

bytes reference_exchange(const server_endpoint& server, const byte_buffer& request) {
  auto& refs = references();
  std::lock_guard lock(refs.mutex);
  return exchange(reference_link(server), server, request);
}

}  // namespace

// The live proxies of this process, which a fork pins for the child.
struct core_registry {
  std::mutex mutex;
  std::unordered_set<proxy_core*> live;
  // Connections opened before a fork, each already holding a reference to
  // every live object of its server, for the child to keep.
  std::vector<std::pair<std::string, link>> pinned;

  static core_registry& get() {
    static auto* registry = new core_registry;
    return *registry;
  }

  static void before_fork() noexcept {
    auto& self = get();
    self.mutex.lock();
    references().mutex.lock();
    self.pinned.clear();
    const int pid = ::getpid();
    std::unordered_map<std::string, std::pair<endpoint_ptr, std::vector<std::uint64_t>>> by_server;
    for (proxy_core* core : self.live) {
      if (core->owner_ != pid) continue;
      auto& entry = by_server[core->server_->key];
      entry.first = core->server_;
      entry.second.push_back(core->id_);
    }
    for (auto& [key, entry] : by_server) {
      try {
        link l = open_link(*entry.first);
        byte_buffer request;
        wire::begin_request(request, wire::op::incref, 0, {});
        wire::put_u64(request, entry.second.size());
        for (const auto id : entry.second) wire::put_u64(request, id);
        check_reply(exchange(l, *entry.first, request));
        self.pinned.emplace_back(key, std::move(l));
      } catch (...) {
        // The server is gone: the child's proxies will say so when used.
      }
    }
  }

  static void after_fork_parent() noexcept {
    auto& self = get();
    self.pinned.clear();  // closes our copies; the child keeps its own
    references().mutex.unlock();
    self.mutex.unlock();
  }

  static void after_fork_child() noexcept {
    auto& self = get();
    const int pid = ::getpid();
    std::unordered_set<std::string> held;
    for (auto& [key, l] : self.pinned) {
      l.pid = pid;
      held.insert(key);
      try {  // the pinned connection is this process's now
        byte_buffer hello;
        wire::begin_request(hello, wire::op::hello, process_token.load(), {});
        l.conn.send_bytes({hello.data(), hello.size()});
      } catch (...) {
      }
      references().links[key] = std::move(l);
    }
    self.pinned.clear();
    for (proxy_core* core : self.live)
      if (held.contains(core->server_->key)) core->owner_ = pid;
    references().mutex.unlock();
    self.mutex.unlock();
  }

  static void add(proxy_core* core) {
    static const bool installed = [] {
      ::pthread_atfork(&before_fork, &after_fork_parent, &after_fork_child);
      return true;
    }();
    static_cast<void>(installed);
    std::lock_guard lock(get().mutex);
    get().live.insert(core);
  }
  static bool holds(const std::string& key) {
    auto& self = get();
    std::lock_guard lock(self.mutex);
    const int pid = ::getpid();
    for (proxy_core* core : self.live)
      if (core->owner_ == pid && core->server_->key == key) return true;
    return false;
  }
  static void remove(proxy_core* core) {
    std::lock_guard lock(get().mutex);
    get().live.erase(core);
  }
};

// Drops this process's connections to a server: always when it shut down,
// else only if no proxy of it is left here (they hold references through them).
void forget_server(const std::string& key, bool always) {
  if (!always && core_registry::holds(key)) return;
  {
    auto& refs = references();
    std::lock_guard lock(refs.mutex);
    refs.links.erase(key);
  }
  if (live_call_links != nullptr) live_call_links->erase(key);
}

endpoint_ptr endpoint_for(const mp::address& where, std::vector<std::byte> authkey) {
  // The key names the address and the authkey: a connection authenticated
  // with one key never serves a proxy made with another.
  std::uint64_t digest = 14695981039346656037ULL;
  for (const std::byte b : authkey)
    digest = (digest ^ static_cast<std::uint8_t>(b)) * 1099511628211ULL;
  std::string key = where.to_string() + "#" + std::to_string(digest);
  return std::make_shared<const server_endpoint>(where, std::move(authkey), std::move(key));
}

proxy_core::proxy_core(endpoint_ptr server, std::uint64_t id, std::string type)
    : server_(std::move(server)), id_(id), type_(std::move(type)), owner_(this_pid()) {
  core_registry::add(this);
}

proxy_core::~proxy_core() {
  core_registry::remove(this);
  if (owner_ != this_pid()) return;  // a copy made by fork that holds no reference here
  auto& refs = references();
  std::lock_guard lock(refs.mutex);
  const auto found = refs.links.find(server_->key);
  if (found == refs.links.end() || found->second.pid != owner_ || found->second.conn.closed())
    return;
  byte_buffer request;
  wire::begin_request(request, wire::op::decref, id_, {});
  try {
    found->second.conn.send_bytes({request.data(), request.size()});
  } catch (...) {
    found->second.conn = mp::connection();  // the server is gone, and the reference with it
  }
}

void proxy_core::call(std::string_view method, std::span<const std::byte> args,
                      byte_buffer& result) const {
  byte_buffer request;
  wire::begin_request(request, wire::op::call, id_, method);
  request.append(args.data(), args.size());
  const bytes reply = exchange(call_link(*server_), *server_, request);
  const auto payload = check_reply(reply);
  result.clear();
  result.append(payload.data(), payload.size());
}

core_ptr create_object(const endpoint_ptr& server, std::string_view type,
                       std::span<const std::byte> args) {
  if (type.size() > wire::max_name)
    throw manager_error("a type name too long to serve: " + std::string(type));
  byte_buffer request;
  wire::begin_request(request, wire::op::create, 0, type);
  request.append(args.data(), args.size());
  const bytes reply = reference_exchange(*server, request);
  const auto payload = check_reply(reply);
  if (payload.size() != 8) throw manager_error("the manager sent a malformed reply to create");
  return std::make_shared<proxy_core>(server, wire::get_u64(payload, 0), std::string(type));
}

void throw_unbound_proxy() {
  throw usage_error("a proxy that refers to no object (default-made or moved from) was used");
}

namespace {

// A proxy as it travels.
struct proxy_token {
  std::uint8_t family = 0;
  std::string text;
  std::uint16_t port = 0;
  std::optional<std::vector<std::byte>> authkey;  // only if not the receiver's own
  std::uint64_t id = 0;
  std::uint64_t ticket = 0;
  std::string type;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(family, text, port, authkey, id, ticket, type);
  }
};

mp::address address_of(std::uint8_t family, const std::string& text, std::uint16_t port) {
  switch (static_cast<address_family>(family)) {
    case address_family::af_unix:
      return mp::address(text);
    case address_family::af_inet:
      return mp::address(address_family::af_inet, text, port);
    case address_family::af_inet6:
      return mp::address(address_family::af_inet6, text, port);
  }
  throw decode_error("a proxy with an unknown address family " + std::to_string(family));
}

}  // namespace

void save_core(output_archive& out, const core_ptr& core, std::string_view type) {
  static_cast<void>(type);
  const server_endpoint& server = core->server();
  byte_buffer request;
  wire::begin_request(request, wire::op::ticket, core->id(), {});
  const bytes reply = reference_exchange(server, request);
  const auto payload = check_reply(reply);
  if (payload.size() != 8) throw manager_error("the manager sent a malformed reply to ticket");
  proxy_token token;
  token.family = static_cast<std::uint8_t>(server.where.family());
  token.text =
      server.where.family() == address_family::af_unix ? server.where.path() : server.where.host();
  token.port = server.where.port();
  if (server.authkey != current_process().authkey()) token.authkey = server.authkey;
  token.id = core->id();
  token.ticket = wire::get_u64(payload, 0);
  token.type = core->type();
  out(token);
}

core_ptr load_core(input_archive& in, std::string_view type) {
  proxy_token token;
  in(token);
  if (token.type != type)
    throw decode_error("a proxy of an object of type " + token.type +
                       " arrived where one of type " + std::string(type) + " was expected");
  auto server = endpoint_for(address_of(token.family, token.text, token.port),
                             token.authkey ? *token.authkey : current_process().authkey());
  return claim_object(server, token.id, token.ticket, std::move(token.type));
}

core_ptr claim_object(const endpoint_ptr& server, std::uint64_t id, std::uint64_t ticket,
                      std::string type) {
  byte_buffer request;
  wire::begin_request(request, wire::op::claim, ticket, {});
  wire::put_u64(request, id);
  check_reply(reference_exchange(*server, request));
  return std::make_shared<proxy_core>(server, id, std::move(type));
}

void throw_index_error(std::int64_t index, std::size_t size, const char* what) {
  throw std::out_of_range(std::string(what) + " index " + std::to_string(index) +
                          " out of range (size " + std::to_string(size) + ")");
}

void throw_unregistered(std::string_view type, const char* what) {
  throw usage_error("mp::manager: " + std::string(type) + ": " + what);
}

void throw_no_constructor(std::string_view type) {
  throw manager_error("the manager's server has no constructor of " + std::string(type) +
                      " with those arguments (is it a run of the same program?)");
}

void throw_key_error(const std::string& key) {
  throw std::out_of_range("key not found: " + key);
}

void throw_value_error(const std::string& what) {
  throw std::invalid_argument(what);
}

namespace {

// What the server process reports to the manager that started it.
struct server_report {
  std::string error;  // empty when it serves
  std::uint8_t family = 0;
  std::string text;
  std::uint16_t port = 0;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(error, family, text, port);
  }
};

using named_list = std::vector<std::pair<std::string, std::string>>;

}  // namespace

// The server process's target.
void manager_server_main(mp::connection report, std::uint8_t family, std::string text,
                         std::uint16_t port, std::vector<std::byte> authkey, named_list named) {
  ::signal(SIGINT, SIG_IGN);   // as Python's: Ctrl-C goes to the program, which shuts us down
  ::signal(SIGPIPE, SIG_IGN);  // a client gone mid-reply ends its session, not the server
  manager_server server;
  std::optional<mp::listener> listener;
  try {
    for (const auto& [name, type] : named) server.add_named(name, type);
    listener.emplace(address_of(family, text, port), listener_options{.authkey = authkey});
  } catch (const std::exception& e) {
    report.send(server_report{.error = e.what()});
    return;
  }
  const mp::address& at = listener->address();
  report.send(server_report{
      .error = {},
      .family = static_cast<std::uint8_t>(at.family()),
      .text = at.family() == address_family::af_unix ? at.path() : at.host(),
      .port = at.port(),
  });
  server.serve(*listener, {}, &report);
}

}  // namespace mp::detail

namespace mp {

struct manager::state {
  int pid = ::getpid();  // a forked copy of this object never shuts the server down
  manager_options options;
  std::vector<std::byte> authkey;
  detail::endpoint_ptr endpoint;
  std::optional<mp::process> server;
  mp::connection report;
  detail::named_list named;
  bool serving = false;
};

namespace {

std::atomic<unsigned> managers_started{0};

mp::address fresh_address() {
  std::random_device device;
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%08x%08x", device(), device());
  return abstract_address("mp-manager-" + std::to_string(::getpid()) + "-" +
                          std::to_string(managers_started.fetch_add(1)) + "-" + suffix);
}

void send_simple(const detail::server_endpoint& server, detail::manager_wire::op what,
                 std::uint64_t* answer) {
  detail::byte_buffer request;
  detail::manager_wire::begin_request(request, what, 0, {});
  const bytes reply = detail::reference_exchange(server, request);
  const auto payload = detail::check_reply(reply);
  if (answer != nullptr) {
    if (payload.size() != 8) throw manager_error("the manager sent a malformed reply");
    *answer = detail::manager_wire::get_u64(payload, 0);
  }
}

}  // namespace

manager::manager(manager_options options) : state_(std::make_unique<state>()) {
  state_->authkey = options.authkey ? *options.authkey : current_process().authkey();
  state_->options = std::move(options);
  if (state_->options.start) start();
}

manager::manager(manager&&) noexcept = default;
manager& manager::operator=(manager&& other) noexcept {
  if (this != &other) {
    if (state_) shutdown();
    state_ = std::move(other.state_);
  }
  return *this;
}

manager::~manager() {
  if (!state_) return;
  if (state_->server) {
    shutdown();
  } else if (state_->endpoint) {
    detail::forget_server(state_->endpoint->key, false);
  }
}

void manager::start() {
  auto& s = *state_;
  if (s.endpoint) throw usage_error("mp::manager::start: already started or connected");
  s.pid = ::getpid();
  const mp::address where = s.options.address ? *s.options.address : fresh_address();
  auto [ours, theirs] = mp::pipe();
  const auto n = managers_started.load();
  mp::process child(process_options{.name = "SyncManager-" + std::to_string(n),
                                    .daemon = true,
                                    .on_destroy = destroy_action::terminate,
                                    .method = s.options.method},
                    &detail::manager_server_main, std::move(theirs),
                    static_cast<std::uint8_t>(where.family()),
                    where.family() == address_family::af_unix ? where.path() : where.host(),
                    where.port(), s.authkey, s.named);
  child.start();
  detail::server_report report;
  try {
    if (!ours.poll(std::chrono::seconds(60)))
      throw manager_error("the manager's server did not start serving within 60 s");
    report = ours.recv<detail::server_report>();
  } catch (const eof_error&) {
    child.join(std::chrono::seconds(5));
    throw manager_error("the manager's server process ended before it served (exit code " +
                        (child.exitcode() ? std::to_string(*child.exitcode()) : "unknown") + ")");
  } catch (...) {
    child.terminate();
    child.join(std::chrono::seconds(5));
    throw;
  }
  if (!report.error.empty()) {
    child.join(std::chrono::seconds(5));
    throw manager_error("the manager's server could not start: " + report.error);
  }
  s.endpoint =
      detail::endpoint_for(detail::address_of(report.family, report.text, report.port), s.authkey);
  s.server.emplace(std::move(child));
  s.report = std::move(ours);
}

void manager::connect() {
  auto& s = *state_;
  if (s.endpoint) throw usage_error("mp::manager::connect: already started or connected");
  if (!s.options.address)
    throw usage_error("mp::manager::connect: no address to connect to (manager_options::address)");
  auto endpoint = detail::endpoint_for(*s.options.address, s.authkey);
  send_simple(*endpoint, detail::manager_wire::op::count,
              nullptr);  // reachable, and the key is right
  s.endpoint = std::move(endpoint);
}

void manager::shutdown() {
  if (!state_) return;
  auto& s = *state_;
  if (!s.server || s.pid != ::getpid()) return;
  try {
    send_simple(*s.endpoint, detail::manager_wire::op::shutdown, nullptr);
  } catch (...) {
    // Already gone.
  }
  detail::forget_server(s.endpoint->key, true);
  auto& child = *s.server;
  try {
    if (!child.join(std::chrono::seconds(5))) {
      child.terminate();
      if (!child.join(std::chrono::seconds(5))) {
        child.kill();
        child.join();
      }
    }
  } catch (...) {
    // Gone already.
  }
  s.server.reset();
  s.report.close();
}

struct manager::server::impl {
  detail::manager_server served;
  std::optional<mp::listener> listener;
};

manager::server::server(std::unique_ptr<impl> state) : impl_(std::move(state)) {}
manager::server::server(server&&) noexcept = default;
manager::server& manager::server::operator=(server&&) noexcept = default;
manager::server::~server() = default;

const mp::address& manager::server::address() const {
  if (!impl_) throw usage_error("mp::manager::server: moved from");
  return impl_->listener->address();
}

void manager::server::serve_forever(std::stop_token stop) {
  if (!impl_) throw usage_error("mp::manager::server: moved from");
  impl_->served.serve(*impl_->listener, std::move(stop), nullptr);
}

manager::server manager::get_server() {
  auto& s = *state_;
  if (s.endpoint) throw usage_error("mp::manager::get_server: already started or connected");
  auto made = std::make_unique<server::impl>();
  for (const auto& [name, type] : s.named) made->served.add_named(name, type);
  made->listener.emplace(s.options.address ? *s.options.address : fresh_address(),
                         listener_options{.authkey = s.authkey});
  s.endpoint = detail::endpoint_for(made->listener->address(), s.authkey);
  return server(std::move(made));
}

void manager::serve_forever(std::stop_token stop) {
  get_server().serve_forever(std::move(stop));
}

const mp::address& manager::address() const {
  return endpoint()->where;
}

std::optional<int> manager::pid() const {
  if (!state_->server) return std::nullopt;
  return state_->server->pid();
}

std::size_t manager::number_of_objects() const {
  std::uint64_t count = 0;
  send_simple(*endpoint(), detail::manager_wire::op::count, &count);
  return count;
}

const detail::endpoint_ptr& manager::endpoint() const {
  if (!state_ || !state_->endpoint)
    throw usage_error("mp::manager: neither started nor connected (call start() or connect())");
  return state_->endpoint;
}

detail::core_ptr manager::create(std::string_view type, std::span<const std::byte> args) const {
  return detail::create_object(endpoint(), type, args);
}

void manager::register_named(std::string name, std::string type) {
  if (state_->endpoint)
    throw usage_error(
        "mp::manager::register_object: register before start(), get_server() or "
        "serve_forever()");
  if (name.size() > detail::manager_wire::max_name)
    throw std::invalid_argument("mp::manager::register_object: a name of at most 65535 bytes");
  state_->named.emplace_back(std::move(name), std::move(type));
}

detail::core_ptr manager::get_named(const std::string& name, const std::string& type) const {
  const auto& at = endpoint();
  if (name.size() > detail::manager_wire::max_name)
    throw manager_error("the manager serves no name that long");
  detail::byte_buffer request;
  detail::manager_wire::begin_request(request, detail::manager_wire::op::get_named, 0, name);
  const bytes reply = detail::reference_exchange(*at, request);
  const auto payload = detail::check_reply(reply);
  if (payload.size() < 8) throw manager_error("the manager sent a malformed reply to get");
  const std::uint64_t id = detail::manager_wire::get_u64(payload, 0);
  std::string served(reinterpret_cast<const char*>(payload.data() + 8), payload.size() - 8);
  auto core = std::make_shared<detail::proxy_core>(at, id, served);
  if (served != type)
    throw manager_error("the manager serves an object of type " + served + " under '" + name +
                        "', not one of type " + type);
  return core;
}

}  // namespace mp
