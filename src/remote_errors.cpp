// SPDX-License-Identifier: MIT
// Exceptions across the process boundary: what a process sends of the
// exception being handled (capture_fault: a pool worker's task, a manager's
// method), and the exception the receiver rethrows (rebuild_fault), by a
// table of the types known here: mp's own (so this file names every module's
// exceptions), the standard ones, and those the program registered.
#include <unistd.h>

#include <any>
#include <cstdio>
#include <functional>
#include <future>
#include <ios>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <typeinfo>
#include <unordered_map>
#include <variant>

#include "mp/pool.hpp"
#include "mp/queues.hpp"
#include "mp/shared_memory.hpp"
#include "mp/synchronize.hpp"
#include "remote_errors.hpp"
#include "runtime.hpp"

namespace mp::detail {
namespace {

remote_info info_of(const remote_fault& fault) {
  return remote_info(fault.type, fault.message, fault.pid);
}

// For the standard exceptions that take no message.
template <class E>
std::exception_ptr rebuild_plain(const remote_fault& fault) {
  return std::make_exception_ptr(remote_exception<E>(info_of(fault)));
}

// The error code a std::system_error carried, if its category is one of
// the standard ones (a category is an object of one process: only those are
// known by name everywhere).
std::optional<std::error_code> error_code_of(const remote_fault& fault) {
  const std::error_category* category = nullptr;
  for (const std::error_category* known : {&std::generic_category(), &std::system_category(),
                                           &std::iostream_category(), &std::future_category()})
    if (fault.category == known->name()) category = known;
  if (category == nullptr) return std::nullopt;
  return std::error_code(fault.code, *category);
}

// what() of a system_error is "<what_arg>: <the code's message>": the part
// its constructor took.
std::string what_arg(const remote_fault& fault, const std::error_code& code) {
  const std::string suffix = ": " + code.message();
  const std::string& what = fault.message;
  if (what.size() >= suffix.size() &&
      what.compare(what.size() - suffix.size(), suffix.size(), suffix) == 0)
    return what.substr(0, what.size() - suffix.size());
  return what;
}

std::exception_ptr rebuild_system_error(const remote_fault& fault) {
  const auto code = error_code_of(fault);
  if (!code) return nullptr;
  if (fault.message == code->message())
    return std::make_exception_ptr(remote_exception<std::system_error>(info_of(fault), *code));
  return std::make_exception_ptr(
      remote_exception<std::system_error>(info_of(fault), *code, what_arg(fault, *code)));
}

std::exception_ptr rebuild_ios_failure(const remote_fault& fault) {
  const auto code = error_code_of(fault);
  if (!code) return nullptr;
  return std::make_exception_ptr(
      remote_exception<std::ios_base::failure>(info_of(fault), what_arg(fault, *code), *code));
}

std::exception_ptr rebuild_future_error(const remote_fault& fault) {
  if (fault.category != std::future_category().name()) return nullptr;
  return std::make_exception_ptr(remote_exception<std::future_error>(
      info_of(fault), static_cast<std::future_errc>(fault.code)));
}

std::exception_ptr rebuild_buffer_too_short(const remote_fault& fault) {
  return std::make_exception_ptr(
      remote_exception<buffer_too_short>(info_of(fault), std::vector<std::byte>{}, fault.message));
}

std::exception_ptr rebuild_remote_error(const remote_fault& fault) {
  return std::make_exception_ptr(remote_error(fault.type, fault.message, fault.pid));
}

class exception_table {
 public:
  exception_table() {
    // The standard exceptions.
    add<std::logic_error>();
    add<std::invalid_argument>();
    add<std::domain_error>();
    add<std::length_error>();
    add<std::out_of_range>();
    add<std::runtime_error>();
    add<std::range_error>();
    add<std::overflow_error>();
    add<std::underflow_error>();
    put(typeid(std::system_error), &rebuild_system_error);
    put(typeid(std::ios_base::failure), &rebuild_ios_failure);
    put(typeid(std::future_error), &rebuild_future_error);
    put(typeid(std::exception), &rebuild_plain<std::exception>);
    put(typeid(std::bad_alloc), &rebuild_plain<std::bad_alloc>);
    put(typeid(std::bad_array_new_length), &rebuild_plain<std::bad_array_new_length>);
    put(typeid(std::bad_cast), &rebuild_plain<std::bad_cast>);
    put(typeid(std::bad_typeid), &rebuild_plain<std::bad_typeid>);
    put(typeid(std::bad_exception), &rebuild_plain<std::bad_exception>);
    put(typeid(std::bad_function_call), &rebuild_plain<std::bad_function_call>);
    put(typeid(std::bad_optional_access), &rebuild_plain<std::bad_optional_access>);
    put(typeid(std::bad_variant_access), &rebuild_plain<std::bad_variant_access>);
    put(typeid(std::bad_any_cast), &rebuild_plain<std::bad_any_cast>);
    // mp's own (mp/errors.hpp and each module's).
    add<process_error>();
    add<timeout_error>();
    add<eof_error>();
    add<decode_error>();
    put(typeid(buffer_too_short), &rebuild_buffer_too_short);
    add<authentication_error>();
    put(typeid(remote_error), &rebuild_remote_error);
    add<context_error>();
    add<usage_error>();
    add<queue_empty>();
    add<queue_full>();
    add<owner_died>();
    add<broken_barrier>();
    add<shared_memory_not_found>();
    add<shared_memory_exists>();
    add<broken_executor>();
    add<worker_died>();
    add<broken_process_pool>();
    add<broken_thread_pool>();
    add<cancelled_error>();
    add<invalid_state_error>();
  }

  void put(const std::type_info& type, exception_factory factory) {
    std::lock_guard lock(mutex_);
    by_name_[demangle(type.name())] = factory;
  }

  exception_factory find(const std::string& name) {
    std::lock_guard lock(mutex_);
    const auto found = by_name_.find(name);
    return found == by_name_.end() ? nullptr : found->second;
  }

 private:
  template <class E>
  void add() {
    put(typeid(E), &rebuild_as<E>);
  }

  std::mutex mutex_;
  std::unordered_map<std::string, exception_factory> by_name_;
};

exception_table& table() {
  static exception_table known;
  return known;
}

std::exception_ptr rebuild(const remote_fault& fault) {
  if (const exception_factory factory = table().find(fault.type))
    if (std::exception_ptr rebuilt = factory(fault)) return rebuilt;
  // A type unknown here that derives from std::system_error still keeps
  // its error code.
  if (!fault.category.empty())
    if (std::exception_ptr rebuilt = rebuild_system_error(fault)) return rebuilt;
  return rebuild_remote_error(fault);
}

}  // namespace

std::exception_ptr rebuild_fault(const remote_fault& fault) {
  return rebuild(fault);
}

void add_exception_type(const std::type_info& type, exception_factory factory) {
  table().put(type, factory);
}

void capture_fault(remote_fault& fault) {
  fault = {};
  fault.pid = static_cast<std::int32_t>(::getpid());
  try {
    throw;
  } catch (const std::system_error& e) {
    fault.type = demangle(typeid(e).name());
    fault.message = e.what();
    fault.code = e.code().value();
    fault.category = e.code().category().name();
  } catch (const std::exception& e) {
    fault.type = demangle(typeid(e).name());
    fault.message = e.what();
  } catch (...) {
    fault.type = "unknown";
    fault.message = "a task threw something that is not a std::exception";
  }
}

}  // namespace mp::detail
