// binding.cpp: the thin torch binding of the CUDA kernels (chapter 10).
//
// The only file here that knows torch: it checks devices, dtypes, shapes and contiguity (with
// messages that say what was expected and what was found), allocates the outputs, and calls
// the extern "C" launchers of gptoss_kernels.h on torch's current CUDA stream.

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <optional>
#include <string>
#include <tuple>

#include "gptoss_kernels.h"

namespace {

std::string shape_of(const at::Tensor& t) {
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + (t.dim() == 1 ? ",)" : ")");
}

void check_cuda_contiguous(const at::Tensor& t, const char* fn, const char* name) {
  TORCH_CHECK(t.is_cuda(), fn, ": ", name, " must be a CUDA tensor; found one on ", t.device(),
              " (move it with .cuda())");
  TORCH_CHECK(t.is_contiguous(), fn, ": ", name, " must be contiguous; call .contiguous() first");
}

void check_launch(cudaError_t err, const char* fn) {
  TORCH_CHECK(err == cudaSuccess, fn, ": CUDA launch failed: ", cudaGetErrorString(err));
}

// route(logits (T, E) float32, k) -> (weights, experts, order, offsets, inverse)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> route(
    const at::Tensor& logits, int64_t k) {
  check_cuda_contiguous(logits, "route", "router_logits");
  TORCH_CHECK(logits.dim() == 2, "route: router_logits has shape ", shape_of(logits),
              "; expected (T, E)");
  TORCH_CHECK(logits.scalar_type() == at::kFloat, "route: router_logits must be float32; found ",
              logits.scalar_type(), " (the Python wrapper converts with .float())");
  const int64_t T = logits.size(0), E = logits.size(1);
  TORCH_CHECK(1 <= k && k <= E, "route: k = ", k, "; expected 1 <= k <= E = ", E);
  TORCH_CHECK(E <= GPTOSS_MAX_EXPERTS, "route: E = ", E, " experts; the CUDA scan handles at most ",
              GPTOSS_MAX_EXPERTS, " (use backend='torch')");

  const c10::cuda::CUDAGuard guard(logits.device());
  const auto i32 = logits.options().dtype(at::kInt);
  const auto i64 = logits.options().dtype(at::kLong);
  at::Tensor weights = at::empty({T, k}, logits.options());
  at::Tensor experts = at::empty({T, k}, i32);
  at::Tensor counts = at::empty({E}, i32);  // workspace, zeroed by the launcher
  at::Tensor offsets = at::empty({E + 1}, i64);
  at::Tensor order = at::empty({T * k}, i64);
  at::Tensor inverse = at::empty({T * k}, i64);
  check_launch(gptoss_route(logits.data_ptr<float>(), T, (int)E, (int)k, weights.data_ptr<float>(),
                            experts.data_ptr<int32_t>(), counts.data_ptr<int32_t>(),
                            offsets.data_ptr<int64_t>(), order.data_ptr<int64_t>(),
                            inverse.data_ptr<int64_t>(), c10::cuda::getCurrentCUDAStream()),
               "route");
  return {weights, experts, order, offsets, inverse};
}

// mxfp4_linear(x (T, K) float32|bf16, blocks (N, K/32, 16) u8, scales (N, K/32) u8, bias (N,) f32)
at::Tensor mxfp4_linear(const at::Tensor& x, const at::Tensor& blocks, const at::Tensor& scales,
                        const std::optional<at::Tensor>& bias) {
  check_cuda_contiguous(x, "mxfp4_linear", "x");
  check_cuda_contiguous(blocks, "mxfp4_linear", "blocks");
  check_cuda_contiguous(scales, "mxfp4_linear", "scales");
  TORCH_CHECK(x.dim() == 2, "mxfp4_linear: x has shape ", shape_of(x), "; expected (T, K)");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "mxfp4_linear: x must be float32 or bfloat16; found ", x.scalar_type());
  TORCH_CHECK(blocks.dim() == 3 && blocks.size(2) == 16 && blocks.scalar_type() == at::kByte,
              "mxfp4_linear: blocks has shape ", shape_of(blocks), " dtype ",
              blocks.scalar_type(), "; expected (N, K//32, 16) uint8");
  const int64_t T = x.size(0), K = x.size(1), N = blocks.size(0), G = blocks.size(1);
  TORCH_CHECK(K == G * 32, "mxfp4_linear: x has K = ", K, "; the weight has K = ", G * 32,
              " (blocks ", shape_of(blocks), ")");
  TORCH_CHECK(scales.dim() == 2 && scales.size(0) == N && scales.size(1) == G &&
                  scales.scalar_type() == at::kByte,
              "mxfp4_linear: scales has shape ", shape_of(scales), " dtype ",
              scales.scalar_type(), "; expected (", N, ", ", G, ") uint8");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(blocks.data_ptr()) % 4 == 0,
              "mxfp4_linear: blocks must be 4-byte aligned (it is read as uint32 words); "
              "pass a fresh tensor or blocks.clone()");
  TORCH_CHECK(blocks.device() == x.device() && scales.device() == x.device(),
              "mxfp4_linear: x, blocks and scales must be on one device; found ", x.device(), ", ",
              blocks.device(), ", ", scales.device());
  const float* bias_ptr = nullptr;
  if (bias.has_value()) {
    const at::Tensor& b = *bias;
    check_cuda_contiguous(b, "mxfp4_linear", "bias");
    TORCH_CHECK(b.dim() == 1 && b.size(0) == N && b.scalar_type() == at::kFloat,
                "mxfp4_linear: bias has shape ", shape_of(b), " dtype ", b.scalar_type(),
                "; expected (", N, ",) float32");
    TORCH_CHECK(b.device() == x.device(), "mxfp4_linear: bias is on ", b.device(),
                "; x is on ", x.device());
    bias_ptr = b.data_ptr<float>();
  }

  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty({T, N}, x.options());
  check_launch(gptoss_mxfp4_linear(x.data_ptr(), x.scalar_type() == at::kBFloat16 ? 1 : 0, T, K,
                                   blocks.data_ptr<uint8_t>(), scales.data_ptr<uint8_t>(), N,
                                   bias_ptr, out.data_ptr(), c10::cuda::getCurrentCUDAStream()),
               "mxfp4_linear");
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gptoss-edu CUDA kernels: MoE routing and MXFP4 matmul (chapter 10)";
  m.def("route", &route, "top-k routing + counting sort by expert", pybind11::arg("router_logits"),
        pybind11::arg("k"));
  m.def("mxfp4_linear", &mxfp4_linear, "x @ W.T + bias with W in MXFP4", pybind11::arg("x"),
        pybind11::arg("blocks"), pybind11::arg("scales"), pybind11::arg("bias") = pybind11::none());
}
