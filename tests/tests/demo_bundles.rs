//! The committed demo against the committed demo run, as the user asked:
//! host (tch) vs device (tract) on the phantom test split in
//! `models/phantom-test` — the fp32 model as `tumorxai bundle` exports it
//! from the committed weights: logits within 1e-4 (relative to the logit
//! scale) and identical preprocessing; the committed int8 bundle: top-1
//! agreement ≥ 99 % in every execution form; EigenCAM of host and device
//! agreeing; and the int8 model accepted by the ONNX checker and
//! onnxruntime. A release commits the int8 bundle and the weights only: the
//! fp32 side is rebuilt here, not read from a committed fp32 bundle.

use std::path::{Path, PathBuf};
use std::process::Command;

use tumorxai_device::forms::ExecutionForm;
use tumorxai_device::loader::{parse_trusted_key, LoadedModel};
use tumorxai_device::state::MAX_BUNDLE_BYTES;
use tumorxai_host::dataset::image_files;
use tumorxai_host::export::bundle::TrainedRun;
use tumorxai_host::export::runtime::run_form;
use tumorxai_host::parity::{compare_slice, summarise, DeviceSide, ParityBars, ParitySummary};
use tumorxai_shared::bundle::{read_bundle, QuantizationForm};
use tumorxai_shared::{preprocess_bytes, DecodeLimits};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn load(bundle: &str, form: ExecutionForm) -> LoadedModel {
    let pem =
        std::fs::read_to_string(repo().join("models/trust/demo-signing-key.pub.pem")).unwrap();
    let key = parse_trusted_key("demo", &pem).unwrap();
    let bytes = std::fs::read(repo().join("models").join(bundle)).unwrap();
    LoadedModel::from_bundle(&bytes, &[key], form).unwrap()
}

fn demo_run() -> TrainedRun {
    TrainedRun::load(&repo().join("models/demo-run")).unwrap()
}

fn parity(run: &TrainedRun, device: DeviceSide<'_>) -> ParitySummary {
    let root = repo().join("models/phantom-test");
    let files = image_files(&root).unwrap();
    assert_eq!(files.len(), 510);
    let rows: Vec<_> = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            compare_slice(run, device, &f.display().to_string(), &bytes).unwrap()
        })
        .collect();
    summarise(&rows)
}

#[test]
fn fp32_export_matches_the_trained_model() {
    let run = demo_run();
    // The preprocessing and the out-of-distribution calibration an fp32
    // bundle of these weights would carry: the int8 bundle's, fitted on the
    // same weights' fp32 features.
    let int8 = load("demo-int8.bundle", ExecutionForm::AsShipped);
    assert_eq!(int8.spec, run.state.spec);
    let onnx = run.export_fp32().unwrap();
    let model = run_form(&onnx, ExecutionForm::AsShipped, run.input_size()).unwrap();
    let s = parity(
        &run,
        DeviceSide {
            model: &model,
            spec: &int8.spec,
            ood: int8.ood.as_ref(),
        },
    );
    assert_eq!(s.preprocess_max_abs, 0.0);
    assert!(s.logits_max_relative <= 1e-4, "{s:?}");
    assert!(s.features_max_relative <= 1e-4, "{s:?}");
    assert_eq!(s.top1_agreement, 1.0);
    assert!(s.cam_correlation_mean > 0.999, "{s:?}");
    assert!(ParityBars::for_form(QuantizationForm::Fp32)
        .failures(&s)
        .is_empty());
}

#[test]
fn int8_bundle_agrees_with_fp32_in_every_execution_form() {
    let run = demo_run();
    for form in [
        ExecutionForm::Dequantized,
        ExecutionForm::Int8,
        ExecutionForm::AsShipped,
    ] {
        let device = load("demo-int8.bundle", form);
        assert_eq!(device.form, form);
        let s = parity(&run, (&device).into());
        eprintln!("{form:?}: {s:?}");
        assert_eq!(s.preprocess_max_abs, 0.0);
        assert!(s.top1_agreement >= 0.99, "{form:?}: {s:?}");
        assert!(s.cam_correlation_mean >= 0.9, "{form:?}: {s:?}");
        // The maps the device shows agree with the host's (≥ 0.99).
        let failures = ParityBars::for_form(QuantizationForm::Int8Qdq).failures(&s);
        assert!(failures.is_empty(), "{form:?}: {failures:?}");
    }
}

#[test]
fn int8_bundle_is_small_and_the_onnx_checker_and_onnxruntime_accept_it() {
    let fp32_model = demo_run().export_fp32().unwrap();
    let int8 = std::fs::read(repo().join("models/demo-int8.bundle")).unwrap();
    let b = read_bundle(&int8).unwrap();
    assert_eq!(b.manifest.quantization.form, QuantizationForm::Int8Qdq);
    let ratio = b.model.len() as f64 / fp32_model.len() as f64;
    assert!(ratio <= 0.30, "int8 model is {ratio:.3} of fp32");
    // Both fit a device slot (and so an SMP upload): the fp32 bundle of
    // these weights carries the same manifest, self-tests and statistics
    // around the bigger model.
    let fp32_bundle = int8.len() - b.model.len() + fp32_model.len();
    for bundle in [fp32_bundle, int8.len()] {
        assert!(bundle as u64 <= MAX_BUNDLE_BYTES, "{bundle}");
    }

    let python = repo().join(".venv-tools/bin/python");
    assert!(
        python.exists(),
        "run `bash .ci/setup` (the test command does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("int8.onnx");
    std::fs::write(&model, b.model).unwrap();
    let sample = std::fs::read(repo().join("models/samples/04-meningioma-t1c.jpg")).unwrap();
    let spec = &b.manifest.preprocess_spec;
    let input = preprocess_bytes(&sample, spec, DecodeLimits::default()).unwrap();
    let raw: Vec<u8> = input.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let input_path = tmp.path().join("input.f32");
    std::fs::write(&input_path, raw).unwrap();
    let out = Command::new(&python)
        .arg(repo().join("tests/onnx_check.py"))
        .arg(&model)
        .arg(&input_path)
        .arg(spec.input_size.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ort: Vec<f32> = json["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    // QDQ semantics in both runtimes: the same logits up to rounding ties.
    let device = load("demo-int8.bundle", ExecutionForm::AsShipped);
    let tract = device.model.run(&input).unwrap().logits;
    let scale = tract.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = ort
        .iter()
        .zip(&tract)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff / scale <= 1e-2, "onnxruntime vs tract: {diff}");
}
