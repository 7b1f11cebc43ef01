//! One integration-test binary for `device` (one link instead of one per file;
//! the tests of all modules run in parallel). Each module is one concern.

mod arm_parity;
mod common;
mod dicom_cli;
mod display;
mod evaluate_cli;
mod explanation;
mod hostile_inputs;
mod install_cli;
mod ood_set;
mod pacs;
mod serve_cli;
mod smp_interop;
mod smp_upgrade;
mod triage_cli;
