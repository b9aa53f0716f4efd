// C reference MXFP4 GEMV (AVX2 + FMA): the practical ceiling for the numba kernel.
#include <immintrin.h>
#include <stdint.h>
void mxfp4_gemv(const float *x, const uint8_t *blocks, const uint8_t *scales,
                const float *half_scale, const float *bias, float *out, long N, long K) {
  const long G = K / 32;
  const __m128i lut = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
  const __m128i m4 = _mm_set1_epi8(0x0F);
#pragma omp parallel for schedule(static)
  for (long n = 0; n < N; n++) {
    __m256 acc = _mm256_setzero_ps();
    const uint8_t *row = blocks + n * G * 16;
    for (long g = 0; g < G; g++) {
      __m128i b = _mm_loadu_si128((const __m128i *)(row + g * 16));
      __m128i lo = _mm_shuffle_epi8(lut, _mm_and_si128(b, m4));
      __m128i hi = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(b, 4), m4));
      // element 2j = lo[j], 2j+1 = hi[j]: interleave back to x's order
      __m128i e0 = _mm_unpacklo_epi8(lo, hi), e1 = _mm_unpackhi_epi8(lo, hi);
      const float *xg = x + g * 32;
      __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e0)), _mm256_loadu_ps(xg));
      p = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(e0, 8))), _mm256_loadu_ps(xg + 8), p);
      p = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(e1)), _mm256_loadu_ps(xg + 16), p);
      p = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(e1, 8))), _mm256_loadu_ps(xg + 24), p);
      acc = _mm256_fmadd_ps(p, _mm256_set1_ps(half_scale[scales[n * G + g]]), acc);
    }
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_hadd_ps(s, s); s = _mm_hadd_ps(s, s);
    out[n] = _mm_cvtss_f32(s) + bias[n];
  }
}
