// SPDX-License-Identifier: MIT
// mp::bound_call's encoded form (include/mp/bound_call.hpp).
#include "mp/bound_call.hpp"

#include "os/system.hpp"

namespace mp::detail {

std::shared_ptr<const encoded_call> seal_call(const byte_buffer& encoded,
                                              const handle_sink& handles) {
  auto call = std::make_shared<encoded_call>();
  call->bytes.assign(encoded.data(), encoded.data() + encoded.size());
  for (const int fd : handles.fds) call->fds.push_back(os::duplicate(fd));
  return call;
}

void run_sealed(const encoded_call& call) {
  // The call takes its descriptors; it may run more than once (thread workers).
  handle_source handles;
  for (const unique_fd& fd : call.fds) handles.fds.push_back(os::duplicate(fd.get()));
  invoke_call(call.bytes, &handles, nullptr);
}

void save_sealed(output_archive& out, const encoded_call* call) {
  const bool present = call != nullptr;
  out(present);
  if (!present) return;
  out(call->bytes);
  out(static_cast<std::uint32_t>(call->fds.size()));
  for (const unique_fd& fd : call->fds) out(out.add_handle(fd.get()));
}

std::shared_ptr<const encoded_call> load_sealed(input_archive& in) {
  bool present = false;
  in(present);
  if (!present) return nullptr;
  auto call = std::make_shared<encoded_call>();
  in(call->bytes);
  std::uint32_t count = 0;
  in(count);
  if (count > in.remaining()) throw_bad_length(count, 1, in.remaining());
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint32_t index = 0;
    in(index);
    call->fds.push_back(in.take_handle(index));
  }
  return call;
}

}  // namespace mp::detail
