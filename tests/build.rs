//! Test binaries link libtorch through tumorxai-host: give them the same rpath
//! (cargo ignores LD_LIBRARY_PATH from config).

fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
