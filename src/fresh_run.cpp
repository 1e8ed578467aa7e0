// SPDX-License-Identifier: MIT
// A fresh run of this program (/proc/self/exe, with the same arguments and
// environment), as the spawn start method starts its children and the
// forkserver method its server: starting one, the start message it reads,
// and what it becomes. The program's main() never runs in it.
//
// How the run is caught before main: spawn_hook below is a constructor of
// priority 101, the earliest a program may use, so it runs before the static
// initializers of ordinary priority. In a spawned child (the environment names
// its start descriptor) it reads the start message, checks that it is the same
// build as its parent, then runs the rest of the program's static
// initializers itself: those after it in its own image's .init_array and, if
// mp is a shared library, all of the executable's. So entry points register
// and globals are constructed as in the parent. Then it becomes what the
// message says: a process that runs the target and exits, or the role a start
// method registered (the fork server); control never returns to the loader,
// so main is never called. (With
// mp as a shared library, the initializers of other shared libraries that load
// after it, those that depend on mp, do not run.)
#include <elf.h>
#include <link.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "fresh_run.hpp"

#include "mp/detail/code_identity.hpp"
#include "mp/detail/target.hpp"
#include "mp/errors.hpp"
#include "os/system.hpp"

extern char** environ;

namespace mp::detail {
namespace {

// The environment variable that marks a spawned child, naming its start descriptor.
constexpr const char* start_fd_variable = "MP_SPAWN_FD";
// Where the start descriptor is in the child; every descriptor above it is closed.
constexpr int start_fd = 3;
// Set beside LD_BIND_NOW when we added it, so the child removes both.
constexpr const char* bind_now_variable = "MP_SPAWN_BIND_NOW";

/// The target of a spawned child: the encoded call its parent sent.
class encoded_target final : public target {
 public:
  encoded_target(std::vector<std::byte> call, handle_source handles)
      : call_(std::move(call)), handles_(std::move(handles)) {}
  void run() override { invoke_call(call_, &handles_, nullptr); }
  bool portable() const noexcept override { return true; }
  const char* why_not_portable() const noexcept override { return ""; }
  void encode(output_archive& out) const override { out.save_binary(call_.data(), call_.size()); }

 private:
  std::vector<std::byte> call_;
  handle_source handles_;  // the descriptors of the arguments (connections)
};

/// This program's arguments, as it was started.
std::vector<std::string> own_arguments() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> out;
  for (std::size_t at = 0; at < all.size();) {
    const std::size_t end = all.find('\0', at);
    out.push_back(all.substr(at, end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return out;
}

void spawn_hook(int argc, char** argv, char** envp);

// What a fresh run of each role but role::process becomes (register_fresh_run_main).
fresh_run_main role_mains[2] = {};

using init_function = void (*)(int, char**, char**);

struct init_array {
  init_function* begin = nullptr;
  init_function* end = nullptr;
};

struct module_search {
  const void* address;  // find the image holding this, or null: the executable
  bool found = false;
  bool is_executable = false;
  init_array array;
};

// The .init_array of one loaded image, from its dynamic section.
init_array init_array_of(const dl_phdr_info& info) {
  init_array out;
  for (int i = 0; i < info.dlpi_phnum; ++i) {
    if (info.dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
    const auto* dyn =
        reinterpret_cast<const ElfW(Dyn)*>(info.dlpi_addr + info.dlpi_phdr[i].p_vaddr);
    ElfW(Addr) at = 0;
    std::size_t bytes = 0;
    for (; dyn->d_tag != DT_NULL; ++dyn) {
      if (dyn->d_tag == DT_INIT_ARRAY) at = dyn->d_un.d_ptr;
      if (dyn->d_tag == DT_INIT_ARRAYSZ) bytes = dyn->d_un.d_val;
    }
    // The loader relocates some d_ptr entries in place and not others: an
    // address below the load base is still an offset.
    if (at != 0 && at < info.dlpi_addr) at += info.dlpi_addr;
    out.begin = reinterpret_cast<init_function*>(at);
    out.end = out.begin + bytes / sizeof(init_function);
  }
  return out;
}

int find_module(dl_phdr_info* info, std::size_t, void* data) {
  auto& search = *static_cast<module_search*>(data);
  const bool executable = info->dlpi_name == nullptr || info->dlpi_name[0] == '\0';
  bool holds = false;
  if (search.address == nullptr) {
    holds = executable;
  } else {
    const auto address = reinterpret_cast<ElfW(Addr)>(search.address);
    for (int i = 0; i < info->dlpi_phnum && !holds; ++i) {
      const ElfW(Phdr)& ph = info->dlpi_phdr[i];
      const ElfW(Addr) start = info->dlpi_addr + ph.p_vaddr;
      holds = ph.p_type == PT_LOAD && address >= start && address < start + ph.p_memsz;
    }
  }
  if (!holds) return 0;
  search.found = true;
  search.is_executable = executable;
  search.array = init_array_of(*info);
  return 1;
}

// Runs the static initializers that would have run after spawn_hook.
void run_remaining_initializers(int argc, char** argv, char** envp) {
  module_search ours{reinterpret_cast<const void*>(&spawn_hook)};
  ::dl_iterate_phdr(find_module, &ours);
  if (ours.found) {
    bool after = false;
    for (init_function* f = ours.array.begin; f != ours.array.end; ++f) {
      if (after) (*f)(argc, argv, envp);
      after = after || *f == &spawn_hook;
    }
  }
  if (ours.found && ours.is_executable) return;
  module_search executable{nullptr};
  ::dl_iterate_phdr(find_module, &executable);
  if (!executable.found) return;
  for (init_function* f = executable.array.begin; f != executable.array.end; ++f)
    (*f)(argc, argv, envp);
}

// A spawned child: everything happens here, before main.
__attribute__((constructor(101))) void spawn_hook(int argc, char** argv, char** envp) {
  const char* marker = ::getenv(start_fd_variable);
  if (marker == nullptr || std::strcmp(marker, "3") != 0) return;
  ::unsetenv(start_fd_variable);  // the child's own children start afresh
  if (::getenv(bind_now_variable) != nullptr) {
    ::unsetenv(bind_now_variable);
    ::unsetenv("LD_BIND_NOW");  // read at load time; not for programs it runs
  }

  std::vector<std::byte> bytes;
  handle_source handles;
  if (!receive_all(start_fd, bytes, handles))
    die_before_start("mp: a spawned child could not read its start message\n");
  close_fd(start_fd);
  if (bytes.empty()) os::exit_now(1);  // the parent died before it could send anything
  spawn_message message;
  try {
    decode_into(bytes, message);
  } catch (...) {
    die_before_start("mp: a spawned child's start message does not decode; the task was not run\n");
  }
  bool same_build = false;
  try {
    same_build =
        code_ref_of(reinterpret_cast<const void*>(&spawn_hook)).build_id == message.hook.build_id;
  } catch (...) {
  }
  if (!same_build)
    die_before_start(
        "mp: a spawned child is a different build of the program than its parent (their "
        "build-ids differ); the task was not run\n");

  run_remaining_initializers(argc, argv, envp);
  if (message.what != spawn_message::role::process) {
    const auto role = static_cast<std::size_t>(message.what);
    if (role >= std::size(role_mains) || role_mains[role] == nullptr)
      die_before_start("mp: a fresh run's start message names a role this program lacks\n");
    role_mains[role](message, handles);
  }
  run_start_message(message, handles, message.parent_pid, {});
}

}  // namespace

bool register_fresh_run_main(spawn_message::role role, fresh_run_main main) noexcept {
  const auto index = static_cast<std::size_t>(role);
  if (index >= std::size(role_mains)) return false;
  role_mains[index] = main;
  return true;
}

void die_before_start(const char* message) {
  std::fputs(message, stderr);
  os::exit_now(1);
}

bool send_with_fds(int fd, std::span<const std::byte> data, const std::vector<int>& fds) {
  try {
    os::send_with_fds(fd, data, fds);
    return true;
  } catch (const std::system_error&) {
    return false;  // the peer is gone, or the socket failed: the caller gives up on it
  }
}

namespace {

// One receive of at most `size` bytes into `data`; the descriptors that come
// with them go to `handles`. The bytes received (0 at the end of the stream),
// or nullopt if receiving failed (descriptors lost among them).
std::optional<std::size_t> receive_some(int fd, std::byte* data, std::size_t size,
                                        handle_source& handles) {
  try {
    os::received got = os::receive_with_fds(fd, {data, size}, max_handles);
    for (unique_fd& received : got.fds) handles.fds.push_back(std::move(received));
    return got.size;
  } catch (const std::system_error&) {
    return std::nullopt;
  }
}

}  // namespace

bool receive_all(int fd, std::vector<std::byte>& bytes, handle_source& handles) {
  std::vector<std::byte> chunk(65536);
  for (;;) {
    const auto n = receive_some(fd, chunk.data(), chunk.size(), handles);
    if (!n) return false;
    if (*n == 0) return true;
    bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(*n));
  }
}

bool receive_exactly(int fd, std::byte* data, std::size_t size, handle_source& handles) {
  while (size != 0) {
    const auto n = receive_some(fd, data, size, handles);
    if (!n || *n == 0) return false;
    data += *n;
    size -= *n;
  }
  return true;
}

std::uint64_t mask_bits(const sigset_t& set) noexcept {
  std::uint64_t bits = 0;
  for (int sig = 1; sig <= 64; ++sig)
    if (::sigismember(&set, sig) == 1) bits |= std::uint64_t{1} << (sig - 1);
  return bits;
}

sigset_t mask_of(std::uint64_t bits) noexcept {
  sigset_t set;
  ::sigemptyset(&set);
  for (int sig = 1; sig <= 64; ++sig)
    if ((bits >> (sig - 1) & 1) != 0) ::sigaddset(&set, sig);
  return set;
}

pid_t spawn_program(int start, const sigset_t& mask, bool bind_now) {
  const std::vector<std::string> arguments = own_arguments();
  std::vector<char*> argv;
  for (const std::string& a : arguments) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::string marker = std::string(start_fd_variable) + "=3";
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, "MP_SPAWN_FD=", 12) != 0 &&
        std::strncmp(*e, "MP_SPAWN_BIND_NOW=", 18) != 0)
      envp.push_back(*e);
  envp.push_back(marker.data());
  // The dynamic linker then resolves every symbol once, at load, instead of
  // each child of a fork server resolving the ones it calls, again and again.
  std::string bind_marker = std::string(bind_now_variable) + "=1";
  std::string bind_now_setting = "LD_BIND_NOW=1";
  if (bind_now && ::getenv("LD_BIND_NOW") == nullptr) {
    envp.push_back(bind_now_setting.data());
    envp.push_back(bind_marker.data());
  }
  envp.push_back(nullptr);

  // The child gets the start descriptor as 3 and no other descriptor of ours
  // but the standard three.
  return os::spawn("/proc/self/exe", argv.data(), envp.data(), start, start_fd, mask);
}

spawn_message start_message_for(const process_state& child, int method) {
  spawn_message message;
  message.hook = code_ref_of(reinterpret_cast<const void*>(&spawn_hook));
  child_boot boot;
  prepare_child(child, method, boot);
  message.name = boot.self->name;
  message.daemon = boot.self->daemon;
  message.authkey = boot.self->authkey;
  message.identity = boot.identity;
  message.parent_name = boot.parent->name;
  message.parent_pid = boot.parent_pid;
  message.start_method = static_cast<std::int8_t>(boot.start_method);
  message.signal_mask = mask_bits(os::signal_mask());
  return message;
}

void encode_target(target& work, spawn_message& message, handle_sink& handles) {
  // Resources among the arguments travel as descriptors (SCM_RIGHTS).
  byte_buffer call;
  output_archive out(call, &handles);
  work.encode(out);
  message.call.assign(call.data(), call.data() + call.size());
  if (handles.fds.size() > max_handles)
    throw usage_error("a process that does not start by fork can take at most " +
                      std::to_string(max_handles) + " descriptors among its arguments");
}

void run_start_message(spawn_message& message, handle_source& handles, pid_t real_parent,
                       unique_fd parent_pidfd, int exit_status_fd) {
  child_boot boot;
  boot.self = std::make_shared<process_state>(process_state::kind::self);
  boot.self->name = message.name;
  boot.self->daemon = message.daemon;
  boot.self->authkey = std::move(message.authkey);
  boot.parent = std::make_shared<process_state>(process_state::kind::parent);
  boot.parent->name = message.parent_name;
  boot.parent->pid = message.parent_pid;
  boot.parent->pidfd = std::move(parent_pidfd);
  boot.identity = std::move(message.identity);
  boot.parent_pid = message.parent_pid;
  boot.real_parent = real_parent;
  boot.caller_mask = mask_of(message.signal_mask);
  boot.exit_status_fd = exit_status_fd;
  boot.start_method = message.start_method;
  encoded_target work(std::move(message.call), std::move(handles));
  child_main(work, boot);
}

}  // namespace mp::detail
