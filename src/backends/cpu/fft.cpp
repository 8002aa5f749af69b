#include "backends/cpu/fft.hpp"

#include <numbers>
#include <utility>

#include "base/error.hpp"

namespace kiln::cpu {
namespace {

using Complex = std::complex<double>;

// Plain complex product: std::complex's operator* also handles infinities, at several times the
// cost, which a transform of finite data does not need (NaN and inf still propagate).
inline Complex mul(Complex a, Complex b) {
  return {a.real() * b.real() - a.imag() * b.imag(), a.real() * b.imag() + a.imag() * b.real()};
}

bool is_power_of_two(int64_t n) {
  return (n & (n - 1)) == 0;
}

// e^{-2 pi i k / n} for k in [0, count).
std::vector<Complex> roots_of_unity(int64_t n, int64_t count) {
  std::vector<Complex> roots(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) {
    const double angle = -2.0 * std::numbers::pi * static_cast<double>(k) / static_cast<double>(n);
    roots[static_cast<size_t>(k)] = std::polar(1.0, angle);
  }
  return roots;
}

// In-place iterative radix-2 FFT of a power-of-two length n; roots[k] = e^{-2 pi i k / n}.
void radix2(Complex* a, int64_t n, const std::vector<Complex>& roots) {
  for (int64_t i = 1, j = 0; i < n; ++i) {  // bit-reversal permutation
    int64_t bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) std::swap(a[i], a[j]);
  }
  for (int64_t len = 2; len <= n; len <<= 1) {
    const int64_t half = len / 2;
    const int64_t step = n / len;
    for (int64_t start = 0; start < n; start += len) {
      for (int64_t k = 0; k < half; ++k) {
        const Complex u = a[start + k];
        const Complex v = mul(a[start + k + half], roots[static_cast<size_t>(k * step)]);
        a[start + k] = u + v;
        a[start + k + half] = u - v;
      }
    }
  }
}

}  // namespace

FftPlan::FftPlan(int64_t n) : n_(n) {
  if (n < 1) fail(ErrorCode::kInternal, "FftPlan: length ", n, " must be >= 1");
  if (is_power_of_two(n)) {
    method_ = Method::kRadix2;
    roots_ = roots_of_unity(n, n / 2);
  } else if (n <= kDirectDftMaxLength) {
    method_ = Method::kDirect;
    roots_ = roots_of_unity(n, n);
    scratch_.resize(static_cast<size_t>(n));
  } else {
    method_ = Method::kBluestein;
    // x[k] = c[k] sum_t (x[t] c[t]) conj(c[k - t]) with c[k] = e^{-pi i k^2 / n}: a convolution,
    // done circularly over m >= 2n - 1 points so that it does not wrap.
    int64_t m = 1;
    while (m < 2 * n - 1) m <<= 1;
    inner_ = std::make_unique<FftPlan>(m);
    chirp_.resize(static_cast<size_t>(n));
    int64_t square =
        0;  // k^2 mod 2n, stepped by (k + 1)^2 = k^2 + 2k + 1: the angle stays small and exact
    for (int64_t k = 0; k < n; ++k) {
      chirp_[static_cast<size_t>(k)] =
          std::polar(1.0, -std::numbers::pi * static_cast<double>(square) / static_cast<double>(n));
      square = (square + 2 * k + 1) % (2 * n);
    }
    kernel_.assign(static_cast<size_t>(m), Complex{});
    kernel_[0] = std::conj(chirp_[0]);
    for (int64_t k = 1; k < n; ++k) {
      kernel_[static_cast<size_t>(k)] = kernel_[static_cast<size_t>(m - k)] =
          std::conj(chirp_[static_cast<size_t>(k)]);
    }
    inner_->forward(kernel_.data());
    scratch_.resize(static_cast<size_t>(m));
  }
}

void FftPlan::transform(Complex* data, bool inverse) {
  // The inverse transform is the conjugate of the forward transform of the conjugate.
  if (inverse) {
    for (int64_t k = 0; k < n_; ++k) data[k] = std::conj(data[k]);
  }
  forward(data);
  if (inverse) {
    for (int64_t k = 0; k < n_; ++k) data[k] = std::conj(data[k]);
  }
}

void FftPlan::forward(Complex* data) {
  switch (method_) {
    case Method::kRadix2:
      radix2(data, n_, roots_);
      return;
    case Method::kDirect:
      direct(data);
      return;
    case Method::kBluestein: {
      const int64_t m = inner_->length();
      for (int64_t k = 0; k < m; ++k) {
        scratch_[static_cast<size_t>(k)] =
            k < n_ ? mul(data[k], chirp_[static_cast<size_t>(k)]) : Complex{};
      }
      inner_->forward(scratch_.data());
      for (int64_t k = 0; k < m; ++k) {
        scratch_[static_cast<size_t>(k)] =
            std::conj(mul(scratch_[static_cast<size_t>(k)], kernel_[static_cast<size_t>(k)]));
      }
      inner_->forward(scratch_.data());  // with the conjugates around it: the inverse, unscaled
      const double scale = 1.0 / static_cast<double>(m);
      for (int64_t k = 0; k < n_; ++k) {
        data[k] = mul(std::conj(scratch_[static_cast<size_t>(k)]) * scale,
                      chirp_[static_cast<size_t>(k)]);
      }
      return;
    }
  }
}

void FftPlan::direct(Complex* data) {
  for (int64_t k = 0; k < n_; ++k) {
    Complex sum{};
    int64_t index = 0;  // k * t mod n
    for (int64_t t = 0; t < n_; ++t) {
      sum += mul(data[t], roots_[static_cast<size_t>(index)]);
      index += k;
      if (index >= n_) index -= n_;
    }
    scratch_[static_cast<size_t>(k)] = sum;
  }
  for (int64_t k = 0; k < n_; ++k) data[k] = scratch_[static_cast<size_t>(k)];
}

}  // namespace kiln::cpu
