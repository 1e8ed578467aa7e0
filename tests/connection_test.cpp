// SPDX-License-Identifier: MIT
// Tests of pipes, connections and mp::wait (mp/connection.hpp).
#include "mp/connection.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <map>
#include <numeric>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "mp/process.hpp"
#include "mp/queues.hpp"
#include "mp/serialization.hpp"  // std::map values
#include "mp/testing/testing.hpp"
#include "mp/unique_fd.hpp"

namespace {

using namespace std::chrono_literals;

mp::bytes make_bytes(std::string_view text) {
  const auto s = std::as_bytes(std::span(text));
  return {s.begin(), s.end()};
}

std::string as_string(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Expects `statement` to throw std::system_error whose code matches the errc
// `expected_code` and whose message contains `expected_text`.
#define EXPECT_SYSTEM_ERROR(statement, expected_code, expected_text)                       \
  do {                                                                                     \
    try {                                                                                  \
      statement;                                                                           \
      ADD_FAILURE() << #statement " did not throw";                                        \
    } catch (const std::system_error& e) {                                                 \
      EXPECT_TRUE(e.code() == (expected_code)) << e.code() << ": " << e.what();            \
      EXPECT_NE(std::string(e.what()).find(expected_text), std::string::npos) << e.what(); \
    }                                                                                      \
  } while (false)

// Two raw descriptors of a new socket pair of `type`, owned.
std::pair<mp::unique_fd, mp::unique_fd> raw_socket_pair(int type) {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds), 0);
  return {mp::unique_fd(fds[0]), mp::unique_fd(fds[1])};
}

// A descriptor number that cannot be open: at or above this process's limit.
int never_open_fd() {
  rlimit limit{};
  EXPECT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  return static_cast<int>(std::min<rlim_t>(limit.rlim_cur, 1 << 30));
}

// True if `fd` is an open descriptor.
bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

TEST(connection, sends_values_both_ways_on_a_duplex_pipe) {
  auto [a, b] = mp::pipe();
  a.send(std::string{"ping"});
  EXPECT_EQ(b.recv<std::string>(), "ping");
  b.send(std::map<std::string, int>{{"x", 1}});
  EXPECT_EQ((a.recv<std::map<std::string, int>>()), (std::map<std::string, int>{{"x", 1}}));
  EXPECT_TRUE(a.readable() && a.writable());
}

TEST(connection, string_literals_and_c_strings_arrive_as_std_string) {
  auto [a, b] = mp::pipe();
  a.send("hello");
  const char* c_string = "world";
  a.send(c_string);
  EXPECT_EQ(b.recv<std::string>(), "hello");
  EXPECT_EQ(b.recv<std::string>(), "world");
}

TEST(connection, simplex_pipe_has_a_read_end_and_a_write_end) {
  auto [reader, writer] = mp::pipe(false);
  EXPECT_TRUE(reader.readable());
  EXPECT_FALSE(reader.writable());
  EXPECT_FALSE(writer.readable());
  EXPECT_TRUE(writer.writable());
  EXPECT_SYSTEM_ERROR(reader.send(1), std::errc::bad_file_descriptor, "connection is read-only");
  EXPECT_SYSTEM_ERROR(reader.send_bytes(std::string_view{"x"}), std::errc::bad_file_descriptor,
                      "connection is read-only");
  EXPECT_SYSTEM_ERROR(writer.recv<int>(), std::errc::bad_file_descriptor,
                      "connection is write-only");
  EXPECT_SYSTEM_ERROR(writer.recv_bytes(), std::errc::bad_file_descriptor,
                      "connection is write-only");
  EXPECT_SYSTEM_ERROR(writer.poll(), std::errc::bad_file_descriptor, "connection is write-only");
  writer.send(5);
  EXPECT_EQ(reader.recv<int>(), 5);
}

TEST(connection, keeps_message_boundaries_and_order) {
  auto [a, b] = mp::pipe();
  // From another thread: the socket buffer holds far fewer than 1000 messages.
  std::thread sender([&] {
    for (int i = 0; i < 1000; ++i) a.send(std::vector<int>(static_cast<std::size_t>(i % 37), i));
  });
  for (int i = 0; i < 1000; ++i)
    EXPECT_EQ(b.recv<std::vector<int>>(), std::vector<int>(static_cast<std::size_t>(i % 37), i));
  sender.join();
  EXPECT_FALSE(b.poll());
}

TEST(connection, send_bytes_with_offset_and_size) {
  auto [a, b] = mp::pipe();
  const mp::bytes data = make_bytes("0123456789");
  a.send_bytes(data);
  a.send_bytes(data, 3);
  a.send_bytes(data, 2, 4);
  a.send_bytes(std::string_view{});
  EXPECT_EQ(as_string(b.recv_bytes()), "0123456789");
  EXPECT_EQ(as_string(b.recv_bytes()), "3456789");
  EXPECT_EQ(as_string(b.recv_bytes()), "2345");
  EXPECT_TRUE(b.recv_bytes().empty());
  EXPECT_THROW(a.send_bytes(data, 11), std::out_of_range);
  EXPECT_THROW(a.send_bytes(data, 5, 6), std::out_of_range);
}

TEST(connection, recv_bytes_into_a_buffer_at_an_offset) {
  auto [a, b] = mp::pipe();
  a.send_bytes(std::string_view{"abc"});
  std::vector<std::byte> buffer(8, std::byte{'.'});
  EXPECT_EQ(b.recv_bytes_into(buffer, 2), 3u);
  EXPECT_EQ(as_string(buffer), "..abc...");
}

TEST(connection, buffer_too_short_keeps_the_whole_message) {
  auto [a, b] = mp::pipe();
  a.send_bytes(std::string_view{"too long for it"});
  a.send_bytes(std::string_view{"next"});
  std::vector<std::byte> buffer(4);
  try {
    b.recv_bytes_into(buffer);
    FAIL() << "no buffer_too_short";
  } catch (const mp::buffer_too_short& e) {
    EXPECT_EQ(as_string(e.message()), "too long for it");
  }
  EXPECT_EQ(b.recv_bytes_into(buffer), 4u);  // the stream is still in step
  EXPECT_EQ(as_string(buffer), "next");
}

TEST(connection, message_over_maxlength_closes_the_connection) {
  auto [a, b] = mp::pipe();
  a.send_bytes(std::string_view{"0123456789"});
  EXPECT_THROW(b.recv_bytes(5), mp::process_error);
  EXPECT_TRUE(b.closed());
  EXPECT_SYSTEM_ERROR(b.recv_bytes(), std::errc::bad_file_descriptor, "connection is closed");
}

TEST(connection, peer_close_is_eof_after_pending_messages) {
  auto [a, b] = mp::pipe();
  a.send(1);
  a.send(2);
  a.close();
  EXPECT_TRUE(a.closed());
  EXPECT_EQ(b.recv<int>(), 1);
  EXPECT_EQ(b.recv<int>(), 2);
  EXPECT_TRUE(b.poll());  // EOF counts as readable, as in Python
  EXPECT_THROW(b.recv<int>(), mp::eof_error);
  EXPECT_THROW(b.recv_bytes(), mp::eof_error);
}

TEST(connection, eof_in_the_middle_of_a_message_is_reported) {
  auto [a, b] = mp::pipe();
  const std::uint64_t header = 100;  // announces 100 bytes, sends 3
  ASSERT_EQ(::write(a.fileno(), &header, sizeof header), 8);
  ASSERT_EQ(::write(a.fileno(), "abc", 3), 3);
  a.close();
  EXPECT_THROW(b.recv_bytes(), mp::eof_error);
}

TEST(connection, hostile_length_is_eof_not_an_allocation) {
  auto [a, b] = mp::pipe();
  const std::uint64_t header = (std::uint64_t{1} << 47) - 1;  // 128 TiB
  ASSERT_EQ(::write(a.fileno(), &header, sizeof header), 8);
  a.close();
  EXPECT_THROW(b.recv_bytes(), mp::eof_error);
  auto [c, d] = mp::pipe();
  ASSERT_EQ(::write(c.fileno(), &header, sizeof header), 8);
  c.close();
  EXPECT_THROW(d.recv<std::string>(), mp::eof_error);
}

// This process's resident set size in bytes.
std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// The scheduler state of thread `tid` of this process ('S': asleep).
char thread_state(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  const std::string line((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto end_of_name = line.rfind(')');
  return end_of_name == std::string::npos || end_of_name + 2 >= line.size() ? '?'
                                                                            : line[end_of_name + 2];
}

TEST(connection, a_large_announced_message_allocates_only_what_arrives) {
  auto [a, b] = mp::pipe();
  const std::uint64_t header = std::uint64_t{1} << 30;  // announces 1 GiB, sends 10 bytes
  ASSERT_EQ(::write(a.fileno(), &header, sizeof header), 8);
  ASSERT_EQ(::write(a.fileno(), "0123456789", 10), 10);
  // The reader thread starts first, so that what starting a thread costs (a
  // sanitizer's per-thread state) is not counted.
  std::promise<pid_t> started;
  std::promise<void> go;
  std::thread reader([&, reading = &b, ready = go.get_future()] {
    started.set_value(static_cast<pid_t>(::gettid()));
    ready.wait();
    EXPECT_THROW(reading->recv_bytes(), mp::eof_error);
  });
  const pid_t reader_tid = started.get_future().get();
  const std::size_t before = resident_bytes();
  go.set_value();
  // The reader has taken the bytes off the socket and sleeps waiting for the rest.
  const auto deadline = std::chrono::steady_clock::now() + mp::testing::scaled(30s);
  bool blocked = false;
  while (!blocked && std::chrono::steady_clock::now() < deadline) {
    int unread = -1;
    EXPECT_EQ(::ioctl(b.fileno(), FIONREAD, &unread), 0);
    blocked = unread == 0 && thread_state(reader_tid) == 'S';
    if (!blocked) std::this_thread::yield();
  }
  const std::size_t grown = resident_bytes() - std::min(before, resident_bytes());
  a.close();
  reader.join();
  ASSERT_TRUE(blocked) << "the reader never blocked";
  // Before: a 16 MiB zero-filled first chunk; now a few pages.
  EXPECT_LT(grown, std::size_t{4} << 20);
}

TEST(connection, announced_descriptors_that_never_came_are_an_error) {
  auto [a, b] = mp::pipe();
  const std::uint64_t header = std::uint64_t{2} << 48;
  ASSERT_EQ(::write(a.fileno(), &header, sizeof header), 8);
  EXPECT_THROW(b.recv_bytes(), mp::decode_error);
  EXPECT_TRUE(b.closed());
}

TEST(connection, wrong_type_is_a_decode_error_and_the_stream_goes_on) {
  auto [a, b] = mp::pipe();
  a.send(42);
  a.send(std::string{"after"});
  EXPECT_THROW(b.recv<std::string>(), mp::decode_error);
  EXPECT_EQ(b.recv<std::string>(), "after");
}

TEST(connection, send_to_a_dead_peer_is_an_error_not_sigpipe) {
  auto [a, b] = mp::pipe();
  b.close();
  try {
    for (int i = 0; i < 2; ++i) a.send(std::string(1 << 20, 'x'));
    FAIL() << "send to a closed peer succeeded";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EPIPE) << e.what();
  }
  EXPECT_THROW(a.send_bytes(std::string_view{"x"}), std::system_error);
}

TEST(connection, closed_connection_refuses_everything) {
  auto [a, b] = mp::pipe();
  a.close();
  a.close();  // idempotent
  // Python raises OSError ("handle is closed"); here the kernel's word for it, EBADF.
  EXPECT_SYSTEM_ERROR(a.send(1), std::errc::bad_file_descriptor, "connection is closed");
  EXPECT_SYSTEM_ERROR(a.send_bytes(std::string_view{"x"}), std::errc::bad_file_descriptor,
                      "connection is closed");
  EXPECT_SYSTEM_ERROR(a.recv<int>(), std::errc::bad_file_descriptor, "connection is closed");
  EXPECT_SYSTEM_ERROR(a.recv_bytes(), std::errc::bad_file_descriptor, "connection is closed");
  std::vector<std::byte> buffer(4);
  EXPECT_SYSTEM_ERROR(a.recv_bytes_into(buffer), std::errc::bad_file_descriptor,
                      "connection is closed");
  EXPECT_SYSTEM_ERROR(a.poll(), std::errc::bad_file_descriptor, "connection is closed");
  EXPECT_SYSTEM_ERROR(a.fileno(), std::errc::bad_file_descriptor, "connection is closed");
  EXPECT_SYSTEM_ERROR(b.send(a), std::errc::bad_file_descriptor, "cannot send a closed connection");
  mp::connection empty;
  EXPECT_TRUE(empty.closed());
  EXPECT_SYSTEM_ERROR(empty.recv<int>(), std::errc::bad_file_descriptor, "connection is closed");
}

TEST(connection, refuses_a_descriptor_that_is_not_open) {
  // Before: such a connection was made, poll() said true, and only a read failed.
  const int bad = never_open_fd();
  EXPECT_SYSTEM_ERROR(mp::connection{mp::unique_fd{bad}}, std::errc::bad_file_descriptor,
                      "descriptor " + std::to_string(bad) + " is not open");
  EXPECT_SYSTEM_ERROR(mp::connection{mp::unique_fd{}}, std::errc::bad_file_descriptor,
                      "no descriptor");
}

TEST(connection, refuses_a_descriptor_that_is_not_a_socket_and_closes_it) {
  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
  const int kept = ends[1];
  mp::unique_fd keep(kept);
  const int refused = ends[0];
  EXPECT_SYSTEM_ERROR(mp::connection{mp::unique_fd{refused}}, std::errc::not_a_socket,
                      "is not a socket");
  EXPECT_FALSE(is_open(refused));  // the connection owned it
  EXPECT_TRUE(is_open(kept));
}

TEST(connection, refuses_a_socket_that_is_not_a_stream) {
  for (const int type : {SOCK_DGRAM, SOCK_SEQPACKET}) {
    auto [a, b] = raw_socket_pair(type);
    EXPECT_SYSTEM_ERROR(mp::connection(std::move(a)), std::errc::wrong_protocol_type,
                        "is not a stream socket");
  }
}

TEST(connection, must_be_readable_or_writable) {
  auto [a, b] = raw_socket_pair(SOCK_STREAM);
  EXPECT_THROW(mp::connection(std::move(a), false, false), mp::usage_error);
}

TEST(connection, wraps_a_unix_stream_socket_given_as_a_public_unique_fd) {
  static_assert(std::is_same_v<mp::unique_fd, mp::detail::unique_fd>);
  auto [x, y] = raw_socket_pair(SOCK_STREAM);
  mp::connection a(std::move(x));
  mp::connection b(std::move(y), /*readable=*/true, /*writable=*/false);
  EXPECT_FALSE(x);  // moved into the connection
  a.send(std::string{"over a socket of ours"});
  EXPECT_EQ(b.recv<std::string>(), "over a socket of ours");
  auto [r, w] = mp::pipe(false);
  a.send(w);  // descriptors travel over a Unix socket
  b.recv<mp::connection>().send(3);
  EXPECT_EQ(r.recv<int>(), 3);
  EXPECT_SYSTEM_ERROR(b.send(1), std::errc::bad_file_descriptor, "read-only");
}

TEST(unique_fd, owns_one_descriptor) {
  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
  {
    mp::unique_fd first(ends[0]);
    mp::unique_fd second(ends[1]);
    EXPECT_EQ(first.get(), ends[0]);
    mp::unique_fd moved(std::move(first));
    EXPECT_FALSE(first);
    EXPECT_EQ(first.get(), -1);
    EXPECT_TRUE(moved);
    const int released = second.release();
    EXPECT_EQ(released, ends[1]);
    EXPECT_FALSE(second);
    second.reset(released);  // owned again
    moved.reset();
    EXPECT_FALSE(is_open(ends[0]));
    EXPECT_TRUE(is_open(ends[1]));
  }
  EXPECT_FALSE(is_open(ends[1]));
}

TEST(connection, carries_values_over_tcp_but_no_descriptors) {
  mp::unique_fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), size), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &size), 0);
  mp::unique_fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&address), size), 0);
  mp::unique_fd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(server);
  mp::connection a(std::move(client));
  mp::connection b(std::move(server));
  a.send(std::vector<int>{1, 2, 3});
  EXPECT_EQ(b.recv<std::vector<int>>(), (std::vector<int>{1, 2, 3}));
  auto [r, w] = mp::pipe(false);
  try {
    a.send(w);
    FAIL() << "a descriptor was sent over TCP";
  } catch (const mp::process_error& e) {
    EXPECT_NE(std::string(e.what()).find("only over a Unix socket"), std::string::npos);
  }
  b.send_bytes(std::string_view{"still in step"});
  EXPECT_EQ(as_string(a.recv_bytes()), "still in step");
}

TEST(connection, works_over_a_non_blocking_socket) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), 0);
  mp::connection a{mp::unique_fd(fds[0])};
  mp::connection b{mp::unique_fd(fds[1])};
  // Larger than the socket buffer: both ends meet EAGAIN and wait instead of failing.
  const std::vector<int> big(1 << 20, 7);
  std::thread sender([&] {
    try {
      a.send(big);
      a.send_bytes(std::string_view{"done"});
    } catch (const std::exception& e) {
      ADD_FAILURE() << "send: " << e.what();
      a.close();
    }
  });
  try {
    EXPECT_EQ(b.recv<std::vector<int>>(), big);
    EXPECT_EQ(as_string(b.recv_bytes()), "done");
  } catch (const std::exception& e) {
    ADD_FAILURE() << "recv: " << e.what();
    b.close();
  }
  sender.join();
}

// Sends one frame of `payload` with `fd` attached, as a peer of any kind could.
void send_raw_frame(int socket, std::span<const std::byte> payload, int fd) {
  const std::uint64_t header = payload.size() | (std::uint64_t{1} << 48);
  std::vector<std::byte> frame(sizeof header);
  std::memcpy(frame.data(), &header, sizeof header);
  frame.insert(frame.end(), payload.begin(), payload.end());
  iovec iov{frame.data(), frame.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&message);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ASSERT_EQ(::sendmsg(socket, &message, MSG_NOSIGNAL), static_cast<ssize_t>(frame.size()));
}

TEST(connection, a_received_connection_that_is_not_a_socket_is_a_decode_error) {
  auto [a, b] = mp::pipe();
  auto [x, y] = mp::pipe();
  // A genuine connection's encoding, sent with a pipe's descriptor in place of its socket.
  mp::detail::byte_buffer payload;
  mp::detail::handle_sink sink;
  mp::detail::encode_into(payload, x, &sink);
  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
  mp::unique_fd pipe_read(ends[0]), pipe_write(ends[1]);
  send_raw_frame(a.fileno(), payload.span(), pipe_read.get());
  const auto before = mp::testing::open_fds();
  try {
    static_cast<void>(b.recv<mp::connection>());
    FAIL() << "a pipe was received as a connection";
  } catch (const mp::decode_error& e) {
    EXPECT_NE(std::string(e.what()).find("not a socket"), std::string::npos) << e.what();
  }
  EXPECT_EQ(mp::testing::open_fds(), before);  // the received descriptor is closed
  a.send(1);                                   // the stream is still in step
  EXPECT_EQ(b.recv<int>(), 1);
}

// Lowers this process's descriptor limit so that a message's descriptors
// cannot all arrive; exits 0 if the receiver reports it and closes itself.
MP_TEST_ROLE(connection_receives_past_the_descriptor_limit) {
  auto [a, b] = mp::pipe();
  {
    std::vector<mp::connection> many;
    for (int i = 0; i < 8; ++i) {
      auto [r, w] = mp::pipe();
      many.push_back(std::move(r));
      many.push_back(std::move(w));
    }
    a.send(many);  // 16 descriptors in flight, held by the kernel once these close
  }
  auto expected = mp::testing::open_fds();
  expected.erase(b.fileno());
  const int lowest_free = ::fcntl(0, F_DUPFD_CLOEXEC, 0);
  ::close(lowest_free);
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = static_cast<rlim_t>(lowest_free + 2);  // room for two at most
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return 10;
  try {
    static_cast<void>(b.recv<std::vector<mp::connection>>());
    return 11;
  } catch (const std::system_error& e) {
    if (e.code() != std::errc::too_many_files_open) return 12;
    if (std::string(e.what()).find("connection closed") == std::string::npos) return 13;
  }
  if (!b.closed()) return 14;
  if (mp::testing::open_fds() != expected) return 15;  // the two that arrived were closed
  return 0;
}

TEST(connection, descriptors_lost_at_the_limit_are_an_error_that_closes_it) {
  const auto result = mp::testing::run_role("connection_receives_past_the_descriptor_limit");
  EXPECT_EQ(result.exitcode, 0) << result.err;
}

TEST(connection, poll_waits_up_to_its_timeout) {
  auto [a, b] = mp::pipe();
  EXPECT_FALSE(b.poll());
  EXPECT_FALSE(b.poll(5ms));
  a.send(1);
  EXPECT_TRUE(b.poll(std::nullopt));
  EXPECT_TRUE(b.poll());
  EXPECT_EQ(b.recv<int>(), 1);
  std::thread later([&] {
    std::this_thread::sleep_for(10ms);
    a.send(2);
  });
  EXPECT_TRUE(b.poll(mp::testing::scaled(30s)));
  later.join();
  EXPECT_EQ(b.recv<int>(), 2);
}

TEST(connection, poll_sees_buffered_messages) {
  auto [a, b] = mp::pipe();
  a.send(1);
  a.send(2);
  EXPECT_EQ(b.recv<int>(), 1);  // reads both into the buffer
  EXPECT_TRUE(b.poll());
  EXPECT_EQ(b.recv<int>(), 2);
  EXPECT_FALSE(b.poll());
}

TEST(connection, is_an_argument_of_a_child_process) {
  auto [parent_end, child_end] = mp::pipe();
  mp::process p{[](mp::connection c) {
                  while (true) {
                    const auto n = c.recv<int>();
                    if (n < 0) break;
                    c.send(n * n);
                  }
                },
                std::move(child_end)};
  p.start();
  for (int i = 0; i < 100; ++i) {
    parent_end.send(i);
    ASSERT_EQ(parent_end.recv<int>(), i * i);
  }
  parent_end.send(-1);
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(connection, a_connection_can_be_sent_over_a_connection) {
  auto [control_parent, control_child] = mp::pipe();
  mp::process p{[](mp::connection control) {
                  auto data = control.recv<mp::connection>();
                  data.send(std::string{"via passed descriptor"});
                },
                std::move(control_child)};
  p.start();
  auto [data_reader, data_writer] = mp::pipe(false);
  control_parent.send(data_writer);
  data_writer.close();  // the child holds its own copy now
  EXPECT_EQ(data_reader.recv<std::string>(), "via passed descriptor");
  EXPECT_THROW(data_reader.recv<std::string>(), mp::eof_error);
  p.join();
}

TEST(connection, values_holding_several_connections_travel_together) {
  auto [a, b] = mp::pipe();
  std::vector<mp::connection> keep;
  std::vector<mp::connection> send;
  for (int i = 0; i < 3; ++i) {
    auto [r, w] = mp::pipe(false);
    keep.push_back(std::move(r));
    send.push_back(std::move(w));
  }
  a.send(std::pair{std::string{"three"}, std::move(send)});
  auto [label, writers] = b.recv<std::pair<std::string, std::vector<mp::connection>>>();
  EXPECT_EQ(label, "three");
  ASSERT_EQ(writers.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) writers[i].send(static_cast<int>(i));
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(keep[i].recv<int>(), static_cast<int>(i));
}

TEST(connection, a_connection_with_unread_data_cannot_be_sent) {
  auto [a, b] = mp::pipe();
  auto [x, y] = mp::pipe();
  y.send(1);
  y.send(2);
  EXPECT_EQ(x.recv<int>(), 1);  // 2 is now buffered in x
  EXPECT_THROW(a.send(x), mp::usage_error);
}

TEST(connection, descriptors_of_a_failed_decode_are_closed) {
  const auto before = mp::testing::open_fds();
  {
    auto [a, b] = mp::pipe();
    auto [r, w] = mp::pipe();
    a.send(w);
    EXPECT_THROW(b.recv<int>(), mp::decode_error);
  }
  EXPECT_EQ(mp::testing::open_fds(), before);
}

TEST(connection, a_resource_named_twice_travels_once_and_arrives_twice) {
  auto [a, b] = mp::pipe();
  mp::queue<int> q;
  // Both elements are one queue: its descriptor goes once, and each element arrives working.
  a.send(std::pair{q, q});
  auto twice = b.recv<std::pair<mp::queue<int>, mp::queue<int>>>();
  twice.first.put(1);
  EXPECT_EQ(twice.second.get(), 1);
  EXPECT_EQ(q.qsize(), 0U);
}

TEST(connection, moves_a_one_gibibyte_message_intact) {
  if (mp::testing::thread_sanitizer) GTEST_SKIP() << "sheer size: left to the other builds";
  // The transfer is the same under every start method, and a gibibyte is slow under ASan.
  MP_ONE_RUN_ONLY("the start method does not touch a message's transfer");
  constexpr std::size_t size = std::size_t{1} << 30;
  auto [reader, writer] = mp::pipe(false);
  mp::process p{[](mp::connection out) {
                  std::vector<std::byte> big(size);
                  for (std::size_t i = 0; i < size; i += 4096) big[i] = std::byte(i >> 12);
                  out.send_bytes(big);
                },
                std::move(writer)};
  p.start();
  const mp::bytes got = reader.recv_bytes();
  p.join();
  ASSERT_EQ(got.size(), size);
  for (std::size_t i = 0; i < size; i += 4096) ASSERT_EQ(got[i], std::byte(i >> 12)) << "at " << i;
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(connection, large_values_round_trip_through_the_codec) {
  auto [a, b] = mp::pipe();
  std::vector<double> values(3 << 20);
  std::iota(values.begin(), values.end(), 0.5);
  std::thread sender([&] { a.send(values); });
  EXPECT_EQ(b.recv<std::vector<double>>(), values);
  sender.join();
}

TEST(wait, returns_the_ready_connections_in_order) {
  auto [a1, b1] = mp::pipe();
  auto [a2, b2] = mp::pipe();
  auto [a3, b3] = mp::pipe();
  std::vector<mp::connection*> readers{&b1, &b2, &b3};
  EXPECT_TRUE(mp::wait(readers, 0ms).empty());
  a3.send(3);
  a1.send(1);
  const auto ready = mp::wait(readers, mp::testing::scaled(30s));
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_EQ(ready[0], &b1);
  EXPECT_EQ(ready[1], &b3);
  a2.close();  // EOF is ready too
  EXPECT_EQ(mp::wait(std::vector<mp::connection*>{&b2}).size(), 1u);
}

TEST(wait, over_connections_themselves_returns_pointers_to_them) {
  std::vector<mp::connection> readers, writers;
  for (int i = 0; i < 3; ++i) {
    auto [r, w] = mp::pipe(false);
    readers.push_back(std::move(r));
    writers.push_back(std::move(w));
  }
  writers[1].send(1);
  const std::vector<mp::connection*> ready = mp::wait(readers, mp::testing::scaled(30s));
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], &readers[1]);
}

TEST(wait, times_out_with_nothing_ready) {
  auto [a, b] = mp::pipe();
  std::vector<mp::connection*> readers{&b};
  EXPECT_TRUE(mp::wait(readers, 10ms).empty());
}

TEST(wait, watches_processes_and_connections_together) {
  auto [go_reader, go_writer] = mp::pipe(false);
  auto [reader, writer] = mp::pipe(false);
  mp::process p{[](mp::connection go) {
                  try {
                    static_cast<void>(go.recv<int>());
                  } catch (const mp::eof_error&) {
                  }
                },
                std::move(go_reader)};
  p.start();
  std::vector<int> sentinels{p.sentinel(), reader.fileno()};
  EXPECT_TRUE(mp::wait(sentinels, 0ms).empty());
  go_writer.send(1);
  const auto ready = mp::wait(sentinels, mp::testing::scaled(30s));
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], p.sentinel());
  std::vector<mp::process*> processes{&p};
  EXPECT_EQ(mp::wait(processes).size(), 1u);
  p.join();
}

TEST(wait, sees_data_buffered_inside_a_connection) {
  auto [a, b] = mp::pipe();
  a.send(1);
  a.send(2);
  EXPECT_EQ(b.recv<int>(), 1);
  std::vector<std::reference_wrapper<mp::connection>> readers{std::ref(b)};
  EXPECT_EQ(mp::wait(readers, 0ms).size(), 1u);
}

// Waits for a "go" (or EOF) on `go`, then ends.
void wait_for_go(mp::connection go) {
  try {
    static_cast<void>(go.recv<int>());
  } catch (const mp::eof_error&) {
  }
}

// A raw OS pipe, both ends owned.
struct raw_pipe {
  mp::unique_fd read_end, write_end;
  raw_pipe() {
    int ends[2];
    EXPECT_EQ(::pipe2(ends, O_CLOEXEC), 0);
    read_end.reset(ends[0]);
    write_end.reset(ends[1]);
  }
};

static_assert(std::is_convertible_v<mp::connection&, mp::waitable>);
static_assert(std::is_convertible_v<const mp::connection&, mp::waitable>);
static_assert(std::is_convertible_v<mp::connection*, mp::waitable>);
static_assert(std::is_convertible_v<mp::process&, mp::waitable>);
static_assert(std::is_convertible_v<mp::process_handle, mp::waitable>);  // through its sentinel
static_assert(std::is_convertible_v<int, mp::waitable>);
static_assert(!std::is_constructible_v<mp::waitable, mp::connection>);  // would dangle
static_assert(!std::is_convertible_v<long, mp::waitable>);

TEST(wait, reports_a_message_buffered_inside_a_connection_in_a_mix) {
  auto [go_reader, go_writer] = mp::pipe(false);
  mp::process p{wait_for_go, std::move(go_reader)};
  p.start();
  raw_pipe raw;
  auto [a, b] = mp::pipe();
  a.send(1);
  a.send(2);
  EXPECT_EQ(b.recv<int>(), 1);  // 2 is now buffered in b, and its socket is empty
  ASSERT_TRUE(b.has_buffered_data());
  // What mixing used to take, raw descriptors, misses it: a wait could hang on data at hand.
  EXPECT_TRUE(
      mp::wait(std::vector<int>{raw.read_end.get(), b.fileno(), p.sentinel()}, 0ms).empty());
  const std::vector<mp::waitable> ready =
      mp::wait({raw.read_end.get(), b, p}, mp::testing::scaled(30s));
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], b);
  EXPECT_EQ(b.recv<int>(), 2);
  go_writer.send(1);
  p.join();
}

TEST(wait, watches_a_pipe_a_process_and_a_raw_descriptor_in_one_call) {
  auto [go_reader, go_writer] = mp::pipe(false);
  auto [reader, writer] = mp::pipe(false);
  mp::process p{wait_for_go, std::move(go_reader)};
  p.start();
  raw_pipe raw;
  const int raw_fd = raw.read_end.get();
  EXPECT_TRUE(mp::wait({reader, p, raw_fd}, 0ms).empty());
  EXPECT_TRUE(mp::wait({reader, p, raw_fd}, 10ms).empty());  // times out

  ASSERT_EQ(::write(raw.write_end.get(), "x", 1), 1);
  auto ready = mp::wait({reader, p, raw_fd}, mp::testing::scaled(30s));
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], raw_fd);

  writer.send(7);
  ready = mp::wait({reader, p, raw_fd}, mp::testing::scaled(30s));
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_EQ(ready[0], reader);
  EXPECT_EQ(ready[1], raw_fd);
  EXPECT_EQ(reader.recv<int>(), 7);

  go_writer.send(1);
  ready = mp::wait({p}, mp::testing::scaled(30s));  // until it ends
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], p);
  // A range of waitables, kept across waits, gives waitables; a handle and a pointer work too.
  const mp::process_handle handle = p.handle();
  const std::vector<mp::waitable> objects{&reader, handle, raw_fd};
  const std::vector<mp::waitable> again = mp::wait(objects, mp::testing::scaled(30s));
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0], handle);
  EXPECT_NE(again[0], p);  // another object naming the same process
  EXPECT_EQ(again[1], raw_fd);
  EXPECT_EQ(mp::wait({p.handle()}, 0ms).size(), 1u);  // a temporary handle, by its sentinel
  p.join();
}

TEST(wait, times_out_over_a_mix_with_nothing_ready) {
  auto [go_reader, go_writer] = mp::pipe(false);
  auto [reader, writer] = mp::pipe(false);
  mp::process p{wait_for_go, std::move(go_reader)};
  p.start();
  raw_pipe raw;
  EXPECT_TRUE(mp::wait({reader, p, raw.read_end.get()}, 0ms).empty());
  EXPECT_TRUE(mp::wait({reader, p, raw.read_end.get()}, 20ms).empty());
  std::vector<mp::waitable> objects{reader, p};
  EXPECT_TRUE(mp::wait(objects, 5ms).empty());
  go_writer.send(1);
  p.join();
}

namespace fake {
// Stands for a type of a later release (a listener): one hook makes it waitable.
struct listener {
  int fd;
};
mp::detail::wait_target wait_target_of(const listener& l) {
  return {l.fd, false};
}
}  // namespace fake

TEST(wait, takes_any_type_with_a_wait_target_of_hook) {
  static_assert(mp::waitable_object<fake::listener>);
  static_assert(!std::is_constructible_v<mp::waitable, fake::listener>);  // no temporaries
  raw_pipe raw;
  const fake::listener l{raw.read_end.get()};
  auto [a, b] = mp::pipe();
  EXPECT_TRUE(mp::wait({l, b}, 0ms).empty());
  ASSERT_EQ(::write(raw.write_end.get(), "x", 1), 1);
  const auto ready = mp::wait({l, b}, mp::testing::scaled(30s));
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], l);
  const std::vector<const fake::listener*> listeners{&l};
  EXPECT_EQ(mp::wait(listeners, 0ms), listeners);
}

TEST(wait, refuses_closed_objects_and_null_pointers) {
  auto [a, b] = mp::pipe();
  b.close();
  EXPECT_SYSTEM_ERROR(mp::wait({a, b}, 0ms), std::errc::bad_file_descriptor,
                      "connection is closed");
  const int bad = never_open_fd();
  EXPECT_SYSTEM_ERROR(mp::wait({a, bad}, 0ms), std::errc::bad_file_descriptor,
                      "descriptor " + std::to_string(bad) + " is not open");
  EXPECT_SYSTEM_ERROR(mp::wait({-1}, 0ms), std::errc::bad_file_descriptor, "descriptor -1");
  EXPECT_THROW(mp::wait(std::vector<mp::connection*>{&a, nullptr}, 0ms), mp::usage_error);
}

}  // namespace
