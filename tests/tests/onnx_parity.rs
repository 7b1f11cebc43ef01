//! The exported ONNX model against the tch model it came from: on the device
//! runtime (tract) and on an independent one (onnxruntime, after the ONNX
//! checker's full check), for basic-block and bottleneck ResNets, on sample
//! scans through the shared contract.

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};
use tumorxai_device::runtime::{Model, EXPORTED_OUTPUTS};
use tumorxai_host::export::onnx;
use tumorxai_host::model::{resnet, Depth, ResNet, ResNetConfig};
use tumorxai_shared::{DecodeLimits, PreprocessSpec};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A model whose BatchNorms carry non-trivial statistics, so folding matters.
fn model(depth: Depth, width: f64, seed: i64) -> (nn::VarStore, ResNet) {
    let (vs, net) = crate::seeded::seeded(seed, || {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = resnet(&vs.root(), ResNetConfig { depth, width }, Some(17));
        (vs, net)
    });
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            let n = t.numel() as i64;
            let wave = Tensor::arange(n, (Kind::Float, Device::Cpu))
                .reshape(t.size())
                .g_mul_scalar(0.37)
                .sin();
            if name.ends_with("running_var") {
                t.copy_(&(wave.square() * 0.5 + 0.75));
            } else if name.ends_with("running_mean") {
                t.copy_(&(wave * 0.1));
            } else if name.contains("bn") || name.contains("downsample.1") {
                if name.ends_with("weight") {
                    t.copy_(&(wave * 0.2 + 1.0));
                } else {
                    t.copy_(&(wave * 0.1));
                }
            }
        }
    });
    (vs, net)
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

/// Largest difference, relative to the reference's scale when it exceeds 1:
/// the 1e-4 bar is for unit-scale values (trained logits); this test's
/// synthetic ResNet-50 reaches logits near 200, where f32 rounding alone is ~1e-4.
fn max_diff(a: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(a.len(), reference.len());
    let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(reference)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

#[test]
fn tract_and_onnxruntime_agree_with_tch() {
    let python = repo().join(".venv-tools/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash .ci/setup` (the test command does)",
        python.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let samples = [
        repo().join("models/samples/01-glioma-t1c.jpg"),
        repo().join("models/samples/07-normal-t2.jpg"),
    ];
    for (depth, width, size) in [(Depth::ResNet18, 0.25, 64u32), (Depth::ResNet50, 0.125, 96)] {
        let (vs, net) = model(depth, width, 5);
        let bytes =
            onnx::export(&vs, net.config, size, 17, &[("spec".into(), "test".into())]).unwrap();
        let path = tmp.path().join(format!("{depth:?}.onnx"));
        std::fs::write(&path, &bytes).unwrap();
        let device_model = Model::load(&bytes, size, EXPORTED_OUTPUTS).unwrap();
        let spec = PreprocessSpec::with_input_size(size);
        for sample in &samples {
            let input =
                tumorxai_device::input::load_input(sample, &spec, DecodeLimits::default()).unwrap();
            let host_input =
                tumorxai_host::tensor::load_input(sample, &spec, DecodeLimits::default()).unwrap();
            let (logits, features) = onnx::reference_outputs(&net, &host_input);
            assert!(tch::no_grad(|| net.forward_t(&host_input, false))
                .allclose(&logits, 1e-6, 1e-6, false));
            let (logits, features) = (values(&logits), values(&features));

            let out = device_model.run(&input).unwrap();
            assert_eq!(out.logits.len(), 17);
            let d_logits = max_diff(&out.logits, &logits);
            let d_features = max_diff(&out.features, &features);
            assert!(
                d_logits <= 1e-4,
                "{depth:?} tract logits differ by {d_logits}"
            );
            assert!(
                d_features <= 1e-4,
                "{depth:?} tract features differ by {d_features}"
            );

            let input_path = tmp.path().join("input.f32");
            let raw: Vec<u8> = input.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(&input_path, raw).unwrap();
            let run = Command::new(&python)
                .arg(repo().join("tests/onnx_check.py"))
                .arg(&path)
                .arg(&input_path)
                .arg(size.to_string())
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "onnx check failed: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
            assert_eq!(json["opset"].as_i64(), Some(onnx::OPSET));
            let ort_logits: Vec<f32> = json["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let ort_features: Vec<f32> = json["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let d = max_diff(&ort_logits, &logits);
            assert!(d <= 1e-4, "{depth:?} onnxruntime logits differ by {d}");
            assert!(max_diff(&ort_features, &features) <= 1e-4);
        }
    }
}

#[test]
fn a_model_without_two_outputs_or_of_another_size_is_refused() {
    let (vs, net) = model(Depth::ResNet18, 0.125, 1);
    let bytes = onnx::export(&vs, net.config, 32, 17, &[]).unwrap();
    let m = Model::load(&bytes, 32, EXPORTED_OUTPUTS).unwrap();
    let wrong = tumorxai_shared::Preprocessed {
        size: 64,
        data: vec![0.0; 3 * 64 * 64],
    };
    assert!(m.run(&wrong).is_err());
    assert!(Model::load(b"not onnx", 32, EXPORTED_OUTPUTS).is_err());
}
