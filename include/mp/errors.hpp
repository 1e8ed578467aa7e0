// SPDX-License-Identifier: MIT
// The exception types of mp, named after Python's multiprocessing exceptions
// (ProcessError, TimeoutError, BufferTooShort, AuthenticationError, EOFError).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
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

/// An exception raised in another process whose type is not known here: keeps
/// the original type name and message.
class MP_EXPORT remote_error : public process_error {
 public:
  remote_error(std::string type_name, const std::string& message);
  /// The demangled type name of the original exception.
  const std::string& type_name() const noexcept { return type_name_; }

 private:
  std::string type_name_;
};

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

}  // namespace mp
