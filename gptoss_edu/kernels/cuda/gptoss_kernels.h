// gptoss_kernels.h: the C interface of the CUDA C++ kernels (chapters 9 and 10).
//
// The .cu files include no torch header: each launcher takes raw device pointers, sizes and a
// cudaStream_t, queues its kernels on that stream and returns the launch status (cudaSuccess,
// or the error of the first launch that failed). binding.cpp is the only file that knows torch.
//
// Layouts (all row-major, contiguous, on the device):
//   logits  (T, E) float32          weights (T, k) float32      experts (T, k) int32
//   offsets (E+1,) int64            order / inverse (T*k,) int64
//   x (T, K) float32 or bfloat16    blocks (N, K/32, 16) uint8  scales (N, K/32) uint8
//   bias (N,) float32 or nullptr    out (T, N), same dtype as x
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

// Largest expert count the one-block scan handles (one thread per expert).
#define GPTOSS_MAX_EXPERTS 1024

// Routing: top-k + softmax per token, then a counting sort of the T*k assignments by expert.
// `counts` is an (E,) int32 workspace. Returns cudaErrorInvalidValue for E > GPTOSS_MAX_EXPERTS
// or k outside [1, E].
cudaError_t gptoss_route(const float* logits, int64_t T, int E, int k, float* weights,
                         int32_t* experts, int32_t* counts, int64_t* offsets, int64_t* order,
                         int64_t* inverse, cudaStream_t stream);

// out = x @ W.T + bias with W (N, K) stored as MXFP4; float32 accumulation; K % 32 == 0.
// blocks must be 4-byte aligned (each 16-byte block is read as four uint32 words).
// x_is_bf16 = 0: x and out are float32; 1: x and out are bfloat16 (raw 16-bit words).
cudaError_t gptoss_mxfp4_linear(const void* x, int x_is_bf16, int64_t T, int64_t K,
                                const uint8_t* blocks, const uint8_t* scales, int64_t N,
                                const float* bias, void* out, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

// Used by the launchers: return the first CUDA error instead of queueing more work after it.
#define GPTOSS_RETURN_IF_ERROR(call)       \
  do {                                     \
    cudaError_t gptoss_err_ = (call);      \
    if (gptoss_err_ != cudaSuccess) {      \
      return gptoss_err_;                  \
    }                                      \
  } while (0)
