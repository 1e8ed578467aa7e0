// SPDX-License-Identifier: MIT
// The exception types of mp, named after Python's multiprocessing exceptions
// (ProcessError, TimeoutError, BufferTooShort, AuthenticationError, EOFError).
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mp/export.hpp"

namespace mp {

/// Root of every library-level failure (Python's `multiprocessing.ProcessError`).
/// Failed system calls throw `std::system_error` instead, carrying the errno.
class MP_EXPORT process_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A timed operation ran out of time (Python's `multiprocessing.TimeoutError`).
class MP_EXPORT timeout_error : public process_error {
 public:
  using process_error::process_error;
};

/// The peer closed its end: nothing more will arrive (Python's `EOFError`).
class MP_EXPORT eof_error : public process_error {
 public:
  using process_error::process_error;
};

/// Bytes that cannot be decoded into the requested type: truncated, hostile, or
/// encoded from another type.
class MP_EXPORT decode_error : public process_error {
 public:
  using process_error::process_error;
};

/// `recv_bytes_into` got a message larger than the buffer (Python's `BufferTooShort`).
/// The whole message is kept, as Python keeps it in `args[0]`.
class MP_EXPORT buffer_too_short : public process_error {
 public:
  explicit buffer_too_short(std::vector<std::byte> message);
  /// With the what() it had where it was thrown (rebuilt from another
  /// process, which sends the message's size, not its bytes).
  buffer_too_short(std::vector<std::byte> message, const std::string& what);
  /// The complete message that did not fit.
  const std::vector<std::byte>& message() const noexcept { return message_; }

 private:
  std::vector<std::byte> message_;
};

/// A peer failed the authentication handshake (Python's `AuthenticationError`).
class MP_EXPORT authentication_error : public process_error {
 public:
  using process_error::process_error;
};

/// What an exception thrown in another process (a pool worker, an executor's
/// task) carried from there: its type's name as that process demangled it,
/// its message, and the process id. Every such exception that reaches the
/// caller is also a remote_info; mp::remote_info_of(e) finds it.
class MP_EXPORT remote_info {
 public:
  remote_info(std::string type_name, std::string message, int pid);
  remote_info(const remote_info&) = default;
  remote_info& operator=(const remote_info&) = default;
  virtual ~remote_info();
  /// The demangled type name of the original exception ("std::out_of_range").
  const std::string& type_name() const noexcept { return type_name_; }
  /// Its what() where it was thrown.
  const std::string& message() const noexcept { return message_; }
  /// The process it was thrown in.
  int pid() const noexcept { return pid_; }

 private:
  std::string type_name_;
  std::string message_;
  int pid_;
};

/// The remote detail of `e` if it came from another process, else null.
MP_EXPORT const remote_info* remote_info_of(const std::exception& e) noexcept;

/// An exception raised in another process whose type is not known here (not
/// one of mp's, not a standard one, not registered with
/// mp::register_exception): keeps the original type name, message and pid.
class MP_EXPORT remote_error : public process_error, public remote_info {
 public:
  remote_error(std::string type_name, const std::string& message, int pid = 0);
};

namespace detail {

/// An exception of type E rebuilt from another process: catches as E, and
/// carries the remote detail.
template <class E>
class remote_exception final : public E, public remote_info {
 public:
  template <class... Args>
  explicit remote_exception(remote_info info, Args&&... args)
      : E(std::forward<Args>(args)...), remote_info(std::move(info)) {}
};

}  // namespace detail

/// The program's default start method is fixed already, and changing it was
/// asked without `force` (Python's `RuntimeError('context has already been set')`).
class MP_EXPORT context_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Misuse that is cheap to detect: starting a process twice, joining one that was
/// never started, using a closed connection (Python raises ValueError or AssertionError).
class MP_EXPORT usage_error : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

namespace detail {

/// An exception as it left another process: the demangled name of its type,
/// its what(), the process, and for a std::system_error the error's value
/// and category name.
struct remote_fault {
  std::string type;
  std::string message;
  std::int32_t pid = 0;
  std::int32_t code = 0;
  std::string category;
};

/// Rebuilds an exception of type E from a remote fault.
using exception_factory = std::exception_ptr (*)(const remote_fault&);
template <class E>
std::exception_ptr rebuild_as(const remote_fault& fault) {
  return std::make_exception_ptr(
      remote_exception<E>(remote_info(fault.type, fault.message, fault.pid), fault.message));
}
MP_EXPORT void add_exception_type(const std::type_info& type, exception_factory factory);

}  // namespace detail

/// Lets exceptions of type E thrown in another process (a pool or executor task, a manager's
/// method) arrive as E (carrying the remote detail, mp::remote_info_of) rather than as
/// mp::remote_error. E must be constructible from its message (a std::string). mp's own exception
/// types and the standard ones are known already. Register before the exceptions come back, in the
/// process that receives them (at start-up, say).
template <class E>
void register_exception() {
  static_assert(std::is_base_of_v<std::exception, E>,
                "mp::register_exception<E>: E must derive from std::exception");
  static_assert(std::is_constructible_v<E, std::string>,
                "mp::register_exception<E>: E must be constructible from its message "
                "(a std::string); give it a constructor E(const std::string&)");
  detail::add_exception_type(typeid(E), &detail::rebuild_as<E>);
}

}  // namespace mp
