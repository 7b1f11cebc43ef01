//! Which int8 kernels the CPU running this process has, read at run time:
//! what `ExecutionForm::auto` decides by.

use super::ExecutionForm;

/// What the int8 rule looks at in the CPU running this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Kernels {
    /// aarch64 with the Armv8.2 dot-product extension (SDOT/UDOT: Cortex-A76
    /// and later, not the Cortex-A72), read at run time from the kernel's
    /// hardware capabilities, and `TRACT_DOTPROD_DISABLE` unset (the switch
    /// tract-linalg reads to fall back to its older int8 kernel).
    ArmDotProduct,
    /// aarch64 without it: tract's int8 kernel (SMLAL) does about as many
    /// multiply-adds per cycle as its f32 one, plus the quantization steps.
    ArmWithoutDotProduct,
    /// x86-64 with AVX2 and FMA, tract's int8 matrix-product kernels' level:
    /// measured on an AMD EPYC (one thread, the 2.2.0 demo) the int8 form
    /// takes 19.5 ms against 20.8 ms dequantized, at 88 MB peak memory
    /// against 214 MB.
    X86Avx2,
    /// Anything else: no int8 kernels worth using.
    Other,
}

impl Int8Kernels {
    /// This CPU, at run time.
    pub fn detect() -> Int8Kernels {
        #[cfg(target_arch = "aarch64")]
        {
            let disabled = std::env::var_os("TRACT_DOTPROD_DISABLE")
                .is_some_and(|v| !matches!(v.to_str(), Some("" | "0" | "false")));
            if std::arch::is_aarch64_feature_detected!("dotprod") && !disabled {
                Int8Kernels::ArmDotProduct
            } else {
                Int8Kernels::ArmWithoutDotProduct
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                Int8Kernels::X86Avx2
            } else {
                Int8Kernels::Other
            }
        }
        #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
        {
            Int8Kernels::Other
        }
    }

    /// The execution form `auto` picks for int8 bundles on such a CPU.
    pub fn auto_form(self) -> ExecutionForm {
        match self {
            Int8Kernels::ArmDotProduct | Int8Kernels::X86Avx2 => ExecutionForm::Int8,
            Int8Kernels::ArmWithoutDotProduct | Int8Kernels::Other => ExecutionForm::Dequantized,
        }
    }

    /// Why, for the log.
    pub fn describe(self) -> &'static str {
        match self {
            Int8Kernels::ArmDotProduct => "aarch64 with the dot-product extension",
            Int8Kernels::ArmWithoutDotProduct => {
                "aarch64 without the dot-product extension (or TRACT_DOTPROD_DISABLE set)"
            }
            Int8Kernels::X86Avx2 => "x86-64 with AVX2 and FMA",
            Int8Kernels::Other => "no int8 kernels worth using on this CPU",
        }
    }
}
