// SPDX-License-Identifier: MIT
// Tests of listeners, clients and their authentication (mp/listener.hpp), with
// Python's multiprocessing.connection as a peer where python3 is installed.
#include "mp/listener.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "mp/process.hpp"
#include "mp/testing/testing.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using mp::testing::scaled;

std::string text(const mp::bytes& bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

const std::vector<std::byte> secret = mp::key("the secret key");
const std::vector<std::byte> other = mp::key("another key");

// The address a test listens at, in each family (IPv6 may be missing in a container).
std::optional<mp::address> address_in(mp::address_family family) {
  if (family == mp::address_family::af_inet6) {
    mp::unique_fd probe(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 any{};
    any.sin6_family = AF_INET6;
    any.sin6_addr = in6addr_loopback;
    if (!probe || ::bind(probe.get(), reinterpret_cast<sockaddr*>(&any), sizeof any) != 0)
      return std::nullopt;
  }
  return mp::arbitrary_address(family);
}

// A raw TCP or Unix socket connected to `at`, for clients that misbehave.
mp::unique_fd raw_connect(const mp::address& at) {
  if (at.family() == mp::address_family::af_unix) {
    mp::unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, at.path().data(), at.path().size());
    const auto size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + at.path().size() +
                                             (at.abstract() ? 0 : 1));
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&un), size) != 0)
      throw std::system_error(errno, std::system_category(), "connect");
    return s;
  }
  mp::unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(at.port());
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&in), sizeof in) != 0)
    throw std::system_error(errno, std::system_category(), "connect");
  return s;
}

void send_raw(int fd, std::string_view bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
}

// ---- addresses -------------------------------------------------------------------------

TEST(address, takes_its_family_from_its_form_as_python_does) {
  const mp::address path("/tmp/sock");
  EXPECT_EQ(path.family(), mp::address_family::af_unix);
  EXPECT_FALSE(path.abstract());
  EXPECT_EQ(path.to_string(), "/tmp/sock");
  const mp::address abstract = mp::abstract_address("name");
  EXPECT_EQ(abstract.family(), mp::address_family::af_unix);
  EXPECT_TRUE(abstract.abstract());
  EXPECT_EQ(abstract.path(), std::string("\0name", 5));
  EXPECT_EQ(abstract.to_string(), "@name");
  const mp::address v4{"127.0.0.1", 5000};
  EXPECT_EQ(v4.family(), mp::address_family::af_inet);
  EXPECT_EQ(v4.to_string(), "127.0.0.1:5000");
  const mp::address v6{"::1", 5000};
  EXPECT_EQ(v6.family(), mp::address_family::af_inet6);
  EXPECT_EQ(v6.to_string(), "[::1]:5000");
  EXPECT_THROW(mp::address("localhost", 65536), std::invalid_argument);
  EXPECT_THROW(mp::address("localhost", -1), std::invalid_argument);
  EXPECT_THROW(mp::address(mp::address_family::af_unix, "x", 1), std::invalid_argument);
  EXPECT_NE(mp::arbitrary_address(mp::address_family::af_unix),
            mp::arbitrary_address(mp::address_family::af_unix));
  EXPECT_EQ(mp::arbitrary_address(mp::address_family::af_inet), mp::address("127.0.0.1", 0));
}

// ---- every family ------------------------------------------------------------------------

class every_family : public ::testing::TestWithParam<mp::address_family> {};

TEST_P(every_family, connects_authenticates_and_carries_bytes_and_values) {
  const auto at = address_in(GetParam());
  if (!at) GTEST_SKIP() << "no IPv6 loopback on this machine";
  mp::listener server(*at, {.authkey = secret});
  EXPECT_EQ(server.address().family(), GetParam());
  if (GetParam() != mp::address_family::af_unix) {
    EXPECT_NE(server.address().port(), 0);
  }
  auto accepted = std::async(std::launch::async, [&] { return server.accept(); });
  mp::connection c = mp::client(server.address(), {.authkey = secret});
  mp::connection s = accepted.get();
  EXPECT_EQ(c.format(), mp::wire_format::python);
  c.send_bytes(std::string_view{"raw bytes"});
  EXPECT_EQ(text(s.recv_bytes()), "raw bytes");
  s.send(std::vector<std::string>{"typed", "values"});
  EXPECT_EQ(c.recv<std::vector<std::string>>(), (std::vector<std::string>{"typed", "values"}));
  const std::vector<double> big(300'000, 2.5);  // larger than a socket buffer
  auto sent = std::async(std::launch::async, [&] { c.send(big); });
  EXPECT_EQ(s.recv<std::vector<double>>(), big);
  sent.get();
  ASSERT_TRUE(server.last_accepted());
  EXPECT_EQ(server.last_accepted()->family(), GetParam());
  c.close();
  EXPECT_THROW(s.recv_bytes(), mp::eof_error);
}

INSTANTIATE_TEST_SUITE_P(listener, every_family,
                         ::testing::Values(mp::address_family::af_unix, mp::address_family::af_inet,
                                           mp::address_family::af_inet6),
                         [](const auto& param_info) {
                           switch (param_info.param) {
                             case mp::address_family::af_unix:
                               return "af_unix";
                             case mp::address_family::af_inet:
                               return "af_inet";
                             case mp::address_family::af_inet6:
                               return "af_inet6";
                           }
                           return "unknown";
                         });

TEST(listener, listens_in_the_abstract_namespace_without_a_file) {
  const mp::address at = mp::abstract_address(mp::testing::unique_name("mp-abstract").substr(1));
  mp::listener server(at, {.authkey = secret});
  EXPECT_EQ(server.address(), at);
  auto accepted = std::async(std::launch::async, [&] { return server.accept(); });
  mp::connection c = mp::client(at, {.authkey = secret});
  mp::connection s = accepted.get();
  s.send(42);
  EXPECT_EQ(c.recv<int>(), 42);
}

TEST(listener, removes_its_socket_file_and_refuses_a_path_in_use) {
  const mp::address at = mp::arbitrary_address(mp::address_family::af_unix);
  {
    mp::listener server(at);
    struct stat info {};
    ASSERT_EQ(::stat(at.path().c_str(), &info), 0);
    EXPECT_TRUE(S_ISSOCK(info.st_mode));
    try {
      mp::listener second(at);
      FAIL() << "a second listener took the same path";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::address_in_use);
    }
    server.close();
    EXPECT_TRUE(server.closed());
    EXPECT_NE(::access(at.path().c_str(), F_OK), 0);
    EXPECT_THROW(server.accept(), std::system_error);
    EXPECT_THROW(static_cast<void>(server.address()), std::system_error);
  }
  try {
    mp::client(at);
    FAIL() << "connected to nothing";
  } catch (const std::system_error& e) {
    EXPECT_TRUE(e.code() == std::errc::no_such_file_or_directory ||
                e.code() == std::errc::connection_refused)
        << e.what();
  }
}

TEST(listener, refuses_a_family_that_contradicts_the_address_and_a_bad_backlog) {
  EXPECT_THROW(mp::listener(mp::address("127.0.0.1", 0), {.family = mp::address_family::af_unix}),
               std::invalid_argument);
  EXPECT_THROW(mp::listener(mp::address("127.0.0.1", 0), {.backlog = 0}), std::invalid_argument);
  mp::listener v4({.family = mp::address_family::af_inet});
  EXPECT_EQ(v4.address().family(), mp::address_family::af_inet);
}

TEST(listener, accept_times_out_and_a_client_without_a_listener_is_refused) {
  mp::listener server(mp::address("127.0.0.1", 0));
  EXPECT_THROW(server.accept(50ms), mp::timeout_error);
  const mp::address gone = server.address();
  server.close();
  try {
    mp::client(gone);
    FAIL() << "connected to a closed listener";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::connection_refused);
  }
}

// ---- authentication ----------------------------------------------------------------------

TEST(listener, a_wrong_key_fails_on_both_sides) {
  mp::listener server(mp::address("127.0.0.1", 0), {.authkey = secret});
  auto accepted = std::async(std::launch::async, [&] { return server.accept(); });
  EXPECT_THROW(mp::client(server.address(), {.authkey = other}), mp::authentication_error);
  try {
    accepted.get();
    FAIL() << "the listener let in a client with another key";
  } catch (const mp::authentication_error& e) {
    EXPECT_NE(std::string(e.what()).find("another key"), std::string::npos) << e.what();
  }
}

TEST(listener, a_client_with_the_key_rejects_a_listener_without_it) {
  // The second half of the mutual handshake: a listener that welcomes the client but
  // cannot answer its challenge (it does not hold the key) is refused by the client.
  // A listener by hand, over an unauthenticated one, plays that part.
  mp::listener fake(mp::address("127.0.0.1", 0));
  auto fake_side = std::async(std::launch::async, [&] {
    mp::connection c = fake.accept();
    // Deliver a challenge the client answers, then answer its challenge wrongly.
    const std::string prefix = "{sha256}";
    std::string message = prefix + std::string(40, 'x');
    c.send_bytes("#CHALLENGE#" + message);
    const mp::bytes answer = c.recv_bytes(256);
    c.send_bytes(std::string_view{"#WELCOME#"});
    const mp::bytes challenge = c.recv_bytes(256);
    c.send_bytes("{sha256}" + std::string(32, '\0'));  // not the HMAC
    try {
      return text(c.recv_bytes(256));
    } catch (const mp::eof_error&) {
      return std::string("closed");
    }
  });
  try {
    mp::client(fake.address(), {.authkey = secret});
    FAIL() << "the client accepted a listener that does not hold the key";
  } catch (const mp::authentication_error& e) {
    EXPECT_NE(std::string(e.what()).find("listener failed to authenticate"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(fake_side.get(), "#FAILURE#");
}

TEST(listener, authenticates_with_the_process_authkey_when_asked) {
  const std::vector<std::byte> key = mp::current_process().authkey();
  EXPECT_EQ(key.size(), 32U);
  mp::listener server(mp::address("127.0.0.1", 0), {.authenticate = true});
  auto accepted = std::async(std::launch::async, [&] { return server.accept(); });
  mp::connection c = mp::client(server.address(), {.authkey = key});
  accepted.get().send(7);
  EXPECT_EQ(c.recv<int>(), 7);
  // One side with a key and the other without: the handshake cannot complete.
  auto refused = std::async(std::launch::async, [&] { return server.accept(); });
  mp::connection plain = mp::client(server.address());
  EXPECT_EQ(text(plain.recv_bytes()).rfind("#CHALLENGE#{sha256}", 0), 0U);
  plain.close();  // never answers
  EXPECT_THROW(refused.get(), mp::authentication_error);
}

TEST(listener, a_client_that_expects_a_challenge_gives_up_after_its_handshake_timeout) {
  mp::listener server(mp::address("127.0.0.1", 0));  // no authentication
  auto accepted = std::async(std::launch::async, [&] { return server.accept(); });
  try {
    mp::client(server.address(), {.authkey = secret, .handshake_timeout = 100ms});
    FAIL() << "authenticated against a listener that sent no challenge";
  } catch (const mp::authentication_error& e) {
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  }
  accepted.get();
}

TEST(listener, silent_and_garbage_clients_never_keep_a_good_client_out) {
  mp::listener server(mp::address("127.0.0.1", 0),
                      {.authkey = secret, .handshake_timeout = scaled(1000ms)});
  mp::unique_fd silent = raw_connect(server.address());
  mp::unique_fd garbage = raw_connect(server.address());
  send_raw(garbage.get(), "GET / HTTP/1.1\r\nHost: example\r\n\r\n");  // "GET " is 1.2 GB
  mp::unique_fd huge = raw_connect(server.address());
  send_raw(huge.get(), std::string("\xff\xff\xff\xff\x00\x00\x00\x01\x00\x00\x00\x00", 12));
  std::atomic<bool> served{false};
  std::thread good([&] {
    mp::connection c = mp::client(server.address(), {.authkey = secret});
    c.send_bytes(std::string_view{"let me in"});
    served = text(c.recv_bytes()) == "echo: let me in";
  });
  std::vector<std::string> refusals;
  for (int i = 0; i < 4; ++i) {
    try {
      mp::connection c = server.accept();
      c.send_bytes("echo: " + text(c.recv_bytes()));
      break;
    } catch (const mp::authentication_error& e) {
      refusals.emplace_back(e.what());
    }
  }
  good.join();
  EXPECT_TRUE(served);
  EXPECT_EQ(refusals.size(), 3U);
  std::string all;
  for (const auto& r : refusals) all += r + "\n";
  EXPECT_NE(all.find("timed out"), std::string::npos) << all;
  EXPECT_NE(all.find("at most 256"), std::string::npos) << all;
}

void killed_mid_handshake(const std::string& path) {
  mp::unique_fd s = raw_connect(mp::address(path));
  char challenge[64];
  static_cast<void>(::recv(s.get(), challenge, sizeof challenge, 0));  // it began
  ::raise(SIGKILL);
}

TEST(listener, a_client_killed_mid_handshake_fails_at_once) {
  mp::listener server({.authkey = secret, .handshake_timeout = 1h});
  mp::process p(killed_mid_handshake, server.address().path());
  p.start();
  try {
    server.accept();
    FAIL() << "a dead client got in";
  } catch (const mp::authentication_error& e) {
    EXPECT_NE(std::string(e.what()).find("closed the connection"), std::string::npos) << e.what();
  }
  p.join();
  EXPECT_EQ(p.exitcode(), -SIGKILL);
}

TEST(listener, close_wakes_an_accept_that_waits_and_one_that_is_in_a_handshake) {
  mp::listener server(mp::address("127.0.0.1", 0), {.authkey = secret});
  auto waiting = std::async(std::launch::async, [&] { return server.accept(); });
  std::this_thread::sleep_for(20ms);
  server.close();
  try {
    waiting.get();
    FAIL() << "accept() returned after close()";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::bad_file_descriptor);
  }

  mp::listener second(mp::address("127.0.0.1", 0), {.authkey = secret, .handshake_timeout = 1h});
  mp::unique_fd silent = raw_connect(second.address());
  auto in_handshake = std::async(std::launch::async, [&] { return second.accept(); });
  char challenge[8];
  ASSERT_EQ(::recv(silent.get(), challenge, sizeof challenge, MSG_WAITALL), 8);  // it began
  second.close();
  EXPECT_THROW(in_handshake.get(), std::system_error);
}

TEST(listener, serves_many_clients_at_once) {
  mp::listener server(mp::address("127.0.0.1", 0), {.authkey = secret});
  constexpr int clients = 12;
  std::vector<std::future<std::string>> replies;
  for (int i = 0; i < clients; ++i)
    replies.push_back(std::async(std::launch::async, [&, i] {
      mp::connection c = mp::client(server.address(), {.authkey = secret});
      c.send(i);
      return c.recv<std::string>();
    }));
  std::vector<std::thread> workers;
  for (int i = 0; i < clients; ++i)
    workers.emplace_back(
        [c = server.accept()]() mutable { c.send(std::to_string(c.recv<int>())); });
  for (auto& w : workers) w.join();
  for (std::size_t i = 0; i < clients; ++i) EXPECT_EQ(replies[i].get(), std::to_string(i));
}

TEST(listener, one_thread_serves_many_clients_with_wait) {
  mp::listener server(mp::address("127.0.0.1", 0), {.authkey = secret});
  constexpr int clients = 5;
  std::vector<std::future<std::string>> replies;
  for (int i = 0; i < clients; ++i)
    replies.push_back(std::async(std::launch::async, [&, i] {
      mp::connection c = mp::client(server.address(), {.authkey = secret});
      c.send_bytes("client " + std::to_string(i));
      return text(c.recv_bytes());
    }));
  std::vector<mp::connection> open;
  int answered = 0;
  while (answered < clients) {
    std::vector<mp::waitable> targets{server};
    for (const auto& c : open)
      if (!c.closed()) targets.emplace_back(c);
    for (const mp::waitable& ready : mp::wait(targets)) {
      if (ready == mp::waitable(server)) {
        open.push_back(server.accept());
        continue;
      }
      for (auto& c : open)
        if (!c.closed() && ready == mp::waitable(c)) {
          c.send_bytes("echo: " + text(c.recv_bytes()));
          c.close();
          ++answered;
        }
    }
  }
  for (std::size_t i = 0; i < clients; ++i)
    EXPECT_EQ(replies[i].get(), "echo: client " + std::to_string(i));
}

// ---- connections in Python's framing -----------------------------------------------------

std::pair<mp::connection, mp::connection> python_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    throw std::system_error(errno, std::system_category(), "socketpair");
  return {mp::connection(mp::unique_fd(fds[0]), true, true, mp::wire_format::python),
          mp::connection(mp::unique_fd(fds[1]), true, true, mp::wire_format::python)};
}

TEST(python_framing, writes_a_big_endian_length_and_reads_it_back) {
  auto [a, b] = python_pair();
  a.send_bytes(std::string_view{"abc"});
  char raw[7];
  ASSERT_EQ(::recv(b.fileno(), raw, sizeof raw, MSG_WAITALL), 7);
  EXPECT_EQ(std::string(raw, 7), std::string("\0\0\0\x03"
                                             "abc",
                                             7));
  send_raw(a.fileno(), std::string("\0\0\0\x05hello", 9));
  EXPECT_EQ(text(b.recv_bytes()), "hello");
  // The long form: -1, then an 8-byte length.
  send_raw(a.fileno(), std::string("\xff\xff\xff\xff\0\0\0\0\0\0\0\x02hi", 14));
  EXPECT_EQ(text(b.recv_bytes()), "hi");
  a.send(std::string("typed"));
  EXPECT_EQ(b.recv<std::string>(), "typed");
}

TEST(python_framing, refuses_negative_lengths_and_descriptors) {
  auto [a, b] = python_pair();
  send_raw(a.fileno(), std::string("\xff\xff\xff\xfe", 4));  // -2
  try {
    b.recv_bytes();
    FAIL() << "a negative length was read";
  } catch (const mp::decode_error& e) {
    EXPECT_NE(std::string(e.what()).find("negative length -2"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(b.closed());
  auto [r, w] = mp::pipe(false);
  try {
    a.send(w);
    FAIL() << "a descriptor was sent in Python's framing";
  } catch (const mp::process_error& e) {
    EXPECT_NE(std::string(e.what()).find("Python's framing"), std::string::npos) << e.what();
  }
}

TEST(python_framing, a_connection_sent_over_a_pipe_keeps_its_framing) {
  auto [a, b] = python_pair();
  auto [here, there] = mp::pipe();
  here.send(b);
  b.close();
  mp::connection received = there.recv<mp::connection>();
  EXPECT_EQ(received.format(), mp::wire_format::python);
  a.send_bytes(std::string_view{"framed"});
  EXPECT_EQ(text(received.recv_bytes()), "framed");
}

// ---- unrelated processes -----------------------------------------------------------------

MP_TEST_ROLE(listener_client) {
  // args: address path, key
  try {
    mp::connection c = mp::client(mp::address(std::string(args[0])), {.authkey = mp::key(args[1])});
    c.send(std::string("from pid ") + std::to_string(::getpid()));
    return c.recv<int>();
  } catch (const mp::authentication_error& e) {
    std::fprintf(stderr, "refused: %s\n", e.what());
    return 3;
  }
}

TEST(listener, an_unrelated_process_connects_by_address_with_the_key) {
  mp::listener server({.authkey = mp::key("shared by both")});
  auto child = std::async(std::launch::async, [&] {
    return mp::testing::run_role("listener_client", {server.address().path(), "shared by both"});
  });
  mp::connection c = server.accept();
  EXPECT_EQ(c.recv<std::string>().rfind("from pid ", 0), 0U);
  c.send(17);
  EXPECT_EQ(child.get().exitcode, 17);
  auto wrong = std::async(std::launch::async, [&] {
    return mp::testing::run_role("listener_client", {server.address().path(), "not the key"});
  });
  EXPECT_THROW(server.accept(), mp::authentication_error);
  const auto result = wrong.get();
  EXPECT_EQ(result.exitcode, 3);
  EXPECT_NE(result.err.find("rejected our digest"), std::string::npos) << result.err;
}

// ---- Python as the peer ------------------------------------------------------------------

// The peer, in Python: its module's own handshake ('client', 'listener': the form this
// Python speaks) or the SHA-256 form of Python 3.12 written out by hand over an
// unauthenticated connection ('client-sha256', 'listener-sha256'), then an exchange.
constexpr const char* python_peer_script = R"PY(
import hmac, os, sys
from multiprocessing import connection as mc
mode, host, port, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()

def deliver_sha256(c):
    message = b'{sha256}' + os.urandom(40)
    c.send_bytes(b'#CHALLENGE#' + message)
    answer = c.recv_bytes(256)
    if not hmac.compare_digest(answer, b'{sha256}' + hmac.new(key, message, 'sha256').digest()):
        c.send_bytes(b'#FAILURE#')
        raise SystemExit('python: wrong digest')
    c.send_bytes(b'#WELCOME#')

def answer_sha256(c):
    message = c.recv_bytes(256)
    assert message.startswith(b'#CHALLENGE#{sha256}'), message
    message = message[len(b'#CHALLENGE#'):]
    c.send_bytes(b'{sha256}' + hmac.new(key, message, 'sha256').digest())
    if c.recv_bytes(256) != b'#WELCOME#':
        raise SystemExit('python: rejected')

big = bytes(range(256)) * 400
if mode.startswith('client'):
    if mode == 'client':
        c = mc.Client((host, port), authkey=key)
    else:
        c = mc.Client((host, port))
        answer_sha256(c)
        deliver_sha256(c)
    c.send_bytes(b'hello from python')
    print(c.recv_bytes().decode(), flush=True)
    c.send_bytes(big)
    if c.recv_bytes() != big[::-1]:
        raise SystemExit('python: bad reply to the big message')
    c.close()
else:
    with mc.Listener((host, 0), authkey=key if mode == 'listener' else None) as l:
        print(l.address[1], flush=True)
        c = l.accept()
        if mode == 'listener-sha256':
            deliver_sha256(c)
            answer_sha256(c)
        c.send_bytes(b'python got ' + c.recv_bytes())
        c.send_bytes(c.recv_bytes()[::-1])
        c.close()
)PY";

// python3 running python_peer_script, its stdout on a pipe; killed and reaped if still running.
class python_peer {
 public:
  explicit python_peer(std::vector<std::string> args) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category());
    output_.reset(out[0]);
    mp::unique_fd write_end(out[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<std::string> all{"python3", "-c", python_peer_script};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int error = ::posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (error != 0) throw std::system_error(error, std::system_category(), "posix_spawnp");
  }
  python_peer(const python_peer&) = delete;
  python_peer& operator=(const python_peer&) = delete;
  ~python_peer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  // The next line it prints (without the newline); empty at its end.
  std::string line() {
    std::string out;
    char c = 0;
    pollfd p{output_.get(), POLLIN, 0};
    while (::poll(&p, 1, static_cast<int>(scaled(30s).count())) == 1 &&
           ::read(output_.get(), &c, 1) == 1 && c != '\n')
      out += c;
    return out;
  }
  // Its exit status (after the end of its output).
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = 0;
  mp::unique_fd output_;
};

bool have_python() {
  return ::system("python3 -c 'import multiprocessing.connection' >/dev/null 2>&1") == 0;
}

// Python 3.12 and later speak the SHA-256 form; older ones the bare HMAC-MD5.
bool python_speaks_md5() {
  return ::system("python3 -c 'import sys; sys.exit(sys.version_info >= (3, 12))' 2>/dev/null") ==
         0;
}

// The mp side of an exchange with a Python client.
void serve_python(mp::connection c) {
  c.send_bytes("mp got " + text(c.recv_bytes()));
  mp::bytes big = c.recv_bytes();
  std::reverse(big.begin(), big.end());
  c.send_bytes(big);
}

struct python_case {
  const char* mode;
  bool legacy;
};

class python_client : public ::testing::TestWithParam<python_case> {};

TEST_P(python_client, talks_to_an_mp_listener) {
  if (!have_python()) GTEST_SKIP() << "python3 with multiprocessing is not installed";
  mp::listener server(mp::address("127.0.0.1", 0),
                      {.authkey = mp::key("py key"), .legacy_md5 = GetParam().legacy});
  python_peer peer(
      {GetParam().mode, "127.0.0.1", std::to_string(server.address().port()), "py key"});
  serve_python(server.accept());
  EXPECT_EQ(peer.line(), "mp got hello from python");
  EXPECT_EQ(peer.wait(), 0);
}

INSTANTIATE_TEST_SUITE_P(listener, python_client,
                         ::testing::Values(python_case{"client", true},
                                           python_case{"client-sha256", false}),
                         [](const auto& param_info) {
                           return std::string(param_info.param.legacy ? "its_own_handshake"
                                                                      : "sha256_form");
                         });

class python_listener : public ::testing::TestWithParam<python_case> {};

TEST_P(python_listener, serves_an_mp_client) {
  if (!have_python()) GTEST_SKIP() << "python3 with multiprocessing is not installed";
  python_peer peer({GetParam().mode, "127.0.0.1", "0", "py key"});
  const int port = std::stoi(peer.line());
  mp::connection c = mp::client(mp::address("127.0.0.1", port),
                                {.authkey = mp::key("py key"), .legacy_md5 = GetParam().legacy});
  c.send_bytes(std::string_view{"hello from mp"});
  EXPECT_EQ(text(c.recv_bytes()), "python got hello from mp");
  std::string big(100'000, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  c.send_bytes(big);
  const std::string reversed(big.rbegin(), big.rend());
  EXPECT_EQ(text(c.recv_bytes()), reversed);
  EXPECT_EQ(peer.wait(), 0);
}

INSTANTIATE_TEST_SUITE_P(client, python_listener,
                         ::testing::Values(python_case{"listener", true},
                                           python_case{"listener-sha256", false}),
                         [](const auto& param_info) {
                           return std::string(param_info.param.legacy ? "its_own_handshake"
                                                                      : "sha256_form");
                         });

TEST(listener, refuses_the_md5_handshake_unless_asked) {
  if (!have_python()) GTEST_SKIP() << "python3 with multiprocessing is not installed";
  if (!python_speaks_md5()) GTEST_SKIP() << "this python3 speaks the SHA-256 form";
  mp::listener server(mp::address("127.0.0.1", 0), {.authkey = mp::key("py key")});
  python_peer peer({"client", "127.0.0.1", std::to_string(server.address().port()), "py key"});
  try {
    server.accept();
    FAIL() << "a Python 3.11 client got in without legacy_md5";
  } catch (const mp::authentication_error& e) {
    EXPECT_NE(std::string(e.what()).find("legacy_md5"), std::string::npos) << e.what();
  }
  EXPECT_NE(peer.wait(), 0);
}

}  // namespace
