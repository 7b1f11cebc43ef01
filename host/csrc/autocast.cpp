// Selects bfloat16 as the CUDA autocast dtype: tch 0.24 exposes autocast but
// not its dtype (fp16 by default). bf16 keeps fp32's exponent range, so no
// loss scaling is needed.
#include <ATen/autocast_mode.h>

extern "C" void tumorxai_set_cuda_autocast_bf16(void) {
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
}
