//! One integration-test binary for `host` (one link instead of one per file;
//! the tests of all modules run in parallel). Each module is one concern.

mod bundle_cli;
mod cam_reference;
mod cli;
mod common;
mod dicom_data;
mod experiment_cli;
mod explain_cli;
mod flash_cli;
mod flash_soak;
mod phantom;
mod resnet;
mod ssl_losses;
mod ssl_training;
mod train_cli;
mod training;
