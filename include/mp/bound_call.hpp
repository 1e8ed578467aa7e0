// SPDX-License-Identifier: MIT
// mp::bound_call: a callable with its arguments bound, which can travel to a
// process that does not share our memory when they are portable. A pool's
// initializer (Python's initializer and initargs) and a barrier's action.
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mp/detail/checks.hpp"
#include "mp/detail/code_identity.hpp"
#include "mp/detail/codec.hpp"
#include "mp/detail/unique_fd.hpp"
#include "mp/export.hpp"

namespace mp {

namespace detail {
/// A portable call, encoded once, with its own copies of the descriptors of
/// the resources among its arguments.
struct encoded_call {
  std::vector<std::byte> bytes;
  std::vector<unique_fd> fds;
};
MP_EXPORT std::shared_ptr<const encoded_call> seal_call(const detail::byte_buffer& encoded,
                                                        const handle_sink& handles);
MP_EXPORT void run_sealed(const encoded_call& call);
MP_EXPORT void save_sealed(detail::output_archive& out, const encoded_call* call);
MP_EXPORT std::shared_ptr<const encoded_call> load_sealed(detail::input_archive& in);
}  // namespace detail

/// A callable with its arguments bound: Python's initializer with its
/// initargs. Made from any callable that takes no arguments, or from a
/// callable and its arguments: `.initializer = {init, lock}` is Python's
/// `initializer=init, initargs=(lock,)`. Any callable works for workers that
/// are forked or threads; for workers that start by spawn or forkserver the
/// call must be portable (a function or capture-less lambda, arguments the
/// codec encodes, resources such as locks and queues among them), and then
/// it is encoded once, here, and decoded in each worker.
class bound_call {
 public:
  bound_call() = default;
  template <class Fn, class... Args>
  requires(!std::same_as<std::remove_cvref_t<Fn>, bound_call> &&
           std::invocable<std::decay_t<Fn>&, detail::stored_t<Args>&...>)
      bound_call(Fn&& fn, Args&&... args)  // NOLINT(google-explicit-constructor): as std::function
  {
    using F = std::decay_t<Fn>;
    using stored = std::tuple<detail::stored_t<Args>...>;
    if constexpr (detail::is_portable_v<F, detail::stored_t<Args>...>) {
      detail::byte_buffer encoded;
      detail::handle_sink handles;
      detail::output_archive out(encoded, &handles);
      detail::encode_call(out, F(fn), stored(args...));
      sealed_ = detail::seal_call(encoded, handles);
    }
    run_ = [f = F(std::forward<Fn>(fn)), bound = stored(std::forward<Args>(args)...)]() mutable {
      stored copy = bound;  // each call gets the arguments afresh
      detail::apply_stored(f, copy);
    };
  }

  explicit operator bool() const noexcept { return static_cast<bool>(run_); }
  void operator()() const { run_(); }
  /// Whether it can reach a process that does not share our memory.
  bool portable() const noexcept { return sealed_ != nullptr; }

  template <class Archive>
  void save(Archive& archive) const {
    if constexpr (std::same_as<Archive, detail::output_archive>)
      detail::save_sealed(archive, sealed_.get());
  }
  template <class Archive>
  void load(Archive& archive) {
    sealed_ = detail::load_sealed(archive);
    run_ = nullptr;
    if (sealed_) run_ = [call = sealed_] { detail::run_sealed(*call); };
  }

 private:
  std::function<void()> run_;
  std::shared_ptr<const detail::encoded_call> sealed_;
};

}  // namespace mp
