// SPDX-License-Identifier: MIT
// Fuzzes what a manager's server reads from a client: the input is a run of
// requests (each a 2-byte little-endian length and that many bytes), handed to
// the server's request handler on one session, as a hostile or broken client
// holding the key could send them. Each input gets a new server holding, under
// ids 1 to 7, a list, a dict, a value, a namespace, a queue, a lock and an
// event, made through the handler itself by a second session, so that a
// crashing input replays alone. Calls that would wait for another client (a
// queue's get on an empty queue, a lock's acquire while it is held) are sent
// with a zero timeout; a queue's join is left out, and so is making a shared
// memory manager's tracker (it unlinks the blocks it is told of). An apply's
// payload starts with a byte choosing one of this binary's apply functions (3:
// the payload as it is). Shutdown goes through: the server is the input's own.
//
// A bug is: handle() throwing, crashing or reading out of bounds; a request
// left without a reply (only decref and hello have none) or with a reply of an
// unknown status; and reference counts that do not add up: once the input's
// session closes, the server must hold exactly the 7 objects of the other
// session, and none once that one closes too.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "manager_server.hpp"
#include "manager_wire.hpp"
#include "mp/managers.hpp"

namespace {

namespace wire = mp::detail::manager_wire;
using mp::detail::byte_buffer;

// Functions an apply may run, each on the type of one of the fixture's objects.
constexpr auto grow = [](std::vector<int>& v, int x) {
  v.push_back(x);
  return static_cast<std::uint64_t>(v.size());
};
constexpr auto bump = [](std::map<std::string, int>& m, std::string key) {
  int& n = m[key];
  n = static_cast<int>(static_cast<unsigned>(n) + 1U);  // no overflow to report
  return n;
};
constexpr auto swap_in = [](int& value, int x) {
  const int was = value;
  value = x;
  return was;
};
using grow_entry =
    mp::detail::apply_entry<std::vector<int>, std::remove_const_t<decltype(grow)>, int>;
using bump_entry = mp::detail::apply_entry<std::map<std::string, int>,
                                           std::remove_const_t<decltype(bump)>, std::string>;
using swap_entry = mp::detail::apply_entry<mp::detail::boxed_value<int>,
                                           std::remove_const_t<decltype(swap_in)>, int>;

// What an apply's first byte stands for: the encoded identity of its function.
const std::vector<byte_buffer>& apply_codes() {
  static const std::vector<byte_buffer> codes = [] {
    std::vector<byte_buffer> made(3);
    const void* entries[] = {reinterpret_cast<const void*>(&grow_entry::run),
                             reinterpret_cast<const void*>(&bump_entry::run),
                             reinterpret_cast<const void*>(&swap_entry::run)};
    for (std::size_t i = 0; i < made.size(); ++i) {
      mp::detail::output_archive out(made[i]);
      mp::detail::save_code(out, entries[i]);
    }
    return made;
  }();
  return codes;
}

struct fixture_object {
  std::string type;
  byte_buffer args;  // encoded as the type's create decodes them
};

// The objects every input finds, made in this order: ids 1 to 7.
const std::vector<fixture_object>& fixture_objects() {
  static const std::vector<fixture_object> objects = [] {
    std::vector<fixture_object> made;
    const auto add = [&](std::string_view type, const auto&... initial) {
      auto& object = made.emplace_back(fixture_object{std::string(type), {}});
      (mp::detail::encode_into(object.args, initial), ...);
    };
    add(mp::detail::type_name<std::vector<int>>(), std::vector<int>{1, 2, 3});
    add(mp::detail::type_name<std::map<std::string, int>>(), std::map<std::string, int>{{"a", 1}});
    add(mp::detail::type_name<mp::detail::boxed_value<int>>(), mp::detail::boxed_value<int>{7});
    add(mp::detail::type_name<mp::detail::server_namespace>());
    add(mp::detail::type_name<mp::detail::server_queue>());
    add(mp::detail::type_name<mp::detail::server_lock>());
    add(mp::detail::type_name<mp::detail::server_event>());
    return made;
  }();
  return objects;
}

// Types whose methods never wait: everything else (queues and the
// synchronization primitives) may.
bool never_waits(std::string_view type) {
  for (std::size_t i = 0; i < 4; ++i)
    if (fixture_objects()[i].type == type) return true;
  return false;
}

// Decodes a call's arguments as the server will, lets `edit` change them and
// encodes them into `out` after its header. False if they do not decode: then
// the server cannot decode them either, and refuses the call without waiting.
template <class... A, class Edit>
bool rewrite(std::span<const std::byte> args, byte_buffer& out, Edit edit) {
  std::tuple<A...> decoded;
  try {
    mp::detail::decode_into(args, decoded);
  } catch (...) {
    return false;
  }
  edit(decoded);
  mp::detail::encode_into(out, decoded);
  return true;
}

enum class verdict { as_is, rewritten, skip };

// A call that could wait made one that cannot, in `out`.
verdict without_waiting(const wire::request_header& call, byte_buffer& out) {
  wire::begin_request(out, wire::op::call, call.id, call.name);
  bool done = false;
  if (call.name == "get" || call.name == "acquire") {  // (block, timeout)
    done = rewrite<bool, std::int64_t>(call.payload, out, [](auto& a) { std::get<1>(a) = 0; });
  } else if (call.name == "put") {  // (item, block, timeout)
    done = rewrite<mp::bytes, bool, std::int64_t>(call.payload, out,
                                                  [](auto& a) { std::get<2>(a) = 0; });
  } else if (call.name == "wait") {  // (timeout); a barrier's -1 stands for its own default
    done = rewrite<std::int64_t>(call.payload, out, [](auto& a) { std::get<0>(a) = 0; });
  } else if (call.name == "join") {
    return verdict::skip;  // waits for task_done calls that no one will make
  }
  return done ? verdict::rewritten : verdict::as_is;
}

// An apply whose payload starts with the identity of one of the functions above.
verdict chosen_apply(const wire::request_header& call, byte_buffer& out) {
  if (call.payload.empty()) return verdict::as_is;
  const std::size_t choice = static_cast<std::uint8_t>(call.payload[0]) % 4U;
  if (choice == 3) return verdict::as_is;
  wire::begin_request(out, wire::op::call, call.id, call.name);
  const auto& code = apply_codes()[choice];
  out.append(code.data(), code.size());
  const auto rest = call.payload.subspan(1);
  out.append(rest.data(), rest.size());
  return verdict::rewritten;
}

[[noreturn]] void bug() {
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Registered before main, as in any program using them: the served types of
  // these proxies (static members, instantiated by this use) and the applies.
  static_cast<void>(mp::list_proxy<int>::registered);
  static_cast<void>(mp::dict_proxy<std::string, int>::registered);
  static_cast<void>(mp::value_proxy<int>::registered);
  static_cast<void>(grow_entry::registered);
  static_cast<void>(bump_entry::registered);
  static_cast<void>(swap_entry::registered);

  mp::detail::manager_server server;
  byte_buffer request;
  byte_buffer reply;
  // The type of each object the server holds, by id, to tell which calls may wait.
  std::unordered_map<std::uint64_t, std::string> types;

  mp::detail::manager_session keeper = server.open_session();
  for (const auto& object : fixture_objects()) {
    wire::begin_request(request, wire::op::create, 0, object.type);
    request.append(object.args.data(), object.args.size());
    server.handle(keeper, {request.data(), request.size()}, reply);
    if (reply.size() != 9 || reply.data()[0] != std::byte{0}) bug();
    const std::uint64_t id = wire::get_u64({reply.data(), reply.size()}, 1);
    if (id != types.size() + 1) bug();
    types.emplace(id, object.type);
  }

  mp::detail::manager_session session = server.open_session();
  byte_buffer rewritten;
  std::size_t at = 0;
  while (size - at >= 2) {
    const std::size_t length =
        std::min(size - at - 2, std::size_t{data[at]} | (std::size_t{data[at + 1]} << 8U));
    std::span<const std::byte> sent(reinterpret_cast<const std::byte*>(data + at + 2), length);
    at += 2 + length;

    wire::request_header header;
    const bool parsed = wire::parse_request(sent, header);
    if (parsed && header.what == wire::op::create &&
        header.name == mp::detail::type_name<mp::detail::server_segment_tracker>())
      continue;  // see above
    if (parsed && header.what == wire::op::call) {
      verdict v = verdict::as_is;
      if (header.name == "__apply__") {
        v = chosen_apply(header, rewritten);
      } else if (const auto type = types.find(header.id);
                 type != types.end() && !never_waits(type->second)) {
        v = without_waiting(header, rewritten);
      }
      if (v == verdict::skip) continue;
      if (v == verdict::rewritten) sent = {rewritten.data(), rewritten.size()};
    }

    server.handle(session, sent, reply);

    const bool unanswered =
        parsed && (header.what == wire::op::decref || header.what == wire::op::hello);
    if (reply.size() == 0) {
      if (!unanswered) bug();
      continue;
    }
    if (unanswered) bug();  // a reply the client does not read: the next one would be misread
    const auto status = static_cast<wire::status>(reply.data()[0]);
    if (status != wire::status::ok && status != wire::status::raised &&
        status != wire::status::refused)
      bug();
    if (!parsed && status != wire::status::refused) bug();
    if (status == wire::status::ok && parsed &&
        (header.what == wire::op::create || header.what == wire::op::ticket ||
         header.what == wire::op::count) &&
        reply.size() != 9)
      bug();
    if (status == wire::status::ok && parsed && header.what == wire::op::create)
      types.emplace(wire::get_u64({reply.data(), reply.size()}, 1), std::string(header.name));
  }

  // Whatever the input took is given back; the keeper's objects stay until it goes too.
  server.close_session(session);
  if (server.object_count() != fixture_objects().size()) bug();
  server.close_session(keeper);
  if (server.object_count() != 0) bug();
  return 0;
}
