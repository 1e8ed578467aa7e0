// SPDX-License-Identifier: MIT
// Readers of /proc and /dev/shm: this process's fds, children and descendants, and shm names.
// The process table comes from /proc/<pid>/stat, since /proc/<pid>/task/<tid>/children needs
// CONFIG_PROC_CHILDREN, which not every kernel has.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <optional>

#include "internal.hpp"

namespace mp::testing {
namespace {

std::optional<long> parse_number(std::string_view text) {
  long value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Reads a small /proc file whole; empty if it vanished.
std::string read_small_file(const std::string& path) {
  std::string content;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return content;
  std::array<char, 4096> buffer;
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n <= 0) break;
    content.append(buffer.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return content;
}

struct stat_fields {
  char state;
  pid_t parent;
};

// /proc/<pid>/stat is "pid (comm) state ppid ...", and comm may itself hold ") ".
std::optional<stat_fields> read_stat(pid_t pid) {
  const std::string stat = read_small_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return std::nullopt;
  char state = '?';
  int parent = 0;
  if (std::sscanf(stat.c_str() + close_paren + 1, " %c %d", &state, &parent) != 2) {
    return std::nullopt;
  }
  return stat_fields{state, static_cast<pid_t>(parent)};
}

template <typename Fn>
void for_each_entry(const char* directory, Fn&& fn) {
  DIR* dir = ::opendir(directory);
  if (dir == nullptr) return;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    fn(name, ::dirfd(dir));
  }
  ::closedir(dir);
}

}  // namespace

std::vector<detail::process_entry> detail::process_table() {
  std::vector<process_entry> table;
  for_each_entry("/proc", [&](std::string_view name, int) {
    const auto pid = parse_number(name);
    if (!pid) return;
    if (const auto fields = read_stat(static_cast<pid_t>(*pid))) {
      table.push_back({static_cast<pid_t>(*pid), fields->parent});
    }
  });
  return table;
}

std::string detail::describe_process(pid_t pid) {
  std::string text = "pid " + std::to_string(pid);
  const auto fields = read_stat(pid);
  if (!fields) return text + " (gone)";
  text += " (state ";
  text += fields->state;
  if (fields->state == 'Z') text += ", zombie: exited but never reaped";
  text += ")";
  std::string cmdline = read_small_file("/proc/" + std::to_string(pid) + "/cmdline");
  while (!cmdline.empty() && cmdline.back() == '\0') cmdline.pop_back();
  for (char& c : cmdline) {
    if (c == '\0') c = ' ';
  }
  if (!cmdline.empty()) text += " cmdline: " + cmdline;
  return text;
}

std::string detail::fd_target(int fd) {
  std::array<char, 4096> buffer{};
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(link.c_str(), buffer.data(), buffer.size() - 1);
  if (n < 0) return "?";
  return std::string(buffer.data(), static_cast<std::size_t>(n));
}

std::set<int> open_fds() {
  std::set<int> fds;
  for_each_entry("/proc/self/fd", [&](std::string_view name, int listing_fd) {
    const auto fd = parse_number(name);
    if (fd && *fd != listing_fd) fds.insert(static_cast<int>(*fd));
  });
  return fds;
}

long address_space_kib() {
  const std::string status = read_small_file("/proc/self/status");
  const std::size_t field = status.find("\nVmSize:");
  if (field == std::string::npos) return -1;
  const std::size_t begin = status.find_first_of("0123456789", field);
  const std::size_t end = status.find(' ', begin);
  if (begin == std::string::npos || end == std::string::npos) return -1;
  return parse_number(std::string_view(status).substr(begin, end - begin)).value_or(-1);
}

std::vector<pid_t> child_pids() {
  const pid_t self = ::getpid();
  std::vector<pid_t> children;
  for (const auto& entry : detail::process_table()) {
    if (entry.parent == self) children.push_back(entry.pid);
  }
  return children;
}

std::vector<pid_t> descendant_pids() {
  std::multimap<pid_t, pid_t> children_of;
  for (const auto& entry : detail::process_table()) children_of.emplace(entry.parent, entry.pid);
  std::vector<pid_t> descendants;
  std::deque<pid_t> pending{::getpid()};
  while (!pending.empty()) {
    const pid_t parent = pending.front();
    pending.pop_front();
    const auto [first, last] = children_of.equal_range(parent);
    for (auto it = first; it != last; ++it) {
      descendants.push_back(it->second);
      pending.push_back(it->second);
    }
  }
  return descendants;
}

std::set<std::string> shm_entries() {
  std::set<std::string> names;
  for_each_entry("/dev/shm", [&](std::string_view name, int) { names.emplace(name); });
  return names;
}

}  // namespace mp::testing
