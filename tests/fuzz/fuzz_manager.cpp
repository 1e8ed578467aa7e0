// SPDX-License-Identifier: MIT
// Fuzzes what a manager's server reads from a client: the input is a run of
// requests (each a 2-byte little-endian length and that many bytes), handed to
// the server's request handler on one session, as a hostile or broken client
// holding the key could send them, over a server that holds a list, a dict, a
// value, a namespace, a queue, a lock and an event. Calls that would wait for
// another client (a queue's get on an empty queue, a lock's acquire while it is
// held) are sent without blocking. The handler must answer everything with a
// reply (ok, raised or refused) and never throw, crash or read out of bounds;
// the session's end gives back whatever it took.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "manager_server.hpp"
#include "manager_wire.hpp"
#include "mp/managers.hpp"

namespace {

namespace wire = mp::detail::manager_wire;

// Blocking methods of the self-locking types: a fuzzed call must not wait
// for a client that will never come.
bool blocks(std::string_view method) {
  return method == "get" || method == "put" || method == "acquire" || method == "wait" ||
         method == "join";
}

struct fixture {
  mp::detail::manager_server server;

  fixture() {
    static_cast<void>(mp::list_proxy<int>::registered);
    static_cast<void>(mp::dict_proxy<std::string, int>::registered);
    static_cast<void>(mp::value_proxy<int>::registered);
    mp::detail::manager_session session = server.open_session();
    mp::detail::byte_buffer request;
    mp::detail::byte_buffer reply;
    const auto make = [&](std::string_view type, auto initial) {
      wire::begin_request(request, wire::op::create, 0, type);
      mp::detail::encode_into(request, initial);
      server.handle(session, {request.data(), request.size()}, reply);
    };
    make(mp::detail::type_name<std::vector<int>>(), std::vector<int>{1, 2, 3});
    make(mp::detail::type_name<std::map<std::string, int>>(), std::map<std::string, int>{{"a", 1}});
    make(mp::detail::type_name<mp::detail::boxed_value<int>>(), mp::detail::boxed_value<int>{7});
    for (const auto type : {mp::detail::type_name<mp::detail::server_namespace>(),
                            mp::detail::type_name<mp::detail::server_queue>(),
                            mp::detail::type_name<mp::detail::server_lock>(),
                            mp::detail::type_name<mp::detail::server_event>()}) {
      wire::begin_request(request, wire::op::create, 0, type);
      server.handle(session, {request.data(), request.size()}, reply);
    }
    // Ids 1 to 3 are the list, dict and value, 4 the namespace; the rest lock
    // themselves. The setup session's references keep them for every input:
    // it is never closed.
    static_cast<void>(session);
  }
};

// A call that may block: a blocking method's name on any object but the
// fixture's list, dict, value and namespace (objects the input creates may be
// queues or locks).
bool may_block(std::span<const std::byte> request) {
  wire::request_header header;
  if (!wire::parse_request(request, header) || header.what != wire::op::call) return false;
  return header.id > 4 && blocks(header.name);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static fixture f;
  mp::detail::manager_session session = f.server.open_session();
  mp::detail::byte_buffer reply;
  std::size_t at = 0;
  while (size - at >= 2) {
    const std::size_t length = std::min<std::size_t>(size - at - 2, data[at] | (data[at + 1] << 8));
    const std::span<const std::byte> request(reinterpret_cast<const std::byte*>(data + at + 2),
                                             length);
    at += 2 + length;
    wire::request_header header;
    if (wire::parse_request(request, header) && header.what == wire::op::shutdown) continue;
    if (may_block(request)) {
      // The same call without blocking: block = false where the method takes it.
      wire::request_header h;
      wire::parse_request(request, h);
      mp::detail::byte_buffer rewritten;
      wire::begin_request(rewritten, wire::op::call, h.id, h.name);
      if (h.name == "get") {
        mp::detail::encode_into(rewritten, std::tuple<bool, std::int64_t>(false, 0));
      } else if (h.name == "put") {
        mp::detail::encode_into(rewritten, std::tuple<mp::bytes, bool, std::int64_t>({}, false, 0));
      } else if (h.name == "acquire") {
        mp::detail::encode_into(rewritten, std::tuple<bool, std::int64_t>(false, 0));
      } else if (h.name == "wait") {
        mp::detail::encode_into(rewritten, std::tuple<std::int64_t>(0));
      } else {
        continue;  // join: nothing to rewrite it to
      }
      f.server.handle(session, {rewritten.data(), rewritten.size()}, reply);
      continue;
    }
    f.server.handle(session, request, reply);
    // Every request but decref and hello gets a reply with a known status.
    if (reply.size() == 0) {
      if (!(wire::parse_request(request, header) &&
            (header.what == wire::op::decref || header.what == wire::op::hello)))
        __builtin_trap();
    } else if (static_cast<std::uint8_t>(reply.data()[0]) > 2) {
      __builtin_trap();
    }
  }
  f.server.close_session(session);
  return 0;
}
