// SPDX-License-Identifier: MIT
// Grayscale conversion of a folder of images with pool.map (the tutorials'
// image-processing scenario). The example writes its own colour images as
// binary PPM files (P6), and each task converts one to a PGM file (P5) with
// the ITU-R BT.601 luma weights, returning the image's mean gray level.
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "mp/mp.hpp"

namespace {

constexpr int images = 8;
constexpr std::size_t width = 640;
constexpr std::size_t height = 480;

std::string image_name(int i) {
  return "image_" + std::to_string(i);
}

// A colour gradient that differs per image.
void write_ppm(const std::filesystem::path& path, std::size_t seed) {
  std::ofstream out(path, std::ios::binary);
  out << "P6\n" << width << ' ' << height << "\n255\n";
  std::vector<char> row(3 * width);
  for (std::size_t y = 0; y < height; ++y) {
    for (std::size_t x = 0; x < width; ++x) {
      row[3 * x] = static_cast<char>((x + seed * 31) % 256);
      row[3 * x + 1] = static_cast<char>((y + seed * 17) % 256);
      row[3 * x + 2] = static_cast<char>((x + y) % 256);
    }
    out.write(row.data(), static_cast<std::streamsize>(row.size()));
  }
}

// Converts `stem`.ppm in `folder` to `stem`.pgm; returns the mean gray level.
double to_grayscale(std::string folder, std::string stem) {
  const std::filesystem::path base = std::filesystem::path(folder) / stem;
  std::ifstream in(base.string() + ".ppm", std::ios::binary);
  std::string magic;
  std::size_t w = 0;
  std::size_t h = 0;
  int max = 0;
  in >> magic >> w >> h >> max;
  in.get();  // the one whitespace byte before the pixels
  if (magic != "P6" || w == 0 || h == 0 || w > 1 << 14 || h > 1 << 14 || max != 255)
    throw std::runtime_error(stem + ".ppm is not an 8-bit binary PPM");
  std::vector<unsigned char> rgb(3 * w * h);
  if (!in.read(reinterpret_cast<char*>(rgb.data()), static_cast<std::streamsize>(rgb.size())))
    throw std::runtime_error(stem + ".ppm is truncated");

  std::vector<unsigned char> gray(w * h);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < gray.size(); ++i) {
    const unsigned luma =
        (299U * rgb[3 * i] + 587U * rgb[3 * i + 1] + 114U * rgb[3 * i + 2]) / 1000U;
    gray[i] = static_cast<unsigned char>(luma);
    total += luma;
  }
  std::ofstream out(base.string() + ".pgm", std::ios::binary);
  out << "P5\n" << w << ' ' << h << "\n255\n";
  out.write(reinterpret_cast<const char*>(gray.data()), static_cast<std::streamsize>(gray.size()));
  return static_cast<double>(total) / static_cast<double>(gray.size());
}

}  // namespace

int main() {
  std::string folder = (std::filesystem::temp_directory_path() / "mp-grayscale-XXXXXX").string();
  if (::mkdtemp(folder.data()) == nullptr) return 1;
  std::vector<std::tuple<std::string, std::string>> jobs;
  for (int i = 0; i < images; ++i) {
    write_ppm(std::filesystem::path(folder) / (image_name(i) + ".ppm"),
              static_cast<std::size_t>(i));
    jobs.emplace_back(folder, image_name(i));
  }

  mp::pool pool;
  const std::vector<double> means = pool.starmap(to_grayscale, jobs);

  int converted = 0;
  bool agrees = true;
  for (int i = 0; i < images; ++i) {
    const auto pgm = std::filesystem::path(folder) / (image_name(i) + ".pgm");
    if (std::filesystem::file_size(pgm) ==
        std::string("P5\n640 480\n255\n").size() + width * height)
      ++converted;
    // The serial conversion of the same image gives the same mean.
    agrees = agrees && to_grayscale(folder, image_name(i)) == means[static_cast<std::size_t>(i)];
  }
  std::filesystem::remove_all(folder);

  std::cout << "converted " << converted << " of " << images << " images (" << width << 'x'
            << height << ") to grayscale\n";
  std::cout << "mean gray of image_0: " << static_cast<int>(means[0]) << '\n';
  std::cout << "serial conversion agrees: " << std::boolalpha << agrees << '\n';
  return converted == images && agrees ? 0 : 1;
}
