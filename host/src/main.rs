//! `tumorxai`: the workstation command line. Thin: parsing and reporting live
//! in `cli`, the work in the `tumorxai_host` library.

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
