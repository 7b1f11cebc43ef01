//! Gives host binaries and tests an rpath to libtorch (cargo ignores
//! LD_LIBRARY_PATH from config), compiles the small C++ shim that selects the
//! bf16 autocast dtype, and opts into linking libtorch's CUDA library for GPU
//! builds (`--features cuda` or TUMORXAI_CUDA=1): without `--no-as-needed` the
//! linker drops libtorch_cuda and CUDA stays unavailable.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=TUMORXAI_CUDA");
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        let include = PathBuf::from(&dir).join("..").join("include");
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .file("csrc/autocast.cpp")
            .include(&include)
            .include(include.join("torch/csrc/api/include"))
            .flag_if_supported("-w")
            .compile("tumorxai_autocast");
    }
    let cuda = std::env::var_os("CARGO_FEATURE_CUDA").is_some()
        || std::env::var("TUMORXAI_CUDA").is_ok_and(|v| v == "1");
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
