// SPDX-License-Identifier: MIT
// Connections over Unix stream sockets: framing, descriptor passing, buffered reads.
#include "mp/connection.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>

#include "big_endian.hpp"
#include "os/system.hpp"

namespace mp {
namespace {

constexpr std::uint64_t length_mask = (std::uint64_t{1} << 48) - 1;
constexpr std::size_t min_read = std::size_t{64} << 10;

// Python raises OSError for these ("handle is closed", "connection is
// read-only"); EBADF is what the kernel says for a descriptor used in a way it
// cannot be.
[[noreturn]] void throw_bad_handle(const char* what) {
  throw std::system_error(std::make_error_code(std::errc::bad_file_descriptor), what);
}

// Checks that `fd` can carry mp's framing; returns whether it is a Unix socket.
bool check_stream_socket(unique_fd& fd) {
  if (!fd) throw_bad_handle("mp::connection: no descriptor (-1)");
  const std::string prefix = "mp::connection: descriptor " + std::to_string(fd.get());
  os::socket_kind kind;
  try {
    kind = os::socket_kind_of(fd.get());
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::bad_file_descriptor) {
      static_cast<void>(fd.release());  // not ours to close: the number may be reused already
      throw std::system_error(e.code(), prefix + " is not open");
    }
    if (e.code() == std::errc::not_a_socket)
      throw std::system_error(e.code(), prefix +
                                            " is not a socket; a connection needs a connected "
                                            "stream socket (mp::pipe makes one)");
    throw;
  }
  if (!kind.stream)
    throw std::system_error(std::make_error_code(std::errc::wrong_protocol_type),
                            prefix +
                                " is not a stream socket (SOCK_STREAM); message framing "
                                "needs a byte stream");
  return kind.unix_domain;
}

}  // namespace

connection::connection(unique_fd socket, bool readable, bool writable, wire_format format) {
  if (!readable && !writable)
    throw usage_error("mp::connection: at least one of readable and writable must be true");
  if (format != wire_format::mp && format != wire_format::python)
    throw usage_error("mp::connection: unknown wire format " +
                      std::to_string(static_cast<int>(format)));
  unix_domain_ = check_stream_socket(socket);
  socket_ = std::move(socket);
  readable_ = readable;
  writable_ = writable;
  format_ = format;
}

int connection::fileno() const {
  if (!socket_) throw_bad_handle("connection is closed");
  return socket_.get();
}

void connection::check_writable() const {
  if (!socket_) throw_bad_handle("connection is closed");
  if (!writable_) throw_bad_handle("connection is read-only");
}

void connection::check_readable() const {
  if (!socket_) throw_bad_handle("connection is closed");
  if (!readable_) throw_bad_handle("connection is write-only");
}

void connection::close() noexcept {
  socket_.reset();
  readable_ = writable_ = false;
  read_buffer_ = {};
  write_buffer_ = {};
  read_begin_ = read_end_ = frame_size_ = 0;
  received_fds_.clear();
}

// ---- sending -------------------------------------------------------------

void connection::send_bytes(std::span<const std::byte> data, std::size_t offset,
                            std::optional<std::size_t> size) {
  check_writable();
  if (offset > data.size()) throw std::out_of_range("send_bytes: offset is past the end of data");
  const std::size_t count = size.value_or(data.size() - offset);
  if (count > data.size() - offset)
    throw std::out_of_range("send_bytes: offset + size is past the end of data");
  std::byte header[header_room];
  send_frame(header, 0, data.subspan(offset, count), {});
}

void connection::send_frame(std::byte* frame, std::size_t length, std::span<const std::byte> extra,
                            const std::vector<int>& fds) {
  const std::uint64_t payload = length + extra.size();
  if (payload > length_mask) throw process_error("message too large (2^48 bytes or more)");
  if (fds.size() > detail::max_handles)
    throw process_error("a message can carry at most " + std::to_string(detail::max_handles) +
                        " descriptors");
  if (!fds.empty() && !unix_domain_)
    throw process_error(
        "descriptors (a connection or another resource) can travel only over a Unix socket; "
        "this connection is another kind (TCP)");
  if (!fds.empty() && format_ == wire_format::python)
    throw process_error(
        "descriptors (a connection or another resource) cannot travel over a connection that "
        "speaks Python's framing (from mp::listener or mp::client); send them over mp::pipe");
  // The header goes right before the payload, at the end of the room.
  std::size_t size = 8;
  if (format_ == wire_format::mp) {
    const std::uint64_t header = payload | (static_cast<std::uint64_t>(fds.size()) << 48);
    std::memcpy(frame + header_room - size, &header, size);
  } else if (payload <= 0x7fffffff) {
    size = 4;
    detail::store_big_endian(frame + header_room - size, payload, size);
  } else {  // -1, then the length as 8 bytes, big-endian
    size = 12;
    detail::store_big_endian(frame + header_room - size, 0xffffffff, 4);
    detail::store_big_endian(frame + header_room - 8, payload, 8);
  }
  const std::span<const std::byte> pieces[] = {{frame + header_room - size, size + length}, extra};
  try {
    os::send_with_fds(socket_.get(), pieces, fds);
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::broken_pipe || e.code() == std::errc::connection_reset)
      throw std::system_error(e.code(), "send: the peer closed its end of the connection");
    throw;
  }
}

// ---- receiving -----------------------------------------------------------

std::size_t connection::receive(void* into, std::size_t size) {
  os::received got;
  try {
    got = os::receive_with_fds(socket_.get(), {static_cast<std::byte*>(into), size},
                               detail::max_handles);
  } catch (const os::descriptors_lost& e) {
    // Frames ahead would find too few descriptors: the stream is out of step.
    close();
    throw std::system_error(e.code(), std::string(e.what()) + "; connection closed");
  }
  for (unique_fd& fd : got.fds) received_fds_.push_back(std::move(fd));
  return got.size;
}

void connection::throw_eof() {
  if (read_end_ > read_begin_)
    throw eof_error("the peer closed the connection in the middle of a message");
  throw eof_error("the peer closed the connection");
}

void connection::fill(std::size_t count) {
  if (read_end_ - read_begin_ >= count) return;
  if (read_begin_ > 0) {  // compact: move the unread tail to the front
    std::memmove(read_buffer_.data(), read_buffer_.data() + read_begin_, read_end_ - read_begin_);
    read_end_ -= read_begin_;
    read_begin_ = 0;
    read_buffer_.resize(read_end_);
  }
  while (read_end_ < count) {
    // Grow geometrically with what actually arrives, never to a length a
    // header merely claims: a hostile length cannot force a huge allocation.
    if (read_buffer_.capacity() - read_end_ < std::min(min_read, count - read_end_))
      read_buffer_.reserve(std::min(std::max(read_buffer_.capacity() * 2, read_end_ + min_read),
                                    std::max(count, read_end_ + min_read)));
    // After a large message, expect another: read just its header, so its
    // payload goes straight to its destination instead of through this buffer.
    const std::size_t room = read_buffer_.capacity() - read_end_;
    const std::size_t want = large_frames_ ? std::min(room, count - read_end_) : room;
    const std::size_t got = receive(read_buffer_.data() + read_end_, want);
    if (got == 0) throw_eof();
    read_end_ += got;
    read_buffer_.resize(read_end_);
  }
}

std::size_t connection::read_header(detail::handle_source& handles) {
  check_readable();
  if (format_ == wire_format::python) return read_python_header();
  header_size_ = 8;
  fill(header_size_);
  std::uint64_t header = 0;
  std::memcpy(&header, read_buffer_.data() + read_begin_, header_size_);
  const std::size_t fd_count = static_cast<std::size_t>(header >> 48);
  if (fd_count > received_fds_.size()) {
    close();
    throw decode_error("a message announced descriptors that did not arrive; connection closed");
  }
  for (std::size_t i = 0; i < fd_count; ++i) {
    handles.fds.push_back(std::move(received_fds_.front()));
    received_fds_.pop_front();
  }
  const std::uint64_t length = header & length_mask;
  large_frames_ = length >= min_read;
  if (length > SIZE_MAX - header_size_) {
    close();
    throw decode_error("message length out of range; connection closed");
  }
  return static_cast<std::size_t>(length);
}

std::size_t connection::read_python_header() {
  const auto big_endian = [&](std::size_t at, std::size_t count) {
    return detail::load_big_endian(read_buffer_.data() + read_begin_ + at, count);
  };
  header_size_ = 4;
  fill(header_size_);
  std::uint64_t length = big_endian(0, 4);
  if (length == 0xffffffff) {  // -1: the length follows as 8 bytes
    header_size_ = 12;
    fill(header_size_);
    length = big_endian(4, 8);
  } else if (length > 0x7fffffff) {
    close();
    throw decode_error("a message header gives the negative length " +
                       std::to_string(static_cast<std::int32_t>(length)) +
                       ", which Python's framing never sends; connection closed");
  }
  large_frames_ = length >= min_read;
  if (length > length_mask) {
    close();
    throw decode_error("message length " + std::to_string(length) +
                       " out of range (2^48 bytes or more); connection closed");
  }
  return static_cast<std::size_t>(length);
}

std::span<const std::byte> connection::read_frame(detail::handle_source& handles) {
  const std::size_t length = read_header(handles);
  fill(header_size_ + length);
  frame_size_ = header_size_ + length;
  return {read_buffer_.data() + read_begin_ + header_size_, length};
}

void connection::consume_frame() noexcept {
  read_begin_ += frame_size_;
  frame_size_ = 0;
  if (read_begin_ == read_end_) {
    read_begin_ = read_end_ = 0;
    read_buffer_.clear();
    read_buffer_.shrink_if_above(large_buffer);
  }
}

void connection::read_into(std::byte* out, std::size_t count) {
  const std::size_t buffered = std::min(count, read_end_ - read_begin_);
  if (buffered != 0) std::memcpy(out, read_buffer_.data() + read_begin_, buffered);
  read_begin_ += buffered;
  if (read_begin_ == read_end_) {
    read_begin_ = read_end_ = 0;
    read_buffer_.clear();
  }
  for (std::size_t done = buffered; done < count;) {
    const std::size_t got = receive(out + done, count - done);
    if (got == 0) throw eof_error("the peer closed the connection in the middle of a message");
    done += got;
  }
}

bytes connection::read_payload(std::size_t length) {
  // A header may announce far more than its peer will ever send, so the result
  // grows only as bytes arrive: each step at most doubles it (by min_read at
  // least), and std::vector zero-fills just that step, which the receives then
  // fill. The room ahead stays below what has arrived (plus min_read), and is
  // large enough for one receive to keep pace with a fast sender; sizing it to
  // the bytes queued (FIONREAD) instead made 1 MiB messages three times slower.
  //
  // Once a sixteenth of the message is in, the rest is reserved at once: the
  // header has been proven that far, reserved pages cost address space only
  // until the receives fill them, and the later steps then neither copy what
  // came nor fault in a second buffer. (Growing by doubling to the end copied
  // and faulted twice the message: a 1 GiB message took 15 s here, most of it
  // in page faults.) Where the reservation is refused (a limit on address
  // space), the steps go on doubling.
  std::size_t done = std::min(length, read_end_ - read_begin_);
  bytes out(read_buffer_.data() + read_begin_, read_buffer_.data() + read_begin_ + done);
  read_begin_ += done;
  if (read_begin_ == read_end_) {
    read_begin_ = read_end_ = 0;
    read_buffer_.clear();
  }
  while (done < length) {
    if (done == out.size()) {
      if (out.capacity() < length && done >= length / 16) {
        try {
          out.reserve(length);
        } catch (const std::bad_alloc&) {
        }
      }
      out.resize(std::min(length, std::max(done * 2, done + min_read)));
    }
    const std::size_t got = receive(out.data() + done, out.size() - done);
    if (got == 0) throw eof_error("the peer closed the connection in the middle of a message");
    done += got;
  }
  return out;
}

bytes connection::recv_bytes(std::optional<std::size_t> maxlength) {
  detail::handle_source handles;  // descriptors sent with raw bytes are closed
  const std::size_t length = read_header(handles);
  if (maxlength && length > *maxlength) {
    close();
    throw process_error("bad message length: " + std::to_string(length) +
                        " bytes exceeds maxlength " + std::to_string(*maxlength) +
                        "; connection closed");
  }
  read_begin_ += header_size_;
  return read_payload(length);
}

std::size_t connection::recv_bytes_into(std::span<std::byte> buffer, std::size_t offset) {
  if (offset > buffer.size()) throw std::out_of_range("recv_bytes_into: offset is past the end");
  detail::handle_source handles;
  const std::size_t length = read_header(handles);
  if (length > buffer.size() - offset) {
    read_begin_ += header_size_;
    throw buffer_too_short(read_payload(length));  // whole, as Python keeps it
  }
  read_begin_ += header_size_;
  read_into(buffer.data() + offset, length);
  return length;
}

bool connection::poll(mp::timeout timeout) const {
  check_readable();
  if (has_buffered_data()) return true;
  return os::wait_readable(socket_.get(), timeout);
}

// ---- codec hooks, pipe, wait ---------------------------------------------

void save(detail::output_archive& archive, const connection& c) {
  if (c.closed()) throw_bad_handle("cannot send a closed connection");
  if (c.has_buffered_data())
    throw usage_error("cannot send a connection that holds received, unread data");
  archive(archive.add_handle(c.fileno()), c.readable(), c.writable(),
          static_cast<std::uint8_t>(c.format()));
}

void load(detail::input_archive& archive, connection& c) {
  std::uint32_t index = 0;
  bool readable = false, writable = false;
  std::uint8_t format = 0;
  archive(index, readable, writable, format);
  if (!readable && !writable)
    throw decode_error("a received connection can neither read nor write");
  if (format > static_cast<std::uint8_t>(wire_format::python))
    throw decode_error("a received connection names wire format " + std::to_string(format) +
                       ", which does not exist");
  unique_fd fd = archive.take_handle(index);
  try {
    c = connection(std::move(fd), readable, writable, static_cast<wire_format>(format));
  } catch (const std::system_error& e) {
    throw decode_error(std::string("a received connection is unusable: ") + e.what());
  }
}

std::pair<connection, connection> pipe(bool duplex) {
  auto ends = os::socket_pair();  // not a structured binding: clang 14 cannot capture one
  auto& a = ends.first;
  auto& b = ends.second;
  if (duplex) return {connection(std::move(a)), connection(std::move(b))};
  os::shut_down_sending(a.get());
  os::shut_down_receiving(b.get());
  return {connection(std::move(a), true, false), connection(std::move(b), false, true)};
}

std::vector<waitable> wait(std::initializer_list<waitable> objects, mp::timeout timeout) {
  const std::span<const waitable> all(objects.begin(), objects.size());
  std::vector<waitable> ready;
  for (const std::size_t index : detail::wait_ready(all, timeout)) ready.push_back(all[index]);
  return ready;
}

namespace detail {

void throw_null_waitable() {
  throw usage_error("mp::wait: a null pointer among the objects");
}

std::vector<std::size_t> wait_ready(std::span<const waitable> objects, mp::timeout timeout) {
  std::vector<int> fds;
  fds.reserve(objects.size());
  std::vector<std::size_t> ready_now;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const wait_target target = objects[i].target();
    fds.push_back(target.fd);
    if (target.ready_now) ready_now.push_back(i);
  }
  // Something is ready already (a buffered message): report it with whatever
  // else is ready at this moment, without waiting.
  if (!ready_now.empty()) timeout = std::chrono::nanoseconds::zero();
  const std::vector<std::size_t> readable = os::wait_any_readable(fds, timeout);
  if (ready_now.empty()) return readable;
  std::vector<std::size_t> ready;
  std::ranges::set_union(ready_now, readable, std::back_inserter(ready));
  return ready;
}

}  // namespace detail
}  // namespace mp
