// SPDX-License-Identifier: MIT
// Connections over Unix stream sockets: framing, descriptor passing, buffered reads.
#include "mp/connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <stdexcept>

#include "os/system.hpp"

namespace mp {
namespace {

constexpr std::uint64_t length_mask = (std::uint64_t{1} << 48) - 1;
constexpr std::size_t min_read = std::size_t{64} << 10;
constexpr std::size_t direct_chunk = std::size_t{16} << 20;

[[noreturn]] void throw_send_error(int error) {
  if (error == EPIPE || error == ECONNRESET)
    throw std::system_error(error, std::system_category(),
                            "send: the peer closed its end of the connection");
  throw std::system_error(error, std::system_category(), "sendmsg");
}

}  // namespace

connection::connection(detail::unique_fd socket, bool readable, bool writable)
    : socket_(std::move(socket)), readable_(readable), writable_(writable) {}

int connection::fileno() const {
  if (!socket_) throw usage_error("connection is closed");
  return socket_.get();
}

void connection::check_writable() const {
  if (!socket_) throw usage_error("connection is closed");
  if (!writable_) throw usage_error("connection is read-only");
}

void connection::check_readable() const {
  if (!socket_) throw usage_error("connection is closed");
  if (!readable_) throw usage_error("connection is write-only");
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
  std::byte header[header_size];
  send_frame(header, 0, data.subspan(offset, count), {});
}

void connection::send_frame(std::byte* frame, std::size_t length, std::span<const std::byte> extra,
                            const std::vector<int>& fds) {
  const std::uint64_t payload = length + extra.size();
  if (payload > length_mask) throw process_error("message too large (2^48 bytes or more)");
  if (fds.size() > detail::max_handles)
    throw process_error("a message can carry at most 253 descriptors");
  const std::uint64_t header = payload | (static_cast<std::uint64_t>(fds.size()) << 48);
  std::memcpy(frame, &header, header_size);

  iovec iov[2] = {{frame, header_size + length},
                  {const_cast<std::byte*>(extra.data()), extra.size()}};
  msghdr message{};
  message.msg_iov = iov;
  message.msg_iovlen = extra.empty() ? 1 : 2;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * detail::max_handles)];
  if (!fds.empty()) {
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  std::size_t left = header_size + payload;
  for (;;) {
    const ssize_t sent =
        os::retry([&] { return ::sendmsg(socket_.get(), &message, MSG_NOSIGNAL); });
    if (sent < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd p{socket_.get(), POLLOUT, 0};
        os::retry([&] { return ::poll(&p, 1, -1); });
        continue;
      }
      throw_send_error(errno);
    }
    left -= static_cast<std::size_t>(sent);
    if (left == 0) return;
    // A partial write: skip what went out; descriptors went with the first byte.
    message.msg_control = nullptr;
    message.msg_controllen = 0;
    auto done = static_cast<std::size_t>(sent);
    while (done >= message.msg_iov->iov_len) {
      done -= message.msg_iov->iov_len;
      ++message.msg_iov;
      --message.msg_iovlen;
    }
    message.msg_iov->iov_base = static_cast<std::byte*>(message.msg_iov->iov_base) + done;
    message.msg_iov->iov_len -= done;
  }
}

// ---- receiving -----------------------------------------------------------

std::size_t connection::receive(void* into, std::size_t size) {
  iovec iov{into, size};
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * detail::max_handles)];
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  const ssize_t got =
      os::retry([&] { return ::recvmsg(socket_.get(), &message, MSG_CMSG_CLOEXEC); });
  if (got < 0) {
    if (errno == ECONNRESET) return 0;
    os::throw_errno("recvmsg");
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      received_fds_.emplace_back(fd);
    }
  }
  if ((message.msg_flags & MSG_CTRUNC) != 0)
    throw process_error("descriptors sent with a message were lost (too many at once)");
  return static_cast<std::size_t>(got);
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
  fill(header_size);
  std::uint64_t header = 0;
  std::memcpy(&header, read_buffer_.data() + read_begin_, header_size);
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
  if (length > SIZE_MAX - header_size) {
    close();
    throw decode_error("message length out of range; connection closed");
  }
  return static_cast<std::size_t>(length);
}

std::span<const std::byte> connection::read_frame(detail::handle_source& handles) {
  const std::size_t length = read_header(handles);
  fill(header_size + length);
  frame_size_ = header_size + length;
  return {read_buffer_.data() + read_begin_ + header_size, length};
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
  bytes out;
  // Allocate as data arrives (see fill), in chunks that at least double.
  std::size_t done = 0;
  while (done < length) {
    const std::size_t next = std::min(length, std::max(done * 2, done + direct_chunk));
    out.resize(next);
    read_into(out.data() + done, next - done);
    done = next;
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
  read_begin_ += header_size;
  return read_payload(length);
}

std::size_t connection::recv_bytes_into(std::span<std::byte> buffer, std::size_t offset) {
  if (offset > buffer.size()) throw std::out_of_range("recv_bytes_into: offset is past the end");
  detail::handle_source handles;
  const std::size_t length = read_header(handles);
  if (length > buffer.size() - offset) {
    read_begin_ += header_size;
    throw buffer_too_short(read_payload(length));  // whole, as Python keeps it
  }
  read_begin_ += header_size;
  read_into(buffer.data() + offset, length);
  return length;
}

bool connection::poll_for(std::optional<std::chrono::nanoseconds> timeout) {
  check_readable();
  if (has_buffered_data()) return true;
  return os::wait_readable(socket_.get(), timeout);
}

// ---- codec hooks, pipe, wait ---------------------------------------------

void save(detail::output_archive& archive, const connection& c) {
  if (c.closed()) throw usage_error("cannot send a closed connection");
  if (c.has_buffered_data())
    throw usage_error("cannot send a connection that holds received, unread data");
  archive(archive.add_handle(c.fileno()), c.readable(), c.writable());
}

void load(detail::input_archive& archive, connection& c) {
  std::uint32_t index = 0;
  bool readable = false, writable = false;
  archive(index, readable, writable);
  c = connection(archive.take_handle(index), readable, writable);
}

std::pair<connection, connection> pipe(bool duplex) {
  auto ends = os::socket_pair();  // not a structured binding: clang 14 cannot capture one
  auto& a = ends.first;
  auto& b = ends.second;
  if (duplex) return {connection(std::move(a)), connection(std::move(b))};
  os::check("shutdown", [&] { return ::shutdown(a.get(), SHUT_WR); });
  os::check("shutdown", [&] { return ::shutdown(b.get(), SHUT_RD); });
  return {connection(std::move(a), true, false), connection(std::move(b), false, true)};
}

namespace detail {

std::vector<std::size_t> wait_ready(std::span<const wait_target> targets,
                                    std::optional<std::chrono::nanoseconds> timeout) {
  std::vector<pollfd> fds;
  fds.reserve(targets.size());
  bool any_now = false;
  for (const wait_target& t : targets) {
    fds.push_back({t.fd, POLLIN, 0});
    any_now = any_now || t.ready_now;
  }
  using clock = std::chrono::steady_clock;
  if (any_now) timeout = std::chrono::nanoseconds::zero();
  const auto deadline = timeout ? clock::now() + *timeout : clock::time_point::max();
  for (;;) {
    std::optional<std::chrono::nanoseconds> left;
    if (timeout) left = std::max(deadline - clock::now(), clock::duration::zero());
    const int n = ::poll(fds.data(), fds.size(), os::poll_timeout(left));
    if (n >= 0) break;
    if (errno != EINTR) os::throw_errno("poll");
  }
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if ((fds[i].revents & POLLNVAL) != 0)
      throw usage_error("mp::wait: descriptor " + std::to_string(fds[i].fd) + " is not open");
    if (targets[i].ready_now || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
      ready.push_back(i);
  }
  return ready;
}

}  // namespace detail
}  // namespace mp
