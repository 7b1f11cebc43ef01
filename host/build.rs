//! Gives host binaries and tests an rpath to libtorch (cargo ignores
//! LD_LIBRARY_PATH from config), and opts into linking libtorch's CUDA library
//! for GPU builds (`--features cuda` or TUMORXAI_CUDA=1): without
//! `--no-as-needed` the linker drops libtorch_cuda and CUDA stays unavailable.

fn main() {
    println!("cargo:rerun-if-env-changed=TUMORXAI_CUDA");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    let cuda = std::env::var_os("CARGO_FEATURE_CUDA").is_some()
        || std::env::var("TUMORXAI_CUDA").is_ok_and(|v| v == "1");
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
