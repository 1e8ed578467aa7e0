// SPDX-License-Identifier: MIT
// Pipes and connections: Python's multiprocessing.Pipe, Connection and
// multiprocessing.connection.wait.
//
// Only differences from Python are documented here; see
// https://docs.python.org/3/library/multiprocessing.html#connection-objects
//
// Wire format: each message is one frame, an 8-byte header (low 48 bits: length
// in bytes; high 16 bits: number of descriptors sent with it) and the payload.
// `send<T>` payloads carry the codec's type fingerprint, so `recv<U>` with the
// wrong U throws mp::decode_error instead of misreading. Both ends are Unix
// stream sockets, also for `pipe(false)`, so descriptors can travel with
// SCM_RIGHTS (a connection can be sent over a connection) and a send to a dead
// peer is an error, never SIGPIPE.
//
// Thread-safety: a connection is not thread-safe (as in Python); use one per
// thread or lock around it. Reads are buffered: poll() and mp::wait see
// buffered data.
//
// Errors follow Python's categories: using a closed connection, or the wrong
// end of a one-way pipe, is an OS error there (OSError) and a std::system_error
// with EBADF here; mp::usage_error is left for misuse Python has no OS error for.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <ranges>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "mp/detail/byte_buffer.hpp"
#include "mp/errors.hpp"
#include "mp/export.hpp"
#include "mp/process.hpp"
#include "mp/serialization.hpp"
#include "mp/unique_fd.hpp"

namespace mp {

/// One end of a pipe, as Python's Connection.
class MP_EXPORT connection {
 public:
  /// A closed connection.
  connection() noexcept = default;
  /// Takes ownership of `socket`, a connected stream socket: a Unix one
  /// (socketpair, or accept/connect on AF_UNIX), over which descriptors can
  /// travel too, or another family's (TCP), which carries bytes and values
  /// but no descriptors. Checks it now: throws std::system_error with EBADF if
  /// it is not an open descriptor (then left unclosed: there is nothing to
  /// close), ENOTSOCK if it is not a socket, EPROTOTYPE if it is not a stream
  /// socket (datagrams or records would break the framing); mp::usage_error if
  /// neither readable nor writable. A refused socket is closed.
  explicit connection(unique_fd socket, bool readable = true, bool writable = true);
  connection(connection&&) noexcept = default;
  connection& operator=(connection&&) noexcept = default;
  ~connection() = default;

  /// Sends one value through the codec. Blocks until the kernel took all of it.
  /// Throws std::system_error: EBADF if closed or read-only, EPIPE (or
  /// ECONNRESET) if the peer is gone. Values holding connections pass their
  /// descriptors (over a Unix socket only: mp::process_error otherwise).
  /// A string literal or `const char*` is sent as a std::string.
  template <class T>
  void send(const T& value) {
    if constexpr (std::is_array_v<T> || std::is_same_v<T, const char*> ||
                  std::is_same_v<T, char*>) {
      static_assert(std::is_convertible_v<const T&, std::string_view>,
                    "mp::connection::send: arrays other than strings cannot be sent; use a "
                    "std::vector or std::array");
      send(std::string(value));
      return;
    } else {
      static_assert(serializable<T>,
                    "mp::connection::send: the codec cannot encode this type (views such as "
                    "string_view and span, raw pointers, and types without a cereal serialize "
                    "function are refused; see mp/serialization.hpp)");
      send_value(value);
    }
  }

  /// Receives one value sent with `send<T>`. Blocks until a whole message is
  /// there. Throws mp::eof_error if the peer closed and nothing is left;
  /// mp::decode_error if the message is not a T (the message is consumed);
  /// std::system_error with EBADF if closed or write-only.
  template <class T>
  T recv() {
    static_assert(serializable<T>,
                  "mp::connection::recv: the codec cannot decode this type (it must be "
                  "default-constructible and serializable; views cannot own what they receive)");
    T value{};
    detail::handle_source handles;
    const std::span<const std::byte> payload = read_frame(handles);
    try {
      detail::decode_into(payload, value, &handles);
    } catch (...) {
      consume_frame();
      throw;
    }
    consume_frame();
    return value;
  }

  /// Sends `size` bytes of `data` from `offset` (all the rest if unset) as one
  /// message. Throws std::out_of_range if the range is outside `data`; as
  /// send otherwise.
  void send_bytes(std::span<const std::byte> data, std::size_t offset = 0,
                  std::optional<std::size_t> size = std::nullopt);
  void send_bytes(std::string_view data) { send_bytes(std::as_bytes(std::span(data))); }

  /// Receives one message as bytes. If it is longer than `maxlength`, the
  /// connection is closed and mp::process_error thrown, as Python does. The
  /// result grows as the bytes arrive, never ahead of them to the length the
  /// header claims. As recv otherwise.
  bytes recv_bytes(std::optional<std::size_t> maxlength = std::nullopt);

  /// Receives one message into `buffer` from `offset`; returns its length.
  /// Throws mp::buffer_too_short (holding the whole message) if it does not fit.
  std::size_t recv_bytes_into(std::span<std::byte> buffer, std::size_t offset = 0);

  /// True if a read would not block (data, or EOF). Without a timeout it does
  /// not wait; `poll(std::nullopt)` waits forever, as Python's poll(None).
  /// Throws std::system_error with EBADF if closed or write-only.
  bool poll() { return poll_for(std::chrono::nanoseconds::zero()); }
  bool poll(std::nullopt_t) { return poll_for(std::nullopt); }
  template <class Rep, class Period>
  bool poll(std::chrono::duration<Rep, Period> timeout) {
    return poll_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }

  /// Closes the connection; later calls throw std::system_error (EBADF). Idempotent.
  void close() noexcept;
  bool closed() const noexcept { return !socket_; }
  bool readable() const noexcept { return readable_; }
  bool writable() const noexcept { return writable_; }
  /// The socket descriptor. Throws std::system_error (EBADF) if closed.
  int fileno() const;
  /// True if received bytes are buffered here, so a read may not need the socket.
  bool has_buffered_data() const noexcept { return read_end_ > read_begin_; }

 private:
  static constexpr std::size_t header_size = 8;
  static constexpr std::size_t large_buffer = std::size_t{4} << 20;

  template <class T>
  void send_value(const T& value) {
    check_writable();
    write_buffer_.clear();
    write_buffer_.grow(header_size);
    detail::handle_sink handles;
    detail::encode_into(write_buffer_, value, &handles);
    send_frame(write_buffer_.data(), write_buffer_.size() - header_size, {}, handles.fds);
    write_buffer_.shrink_if_above(large_buffer);
  }
  void check_writable() const;
  void check_readable() const;
  bool poll_for(std::optional<std::chrono::nanoseconds> timeout);
  // `frame` points at header_size bytes of room followed by `length` payload
  // bytes; `extra` is sent after them without copying (for send_bytes).
  void send_frame(std::byte* frame, std::size_t length, std::span<const std::byte> extra,
                  const std::vector<int>& fds);
  // Reads the next frame's header; returns its payload length and moves its
  // descriptors into `handles`.
  std::size_t read_header(detail::handle_source& handles);
  // Reads a whole frame into the read buffer and returns its payload.
  std::span<const std::byte> read_frame(detail::handle_source& handles);
  void consume_frame() noexcept;
  // Reads into the read buffer until it holds `count` unread bytes.
  void fill(std::size_t count);
  // Copies buffered bytes then reads the rest of a payload into `out`.
  void read_into(std::byte* out, std::size_t count);
  // Reads a payload whose header was consumed into a new vector.
  bytes read_payload(std::size_t length);
  std::size_t receive(void* into, std::size_t size);
  [[noreturn]] void throw_eof();

  unique_fd socket_;
  bool readable_ = false;
  bool writable_ = false;
  bool unix_domain_ = false;  // descriptors can travel
  detail::byte_buffer read_buffer_;
  std::size_t read_begin_ = 0;  // unread bytes are [read_begin_, read_end_)
  std::size_t read_end_ = 0;
  std::size_t frame_size_ = 0;  // header + payload of the frame read_frame returned
  bool large_frames_ = false;   // the last frame was large: read headers alone
  std::deque<unique_fd> received_fds_;
  detail::byte_buffer write_buffer_;
};

/// Codec hooks: a connection travels as its descriptor (SCM_RIGHTS between
/// processes). Saving throws std::system_error (EBADF) if it is closed, and
/// mp::usage_error if it has buffered unread data, which would be lost.
/// Loading throws mp::decode_error if the descriptor received is not a stream
/// socket.
MP_EXPORT void save(detail::output_archive& archive, const connection& c);
MP_EXPORT void load(detail::input_archive& archive, connection& c);

/// Python's Pipe(duplex): two connected connections. With duplex false the
/// first can only receive and the second only send.
MP_EXPORT std::pair<connection, connection> pipe(bool duplex = true);

namespace detail {

struct wait_target {
  int fd;
  bool ready_now;
};
inline wait_target wait_target_of(const connection& c) {
  return {c.fileno(), c.has_buffered_data()};
}
inline wait_target wait_target_of(const process& p) {
  return {p.sentinel(), false};
}
inline wait_target wait_target_of(const process_handle& p) {
  return {p.sentinel(), false};
}
inline wait_target wait_target_of(int fd) {
  return {fd, false};
}
template <class T>
wait_target wait_target_of(T* p) {
  return wait_target_of(*p);
}
template <class T>
wait_target wait_target_of(std::reference_wrapper<T> r) {
  return wait_target_of(r.get());
}

/// Indices of the ready targets; blocks up to `timeout` (nullopt: forever).
MP_EXPORT std::vector<std::size_t> wait_ready(std::span<const wait_target> targets,
                                              std::optional<std::chrono::nanoseconds> timeout);

}  // namespace detail

/// Python's multiprocessing.connection.wait: waits until at least one object
/// is ready (a connection has data or EOF, a process has ended, a descriptor is
/// readable) or the timeout passes, and returns the ready ones, in input order.
/// Elements may be connections, processes, process handles, descriptors (int),
/// or pointers or reference_wrappers to these. The result holds copies of the
/// ready elements, or pointers to them when the elements cannot be copied (a
/// std::vector<mp::connection> gives std::vector<mp::connection*>).
template <std::ranges::forward_range R>
requires requires(const std::ranges::range_value_t<R>& object) {
  detail::wait_target_of(object);
}
auto wait(R&& objects, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
  using element = std::ranges::range_value_t<R>;
  using result = std::conditional_t<std::is_copy_constructible_v<element>, element,
                                    std::remove_reference_t<std::ranges::range_reference_t<R>>*>;
  std::vector<detail::wait_target> targets;
  for (const auto& object : objects) targets.push_back(detail::wait_target_of(object));
  std::vector<result> ready;
  const auto indices = detail::wait_ready(targets, timeout);
  auto it = std::ranges::begin(objects);
  std::size_t at = 0;
  for (std::size_t index : indices) {
    std::advance(it, static_cast<std::ptrdiff_t>(index - at));
    at = index;
    if constexpr (std::is_copy_constructible_v<element>)
      ready.push_back(*it);
    else
      ready.push_back(std::addressof(*it));
  }
  return ready;
}

}  // namespace mp
