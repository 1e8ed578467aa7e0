// SPDX-License-Identifier: MIT
// The objects a manager serves that are not plain values: the namespace,
// queues and the synchronization primitives, server side (each locks itself
// and waits on its own condition variable, giving up when the server stops),
// and their proxies' methods.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <limits>
#include <list>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "manager_server.hpp"
#include "mp/managers.hpp"
#include "mp/queues.hpp"
#include "mp/synchronize.hpp"

namespace mp::detail {

namespace {

using clock = std::chrono::steady_clock;

std::int64_t to_wire(mp::timeout t) {
  return t.limited() ? t.duration().count() : -1;
}

// Waits until ready() or the timeout (nanoseconds, -1 for none); false on
// timeout. Throws mp::manager_error when the server stops meanwhile.
template <class Ready>
bool wait_until(std::condition_variable& changed, std::unique_lock<std::mutex>& lock,
                std::int64_t timeout_ns, Ready ready) {
  const auto end = timeout_ns < 0 ? clock::time_point::max()
                                  : clock::now() + std::chrono::nanoseconds(timeout_ns);
  while (!ready()) {
    if (manager_server_stopping()) throw manager_error("the manager is shutting down");
    const auto now = clock::now();
    if (now >= end) return false;
    changed.wait_until(lock, std::min(end, now + std::chrono::milliseconds(100)));
  }
  return true;
}

template <class F>
struct server_method_traits;
template <class R, class O, class... A>
struct server_method_traits<R (*)(O&, call_context&, A...)> {
  using object = O;
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
};

// A method of a server object that also gets the calling session.
template <auto Fn>
void run_method(void* target, call_context& context, std::span<const std::byte> bytes,
                byte_buffer& out) {
  using traits = server_method_traits<decltype(Fn)>;
  typename traits::args decoded;
  decode_into(bytes, decoded);
  auto& self = *static_cast<typename traits::object*>(target);
  if constexpr (std::is_void_v<typename traits::result>) {
    std::apply([&](auto&... a) { Fn(self, context, std::move(a)...); }, decoded);
  } else {
    encode_into(
        out, std::apply([&](auto&... a) { return Fn(self, context, std::move(a)...); }, decoded));
  }
}

// Calls a method of a server object from its proxy.
template <class R = void, class... A>
R invoke(const proxy_core& core, std::string_view method, const A&... args) {
  byte_buffer request;
  encode_into(request, std::tuple<A...>(args...));
  byte_buffer reply;
  core.call(method, {request.data(), request.size()}, reply);
  if constexpr (!std::is_void_v<R>) {
    R value{};
    decode_into({reply.data(), reply.size()}, value);
    return value;
  }
}

template <class O, class... Args>
void* create_from(std::span<const std::byte> bytes) {
  std::tuple<Args...> args;
  if (!bytes.empty()) decode_into(bytes, args);
  return std::apply([](auto&... a) { return static_cast<void*>(new O(a...)); }, args);
}

template <class O>
void destroy(void* object) noexcept {
  delete static_cast<O*>(object);
}

}  // namespace

// ---- the namespace ----

struct server_namespace {
  std::map<std::string, bytes> values;

  static void set(server_namespace& ns, call_context&, std::string name, bytes value) {
    ns.values.insert_or_assign(std::move(name), std::move(value));
  }
  static bytes get(server_namespace& ns, call_context&, std::string name) {
    const auto found = ns.values.find(name);
    if (found == ns.values.end())
      throw std::out_of_range("'Namespace' object has no attribute '" + name + "'");
    return found->second;
  }
  static bool contains(server_namespace& ns, call_context&, std::string name) {
    return ns.values.contains(name);
  }
  static bool erase(server_namespace& ns, call_context&, std::string name) {
    return ns.values.erase(name) != 0;
  }
  static std::vector<std::string> names(server_namespace& ns, call_context&) {
    std::vector<std::string> out;
    for (const auto& kv : ns.values) out.push_back(kv.first);
    return out;
  }
};

// ---- queues ----

struct server_queue {
  explicit server_queue(std::uint64_t max = 0) : maxsize(max) {}
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<bytes> items;
  std::uint64_t maxsize = 0;
  std::uint64_t unfinished = 0;

  static void put(server_queue& q, call_context&, bytes item, bool block, std::int64_t timeout) {
    std::unique_lock lock(q.mutex);
    const bool room = wait_until(q.changed, lock, block ? timeout : 0,
                                 [&] { return q.maxsize == 0 || q.items.size() < q.maxsize; });
    if (!room) throw queue_full("the manager's queue is full");
    q.items.push_back(std::move(item));
    ++q.unfinished;
    q.changed.notify_all();
  }
  static bytes get(server_queue& q, call_context&, bool block, std::int64_t timeout) {
    std::unique_lock lock(q.mutex);
    if (!wait_until(q.changed, lock, block ? timeout : 0, [&] { return !q.items.empty(); }))
      throw queue_empty("the manager's queue is empty");
    bytes item = std::move(q.items.front());
    q.items.pop_front();
    q.changed.notify_all();
    return item;
  }
  static std::uint64_t qsize(server_queue& q, call_context&) {
    std::lock_guard lock(q.mutex);
    return q.items.size();
  }
  static bool full(server_queue& q, call_context&) {
    std::lock_guard lock(q.mutex);
    return q.maxsize != 0 && q.items.size() >= q.maxsize;
  }
  static void task_done(server_queue& q, call_context&) {
    std::lock_guard lock(q.mutex);
    if (q.unfinished == 0) throw usage_error("task_done() called too many times");
    if (--q.unfinished == 0) q.changed.notify_all();
  }
  static void join(server_queue& q, call_context&) {
    std::unique_lock lock(q.mutex);
    wait_until(q.changed, lock, -1, [&] { return q.unfinished == 0; });
  }
};

// ---- locks ----

struct server_lock {
  std::mutex mutex;
  std::condition_variable changed;
  bool held = false;
  std::uint64_t holder = 0;

  static bool acquire(server_lock& l, call_context& c, bool block, std::int64_t timeout) {
    std::unique_lock lock(l.mutex);
    if (!wait_until(l.changed, lock, block ? timeout : 0, [&] { return !l.held; })) return false;
    l.held = true;
    l.holder = c.process;  // ownerless, as Python's; released if this process dies
    return true;
  }
  static void release(server_lock& l, call_context&) {
    std::lock_guard lock(l.mutex);
    if (!l.held) throw usage_error("release unlocked lock");
    l.held = false;
    l.changed.notify_all();
  }
  static bool locked(server_lock& l, call_context&) {
    std::lock_guard lock(l.mutex);
    return l.held;
  }
  static void session_ended(void* object, const call_context& ended, bool process_gone) noexcept {
    auto& l = *static_cast<server_lock*>(object);
    std::lock_guard lock(l.mutex);
    if (process_gone && l.held && l.holder == ended.process) {
      l.held = false;
      l.changed.notify_all();
    }
  }
};

// A lock owned by one session (a thread of a client), recursive: the rlock,
// and the lock of a condition.
struct owned_lock {
  std::mutex mutex;
  std::condition_variable changed;
  std::uint64_t owner = 0;
  std::uint64_t count = 0;

  bool acquire(const call_context& c, bool block, std::int64_t timeout) {
    std::unique_lock lock(mutex);
    if (owner == c.session) {
      ++count;
      return true;
    }
    if (!wait_until(changed, lock, block ? timeout : 0, [&] { return owner == 0; })) return false;
    owner = c.session;
    count = 1;
    return true;
  }
  void release(const call_context& c) {
    std::lock_guard lock(mutex);
    if (owner != c.session) throw usage_error("cannot release un-acquired lock");
    if (--count == 0) {
      owner = 0;
      changed.notify_all();
    }
  }
  // The owning thread's connection closed: it will never release.
  void session_ended(const call_context& ended) noexcept {
    std::lock_guard lock(mutex);
    if (owner == ended.session) {
      owner = 0;
      count = 0;
      changed.notify_all();
    }
  }
};

struct server_rlock {
  owned_lock state;

  static bool acquire(server_rlock& l, call_context& c, bool block, std::int64_t timeout) {
    return l.state.acquire(c, block, timeout);
  }
  static void release(server_rlock& l, call_context& c) { l.state.release(c); }
  static void session_ended(void* object, const call_context& ended, bool) noexcept {
    static_cast<server_rlock*>(object)->state.session_ended(ended);
  }
};

struct server_semaphore {
  server_semaphore(std::uint32_t initial = 1, bool is_bounded = false)
      : value(initial), start(initial), bounded(is_bounded) {}
  std::mutex mutex;
  std::condition_variable changed;
  std::int64_t value;
  std::int64_t start;
  bool bounded;

  static bool acquire(server_semaphore& s, call_context&, bool block, std::int64_t timeout) {
    std::unique_lock lock(s.mutex);
    if (!wait_until(s.changed, lock, block ? timeout : 0, [&] { return s.value > 0; }))
      return false;
    --s.value;
    return true;
  }
  static void release(server_semaphore& s, call_context&, std::uint32_t n) {
    std::lock_guard lock(s.mutex);
    if (s.bounded && s.value + n > s.start) throw usage_error("Semaphore released too many times");
    s.value += n;
    s.changed.notify_all();
  }
  static std::int64_t get_value(server_semaphore& s, call_context&) {
    std::lock_guard lock(s.mutex);
    return s.value;
  }
};

struct server_condition {
  owned_lock state;
  std::list<bool*> waiters;  // each waiter's "notified" flag, in arrival order

  static bool acquire(server_condition& c, call_context& ctx, bool block, std::int64_t timeout) {
    return c.state.acquire(ctx, block, timeout);
  }
  static void release(server_condition& c, call_context& ctx) { c.state.release(ctx); }
  static bool wait(server_condition& c, call_context& ctx, std::int64_t timeout) {
    auto& s = c.state;
    std::unique_lock lock(s.mutex);
    if (s.owner != ctx.session) throw usage_error("cannot wait on un-acquired lock");
    const std::uint64_t saved = s.count;
    s.owner = 0;
    s.count = 0;
    bool notified = false;
    const auto me = c.waiters.insert(c.waiters.end(), &notified);
    s.changed.notify_all();
    bool woken = false;
    try {
      woken = wait_until(s.changed, lock, timeout, [&] { return notified; });
    } catch (...) {
      if (!notified) c.waiters.erase(me);
      throw;
    }
    if (!woken) c.waiters.erase(me);
    wait_until(s.changed, lock, -1, [&] { return s.owner == 0; });
    s.owner = ctx.session;
    s.count = saved;
    return woken;
  }
  static void notify(server_condition& c, call_context& ctx, std::uint32_t n) {
    auto& s = c.state;
    std::lock_guard lock(s.mutex);
    if (s.owner != ctx.session) throw usage_error("cannot notify on un-acquired lock");
    for (std::uint32_t i = 0; i < n && !c.waiters.empty(); ++i) {
      *c.waiters.front() = true;
      c.waiters.pop_front();
    }
    s.changed.notify_all();
  }
  static void session_ended(void* object, const call_context& ended, bool) noexcept {
    static_cast<server_condition*>(object)->state.session_ended(ended);
  }
};

struct server_event {
  std::mutex mutex;
  std::condition_variable changed;
  bool flag = false;

  static bool is_set(server_event& e, call_context&) {
    std::lock_guard lock(e.mutex);
    return e.flag;
  }
  static void set(server_event& e, call_context&) {
    std::lock_guard lock(e.mutex);
    e.flag = true;
    e.changed.notify_all();
  }
  static void clear(server_event& e, call_context&) {
    std::lock_guard lock(e.mutex);
    e.flag = false;
  }
  static bool wait(server_event& e, call_context&, std::int64_t timeout) {
    std::unique_lock lock(e.mutex);
    return wait_until(e.changed, lock, timeout, [&] { return e.flag; });
  }
};

struct server_barrier {
  server_barrier(std::uint32_t n = 1, std::int64_t default_timeout = -1)
      : parties(n), timeout(default_timeout) {}
  std::mutex mutex;
  std::condition_variable changed;
  std::uint32_t parties;
  std::int64_t timeout;
  std::uint32_t count = 0;
  std::uint64_t generation = 0;
  std::uint64_t reset_generation = ~std::uint64_t{0};  // the cycle a reset broke
  bool broken = false;

  static std::uint32_t wait(server_barrier& b, call_context&, std::int64_t timeout) {
    std::unique_lock lock(b.mutex);
    if (b.broken) throw broken_barrier("the barrier is broken");
    const std::uint32_t index = b.count++;
    const std::uint64_t cycle = b.generation;
    if (b.count == b.parties) {
      b.count = 0;
      ++b.generation;
      b.changed.notify_all();
      return index;
    }
    const bool passed = wait_until(b.changed, lock, timeout < 0 ? b.timeout : timeout,
                                   [&] { return b.generation != cycle || b.broken; });
    if (!passed) {
      b.broken = true;
      b.count = 0;
      b.changed.notify_all();
      throw broken_barrier("the barrier's wait timed out, which broke it");
    }
    if (b.broken || b.reset_generation == cycle) throw broken_barrier("the barrier is broken");
    return index;
  }
  static void reset(server_barrier& b, call_context&) {
    std::lock_guard lock(b.mutex);
    if (b.count > 0) b.reset_generation = b.generation;
    ++b.generation;
    b.count = 0;
    b.broken = false;
    b.changed.notify_all();
  }
  static void abort(server_barrier& b, call_context&) {
    std::lock_guard lock(b.mutex);
    b.broken = true;
    b.count = 0;
    b.changed.notify_all();
  }
  static std::uint32_t get_parties(server_barrier& b, call_context&) { return b.parties; }
  static std::uint32_t n_waiting(server_barrier& b, call_context&) {
    std::lock_guard lock(b.mutex);
    return b.count;
  }
  static bool is_broken(server_barrier& b, call_context&) {
    std::lock_guard lock(b.mutex);
    return b.broken;
  }
};

// ---- a shared memory manager's blocks ----

struct server_segment_tracker {
  std::mutex mutex;
  std::vector<std::string> names;

  server_segment_tracker() = default;
  server_segment_tracker(const server_segment_tracker&) = delete;
  server_segment_tracker& operator=(const server_segment_tracker&) = delete;
  ~server_segment_tracker() {
    for (const auto& name : names) ::shm_unlink(("/" + name).c_str());  // gone already: fine
  }
  static void track(server_segment_tracker& t, call_context&, std::string name) {
    std::lock_guard lock(t.mutex);
    t.names.push_back(std::move(name));
  }
};

namespace {

template <class O>
bool add_type(void* (*create)(std::span<const std::byte>), bool self_locking,
              void (*session_ended)(void*, const call_context&, bool) noexcept = nullptr) {
  return register_server_type(type_name<O>(), {.create = create,
                                               .destroy = &destroy<O>,
                                               .fingerprint = type_fingerprint<O>,
                                               .self_locking = self_locking,
                                               .session_ended = session_ended});
}

template <class O, auto Fn>
bool add(std::string_view name) {
  return register_method(type_name<O>(), name, &run_method<Fn>);
}

const bool registered = [] {
  using ns = server_namespace;
  add_type<ns>(&create_from<ns>, false);
  add<ns, &ns::set>("set");
  add<ns, &ns::get>("get");
  add<ns, &ns::contains>("contains");
  add<ns, &ns::erase>("erase");
  add<ns, &ns::names>("names");

  using q = server_queue;
  add_type<q>(&create_from<q, std::uint64_t>, true);
  add<q, &q::put>("put");
  add<q, &q::get>("get");
  add<q, &q::qsize>("qsize");
  add<q, &q::full>("full");
  add<q, &q::task_done>("task_done");
  add<q, &q::join>("join");

  using l = server_lock;
  add_type<l>(&create_from<l>, true, &l::session_ended);
  add<l, &l::acquire>("acquire");
  add<l, &l::release>("release");
  add<l, &l::locked>("locked");

  using r = server_rlock;
  add_type<r>(&create_from<r>, true, &r::session_ended);
  add<r, &r::acquire>("acquire");
  add<r, &r::release>("release");

  using s = server_semaphore;
  add_type<s>(&create_from<s, std::uint32_t, bool>, true);
  add<s, &s::acquire>("acquire");
  add<s, &s::release>("release");
  add<s, &s::get_value>("get_value");

  using c = server_condition;
  add_type<c>(&create_from<c>, true, &c::session_ended);
  add<c, &c::acquire>("acquire");
  add<c, &c::release>("release");
  add<c, &c::wait>("wait");
  add<c, &c::notify>("notify");

  using e = server_event;
  add_type<e>(&create_from<e>, true);
  add<e, &e::is_set>("is_set");
  add<e, &e::set>("set");
  add<e, &e::clear>("clear");
  add<e, &e::wait>("wait");

  using b = server_barrier;
  add_type<b>(&create_from<b, std::uint32_t, std::int64_t>, true);
  add<b, &b::wait>("wait");
  add<b, &b::reset>("reset");
  add<b, &b::abort>("abort");
  add<b, &b::get_parties>("parties");
  add<b, &b::n_waiting>("n_waiting");
  add<b, &b::is_broken>("broken");

  using t = server_segment_tracker;
  add_type<t>(&create_from<t>, true);
  add<t, &t::track>("track");
  return true;
}();

}  // namespace

// ---- proxies ----

void namespace_set(const proxy_core& core, const std::string& name, const bytes& value) {
  invoke(core, "set", name, value);
}
bytes namespace_get(const proxy_core& core, const std::string& name) {
  return invoke<bytes>(core, "get", name);
}

void manager_queue_core::put(const bytes& item, bool block, mp::timeout timeout) const {
  invoke(core(), "put", item, block, to_wire(timeout));
}
bytes manager_queue_core::get(bool block, mp::timeout timeout) const {
  return invoke<bytes>(core(), "get", block, to_wire(timeout));
}
std::size_t manager_queue_core::qsize() const {
  return invoke<std::uint64_t>(core(), "qsize");
}
bool manager_queue_core::empty() const {
  return qsize() == 0;
}
bool manager_queue_core::full() const {
  return invoke<bool>(core(), "full");
}
void manager_queue_core::task_done() const {
  invoke(core(), "task_done");
}
void manager_queue_core::join() const {
  invoke(core(), "join");
}
std::string manager_queue_core::str() const {
  return "<Queue qsize=" + std::to_string(qsize()) + ">";
}

}  // namespace mp::detail

namespace mp {

namespace detail {
// Called by the server's constructor, so that a static library's server links
// this file, and with it the registrations above, even in a program that uses
// none of these proxies (one that only serves them).
bool server_objects_registered() noexcept {
  return registered;
}
}  // namespace detail

namespace_proxy::namespace_proxy(detail::core_ptr core) : proxy_base(std::move(core)) {}
bool namespace_proxy::contains(const std::string& name) const {
  return detail::invoke<bool>(core(), "contains", name);
}
bool namespace_proxy::erase(const std::string& name) const {
  return detail::invoke<bool>(core(), "erase", name);
}
std::vector<std::string> namespace_proxy::names() const {
  return detail::invoke<std::vector<std::string>>(core(), "names");
}
std::string namespace_proxy::str() const {
  std::string out = "Namespace(";
  bool first = true;
  for (const auto& name : names()) {
    if (!first) out += ", ";
    first = false;
    out += name;
  }
  return out + ")";
}

lock_proxy::lock_proxy(detail::core_ptr core) : proxy_base(std::move(core)) {}
bool lock_proxy::acquire(bool block, mp::timeout timeout) const {
  return detail::invoke<bool>(core(), "acquire", block, detail::to_wire(timeout));
}
void lock_proxy::release() const {
  detail::invoke(core(), "release");
}
std::string lock_proxy::str() const {
  return detail::invoke<bool>(core(), "locked") ? "<Lock(locked)>" : "<Lock(unlocked)>";
}

rlock_proxy::rlock_proxy(detail::core_ptr core) : proxy_base(std::move(core)) {}
bool rlock_proxy::acquire(bool block, mp::timeout timeout) const {
  return detail::invoke<bool>(core(), "acquire", block, detail::to_wire(timeout));
}
void rlock_proxy::release() const {
  detail::invoke(core(), "release");
}

semaphore_proxy::semaphore_proxy(detail::core_ptr core) : proxy_base(std::move(core)) {}
bool semaphore_proxy::acquire(bool block, mp::timeout timeout) const {
  return detail::invoke<bool>(core(), "acquire", block, detail::to_wire(timeout));
}
void semaphore_proxy::release(std::uint32_t n) const {
  detail::invoke(core(), "release", n);
}
std::int64_t semaphore_proxy::get_value() const {
  return detail::invoke<std::int64_t>(core(), "get_value");
}

condition_proxy::condition_proxy(detail::core_ptr core) : proxy_base(std::move(core)) {}
bool condition_proxy::acquire(bool block, mp::timeout timeout) const {
  return detail::invoke<bool>(core(), "acquire", block, detail::to_wire(timeout));
}
void condition_proxy::release() const {
  detail::invoke(core(), "release");
}
bool condition_proxy::wait(mp::timeout timeout) const {
  return detail::invoke<bool>(core(), "wait", detail::to_wire(timeout));
}
void condition_proxy::notify(std::uint32_t n) const {
  detail::invoke(core(), "notify", n);
}
void condition_proxy::notify_all() const {
  detail::invoke(core(), "notify", std::numeric_limits<std::uint32_t>::max());
}

event_proxy::event_proxy(detail::core_ptr core) : proxy_base(std::move(core)) {}
bool event_proxy::is_set() const {
  return detail::invoke<bool>(core(), "is_set");
}
void event_proxy::set() const {
  detail::invoke(core(), "set");
}
void event_proxy::clear() const {
  detail::invoke(core(), "clear");
}
bool event_proxy::wait(mp::timeout timeout) const {
  return detail::invoke<bool>(core(), "wait", detail::to_wire(timeout));
}

barrier_proxy::barrier_proxy(detail::core_ptr core) : proxy_base(std::move(core)) {}
std::uint32_t barrier_proxy::wait(mp::timeout timeout) const {
  return detail::invoke<std::uint32_t>(core(), "wait", detail::to_wire(timeout));
}
void barrier_proxy::reset() const {
  detail::invoke(core(), "reset");
}
void barrier_proxy::abort() const {
  detail::invoke(core(), "abort");
}
std::uint32_t barrier_proxy::parties() const {
  return detail::invoke<std::uint32_t>(core(), "parties");
}
std::uint32_t barrier_proxy::n_waiting() const {
  return detail::invoke<std::uint32_t>(core(), "n_waiting");
}
bool barrier_proxy::broken() const {
  return detail::invoke<bool>(core(), "broken");
}

// ---- the manager's makers ----

namespace_proxy manager::namespace_() const {
  return namespace_proxy(create(detail::type_name<detail::server_namespace>(), {}));
}

detail::core_ptr manager::make_queue(std::size_t maxsize, bool joinable) const {
  static_cast<void>(joinable);  // every manager queue can be joined
  detail::byte_buffer args;
  detail::encode_into(args, std::tuple<std::uint64_t>(maxsize));
  return create(detail::type_name<detail::server_queue>(), {args.data(), args.size()});
}

namespace {
template <class... A>
detail::byte_buffer args_of(const A&... a) {
  detail::byte_buffer out;
  detail::encode_into(out, std::tuple<A...>(a...));
  return out;
}
}  // namespace

lock_proxy manager::lock() const {
  return lock_proxy(create(detail::type_name<detail::server_lock>(), {}));
}
rlock_proxy manager::rlock() const {
  return rlock_proxy(create(detail::type_name<detail::server_rlock>(), {}));
}
semaphore_proxy manager::semaphore(std::uint32_t value) const {
  const auto args = args_of(value, false);
  return semaphore_proxy(
      create(detail::type_name<detail::server_semaphore>(), {args.data(), args.size()}));
}
semaphore_proxy manager::bounded_semaphore(std::uint32_t value) const {
  const auto args = args_of(value, true);
  return semaphore_proxy(
      create(detail::type_name<detail::server_semaphore>(), {args.data(), args.size()}));
}
condition_proxy manager::condition() const {
  return condition_proxy(create(detail::type_name<detail::server_condition>(), {}));
}
event_proxy manager::event() const {
  return event_proxy(create(detail::type_name<detail::server_event>(), {}));
}
shared_memory_manager::shared_memory_manager(manager_options options)
    : manager_((options.start = true, std::move(options))),
      tracker_(manager_.create(detail::type_name<detail::server_segment_tracker>(), {})) {}

shared_memory_manager::shared_memory_manager(shared_memory_manager&&) noexcept = default;
shared_memory_manager& shared_memory_manager::operator=(shared_memory_manager&& other) noexcept {
  if (this != &other) {
    shutdown();
    manager_ = std::move(other.manager_);
    tracker_ = std::move(other.tracker_);
  }
  return *this;
}

shared_memory_manager::~shared_memory_manager() {
  shutdown();
}

void shared_memory_manager::shutdown() {
  tracker_.reset();
  manager_.shutdown();  // the server unlinks what it tracked as it ends
}

void shared_memory_manager::track(const std::string& name) const {
  if (!tracker_) throw usage_error("mp::shared_memory_manager: used after shutdown()");
  detail::invoke(*tracker_, "track", name);
}

namespace {
std::string fresh_block_name() {
  static std::atomic<unsigned> made{0};
  std::random_device device;
  return "mp-smm-" + std::to_string(::getpid()) + "-" + std::to_string(made.fetch_add(1)) + "-" +
         std::to_string(device());
}
}  // namespace

mp::shared_memory shared_memory_manager::shared_memory(std::size_t size) const {
  auto block = mp::shared_memory::create(fresh_block_name(), size);
  track(block.name());  // on failure the block unlinks itself
  block.release_name();
  return block;
}

mp::shareable_list shared_memory_manager::shareable_list(
    const std::vector<mp::shareable_list::item>& items) const {
  mp::shareable_list list(items, fresh_block_name());
  track(list.shm().name());
  list.shm().release_name();
  return list;
}

barrier_proxy manager::barrier(std::uint32_t parties, mp::timeout timeout) const {
  if (parties == 0) throw std::invalid_argument("mp::manager::barrier: parties must be at least 1");
  const auto args = args_of(parties, detail::to_wire(timeout));
  return barrier_proxy(
      create(detail::type_name<detail::server_barrier>(), {args.data(), args.size()}));
}

}  // namespace mp
