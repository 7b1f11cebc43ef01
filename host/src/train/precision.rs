//! Mixed precision and memory format for CUDA training: bf16 autocast (the
//! dtype chosen through a small C++ shim, see `host/csrc/autocast.cpp`) and
//! channels-last tensors. On CPU both are no-ops.

use tch::{Device, Tensor};

extern "C" {
    fn tumorxai_set_cuda_autocast_bf16();
}

/// Runs `f` under bf16 autocast when `enabled` and `device` is CUDA.
pub fn autocast_bf16<T>(enabled: bool, device: Device, f: impl FnOnce() -> T) -> T {
    if !enabled || !device.is_cuda() {
        return f();
    }
    // SAFETY: the shim takes no arguments and only sets libtorch's global
    // autocast dtype for CUDA to bfloat16; it reads or frees no Rust memory.
    unsafe { tumorxai_set_cuda_autocast_bf16() };
    tch::autocast(true, f)
}

/// The same values with channels-last (NHWC) strides for a 4-D tensor;
/// anything else is returned as is.
pub fn channels_last(t: &Tensor) -> Tensor {
    if t.dim() != 4 {
        return t.shallow_clone();
    }
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Moves every 4-D variable (convolution weights) of a store to channels-last.
pub fn store_channels_last(vs: &tch::nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut var) in vs.variables() {
            if var.dim() == 4 {
                let nhwc = channels_last(&var);
                var.set_data(&nhwc);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn channels_last_keeps_values_and_uses_nhwc_strides() {
        let t = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).reshape([2, 3, 4, 5]);
        let c = channels_last(&t);
        assert!(c.equal(&t));
        assert_eq!(c.size(), vec![2, 3, 4, 5]);
        assert_eq!(c.stride(), vec![60, 1, 15, 3]);
        let v = Tensor::ones([3], (Kind::Float, Device::Cpu));
        assert_eq!(channels_last(&v).stride(), vec![1]);
    }

    #[test]
    fn autocast_on_cpu_is_the_identity() {
        let x = Tensor::from_slice(&[1.5f32, 2.0]);
        let y = autocast_bf16(true, Device::Cpu, || &x * 2.0);
        assert_eq!(y.kind(), Kind::Float);
        assert!(y.equal(&Tensor::from_slice(&[3.0f32, 4.0])));
    }

    #[test]
    fn the_shim_links_and_runs() {
        // Setting the CUDA autocast dtype is valid without a GPU.
        unsafe { tumorxai_set_cuda_autocast_bf16() };
    }
}
