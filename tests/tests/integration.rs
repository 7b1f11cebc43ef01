//! One integration-test binary for `tests` (one link instead of one per file;
//! the tests of all modules run in parallel). Each module is one concern.

mod bundle_loading;
mod demo_bundles;
mod imgtool_interop;
mod onnx_parity;
mod preprocess_parity;
mod seeded;
