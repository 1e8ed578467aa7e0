// SPDX-License-Identifier: MIT
// What the spawn and forkserver start methods share: the start message's
// transport, starting a fresh run of this program, and becoming the process a
// start message describes.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "mp/detail/spawn_message.hpp"
#include "mp/detail/unique_fd.hpp"
#include "mp/detail/codec.hpp"
#include "process_state.hpp"

namespace mp::detail {

/// Writes `message` to stderr and exits with 1: a spawned child or the fork
/// server that cannot become what its start message says.
[[noreturn]] void die_before_start(const char* message);

/// Sends all of `data` on a stream socket, `fds` attached to its first byte.
/// False if the peer is gone.
bool send_with_fds(int fd, std::span<const std::byte> data, const std::vector<int>& fds);

/// Reads a stream socket to its end, keeping the descriptors that come with
/// the bytes. False if reading fails.
bool receive_all(int fd, std::vector<std::byte>& bytes, handle_source& handles);
/// Receives exactly `size` bytes into `data`, and the descriptors that come
/// with them into `handles`; false on an error or end of stream before that.
bool receive_exactly(int fd, std::byte* data, std::size_t size, handle_source& handles);

/// Signals 1 to 64 of `set` as bits, and back.
std::uint64_t mask_bits(const sigset_t& set) noexcept;
sigset_t mask_of(std::uint64_t bits) noexcept;

/// Starts a fresh run of this program (/proc/self/exe, same arguments and
/// environment) with `start` as its start descriptor and `mask` as its signal
/// mask; returns its pid. The caller sends the start message.
pid_t spawn_program(int start, const sigset_t& mask, bool bind_now = false);

/// A start message for `child` without its call: who it is, who its parent
/// is, the parent's default start method and the caller's signal mask.
spawn_message start_message_for(const process_state& child);

/// Encodes the call of `work` into `message`, its descriptors into `handles`.
void encode_target(target& work, spawn_message& message, handle_sink& handles);

/// Becomes the process `message` describes and runs its call; never returns.
/// `real_parent` is the process whose death ends ours (the fork server for
/// its children); `parent_pidfd`, if set, watches the logical parent; a fork
/// server's child writes its exit code to `exit_status_fd` as it exits.
[[noreturn]] void run_start_message(spawn_message& message, handle_source& handles,
                                    pid_t real_parent, unique_fd parent_pidfd,
                                    int exit_status_fd = -1);

/// The fork server's life (src/forkserver.cpp); never returns.
[[noreturn]] void forkserver_main(spawn_message& message, handle_source& handles);

}  // namespace mp::detail
