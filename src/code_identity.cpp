// SPDX-License-Identifier: MIT
// Code identity through the dynamic loader's list of images (dl_iterate_phdr):
// each image's GNU build-id note names it, and the load bias turns addresses
// into offsets and back. Results are cached: images rarely come and go.
#include <elf.h>
#include <link.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "mp/detail/code_identity.hpp"

namespace mp::detail {
namespace {

struct image {
  std::uintptr_t bias = 0;
  std::array<std::uint8_t, 20> build_id{};
  std::uint8_t build_id_size = 0;
  struct segment {
    std::uintptr_t begin, end;
    bool executable;
  };
  std::vector<segment> segments;
};

std::size_t align4(std::size_t n) {
  return (n + 3) & ~std::size_t{3};
}

void read_build_id(const dl_phdr_info& info, image& out) {
  for (int i = 0; i < info.dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info.dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const auto* at = reinterpret_cast<const std::uint8_t*>(info.dlpi_addr + ph.p_vaddr);
    const auto* end = at + ph.p_memsz;
    while (at + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) note;
      std::memcpy(&note, at, sizeof note);
      const auto* name = at + sizeof note;
      const auto* desc = name + align4(note.n_namesz);
      if (desc + note.n_descsz > end) break;
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 &&
          std::memcmp(name, "GNU", 4) == 0) {
        out.build_id_size = static_cast<std::uint8_t>(std::min<std::size_t>(note.n_descsz, 20));
        std::memcpy(out.build_id.data(), desc, out.build_id_size);
        return;
      }
      at = desc + align4(note.n_descsz);
    }
  }
}

int collect(dl_phdr_info* info, std::size_t, void* data) {
  auto& images = *static_cast<std::vector<image>*>(data);
  image img;
  img.bias = info->dlpi_addr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD)
      img.segments.push_back({info->dlpi_addr + ph.p_vaddr,
                              info->dlpi_addr + ph.p_vaddr + ph.p_memsz, (ph.p_flags & PF_X) != 0});
  }
  read_build_id(*info, img);
  images.push_back(std::move(img));
  return 0;
}

// One segment of an image, as a thread remembers its last lookup: every task
// names its code, and the same code again and again, so a hit costs neither
// the table's lock nor a copy.
struct segment_hit {
  std::uint64_t generation = 0;  // of the table it came from (0: none)
  std::uintptr_t begin = 0, end = 0;
  bool executable = false;
  std::uintptr_t bias = 0;
  std::array<std::uint8_t, 20> build_id{};
  std::uint8_t build_id_size = 0;
};

class image_table {
 public:
  std::mutex& mutex() { return mutex_; }
  // Which table a remembered hit belongs to: bumped by every re-read, so a
  // hit from before a library came or went is not trusted.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // Looks up under the lock; on a miss re-reads the loader's list once, since
  // a library may have been loaded since the last read. Calls `use(image,
  // generation)` under the lock with the image that matches.
  template <class Match, class Use>
  bool visit(Match match, Use use) {
    std::lock_guard lock(mutex_);
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (attempt == 1 || images_.empty()) {
        images_.clear();
        dl_iterate_phdr(collect, &images_);
        generation_.fetch_add(1, std::memory_order_acq_rel);
      }
      for (const image& img : images_)
        if (match(img)) {
          use(img, generation_.load(std::memory_order_relaxed));
          return true;
        }
    }
    return false;
  }

 private:
  std::mutex mutex_;
  std::vector<image> images_;
  std::atomic<std::uint64_t> generation_{0};
};

image_table& table() {
  static image_table instance;
  return instance;
}

bool contains(const image& img, std::uintptr_t address, bool need_executable) {
  return std::any_of(img.segments.begin(), img.segments.end(), [&](const image::segment& s) {
    return address >= s.begin && address < s.end && (s.executable || !need_executable);
  });
}

std::mutex entries_mutex;
std::unordered_set<const void*>& entries() {
  static std::unordered_set<const void*> set;
  return set;
}

// A fork while another thread holds one of these locks would leave the child's
// copy locked forever (pool workers and forked children resolve code too), so
// fork takes them first, as pthread_atfork intends.
void lock_before_fork() noexcept {
  table().mutex().lock();
  entries_mutex.lock();
}
void unlock_after_fork() noexcept {
  entries_mutex.unlock();
  table().mutex().unlock();
}
[[maybe_unused]] const int fork_handlers =
    pthread_atfork(lock_before_fork, unlock_after_fork, unlock_after_fork);

// The hit for `address` in `img`: the segment holding it.
segment_hit hit_in(const image& img, std::uintptr_t address, std::uint64_t generation) {
  segment_hit hit{.generation = generation,
                  .bias = img.bias,
                  .build_id = img.build_id,
                  .build_id_size = img.build_id_size};
  for (const image::segment& s : img.segments)
    if (address >= s.begin && address < s.end) {
      hit.begin = s.begin;
      hit.end = s.end;
      hit.executable = s.executable;
      break;
    }
  return hit;
}

bool holds(const segment_hit& hit, std::uintptr_t address) {
  return hit.generation != 0 && hit.generation == table().generation() && address >= hit.begin &&
         address < hit.end;
}

}  // namespace

code_ref code_ref_of(const void* address) {
  const auto at = reinterpret_cast<std::uintptr_t>(address);
  thread_local segment_hit last;
  if (!holds(last, at)) {
    const bool found = table().visit(
        [&](const image& i) { return contains(i, at, false); },
        [&](const image& i, std::uint64_t generation) { last = hit_in(i, at, generation); });
    if (!found) throw process_error("code address is in no loaded image");
  }
  if (last.build_id_size == 0)
    throw process_error(
        "the image holding this function has no GNU build-id note (link with --build-id), so it "
        "cannot be named in another process");
  code_ref ref;
  ref.build_id = last.build_id;
  ref.build_id_size = last.build_id_size;
  ref.offset = at - last.bias;
  return ref;
}

const void* resolve(const code_ref& ref) {
  thread_local segment_hit last;
  const bool same_image = last.generation != 0 && last.build_id_size == ref.build_id_size &&
                          last.build_id == ref.build_id;
  if (same_image && ref.offset <= UINTPTR_MAX - last.bias && last.executable &&
      holds(last, last.bias + ref.offset))
    return reinterpret_cast<const void*>(last.bias + ref.offset);
  std::optional<std::uintptr_t> bias;
  bool executable = false;
  table().visit(
      [&](const image& i) {
        return i.build_id_size == ref.build_id_size && i.build_id == ref.build_id;
      },
      [&](const image& i, std::uint64_t generation) {
        bias = i.bias;
        if (ref.offset > UINTPTR_MAX - i.bias) return;
        const std::uintptr_t at = i.bias + ref.offset;
        executable = contains(i, at, true);
        if (executable) last = hit_in(i, at, generation);
      });
  if (!bias)
    throw process_error(
        "the function was sent by a different binary (no loaded image has its build-id); a "
        "process can only run code of the same build");
  if (!executable)
    throw decode_error("code offset " + std::to_string(ref.offset) +
                       " is outside the executable segments of its image");
  return reinterpret_cast<const void*>(*bias + ref.offset);
}

bool register_entry(entry_fn entry) noexcept {
  try {
    std::lock_guard lock(entries_mutex);
    entries().insert(reinterpret_cast<const void*>(entry));
    return true;
  } catch (...) {
    return false;
  }
}

entry_fn resolve_entry(const code_ref& ref) {
  const void* address = resolve(ref);
  // Entry points are registered, never removed: one known is known for good.
  thread_local const void* last_known = nullptr;
  if (address != last_known) {
    std::lock_guard lock(entries_mutex);
    if (entries().count(address) == 0)
      throw decode_error("the payload names code that is not a registered mp entry point");
    last_known = address;
  }
  return reinterpret_cast<entry_fn>(const_cast<void*>(address));
}

void save_code(output_archive& out, const void* address) {
  out(code_ref_of(address));
}

const void* load_code(input_archive& in) {
  code_ref ref;
  in(ref);
  return resolve(ref);
}

void invoke_call(std::span<const std::byte> payload, handle_source* handles, byte_buffer* result) {
  input_archive in(payload, handles);
  code_ref entry;
  try {
    in(entry);
  } catch (const process_error&) {
    throw;
  } catch (...) {
    rethrow_as_decode_error("mp call payload");
  }
  resolve_entry(entry)(in, result);
  check_consumed(in.remaining());
}

}  // namespace mp::detail
