//! Grad-CAM, Grad-CAM++ and EigenCAM against an independent reference: the
//! `grad-cam` Python package (pytorch-grad-cam 1.5.7) on the demo model's
//! weights loaded into torchvision's ResNet code, two deterministic inputs,
//! layer4 and layer3, predicted and fixed targets
//! (fixtures/make_cam_fixtures.py wrote fixtures/cam_fixtures.json).
//! Maps are compared before upsampling: correlation ≥ 0.99, and value for
//! value (±1e-3) after the reference's own scaling. EigenCAM's SVD
//! sign is arbitrary in the reference; ours is fixed to correlate with the
//! mean activation, so the reference's projection is signed that way first.

use std::path::Path;

use serde_json::Value;
use tch::{Kind, Tensor};
use tumorxai_host::explain::cam::{explain_batch, Method};
use tumorxai_host::explain::eigencam::correlation;
use tumorxai_host::export::bundle::TrainedRun;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The fixture script's inputs, element for element.
fn inputs(size: i64) -> Tensor {
    let s = size as usize;
    let mut data = Vec::with_capacity(2 * 3 * s * s);
    for n in 0..2 {
        for c in 0..3 {
            for i in 0..s {
                for j in 0..s {
                    let (n, c, i, j) = (n as f64, c as f64, i as f64, j as f64);
                    let v = (0.11 * i + 0.07 * j * (n + 1.0) + c).sin()
                        + 0.5 * (0.05 * (i * j) / size as f64 + n).cos();
                    data.push(v as f32);
                }
            }
        }
    }
    Tensor::from_slice(&data).reshape([2, 3, size, size])
}

fn floats(v: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Number(n) => out.push(n.as_f64().unwrap() as f32),
            _ => panic!("not a number: {v}"),
        }
    }
    walk(v, &mut out);
    out
}

#[test]
fn maps_match_pytorch_grad_cam() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("host/tests/fixtures/cam_fixtures.json")).unwrap(),
    )
    .unwrap();
    let run = TrainedRun::load(&repo().join("tests/fixtures/tiny-model/run")).unwrap();
    let size = fixture["size"].as_i64().unwrap();
    let x = inputs(size);
    // Same network: the logits agree.
    let logits = Vec::<f32>::try_from(
        tch::no_grad(|| tch::nn::ModuleT::forward_t(&run.model, &x, false)).flatten(0, -1),
    )
    .unwrap();
    let reference = floats(&fixture["logits"]);
    for (a, b) in logits.iter().zip(&reference) {
        assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "logit {a} vs {b}");
    }
    let mut checked = 0;
    for case in fixture["cases"].as_array().unwrap() {
        let layer = case["layer"].as_str().unwrap();
        let point = run.model.layer_point(layer).unwrap();
        let targets: Option<Vec<usize>> = case["targets"]
            .as_array()
            .map(|t| t.iter().map(|v| v.as_u64().unwrap() as usize).collect());
        let ours = explain_batch(&run.model, &x, point, targets.as_deref(), &Method::ALL).unwrap();
        let activations = tch::no_grad(|| run.model.forward_to(&x, point, false));
        for (n, image) in ours.iter().enumerate() {
            let cells = image.height * image.width;
            for (method, map) in &image.maps {
                let expected: Vec<f32> = match method {
                    Method::GradCam => floats(&case["gradcam"][n]),
                    Method::GradCamPlusPlus => floats(&case["gradcampp"][n]),
                    Method::EigenCam => {
                        let projection = floats(&case["eigencam_projection"][n]);
                        let mean = Vec::<f32>::try_from(
                            activations
                                .get(n as i64)
                                .mean_dim(0, false, Kind::Float)
                                .flatten(0, -1),
                        )
                        .unwrap();
                        let sign = if correlation(&projection, &mean) < 0.0 {
                            -1.0
                        } else {
                            1.0
                        };
                        projection.iter().map(|v| (v * sign).max(0.0)).collect()
                    }
                };
                assert_eq!(expected.len(), cells, "{layer} {method:?}");
                let r = correlation(map, &expected);
                assert!(
                    r >= 0.99,
                    "{layer}, targets {targets:?}, image {n}, {method:?}: correlation {r:.4}\nours {map:?}\nref  {expected:?}"
                );
                // And value for value once scaled as pytorch-grad-cam's
                // `scale_cam_image` does (min to 0, then ÷ (max + 1e-7)).
                let min = expected.iter().copied().fold(f32::INFINITY, f32::min);
                let max = expected.iter().map(|v| v - min).fold(0f32, f32::max);
                for (ours, reference) in map.iter().zip(&expected) {
                    let scaled = (reference - min) / (max + 1e-7);
                    assert!(
                        (ours - scaled).abs() < 1e-3,
                        "{layer} {method:?} image {n}: {ours} vs {scaled}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * 2 * 3);
}
