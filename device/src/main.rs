//! `tumorxai-device`: the scanner-side command line. Thin: the work lives in
//! the `tumorxai_device` library; `cli` only parses and touches files.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
