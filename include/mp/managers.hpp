// SPDX-License-Identifier: MIT
// Managers: Python's multiprocessing.managers. A server process holds shared
// objects (lists, dicts, values, a namespace, queues, locks, events, ...) and
// hands out proxies; every proxy call is one request to the server, from any
// process, local or on another machine, that holds a proxy.
//
//   mp::manager manager;                       // Python's Manager(): starts a server
//   auto shared = manager.list<std::string>();
//   mp::process p(append_two, shared);         // a proxy is a value: pass it anywhere
//   p.start(); p.join();
//   std::cout << shared;                       // ['Hello', 'World']
//
// Only differences from Python are documented here; see
// https://docs.python.org/3/library/multiprocessing.html#managers and
// docs/managers.md. Above all: the values are typed (list<T>, dict<K, V>), the
// server counts references and frees an object when its last proxy is gone,
// also when the processes holding them died; proxy.apply(fn, args...) runs a
// function on the object inside the server, atomically (what `d[k] += 1` is
// not, here or in Python); and `d[k] += 1` does not compile.
#pragma once

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <sstream>
#include <stop_token>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/detail/checks.hpp"
#include "mp/detail/code_identity.hpp"
#include "mp/detail/codec.hpp"
#include "mp/detail/repr.hpp"
#include "mp/detail/target.hpp"
#include "mp/errors.hpp"
#include "mp/listener.hpp"
#include "mp/serialization.hpp"  // dict<K, V> holds a std::map
#include "mp/shared_memory.hpp"
#include "mp/timeout.hpp"

namespace mp {

/// A manager's server cannot be reached (it shut down or died; every pending
/// and later call fails with this at once), refused a request (an object it
/// no longer holds, a method it does not know), or failed to start.
class MP_EXPORT manager_error : public process_error {
 public:
  using process_error::process_error;
};

namespace detail {

// The server's own types (src/manager_objects.cpp), named by proxies.
struct server_queue;
struct server_lock;
struct server_rlock;
struct server_semaphore;
struct server_condition;
struct server_event;
struct server_barrier;
struct server_namespace;
struct server_segment_tracker;

/// A method or type name as a template argument.
template <std::size_t N>
struct fixed_string {
  char text[N]{};
  constexpr fixed_string(const char (&s)[N]) {  // NOLINT: implicit, for "name"
    for (std::size_t i = 0; i < N; ++i) text[i] = s[i];
  }
  constexpr std::string_view view() const { return {text, N - 1}; }
};

/// A server: where it listens and the key it wants. Interned: proxies of one
/// server share one.
struct server_endpoint {
  server_endpoint(mp::address at, std::vector<std::byte> key_bytes, std::string table_key)
      : where(std::move(at)), authkey(std::move(key_bytes)), key(std::move(table_key)) {}
  mp::address where;
  std::vector<std::byte> authkey;
  std::string key;  // where.to_string() and the key's digest, for the tables of connections
  /// Set once a connection was authenticated: a later handshake failure means
  /// the server went away (a wrong key fails the first one).
  mutable std::atomic<bool> reached{false};
};
using endpoint_ptr = std::shared_ptr<const server_endpoint>;
MP_EXPORT endpoint_ptr endpoint_for(const mp::address& where, std::vector<std::byte> authkey);

/// What the server passes a method besides the object: the session (one
/// client connection) that called, for the locks that have owners.
struct call_context {
  std::uint64_t session = 0;  // one connection: one thread of one process
  std::uint64_t process = 0;  // the process it belongs to (its sessions share it)
};
using method_fn = void (*)(void* object, call_context& context, std::span<const std::byte> args,
                           byte_buffer& result);

/// How a server makes, calls and frees objects of one type.
struct server_type {
  /// Builds one from encoded constructor arguments.
  void* (*create)(std::span<const std::byte> args) = nullptr;
  void (*destroy)(void* object) noexcept = nullptr;
  /// type_fingerprint of the C++ type, checked by apply.
  std::uint64_t fingerprint = 0;
  /// Objects that lock themselves and may block (queues, locks): calls on them
  /// are not serialized by the server, and apply is refused.
  bool self_locking = false;
  /// Told when a session ends, and whether it was its process's last (to
  /// release a lock that thread, or that process, held).
  void (*session_ended)(void* object, const call_context& ended,
                        bool process_gone) noexcept = nullptr;
};
MP_EXPORT bool register_server_type(std::string_view type, const server_type& entry);
MP_EXPORT bool register_method(std::string_view type, std::string_view method, method_fn fn);
using method_handler = std::function<void(void* object, call_context& context,
                                          std::span<const std::byte> args, byte_buffer& result)>;
MP_EXPORT bool register_method_handler(std::string_view type, std::string_view method,
                                       method_handler handler);
MP_EXPORT bool is_served_type(std::string_view type);
/// Inside a method: serves `object` (of a served type; the server owns it from
/// now on) and returns its id and a ticket for the caller to claim.
MP_EXPORT std::pair<std::uint64_t, std::uint64_t> serve_new_object(std::string_view type,
                                                                   void* object);

/// One reference that this process holds to an object in a server, shared by
/// the copies of a proxy; the destructor gives it back.
class MP_EXPORT proxy_core {
 public:
  proxy_core(endpoint_ptr server, std::uint64_t id, std::string type);
  ~proxy_core();
  proxy_core(const proxy_core&) = delete;
  proxy_core& operator=(const proxy_core&) = delete;

  /// Calls `method` with encoded arguments; the encoded result lands in
  /// `result`. Throws what the method threw, or mp::manager_error.
  void call(std::string_view method, std::span<const std::byte> args, byte_buffer& result) const;

  const server_endpoint& server() const noexcept { return *server_; }
  const endpoint_ptr& server_ptr() const noexcept { return server_; }
  std::uint64_t id() const noexcept { return id_; }
  const std::string& type() const noexcept { return type_; }

 private:
  friend struct core_registry;
  endpoint_ptr server_;
  std::uint64_t id_;
  std::string type_;
  int owner_;  // the process whose reference this is
};
using core_ptr = std::shared_ptr<const proxy_core>;

/// Asks a server for a new object of `type` built from `args`.
MP_EXPORT core_ptr create_object(const endpoint_ptr& server, std::string_view type,
                                 std::span<const std::byte> args);
/// A proxy on the wire: the server, the object and a ticket the server holds
/// a reference for until the receiver claims it, so that the object outlives
/// the sender's proxy however late the receiver decodes, as long as the
/// sending process lives (its tickets are given back when it ends).
MP_EXPORT void save_core(output_archive& out, const core_ptr& core, std::string_view type);
MP_EXPORT core_ptr load_core(input_archive& in, std::string_view type);
/// A proxy's reference from an id and a ticket the server holds for it.
MP_EXPORT core_ptr claim_object(const endpoint_ptr& server, std::uint64_t id, std::uint64_t ticket,
                                std::string type);
[[noreturn]] MP_EXPORT void throw_unbound_proxy();

/// The object an apply runs on: set by the server around the call; throws
/// mp::manager_error if it is not of the type whose fingerprint is given.
MP_EXPORT void* apply_target(std::uint64_t fingerprint);

template <class F>
struct method_traits;
template <class R, class O, class... A>
struct method_traits<R (*)(O&, A...)> {
  using object = O;
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
};

/// A method of a server object: a function of the object and arguments,
/// named, so that the same program's server and proxies agree on it.
template <fixed_string Name, auto Fn>
struct method {
  using traits = method_traits<decltype(Fn)>;
  using object = typename traits::object;
  using result = typename traits::result;
  using args = typename traits::args;
  static constexpr std::string_view name() { return Name.view(); }

  static void run(void* target, call_context&, std::span<const std::byte> bytes, byte_buffer& out) {
    args decoded;
    decode_into(bytes, decoded);
    auto& self = *static_cast<object*>(target);
    if constexpr (std::is_void_v<result>) {
      std::apply([&self](auto&... a) { Fn(self, std::move(a)...); }, decoded);
    } else {
      encode_into(out,
                  std::apply([&self](auto&... a) { return Fn(self, std::move(a)...); }, decoded));
    }
  }
  static bool add() { return register_method(type_name<object>(), name(), &run); }
};

/// A C++ type served as itself: built from an encoded value of the type.
template <class O>
struct value_object {
  static void* create(std::span<const std::byte> args) {
    auto made = std::make_unique<O>();
    if (!args.empty()) decode_into(args, *made);  // none: a default-built one
    return made.release();
  }
  static void destroy(void* object) noexcept { delete static_cast<O*>(object); }
  static bool add() {
    return register_server_type(
        type_name<O>(),
        {.create = &create, .destroy = &destroy, .fingerprint = type_fingerprint<O>});
  }
};

template <class... M>
bool add_methods() {
  return (M::add() && ...);
}

/// What apply hands the function: the object, or the value a value proxy holds.
template <class O>
O& apply_view(O& object) {
  return object;
}
template <class T>
struct boxed_value;
template <class T>
T& apply_view(boxed_value<T>& box) {
  return box.value;
}
template <class O>
using apply_view_t = decltype(apply_view(std::declval<O&>()));

/// Runs a portable callable on the object of an apply (the entry point the
/// server resolves from the allow-list, as for pool tasks).
template <class O, class Fn, class... Args>
struct apply_entry {
  static void run(input_archive& in, byte_buffer* result) {
    O& object = *static_cast<O*>(apply_target(type_fingerprint<O>));
    auto loaded = portable_entry<Fn, Args...>::load(in);  // no structured binding: captured below
    Fn& fn = loaded.first;
    auto& args = loaded.second;
    auto call = [&](auto&... a) -> decltype(auto) {
      return std::invoke(fn, apply_view(object), a...);
    };
    if constexpr (std::is_void_v<decltype(std::apply(call, args))>) {
      std::apply(call, args);
    } else {
      auto value = std::apply(call, args);
      if (result != nullptr) encode_into(*result, value);
    }
  }
  static inline const bool registered = register_entry(&run);
};

}  // namespace detail

namespace detail {
/// The name a program gave T with mp::register_type, if it did.
template <class T>
struct custom_type {
  // Function-local, so that a registration in any static initializer finds it made.
  static std::string& name() {
    static std::string registered_name;
    return registered_name;
  }
  static std::map<std::uint64_t, void* (*)(std::span<const std::byte>)>& constructors() {
    static std::map<std::uint64_t, void* (*)(std::span<const std::byte>)> table;
    return table;
  }
  static void* create(std::span<const std::byte> bytes);
  static void destroy(void* object) noexcept { delete static_cast<T*>(object); }
};
/// The server's name of the type of objects of C++ type O.
template <class O>
std::string served_name() {
  if (!custom_type<O>::name().empty()) return custom_type<O>::name();
  return std::string(type_name<O>());
}
}  // namespace detail

/// What every proxy has: the object's id and server, apply, printing, and the
/// encoding that lets it travel (to processes, pool tasks, queues, other
/// machines). Copies of a proxy share one reference.
template <class O>
class proxy_base {
 public:
  /// The C++ type of the object in the server.
  using object_type = O;

  /// Not bound to any object (as after a move).
  proxy_base() = default;
  explicit proxy_base(detail::core_ptr core) : core_(std::move(core)) {}

  explicit operator bool() const noexcept { return core_ != nullptr; }
  /// Two proxies are equal if they refer to the same object of the same server.
  friend bool operator==(const proxy_base& a, const proxy_base& b) noexcept {
    if (!a.core_ || !b.core_) return a.core_ == b.core_;
    return a.core_->id() == b.core_->id() && a.core_->server().key == b.core_->server().key;
  }
  /// The object's id in its server (Python's token.id).
  std::uint64_t id() const { return core().id(); }
  /// The server's address.
  const mp::address& address() const { return core().server().where; }

  /// Runs fn(object, args...) inside the server, atomically with respect to
  /// every other request on the object, and returns its result: the way to
  /// read-modify-write (`d.apply(add_one, key)` for `d[k] += 1`). fn must be
  /// portable as a pool task's callable is (a function or a capture-less
  /// lambda), and the server must be a run of the same program.
  template <class Fn, class... Args>
  auto apply(Fn fn, const Args&... args) const
      -> std::invoke_result_t<Fn&, detail::apply_view_t<O>, std::decay_t<Args>&...> {
    static_assert(detail::is_portable_v<Fn, std::decay_t<Args>...>,
                  "mp::proxy::apply: the function must be portable (a function or a lambda "
                  "without captures) and its arguments encodable by mp's codec");
    using result = std::invoke_result_t<Fn&, detail::apply_view_t<O>, std::decay_t<Args>&...>;
    using entry = detail::apply_entry<O, Fn, std::decay_t<Args>...>;
    static_cast<void>(entry::registered);
    detail::byte_buffer request;
    detail::output_archive out(request);
    detail::save_code(out, reinterpret_cast<const void*>(&entry::run));
    if constexpr (detail::is_function_pointer_v<Fn>)
      detail::save_code(out, reinterpret_cast<const void*>(fn));
    else if constexpr (!detail::is_stateless_callable_v<Fn>)
      out(fn);
    out(type_fingerprint<std::tuple<std::decay_t<Args>...>>);
    out(std::tuple<std::decay_t<Args>...>(args...));
    detail::byte_buffer reply;
    core().call("__apply__", {request.data(), request.size()}, reply);
    if constexpr (!std::is_void_v<result>) {
      std::remove_cvref_t<result> value{};
      detail::decode_into({reply.data(), reply.size()}, value);
      return value;
    }
  }

  template <class Archive>
  friend void save(Archive& out, const proxy_base& proxy) {
    if (!proxy.core_) detail::throw_unbound_proxy();
    detail::save_core(out, proxy.core_, detail::served_name<O>());
  }
  template <class Archive>
  friend void load(Archive& in, proxy_base& proxy) {
    proxy.core_ = detail::load_core(in, detail::served_name<O>());
  }

 protected:
  const detail::proxy_core& core() const {
    if (!core_) detail::throw_unbound_proxy();
    return *core_;
  }
  /// One request: method M with `args`, converted to M's parameter types.
  template <class M, class... A>
  typename M::result call(A&&... a) const {
    detail::byte_buffer request;
    detail::encode_into(request, typename M::args(std::forward<A>(a)...));
    detail::byte_buffer reply;
    core().call(M::name(), {request.data(), request.size()}, reply);
    if constexpr (!std::is_void_v<typename M::result>) {
      typename M::result value{};
      detail::decode_into({reply.data(), reply.size()}, value);
      return value;
    }
  }

 private:
  detail::core_ptr core_;
};

/// A proxy of an object of a type the program registered with
/// mp::register_type (Python's BaseManager.register): made by
/// manager.create<T>(args...), its methods called by member pointer.
template <class T>
class proxy;

namespace detail {

[[noreturn]] MP_EXPORT void throw_unregistered(std::string_view type, const char* what);
[[noreturn]] MP_EXPORT void throw_no_constructor(std::string_view type);

template <class T>
void* custom_type<T>::create(std::span<const std::byte> bytes) {
  // No bytes: the default constructor (for an object served by name).
  std::uint64_t fingerprint = type_fingerprint<std::tuple<>>;
  if (!bytes.empty()) {
    if (bytes.size() < sizeof fingerprint) throw_no_constructor(type_name<T>());
    std::memcpy(&fingerprint, bytes.data(), sizeof fingerprint);
    bytes = bytes.subspan(sizeof fingerprint);
  }
  const auto found = constructors().find(fingerprint);
  if (found == constructors().end()) throw_no_constructor(type_name<T>());
  return found->second(bytes);
}

/// A constructor T(Args...) the server may call: registered (before main, in
/// every run of the program) by the manager.create<T>(args...) that uses it.
template <class T, class... Args>
struct custom_constructor {
  static void* run(std::span<const std::byte> bytes) {
    std::tuple<Args...> args;
    decode_into(bytes, args);
    return std::apply([](auto&... a) { return static_cast<void*>(new T(std::move(a)...)); }, args);
  }
  static inline const bool registered =
      (custom_type<T>::constructors().emplace(type_fingerprint<std::tuple<Args...>>, &run), true);
};

template <class M>
struct member_traits;
#define MP_MEMBER_TRAITS(QUALIFIERS)                \
  template <class R, class C, class... A>           \
  struct member_traits<R (C::*)(A...) QUALIFIERS> { \
    using result = R;                               \
    using object = C;                               \
    using args = std::tuple<std::decay_t<A>...>;    \
  };
MP_MEMBER_TRAITS()
MP_MEMBER_TRAITS(const)
MP_MEMBER_TRAITS(noexcept)
MP_MEMBER_TRAITS(const noexcept)
#undef MP_MEMBER_TRAITS

template <class R>
struct returned_object : std::false_type {};
template <class U, class D>
struct returned_object<std::unique_ptr<U, D>> : std::true_type {
  using type = U;
};

/// The names of T's registered methods of member pointer type M, in this
/// process (the same in every run of the program: registered before main).
template <class T, class M>
std::vector<std::pair<M, std::string>>& method_names() {
  static std::vector<std::pair<M, std::string>> names;
  return names;
}

template <class T, class M>
void add_custom_method(const std::string& type, M method, std::string name) {
  using traits = member_traits<M>;
  using result = typename traits::result;
  register_method_handler(
      type, name,
      [method](void* target, call_context&, std::span<const std::byte> bytes, byte_buffer& out) {
        typename traits::args decoded;
        decode_into(bytes, decoded);
        T& self = *static_cast<T*>(target);
        auto call = [&](auto&... a) -> decltype(auto) { return (self.*method)(std::move(a)...); };
        if constexpr (std::is_void_v<result>) {
          std::apply(call, decoded);
        } else if constexpr (returned_object<result>::value) {
          using U = typename returned_object<result>::type;
          result made = std::apply(call, decoded);
          if (!made) throw std::invalid_argument("a method returned no object (a null pointer)");
          const auto [id, ticket] = serve_new_object(served_name<U>(), made.get());
          static_cast<void>(made.release());  // the server owns it now
          encode_into(out, std::tuple<std::uint64_t, std::uint64_t>(id, ticket));
        } else {
          encode_into(out, std::apply(call, decoded));
        }
      });
  method_names<T, M>().emplace_back(method, std::move(name));
}

}  // namespace detail

/// Registers T for managers: its server side (made by manager.create<T>(...),
/// freed with its last proxy) and the methods proxies may call. Python's
/// BaseManager.register(typeid, callable, exposed). Call it where it runs
/// before main in every run of the program, as a static initializer:
///
///   const bool counter_registered =
///       mp::register_type<counter>("counter", &counter::add, &counter::get);
///
/// so that a server started by spawn or forkserver knows the type too (as
/// Python registers at import). A method that returns std::unique_ptr<U>
/// of a registered U hands the object to the server and returns mp::proxy<U>.
template <class T, class... M>
bool register_type(std::string name, M... methods) {
  static_assert(std::is_class_v<T>, "mp::register_type<T>: T must be a class type");
  static_assert((std::is_member_function_pointer_v<M> && ...),
                "mp::register_type<T>(name, methods...): pass member function pointers, "
                "&T::method");
  static_assert((std::is_base_of_v<typename detail::member_traits<M>::object, T> && ...),
                "mp::register_type<T>(name, methods...): every method must be a member of T");
  if (name.empty() || name.size() > 65535)
    throw std::invalid_argument("mp::register_type: a name of 1 to 65535 bytes");
  detail::custom_type<T>::name() = name;
  detail::register_server_type(name, {.create = &detail::custom_type<T>::create,
                                      .destroy = &detail::custom_type<T>::destroy,
                                      .fingerprint = type_fingerprint<T>});
  std::size_t index = 0;
  // Named by position and signature: two programs that register the same
  // methods in another order fail with "no method" rather than call another.
  (detail::add_custom_method<T>(
       name, methods, std::to_string(index++) + ":" + std::string(detail::type_name<M>())),
   ...);
  return true;
}

template <class T>
class proxy : public proxy_base<T> {
 public:
  proxy() = default;
  explicit proxy(detail::core_ptr core) : proxy_base<T>(std::move(core)) {}

  /// Calls a registered method on the object in the server: one request.
  /// Returns its result, or mp::proxy<U> for a method returning
  /// std::unique_ptr<U>. Throws mp::usage_error for a method not registered.
  template <class M, class... A>
  auto call(M method, A&&... args) const {
    static_assert(std::is_member_function_pointer_v<M>,
                  "mp::proxy<T>::call(method, args...): pass a member function pointer, "
                  "&T::method");
    using traits = detail::member_traits<M>;
    using result = typename traits::result;
    const std::string* name = nullptr;
    for (const auto& [m, n] : detail::method_names<T, M>())
      if (m == method) name = &n;
    if (name == nullptr)
      detail::throw_unregistered(detail::type_name<T>(), "that method is not registered");
    detail::byte_buffer request;
    detail::encode_into(request, typename traits::args(std::forward<A>(args)...));
    detail::byte_buffer reply;
    this->core().call(*name, {request.data(), request.size()}, reply);
    if constexpr (detail::returned_object<result>::value) {
      using U = typename detail::returned_object<result>::type;
      std::tuple<std::uint64_t, std::uint64_t> made;
      detail::decode_into({reply.data(), reply.size()}, made);
      return proxy<U>(detail::claim_object(this->core().server_ptr(), std::get<0>(made),
                                           std::get<1>(made), detail::served_name<U>()));
    } else if constexpr (!std::is_void_v<result>) {
      std::remove_cvref_t<result> value{};
      detail::decode_into({reply.data(), reply.size()}, value);
      return value;
    }
  }
};

namespace detail {

/// Python's `proxy[i] = v` and `v = proxy[i]`, each one request. There is
/// deliberately no `+=`: that would be a read and a write with other
/// processes' requests between them; use apply.
template <class Proxy, class Key, class Value>
class item_reference {
 public:
  item_reference(Proxy proxy, Key key) : proxy_(std::move(proxy)), key_(std::move(key)) {}
  operator Value() const { return proxy_.at(key_); }  // NOLINT: reads like the element
  Value get() const { return proxy_.at(key_); }
  const item_reference& operator=(const Value& value) const {
    proxy_.set(key_, value);
    return *this;
  }
  const item_reference& operator=(const item_reference& other) const { return *this = other.get(); }

 private:
  Proxy proxy_;  // a copy (one shared reference): `auto r = make()[0];` does not dangle
  Key key_;
};

/// Iteration over a snapshot taken at begin(): one request, then local.
template <class T>
class snapshot_iterator {
 public:
  using value_type = T;
  using difference_type = std::ptrdiff_t;
  snapshot_iterator() = default;
  explicit snapshot_iterator(std::shared_ptr<const std::vector<T>> items)
      : items_(std::move(items)) {}
  const T& operator*() const { return (*items_)[index_]; }
  snapshot_iterator& operator++() {
    ++index_;
    return *this;
  }
  void operator++(int) { ++index_; }
  friend bool operator==(const snapshot_iterator& it, std::default_sentinel_t) {
    return !it.items_ || it.index_ >= it.items_->size();
  }

 private:
  std::shared_ptr<const std::vector<T>> items_;
  std::size_t index_ = 0;
};

[[noreturn]] MP_EXPORT void throw_index_error(std::int64_t index, std::size_t size,
                                              const char* what);
[[noreturn]] MP_EXPORT void throw_key_error(const std::string& key);
[[noreturn]] MP_EXPORT void throw_value_error(const std::string& what);

inline std::size_t checked_index(std::int64_t index, std::size_t size, const char* what) {
  const auto n = static_cast<std::int64_t>(size);
  const std::int64_t at = index < 0 ? index + n : index;
  if (at < 0 || at >= n) throw_index_error(index, size, what);
  return static_cast<std::size_t>(at);
}

template <class T>
std::string repr_of(const T& value) {
  std::ostringstream out;
  write_repr(out, value);
  return out.str();
}

}  // namespace detail

/// Python's ListProxy over a std::vector<T> in the server. Indices may be
/// negative, counting from the end, as in Python; out of range is
/// std::out_of_range (Python's IndexError).
template <class T>
class list_proxy : public proxy_base<std::vector<T>> {
  static_assert(detail::reported(detail::check_managed<T>()));
  using vec = std::vector<T>;
  struct ops {
    static void append(vec& v, T x) { v.push_back(std::move(x)); }
    static void extend(vec& v, vec xs) {
      v.insert(v.end(), std::make_move_iterator(xs.begin()), std::make_move_iterator(xs.end()));
    }
    static T at(vec& v, std::int64_t i) { return v[detail::checked_index(i, v.size(), "list")]; }
    static vec get_many(vec& v, std::vector<std::int64_t> is) {
      vec out;
      out.reserve(is.size());
      for (const auto i : is) out.push_back(v[detail::checked_index(i, v.size(), "list")]);
      return out;
    }
    static void set(vec& v, std::int64_t i, T x) {
      v[detail::checked_index(i, v.size(), "list assignment")] = std::move(x);
    }
    static void insert(vec& v, std::int64_t i, T x) {
      const auto n = static_cast<std::int64_t>(v.size());
      std::int64_t at = i < 0 ? std::max<std::int64_t>(0, i + n) : std::min(i, n);
      v.insert(v.begin() + at, std::move(x));
    }
    static T pop(vec& v, std::int64_t i) {
      if (v.empty()) detail::throw_index_error(i, 0, "pop from empty list");
      const auto at = detail::checked_index(i, v.size(), "pop");
      T x = std::move(v[at]);
      v.erase(v.begin() + static_cast<std::ptrdiff_t>(at));
      return x;
    }
    static void remove(vec& v, T x) {
      require_equality();
      if constexpr (std::equality_comparable<T>) {
        for (auto it = v.begin(); it != v.end(); ++it)
          if (*it == x) {
            v.erase(it);
            return;
          }
      }
      detail::throw_value_error("list.remove(x): " + detail::repr_of(x) + " not in list");
    }
    static std::uint64_t index(vec& v, T x) {
      require_equality();
      if constexpr (std::equality_comparable<T>) {
        for (std::size_t i = 0; i < v.size(); ++i)
          if (v[i] == x) return i;
      }
      detail::throw_value_error(detail::repr_of(x) + " is not in list");
    }
    static std::uint64_t count(vec& v, T x) {
      require_equality();
      std::uint64_t n = 0;
      if constexpr (std::equality_comparable<T>)
        for (const auto& y : v) n += (y == x) ? 1U : 0U;
      return n;
    }
    static std::uint64_t size(vec& v) { return v.size(); }
    static void clear(vec& v) { v.clear(); }
    static void reverse(vec& v) { std::reverse(v.begin(), v.end()); }
    static void sort(vec& v) {
      if constexpr (std::totally_ordered<T>) {
        std::sort(v.begin(), v.end());
      } else {
        detail::throw_value_error("sort: the items have no order (" +
                                  std::string(detail::type_name<T>()) + " has no operator<)");
      }
    }
    static void require_equality() {
      if constexpr (!std::equality_comparable<T>)
        detail::throw_value_error("the items cannot be compared (" +
                                  std::string(detail::type_name<T>()) + " has no operator==)");
    }
    static vec copy(vec& v) { return v; }
    static void assign(vec& v, vec xs) { v = std::move(xs); }
  };
  using m_append = detail::method<"append", &ops::append>;
  using m_extend = detail::method<"extend", &ops::extend>;
  using m_at = detail::method<"at", &ops::at>;
  using m_get_many = detail::method<"get_many", &ops::get_many>;
  using m_set = detail::method<"set", &ops::set>;
  using m_insert = detail::method<"insert", &ops::insert>;
  using m_pop = detail::method<"pop", &ops::pop>;
  using m_remove = detail::method<"remove", &ops::remove>;
  using m_index = detail::method<"index", &ops::index>;
  using m_count = detail::method<"count", &ops::count>;
  using m_size = detail::method<"size", &ops::size>;
  using m_clear = detail::method<"clear", &ops::clear>;
  using m_reverse = detail::method<"reverse", &ops::reverse>;
  using m_sort = detail::method<"sort", &ops::sort>;
  using m_copy = detail::method<"copy", &ops::copy>;
  using m_assign = detail::method<"assign", &ops::assign>;

 public:
  using value_type = T;
  /// Registers the server's side of the type (before main, in every run).
  static inline const bool registered =
      detail::value_object<vec>::add() &&
      detail::add_methods<m_append, m_extend, m_at, m_get_many, m_set, m_insert, m_pop, m_remove,
                          m_index, m_count, m_size, m_clear, m_reverse, m_sort, m_copy, m_assign>();

  list_proxy() = default;
  explicit list_proxy(detail::core_ptr core) : proxy_base<vec>(std::move(core)) {
    static_cast<void>(registered);
  }

  void append(const T& x) const { this->template call<m_append>(x); }
  /// Appends all of `xs` in one request.
  void extend(std::vector<T> xs) const { this->template call<m_extend>(std::move(xs)); }
  T at(std::int64_t i) const { return this->template call<m_at>(i); }
  /// The items at `indices`, in one request.
  std::vector<T> get_many(std::vector<std::int64_t> indices) const {
    return this->template call<m_get_many>(std::move(indices));
  }
  void set(std::int64_t i, const T& x) const { this->template call<m_set>(i, x); }
  detail::item_reference<list_proxy, std::int64_t, T> operator[](std::int64_t i) const {
    return {*this, i};
  }
  void insert(std::int64_t i, const T& x) const { this->template call<m_insert>(i, x); }
  T pop(std::int64_t i = -1) const { return this->template call<m_pop>(i); }
  /// Removes the first item equal to x; std::invalid_argument (ValueError) if none.
  void remove(const T& x) const { this->template call<m_remove>(x); }
  std::size_t index(const T& x) const { return this->template call<m_index>(x); }
  std::size_t count(const T& x) const { return this->template call<m_count>(x); }
  std::size_t size() const { return this->template call<m_size>(); }
  bool empty() const { return size() == 0; }
  void clear() const { this->template call<m_clear>(); }
  void reverse() const { this->template call<m_reverse>(); }
  void sort() const { this->template call<m_sort>(); }
  /// The whole list, in one request (Python's list(proxy)).
  std::vector<T> copy() const { return this->template call<m_copy>(); }
  /// Replaces the whole list (Python's proxy[:] = xs).
  void assign(std::vector<T> xs) const { this->template call<m_assign>(std::move(xs)); }

  /// Iterates over a snapshot taken now.
  detail::snapshot_iterator<T> begin() const {
    return detail::snapshot_iterator<T>(std::make_shared<const std::vector<T>>(copy()));
  }
  std::default_sentinel_t end() const { return {}; }

  std::string str() const { return detail::repr_of(copy()); }
  friend std::ostream& operator<<(std::ostream& out, const list_proxy& p) { return out << p.str(); }
};

/// A fixed-size std::vector<T> in the server: Python's manager.Array. A list
/// whose size cannot change.
template <class T>
class array_proxy : public list_proxy<T> {
 public:
  using list_proxy<T>::list_proxy;
  void append(const T&) const = delete;
  void extend(std::vector<T>) const = delete;
  void insert(std::int64_t, const T&) const = delete;
  T pop(std::int64_t = -1) const = delete;
  void remove(const T&) const = delete;
  void clear() const = delete;
};

/// Python's DictProxy over a std::map<K, V> in the server (keys sorted, not
/// in insertion order). A missing key is std::out_of_range (KeyError).
template <class K, class V>
class dict_proxy : public proxy_base<std::map<K, V>> {
  static_assert(detail::reported(detail::check_managed<K>() && detail::check_managed<V>()));
  using map = std::map<K, V>;
  struct ops {
    static V at(map& m, K k) {
      const auto it = m.find(k);
      if (it == m.end()) detail::throw_key_error(detail::repr_of(k));
      return it->second;
    }
    static std::optional<V> get(map& m, K k) {
      const auto it = m.find(k);
      if (it == m.end()) return std::nullopt;
      return it->second;
    }
    static std::vector<std::optional<V>> get_many(map& m, std::vector<K> ks) {
      std::vector<std::optional<V>> out;
      out.reserve(ks.size());
      for (const auto& k : ks) out.push_back(get(m, k));
      return out;
    }
    static void set(map& m, K k, V v) { m.insert_or_assign(std::move(k), std::move(v)); }
    static bool contains(map& m, K k) { return m.find(k) != m.end(); }
    static bool erase(map& m, K k) { return m.erase(k) != 0; }
    static V pop(map& m, K k) {
      const auto it = m.find(k);
      if (it == m.end()) detail::throw_key_error(detail::repr_of(k));
      V v = std::move(it->second);
      m.erase(it);
      return v;
    }
    static V setdefault(map& m, K k, V v) {
      return m.try_emplace(std::move(k), std::move(v)).first->second;
    }
    static void update(map& m, std::vector<std::pair<K, V>> items) {
      for (auto& [k, v] : items) m.insert_or_assign(std::move(k), std::move(v));
    }
    static std::vector<K> keys(map& m) {
      std::vector<K> out;
      out.reserve(m.size());
      for (const auto& kv : m) out.push_back(kv.first);
      return out;
    }
    static std::vector<V> values(map& m) {
      std::vector<V> out;
      out.reserve(m.size());
      for (const auto& kv : m) out.push_back(kv.second);
      return out;
    }
    static std::vector<std::pair<K, V>> items(map& m) { return {m.begin(), m.end()}; }
    static std::uint64_t size(map& m) { return m.size(); }
    static void clear(map& m) { m.clear(); }
    static map copy(map& m) { return m; }
  };
  using m_at = detail::method<"at", &ops::at>;
  using m_get = detail::method<"get", &ops::get>;
  using m_get_many = detail::method<"get_many", &ops::get_many>;
  using m_set = detail::method<"set", &ops::set>;
  using m_contains = detail::method<"contains", &ops::contains>;
  using m_erase = detail::method<"erase", &ops::erase>;
  using m_pop = detail::method<"pop", &ops::pop>;
  using m_setdefault = detail::method<"setdefault", &ops::setdefault>;
  using m_update = detail::method<"update", &ops::update>;
  using m_keys = detail::method<"keys", &ops::keys>;
  using m_values = detail::method<"values", &ops::values>;
  using m_items = detail::method<"items", &ops::items>;
  using m_size = detail::method<"size", &ops::size>;
  using m_clear = detail::method<"clear", &ops::clear>;
  using m_copy = detail::method<"copy", &ops::copy>;

 public:
  // No key_type or mapped_type: cereal would take the proxy for a map.
  static inline const bool registered =
      detail::value_object<map>::add() &&
      detail::add_methods<m_at, m_get, m_get_many, m_set, m_contains, m_erase, m_pop, m_setdefault,
                          m_update, m_keys, m_values, m_items, m_size, m_clear, m_copy>();

  dict_proxy() = default;
  explicit dict_proxy(detail::core_ptr core) : proxy_base<map>(std::move(core)) {
    static_cast<void>(registered);
  }

  /// The value at k; std::out_of_range if there is none (Python's d[k]).
  V at(const K& k) const { return this->template call<m_at>(k); }
  /// The value at k, or nullopt (Python's d.get(k)).
  std::optional<V> get(const K& k) const { return this->template call<m_get>(k); }
  V get(const K& k, const V& fallback) const { return get(k).value_or(fallback); }
  /// Several lookups in one request.
  std::vector<std::optional<V>> get_many(std::vector<K> keys) const {
    return this->template call<m_get_many>(std::move(keys));
  }
  void set(const K& k, const V& v) const { this->template call<m_set>(k, v); }
  detail::item_reference<dict_proxy, K, V> operator[](const K& k) const { return {*this, k}; }
  bool contains(const K& k) const { return this->template call<m_contains>(k); }
  /// Removes k; false if it was not there (Python's `del d[k]` raises instead).
  bool erase(const K& k) const { return this->template call<m_erase>(k); }
  V pop(const K& k) const { return this->template call<m_pop>(k); }
  V setdefault(const K& k, const V& v) const { return this->template call<m_setdefault>(k, v); }
  /// Sets all the pairs in one request.
  void update(std::vector<std::pair<K, V>> items) const {
    this->template call<m_update>(std::move(items));
  }
  std::vector<K> keys() const { return this->template call<m_keys>(); }
  std::vector<V> values() const { return this->template call<m_values>(); }
  std::vector<std::pair<K, V>> items() const { return this->template call<m_items>(); }
  std::size_t size() const { return this->template call<m_size>(); }
  bool empty() const { return size() == 0; }
  void clear() const { this->template call<m_clear>(); }
  std::map<K, V> copy() const { return this->template call<m_copy>(); }

  std::string str() const { return detail::repr_of(copy()); }
  friend std::ostream& operator<<(std::ostream& out, const dict_proxy& p) { return out << p.str(); }
};

namespace detail {
/// What manager.value<T>() holds in the server.
template <class T>
struct boxed_value {
  T value{};
  template <class Archive>
  void serialize(Archive& archive) {
    archive(value);
  }
};
}  // namespace detail

/// Python's ValueProxy (manager.Value): one value in the server.
template <class T>
class value_proxy : public proxy_base<detail::boxed_value<T>> {
  static_assert(detail::reported(detail::check_managed<T>()));
  using box = detail::boxed_value<T>;
  struct ops {
    static T get(box& b) { return b.value; }
    static void set(box& b, T v) { b.value = std::move(v); }
  };
  using m_get = detail::method<"get", &ops::get>;
  using m_set = detail::method<"set", &ops::set>;

 public:
  using value_type = T;
  static inline const bool registered =
      detail::value_object<box>::add() && detail::add_methods<m_get, m_set>();

  value_proxy() = default;
  explicit value_proxy(detail::core_ptr core) : proxy_base<box>(std::move(core)) {
    static_cast<void>(registered);
  }
  T get() const { return this->template call<m_get>(); }
  void set(const T& v) const { this->template call<m_set>(v); }
  /// Python's .value, read.
  T value() const { return get(); }
  std::string str() const { return detail::repr_of(get()); }
  friend std::ostream& operator<<(std::ostream& out, const value_proxy& p) {
    return out << p.str();
  }
};

namespace detail {
MP_EXPORT void namespace_set(const proxy_core& core, const std::string& name, const bytes& value);
MP_EXPORT bytes namespace_get(const proxy_core& core, const std::string& name);
}  // namespace detail

/// Python's NamespaceProxy: named values of different types.
/// `ns.set("x", 1)`, `ns.get<int>("x")` (mp::decode_error if "x" holds
/// another type, std::out_of_range (AttributeError) if there is no "x").
class MP_EXPORT namespace_proxy : public proxy_base<detail::server_namespace> {
 public:
  namespace_proxy() = default;
  explicit namespace_proxy(detail::core_ptr core);
  template <class T>
  void set(const std::string& name, const T& value) const {
    detail::namespace_set(core(), name, encode(value));
  }
  template <class T>
  T get(const std::string& name) const {
    return decode<T>(detail::namespace_get(core(), name));
  }
  bool contains(const std::string& name) const;
  bool erase(const std::string& name) const;
  std::vector<std::string> names() const;
  /// Namespace(a=..., b=...): values printed by name only, as their types are
  /// not known here.
  std::string str() const;
  friend std::ostream& operator<<(std::ostream& out, const namespace_proxy& p) {
    return out << p.str();
  }
};

namespace detail {
/// The queue behind queue_proxy<T>: items travel encoded, so one server type
/// serves every T.
class MP_EXPORT manager_queue_core : public proxy_base<server_queue> {
 public:
  manager_queue_core() = default;
  explicit manager_queue_core(core_ptr core) : proxy_base(std::move(core)) {}
  void put(const bytes& item, bool block, mp::timeout timeout) const;
  bytes get(bool block, mp::timeout timeout) const;
  std::size_t qsize() const;
  bool empty() const;
  bool full() const;
  void task_done() const;
  void join() const;
  std::string str() const;
};
}  // namespace detail

/// Python's manager.Queue() proxy, typed. get() on an empty queue without
/// blocking (or past its timeout) throws mp::queue_empty, put() on a full
/// one mp::queue_full.
template <class T>
class queue_proxy {
  static_assert(detail::reported(detail::check_managed<T>()));

 public:
  using value_type = T;
  using object_type = detail::server_queue;
  queue_proxy() = default;
  explicit queue_proxy(detail::core_ptr core) : core_(std::move(core)) {}
  void put(const T& item, bool block = true, mp::timeout timeout = {}) const {
    core_.put(encode(item), block, timeout);
  }
  void put(const T& item, mp::timeout timeout) const { put(item, true, timeout); }
  void put_nowait(const T& item) const { put(item, false); }
  T get(bool block = true, mp::timeout timeout = {}) const {
    return decode<T>(core_.get(block, timeout));
  }
  T get(mp::timeout timeout) const { return get(true, timeout); }
  T get_nowait() const { return get(false); }
  std::size_t qsize() const { return core_.qsize(); }
  bool empty() const { return core_.empty(); }
  bool full() const { return core_.full(); }
  std::uint64_t id() const { return core_.id(); }
  std::string str() const { return core_.str(); }
  friend std::ostream& operator<<(std::ostream& out, const queue_proxy& p) {
    return out << p.str();
  }

  template <class Archive>
  friend void save(Archive& out, const queue_proxy& q) {
    out(q.core_);
  }
  template <class Archive>
  friend void load(Archive& in, queue_proxy& q) {
    in(q.core_);
  }

 protected:
  detail::manager_queue_core core_;
};

/// Python's manager.JoinableQueue() proxy.
template <class T>
class joinable_queue_proxy : public queue_proxy<T> {
 public:
  using queue_proxy<T>::queue_proxy;
  void task_done() const { this->core_.task_done(); }
  void join() const { this->core_.join(); }
};

namespace detail {
/// std Lockable from acquire() and release(): `std::scoped_lock guard(lock);`
/// is Python's `with lock:`.
template <class Proxy>
class lockable {
 public:
  void lock() const { self().acquire(); }
  bool try_lock() const { return self().acquire(false); }
  void unlock() const { self().release(); }

 private:
  const Proxy& self() const { return static_cast<const Proxy&>(*this); }
};
}  // namespace detail

/// Python's manager.Lock() (AcquirerProxy), and a std Lockable. A lock whose
/// holder's process dies (its connection closes) is released; Python's stays
/// locked forever.
class MP_EXPORT lock_proxy : public proxy_base<detail::server_lock>,
                             public detail::lockable<lock_proxy> {
 public:
  lock_proxy() = default;
  explicit lock_proxy(detail::core_ptr core);
  bool acquire(bool block = true, mp::timeout timeout = {}) const;
  bool acquire(mp::timeout timeout) const { return acquire(true, timeout); }
  void release() const;
  std::string str() const;
  friend std::ostream& operator<<(std::ostream& out, const lock_proxy& p) { return out << p.str(); }
};

/// Python's manager.RLock(): owned by the thread of the process that took it
/// (each thread talks to the server over its own connection).
class MP_EXPORT rlock_proxy : public proxy_base<detail::server_rlock>,
                              public detail::lockable<rlock_proxy> {
 public:
  rlock_proxy() = default;
  explicit rlock_proxy(detail::core_ptr core);
  bool acquire(bool block = true, mp::timeout timeout = {}) const;
  bool acquire(mp::timeout timeout) const { return acquire(true, timeout); }
  /// mp::usage_error (Python's RuntimeError) if this thread does not own it.
  void release() const;
};

/// Python's manager.Semaphore() and BoundedSemaphore(): a bounded one throws
/// mp::usage_error (Python's ValueError) when released too many times, as
/// mp::bounded_semaphore does.
class MP_EXPORT semaphore_proxy : public proxy_base<detail::server_semaphore>,
                                  public detail::lockable<semaphore_proxy> {
 public:
  semaphore_proxy() = default;
  explicit semaphore_proxy(detail::core_ptr core);
  bool acquire(bool block = true, mp::timeout timeout = {}) const;
  bool acquire(mp::timeout timeout) const { return acquire(true, timeout); }
  void release(std::uint32_t n = 1) const;
  /// The counter now (Python's private _value).
  std::int64_t get_value() const;
};

/// Python's manager.Condition(): its own lock, owned by the calling thread
/// as an rlock is.
class MP_EXPORT condition_proxy : public proxy_base<detail::server_condition>,
                                  public detail::lockable<condition_proxy> {
 public:
  condition_proxy() = default;
  explicit condition_proxy(detail::core_ptr core);
  bool acquire(bool block = true, mp::timeout timeout = {}) const;
  void release() const;
  /// Releases the lock, waits for a notify (false when the timeout passed
  /// first), takes the lock again. std::logic_error if not owned.
  bool wait(mp::timeout timeout = {}) const;
  /// Waits until pred() (evaluated here, with the lock held) is true.
  template <class Pred>
  bool wait_for(Pred pred, mp::timeout timeout = {}) const {
    const detail::deadline until(timeout);
    bool result = pred();
    while (!result) {
      if (until.passed()) break;
      wait(until.left());
      result = pred();
    }
    return result;
  }
  void notify(std::uint32_t n = 1) const;
  void notify_all() const;
};

/// Python's manager.Event() (EventProxy).
class MP_EXPORT event_proxy : public proxy_base<detail::server_event> {
 public:
  event_proxy() = default;
  explicit event_proxy(detail::core_ptr core);
  bool is_set() const;
  void set() const;
  void clear() const;
  bool wait(mp::timeout timeout = {}) const;
};

/// Python's manager.Barrier() (BarrierProxy). wait() returns this arrival's
/// index (0 to parties - 1); a broken, aborted or timed-out barrier throws
/// mp::broken_barrier, as mp::barrier does.
class MP_EXPORT barrier_proxy : public proxy_base<detail::server_barrier> {
 public:
  barrier_proxy() = default;
  explicit barrier_proxy(detail::core_ptr core);
  std::uint32_t wait(mp::timeout timeout = {}) const;
  void reset() const;
  void abort() const;
  std::uint32_t parties() const;
  std::uint32_t n_waiting() const;
  bool broken() const;
};

/// Python's BaseManager(address, authkey) and SyncManager, keyword arguments as fields.
struct manager_options {
  /// Where the server listens (start, serve_forever) or is (connect). Unset:
  /// a fresh name in Linux's abstract socket namespace (never a file).
  std::optional<mp::address> address{};
  /// Unset: mp::current_process().authkey(), as Python.
  std::optional<std::vector<std::byte>> authkey{};
  /// How the server process starts; unset: mp::get_start_method().
  std::optional<start_method> method{};
  /// Python's Manager() starts the server: true. False for a manager that
  /// will connect() or serve_forever(), or start() later.
  bool start = true;
};

/// Python's multiprocessing.Manager() / SyncManager: a server process and
/// the means to make shared objects in it. Move-only. The destructor shuts
/// down a server this object started (as `with Manager() as m:` does);
/// proxies then fail with mp::manager_error.
class shared_memory_manager;

class MP_EXPORT manager {
 public:
  explicit manager(manager_options options = {});
  manager(manager&&) noexcept;
  manager& operator=(manager&&) noexcept;
  ~manager();

  /// Starts the server process and waits until it serves. Throws
  /// mp::usage_error if started or connected already, mp::manager_error if
  /// it could not start (the address in use, say).
  void start();
  /// Connects to a server that is already serving at options.address
  /// (Python's manager.connect()). Throws mp::manager_error if nothing
  /// serves there, mp::authentication_error if the key is wrong.
  void connect();
  /// Stops a server this object started; idempotent.
  void shutdown();
  /// A server in this process, listening already (Python's get_server()):
  /// its address (with the port the kernel picked, for port 0) is known
  /// before it serves, and this manager can be a client of it meanwhile, from
  /// another thread, as a connected one is.
  class MP_EXPORT server {
   public:
    server(server&&) noexcept;
    server& operator=(server&&) noexcept;
    ~server();
    const mp::address& address() const;
    /// Serves until `stop` is requested (or, as in Python, a client holding
    /// the key asks the server to stop).
    void serve_forever(std::stop_token stop = {});

   private:
    friend class manager;
    struct impl;
    explicit server(std::unique_ptr<impl> state);
    std::unique_ptr<impl> impl_;
  };
  /// Throws mp::usage_error if started or connected already; what
  /// mp::listener throws if the address is taken.
  server get_server();
  /// get_server().serve_forever(stop).
  void serve_forever(std::stop_token stop = {});
  /// The server's address (with the port the kernel picked, for port 0).
  const mp::address& address() const;
  /// The server process's id, if this object started it.
  std::optional<int> pid() const;
  /// How many objects the server holds (Python's _number_of_objects()).
  std::size_t number_of_objects() const;

  template <class T>
  list_proxy<T> list(std::vector<T> items = {}) const {
    static_cast<void>(list_proxy<T>::registered);
    return list_proxy<T>(make(items));
  }
  template <class K, class V>
  dict_proxy<K, V> dict(std::map<K, V> items = {}) const {
    static_cast<void>(dict_proxy<K, V>::registered);
    return dict_proxy<K, V>(make(items));
  }
  template <class T>
  value_proxy<T> value(T initial = T{}) const {
    static_cast<void>(value_proxy<T>::registered);
    return value_proxy<T>(make(detail::boxed_value<T>{std::move(initial)}));
  }
  /// Python's manager.Array: `size` values, or these.
  template <class T>
  array_proxy<T> array(std::vector<T> items) const {
    static_cast<void>(list_proxy<T>::registered);
    return array_proxy<T>(make(items));
  }
  template <class T>
  array_proxy<T> array(std::size_t size) const {
    return array<T>(std::vector<T>(size));
  }
  namespace_proxy namespace_() const;
  /// Python's manager.Queue(maxsize): 0 for no limit.
  template <class T>
  queue_proxy<T> queue(std::size_t maxsize = 0) const {
    return queue_proxy<T>(make_queue(maxsize, false));
  }
  template <class T>
  joinable_queue_proxy<T> joinable_queue(std::size_t maxsize = 0) const {
    return joinable_queue_proxy<T>(make_queue(maxsize, true));
  }
  lock_proxy lock() const;
  rlock_proxy rlock() const;
  semaphore_proxy semaphore(std::uint32_t value = 1) const;
  semaphore_proxy bounded_semaphore(std::uint32_t value = 1) const;
  condition_proxy condition() const;
  event_proxy event() const;
  /// Python's manager.Barrier(parties, timeout=None).
  barrier_proxy barrier(std::uint32_t parties, mp::timeout timeout = {}) const;

  /// A new object T(args...) in the server, of a type registered with
  /// mp::register_type (Python's manager.<typeid>(args)). Throws
  /// mp::usage_error if T is not registered in this program.
  template <class T, class... Args>
  proxy<T> create(Args&&... args) const {
    using ctor = detail::custom_constructor<T, std::decay_t<Args>...>;
    static_cast<void>(ctor::registered);
    if (detail::custom_type<T>::name().empty())
      detail::throw_unregistered(detail::type_name<T>(),
                                 "register it with mp::register_type<T>(name, methods...) in a "
                                 "static initializer");
    detail::byte_buffer request;
    const std::uint64_t fingerprint = type_fingerprint<std::tuple<std::decay_t<Args>...>>;
    request.append(&fingerprint, sizeof fingerprint);
    detail::encode_into(request, std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...));
    return proxy<T>(create(detail::custom_type<T>::name(), {request.data(), request.size()}));
  }

  /// Serves a shared object of proxy type P under `name`, made when the
  /// server starts (Python's register(name, callable=lambda: obj) on the
  /// serving side). Before start() or serve_forever().
  template <class P>
  void register_object(std::string name) {
    register_named(std::move(name), proxy_type_name<P>());
  }
  /// The object served under `name` (Python's registered typeid method on a
  /// connected client, `m.get_queue()`). Throws mp::manager_error if the
  /// server has no such name, or it names an object of another type.
  template <class P>
  P get(const std::string& name) const {
    return P(get_named(name, proxy_type_name<P>()));
  }

 private:
  template <class P>
  static std::string proxy_type_name();
  template <class O>
  detail::core_ptr make(const O& initial) const {
    detail::byte_buffer args;
    detail::encode_into(args, initial);
    return create(detail::type_name<O>(), {args.data(), args.size()});
  }
  detail::core_ptr create(std::string_view type, std::span<const std::byte> args) const;
  detail::core_ptr make_queue(std::size_t maxsize, bool joinable) const;
  detail::core_ptr get_named(const std::string& name, const std::string& type) const;
  void register_named(std::string name, std::string type);
  const detail::endpoint_ptr& endpoint() const;

  friend class shared_memory_manager;
  struct state;
  std::unique_ptr<state> state_;
};

namespace detail {
template <class P>
struct proxy_type {
  static std::string name() {
    if constexpr (requires { P::registered; }) static_cast<void>(P::registered);
    return served_name<typename P::object_type>();
  }
};
template <class T>
struct proxy_type<proxy<T>> {
  static std::string name() {
    if constexpr (std::is_default_constructible_v<T>)
      static_cast<void>(custom_constructor<T>::registered);
    return served_name<T>();
  }
};
}  // namespace detail

template <class P>
std::string manager::proxy_type_name() {
  return detail::proxy_type<P>::name();
}

/// Python's multiprocessing.managers.SharedMemoryManager: a manager whose
/// server keeps the names of the shared memory blocks and shareable lists
/// made through it, and unlinks them all when it shuts down (by shutdown(),
/// the destructor, or the end of the program that started it). The blocks
/// themselves are plain mp::shared_memory and mp::shareable_list, named, that
/// other processes open by name or receive as values.
class MP_EXPORT shared_memory_manager {
 public:
  /// Starts the server (as `SharedMemoryManager()` then `start()`); options
  /// as for mp::manager (`start` must be true).
  explicit shared_memory_manager(manager_options options = {});
  shared_memory_manager(shared_memory_manager&&) noexcept;
  shared_memory_manager& operator=(shared_memory_manager&&) noexcept;
  ~shared_memory_manager();

  /// A new named block of `size` zero bytes, unlinked at shutdown (Python's
  /// smm.SharedMemory(size)); the object returned never unlinks it itself.
  mp::shared_memory shared_memory(std::size_t size) const;
  /// A new named shareable list of `items`, unlinked at shutdown (Python's
  /// smm.ShareableList(sequence)).
  mp::shareable_list shareable_list(const std::vector<mp::shareable_list::item>& items) const;
  /// Unlinks every block made through this manager and stops its server.
  void shutdown();
  const mp::address& address() const { return manager_.address(); }
  /// The manager itself, for its other objects (lists, locks, ...).
  mp::manager& base() noexcept { return manager_; }

 private:
  void track(const std::string& name) const;

  mp::manager manager_;
  detail::core_ptr tracker_;
};

}  // namespace mp
