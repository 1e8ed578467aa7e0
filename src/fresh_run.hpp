// SPDX-License-Identifier: MIT
// What the spawn and forkserver start methods share (see src/start_method.hpp
// for the layers): the start message and its transport, starting a fresh run
// of this program, that run's entry before main (the spawn hook), and becoming
// the process a start message describes.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "mp/detail/codec.hpp"
#include "mp/detail/unique_fd.hpp"
#include "runtime.hpp"
#include "spawn_message.hpp"

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
/// mask; returns its pid. The caller sends the start message, which the run
/// reads before main (the spawn hook) and acts on by its role.
pid_t spawn_program(int start, const sigset_t& mask, bool bind_now = false);

/// A start message for `child` without its call: who it is, who its parent
/// is, its default start method `method` (-1: none) and the caller's signal mask.
spawn_message start_message_for(const process_state& child, int method);

/// Encodes the call of `work` into `message`, its descriptors into `handles`.
void encode_target(target& work, spawn_message& message, handle_sink& handles);

/// Becomes the process `message` describes and runs its call; never returns.
/// `real_parent` is the process whose death ends ours (the fork server for
/// its children); `parent_pidfd`, if set, watches the logical parent; a fork
/// server's child writes its exit code to `exit_status_fd` as it exits.
[[noreturn]] void run_start_message(spawn_message& message, handle_source& handles,
                                    pid_t real_parent, unique_fd parent_pidfd,
                                    int exit_status_fd = -1);

/// What a fresh run whose message has role `role` (not role::process) becomes;
/// never returns.
using fresh_run_main = void (*)(spawn_message& message, handle_source& handles);
/// Registers `main` for `role`, from a static initializer of the start method
/// that uses it (the fork server's), so that this file knows no start method.
/// A fresh run runs the program's static initializers before it acts on its
/// message.
bool register_fresh_run_main(spawn_message::role role, fresh_run_main main) noexcept;

}  // namespace mp::detail
