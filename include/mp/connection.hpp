// SPDX-License-Identifier: MIT
// Pipes and connections: Python's multiprocessing.Pipe, Connection and
// multiprocessing.connection.wait.
//
// Only differences from Python are documented here; see
// https://docs.python.org/3/library/multiprocessing.html#connection-objects
//
// Wire format: each message is one frame, an 8-byte header (low 48 bits: length
// in bytes; high 16 bits: number of descriptors sent with it) and the payload.
// A connection from mp::listener or mp::client speaks Python's framing instead
// (wire_format::python: a 4-byte big-endian length, or -1 and an 8-byte one),
// so that Python programs can talk to it; no descriptors travel there.
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
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/detail/byte_buffer.hpp"
#include "mp/detail/checks.hpp"
#include "mp/detail/codec.hpp"
#include "mp/errors.hpp"
#include "mp/export.hpp"
#include "mp/timeout.hpp"
#include "mp/unique_fd.hpp"

namespace mp {

/// How a connection frames its messages: mp's own header, which also counts
/// the descriptors sent with a message (mp::pipe), or Python's
/// multiprocessing.connection framing, which a Python program reads and
/// writes with send_bytes/recv_bytes (connections from mp::listener and
/// mp::client). Typed values keep mp's codec either way.
enum class wire_format : std::uint8_t { mp, python };

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
  /// `format` chooses the framing: wire_format::python to talk to a Python
  /// Connection over a socket of any family.
  explicit connection(unique_fd socket, bool readable = true, bool writable = true,
                      wire_format format = wire_format::mp);
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
      if constexpr (detail::check_value<T>()) send_value(value);
    }
  }

  /// Receives one value sent with `send<T>`. Blocks until a whole message is
  /// there. Throws mp::eof_error if the peer closed and nothing is left;
  /// mp::decode_error if the message is not a T (the message is consumed);
  /// std::system_error with EBADF if closed or write-only.
  template <class T>
  T recv() {
    static_assert(detail::reported(detail::check_value<T>()));
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

  /// True if a read would not block (data, or EOF), waiting at most `timeout`.
  /// Without one it does not wait, as Python's poll(); `poll(std::nullopt)`
  /// waits with no limit, as Python's poll(None): the one mp call whose
  /// default is not "no limit" (docs/conventions.md).
  /// Throws std::system_error with EBADF if closed or write-only.
  bool poll(mp::timeout timeout = std::chrono::nanoseconds::zero()) const;

  /// Closes the connection; later calls throw std::system_error (EBADF). Idempotent.
  void close() noexcept;
  bool closed() const noexcept { return !socket_; }
  bool readable() const noexcept { return readable_; }
  bool writable() const noexcept { return writable_; }
  /// How its messages are framed.
  wire_format format() const noexcept { return format_; }
  /// The socket descriptor. Throws std::system_error (EBADF) if closed.
  int fileno() const;
  /// True if received bytes are buffered here, so a read may not need the socket.
  bool has_buffered_data() const noexcept { return read_end_ > read_begin_; }

 private:
  // Room kept before a payload for its header: mp's is 8 bytes, Python's 4,
  // or 12 for a message of 2 GiB or more.
  static constexpr std::size_t header_room = 12;
  static constexpr std::size_t large_buffer = std::size_t{4} << 20;

  template <class T>
  void send_value(const T& value) {
    check_writable();
    write_buffer_.clear();
    write_buffer_.grow(header_room);
    detail::handle_sink handles;
    detail::encode_into(write_buffer_, value, &handles);
    send_frame(write_buffer_.data(), write_buffer_.size() - header_room, {}, handles.fds);
    write_buffer_.shrink_if_above(large_buffer);
  }
  void check_writable() const;
  void check_readable() const;
  // `frame` points at header_room bytes of room followed by `length` payload
  // bytes; `extra` is sent after them without copying (for send_bytes).
  void send_frame(std::byte* frame, std::size_t length, std::span<const std::byte> extra,
                  const std::vector<int>& fds);
  // Reads the next frame's header (its size goes to header_size_); returns
  // its payload length and moves its descriptors into `handles`.
  std::size_t read_header(detail::handle_source& handles);
  std::size_t read_python_header();
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
  wire_format format_ = wire_format::mp;
  std::size_t header_size_ = 8;  // of the frame being read
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

/// What mp::wait polls for one object: it is ready when `fd` is readable, or
/// at once if `ready_now` (data already buffered in a connection).
struct wait_target {
  int fd = -1;
  bool ready_now = false;
};

/// True if T has a wait_target_of hook.
template <class T>
concept has_wait_hook = requires(const T& object) {
  { wait_target_of(object) } -> std::same_as<wait_target>;
};

/// True if T has `int sentinel() const`.
template <class T>
concept has_sentinel = requires(const T& object) {
  { object.sentinel() } -> std::same_as<int>;
};
/// Waited on through its sentinel: T has one, and no hook.
template <class T>
concept sentinel_waitable = has_sentinel<T> && !has_wait_hook<T>;

/// A reference to a const element of range R.
template <class R>
using const_element_ref = const std::ranges::range_value_t<R>&;

/// Throws mp::usage_error: mp::wait was given a null pointer.
[[noreturn]] MP_EXPORT void throw_null_waitable();

}  // namespace detail

/// mp::wait's hook for a connection: its socket, and ready at once if it holds
/// buffered data. Throws std::system_error (EBADF) if it is closed.
inline detail::wait_target wait_target_of(const connection& c) {
  return {c.fileno(), c.has_buffered_data()};
}

/// The objects mp::wait accepts besides descriptors: a type with a
/// `wait_target_of(const T&)` hook in its namespace (connection, above; a type
/// joins by declaring one), or with `int sentinel() const`, a descriptor that
/// becomes readable when it is done (mp::process, mp::process_handle).
template <class T>
concept waitable_object = detail::has_wait_hook<T> || detail::has_sentinel<T>;

/// One element of a mixed mp::wait: a reference to a connection, a process
/// (anything with `int sentinel() const`) or another waitable_object, or a raw
/// descriptor. Implicitly constructible from each, from a pointer to one and
/// from a std::reference_wrapper, so `mp::wait({reader, p, fd})` works.
///
/// It refers to its object without owning it: the object must outlive it.
/// For that reason a temporary connection is refused at compile time; a
/// temporary process or process_handle is waited on through the sentinel it
/// has when the waitable is made. Copyable; not thread-safe beyond its object.
class waitable {
 public:
  /// A raw descriptor: ready when readable (or at its end, or in error).
  template <std::same_as<int> Fd>
  waitable(Fd fd) noexcept : fd_(fd) {}

  /// `object`, read again at each wait (a connection's buffer, a process's
  /// sentinel, which throws once the process is closed).
  template <waitable_object T>
  waitable(const T& object) noexcept : object_(&object), probe_(&probe<T>) {}

  /// A temporary process or handle: its sentinel now (throws as sentinel() does).
  template <detail::sentinel_waitable T>
  waitable(const T&& object) : fd_(object.sentinel()) {}
  /// A temporary connection (or other hooked object) would be gone before the wait.
  template <detail::has_wait_hook T>
  waitable(const T&&) = delete;

  /// The object `object` points to. Throws mp::usage_error for a null pointer.
  template <waitable_object T>
  waitable(const T* object) : waitable(checked(object)) {}
  /// The object `object` refers to.
  template <waitable_object T>
  waitable(std::reference_wrapper<T> object) noexcept : waitable(object.get()) {}

  /// What to poll for it now. Throws what its object's hook throws.
  detail::wait_target target() const { return probe_ != nullptr ? probe_(object_) : fd_target(); }

  /// Equal if both refer to one object, or (objectless) to one descriptor; so
  /// `ready == reader` asks whether a waitable mp::wait returned is `reader`.
  friend bool operator==(const waitable& a, const waitable& b) noexcept {
    return a.object_ == b.object_ && (a.object_ != nullptr || a.fd_ == b.fd_);
  }

 private:
  template <class T>
  static detail::wait_target probe(const void* object) {
    const T& o = *static_cast<const T*>(object);
    if constexpr (detail::has_wait_hook<T>)
      return wait_target_of(o);
    else
      return {o.sentinel(), false};
  }
  template <class T>
  static const T& checked(const T* object) {
    if (object == nullptr) detail::throw_null_waitable();
    return *object;
  }
  detail::wait_target fd_target() const noexcept { return {fd_, false}; }

  const void* object_ = nullptr;
  int fd_ = -1;
  detail::wait_target (*probe_)(const void*) = nullptr;
};

namespace detail {
/// Indices of the ready objects, in order; blocks up to `timeout`, or not at
/// all if one is ready already.
MP_EXPORT std::vector<std::size_t> wait_ready(std::span<const waitable> objects,
                                              mp::timeout timeout);
}  // namespace detail

/// A range mp::wait takes: forward, with elements that convert to mp::waitable.
template <class R>
concept waitable_range =
    std::ranges::forward_range<R> && std::convertible_to<detail::const_element_ref<R>, waitable>;

/// Python's multiprocessing.connection.wait: waits until at least one object
/// is ready or the timeout passes (no limit if left out), and returns the ready
/// ones in input order (none on timeout). Ready means: a connection has a
/// message or EOF, or data already buffered inside it; a process has ended; a
/// descriptor is readable. The elements are anything a mp::waitable is made
/// from (connections, processes, process handles, `int` descriptors, pointers
/// or reference_wrappers to these) or waitables, for a mix. The result holds
/// copies of the ready elements, or pointers to them when the elements cannot
/// be copied (a std::vector<mp::connection> gives std::vector<mp::connection*>).
/// Throws std::system_error (EBADF) for a closed connection or a descriptor
/// that is not open, mp::usage_error for a closed process or a null pointer.
/// Blocks; thread-safe as its objects are.
template <waitable_range R>
auto wait(R&& objects, mp::timeout timeout = {}) {
  using element = std::ranges::range_value_t<R>;
  using result = std::conditional_t<std::is_copy_constructible_v<element>, element,
                                    std::remove_reference_t<std::ranges::range_reference_t<R>>*>;
  std::vector<waitable> targets;
  for (const auto& object : objects) targets.emplace_back(object);
  const std::vector<std::size_t> indices = detail::wait_ready(targets, timeout);
  std::vector<result> ready;
  ready.reserve(indices.size());
  auto it = std::ranges::begin(objects);
  std::size_t at = 0;
  for (const std::size_t index : indices) {
    std::advance(it, static_cast<std::ptrdiff_t>(index - at));
    at = index;
    if constexpr (std::is_copy_constructible_v<element>)
      ready.push_back(*it);
    else
      ready.push_back(std::addressof(*it));
  }
  return ready;
}

/// mp::wait over a mix written in place: `mp::wait({reader, p, fd}, 1s)`.
/// Returns the ready ones as waitables, in input order; compare them with the
/// objects (`ready[0] == reader`). As the range form otherwise.
MP_EXPORT std::vector<waitable> wait(std::initializer_list<waitable> objects,
                                     mp::timeout timeout = {});

}  // namespace mp
