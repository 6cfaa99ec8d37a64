// SPDX-License-Identifier: Apache-2.0
//
// The camera examples' frame: an 8 MiB image (2048 x 1024 pixels of 4
// bytes) and its header, one sample of shared memory. The driver writes it
// in place (shmbus-example-camera-driver), the viewer checks it in place
// (shmbus-example-camera-viewer): no copy of the pixels is made anywhere.
//
// The pixels are a pattern the viewer can check exactly: every row of frame
// n is filled with row_word(n, y), so a frame that was torn, stale, mixed
// with another or zeroed is caught.
#ifndef SHMBUS_EXAMPLES_CAMERA_HPP
#define SHMBUS_EXAMPLES_CAMERA_HPP

#include <shmbus.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace example {

constexpr std::uint32_t kWidth = 2048;
constexpr std::uint32_t kHeight = 1024;
constexpr std::uint32_t kFourccRgba = 0x41424752u; // 'RGBA'

// Laid out the same in every ABI (shmbus.h, "Sample types").
struct Frame {
  SHMBUS_ALIGNAS(8) std::uint64_t number; // frames since the driver started, from 0
  std::uint64_t exposure_ns;              // when the exposure started (CLOCK_MONOTONIC)
  std::uint32_t width;                    // pixels
  std::uint32_t height;                   // rows
  std::uint32_t stride;                   // bytes per row
  std::uint32_t fourcc;                   // pixel format
  std::uint32_t pixels[kWidth * kHeight]; // 8 MiB, row after row
};
SHMBUS_ASSERT_LAYOUT(Frame, 32 + std::size_t(8) * 1024 * 1024, 8); // an 8 MiB image, a header
SHMBUS_ASSERT_OFFSET(Frame, pixels, 32);

// The frame service: two frames in each subscriber's queue (a viewer wants
// the newest, not a backlog), the oldest dropped when it falls behind. The
// pool is sized for the worst case: max_subscribers x (queue_depth +
// max_held) + max_loans frames, 8 x 8 MiB here.
inline shmbus::ServiceOptions camera_options() {
  return shmbus::ServiceOptions()
      .max_subscribers(2)
      .queue_depth(2)
      .max_held(1)
      .max_loans(2)
      .overflow(shmbus::Overflow::drop_oldest);
}

inline std::uint32_t row_word(std::uint64_t frame, std::uint32_t y) {
  std::uint64_t h = (frame + 1) * 0x9E3779B97F4A7C15ull ^ (static_cast<std::uint64_t>(y) << 32);
  h ^= h >> 29;
  return static_cast<std::uint32_t>(h) | 0x01u; // never 0: zero pages fail
}

// The driver's "sensor readout": writes the whole image in place.
inline void expose(Frame &f, std::uint64_t number, std::uint64_t exposure_ns) {
  f.number = number;
  f.exposure_ns = exposure_ns;
  f.width = kWidth;
  f.height = kHeight;
  f.stride = kWidth * 4;
  f.fourcc = kFourccRgba;
  for (std::uint32_t y = 0; y < kHeight; y++)
    std::fill_n(f.pixels + std::size_t(y) * kWidth, kWidth, row_word(number, y));
}

// The viewer's check, in place: the first wrong pixel's index, or -1.
inline long long first_wrong_pixel(const Frame &f) {
  for (std::uint32_t y = 0; y < kHeight; y++) {
    const std::uint32_t want = row_word(f.number, y);
    const std::uint32_t *row = f.pixels + std::size_t(y) * kWidth;
    for (std::uint32_t x = 0; x < kWidth; x++)
      if (row[x] != want) return static_cast<long long>(y) * kWidth + x;
  }
  return -1;
}

} // namespace example

SHMBUS_TYPE_NAME(example::Frame, "shmbus/examples/Frame2048x1024RGBA");

#endif // SHMBUS_EXAMPLES_CAMERA_HPP
