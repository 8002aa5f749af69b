// A complex discrete Fourier transform of one length, in double, for the CPU spectral kernels
// (DFT, STFT). Powers of two run an iterative radix-2 FFT; other lengths up to
// kDirectDftMaxLength a direct O(n^2) sum over a table of the n-th roots of unity; longer ones
// Bluestein's algorithm (a chirp convolution through a power-of-two FFT), so every length is
// O(n log n) past the small ones.
#pragma once

#include <complex>
#include <cstdint>
#include <memory>
#include <vector>

namespace kiln::cpu {

inline constexpr int64_t kDirectDftMaxLength = 64;

class FftPlan {
 public:
  // Needs n >= 1. Builds the tables for length n (O(n log n) time, O(n) memory).
  explicit FftPlan(int64_t n);

  int64_t length() const { return n_; }

  // Transforms data[0, n) in place: y[k] = sum_t x[t] e^{-2 pi i k t / n}, or with inverse the
  // conjugate exponent and no 1 / n scale (the caller scales).
  void transform(std::complex<double>* data, bool inverse);

 private:
  enum class Method { kRadix2, kDirect, kBluestein };

  void forward(std::complex<double>* data);
  void direct(std::complex<double>* data);

  int64_t n_ = 0;
  Method method_ = Method::kRadix2;
  std::vector<std::complex<double>>
      roots_;  // e^{-2 pi i k / n}: radix-2 (k < n / 2), direct (k < n)
  std::vector<std::complex<double>> chirp_;   // Bluestein: e^{-pi i k^2 / n}, k < n
  std::vector<std::complex<double>> kernel_;  // Bluestein: the FFT of the conjugate chirp, padded
  std::vector<std::complex<double>> scratch_;
  std::unique_ptr<FftPlan> inner_;  // Bluestein: the power-of-two FFT it runs on
};

}  // namespace kiln::cpu
