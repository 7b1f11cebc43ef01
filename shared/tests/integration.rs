//! One integration-test binary for `shared` (one link instead of one per file;
//! the tests of all modules run in parallel). Each module is one concern.

mod bundle_properties;
mod dicom_files;
mod properties;
mod smp_properties;
