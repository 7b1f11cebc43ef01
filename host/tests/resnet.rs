//! The tch ResNets against torchvision (fixture from
//! `fixtures/make_resnet_fixtures.py`, torch 2.11.0 / torchvision 0.26.0):
//! parameter names and shapes, and eval-mode outputs with formula-filled
//! weights; plus an exact safetensors round trip.

use std::collections::BTreeMap;

use serde_json::Value;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};
use tumorxai_host::model::weights::{self, Strictness};
use tumorxai_host::model::{resnet, Depth, ResNet, ResNetConfig};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/resnet_fixtures.json")).unwrap()
}

const DEPTHS: [(Depth, &str); 3] = [
    (Depth::ResNet18, "resnet18"),
    (Depth::ResNet34, "resnet34"),
    (Depth::ResNet50, "resnet50"),
];

fn build(depth: Depth, width: f64) -> (nn::VarStore, ResNet) {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = resnet(&vs.root(), ResNetConfig { depth, width }, Some(17));
    (vs, net)
}

/// The fixture script's fill formula, element j of parameter number `index`.
fn fill(name: &str, index: usize, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let i = index as f64;
    let values: Vec<f32> = (0..n)
        .map(|j| {
            let j = j as f64;
            let v = if name.ends_with("running_var") {
                1.0 + 0.25 * (0.7 * j + i).sin().powi(2)
            } else if name.ends_with("running_mean") {
                0.05 * (0.3 * j + i).cos()
            } else if shape.len() == 1 {
                let base = if name.ends_with("weight") { 1.0 } else { 0.0 };
                base + 0.1 * (0.9 * j + i).sin()
            } else {
                let fan_in = (n / shape[0]) as f64;
                (2.0 / fan_in).sqrt() * (0.37 * j + 0.11 * i).sin() * 1.2
            };
            v as f32
        })
        .collect();
    Tensor::from_slice(&values).reshape(shape)
}

#[test]
fn names_and_shapes_match_torchvision() {
    let fx = fixture();
    for (depth, key) in DEPTHS {
        let (vs, _) = build(depth, 1.0);
        let ours: BTreeMap<String, Vec<i64>> = weights::named_tensors(&vs)
            .into_iter()
            .map(|(n, t)| (n, t.size()))
            .collect();
        let theirs: BTreeMap<String, Vec<i64>> = fx[key]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let shape = p[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_i64().unwrap())
                    .collect();
                (p[0].as_str().unwrap().to_string(), shape)
            })
            .collect();
        assert_eq!(ours, theirs, "{key}");
    }
}

#[test]
fn eval_outputs_match_torchvision_with_the_same_weights() {
    let fx = fixture();
    let n = 2 * 3 * 64 * 64;
    let input: Vec<f32> = (0..n).map(|j| (0.013 * j as f64).sin() as f32).collect();
    let x = Tensor::from_slice(&input).reshape([2, 3, 64, 64]);
    for (depth, key) in DEPTHS {
        let (vs, net) = build(depth, 1.0);
        let mut variables = vs.variables();
        tch::no_grad(|| {
            for (index, p) in fx[key]["parameters"].as_array().unwrap().iter().enumerate() {
                let name = p[0].as_str().unwrap();
                if let Some(var) = variables.get_mut(name) {
                    var.copy_(&fill(name, index, &var.size()));
                }
            }
        });
        let logits = tch::no_grad(|| net.forward_t(&x, false));
        let features = tch::no_grad(|| net.features(&x, false));
        let expected: Vec<f32> = fx[key]["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let ours = Vec::<f32>::try_from(logits.flatten(0, -1)).unwrap();
        assert_eq!(ours.len(), expected.len());
        let worst = ours
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{key}: max |Δlogit| {worst}");
        let shape: Vec<i64> = fx[key]["features_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_i64().unwrap())
            .collect();
        assert_eq!(features.size(), shape);
        let sum = features
            .to_kind(Kind::Double)
            .abs()
            .sum(Kind::Double)
            .double_value(&[]);
        let expected_sum = fx[key]["features_abs_sum"].as_f64().unwrap();
        assert!(
            (sum - expected_sum).abs() / expected_sum < 1e-5,
            "{key}: {sum} vs {expected_sum}"
        );
    }
}

#[test]
fn fresh_normalisation_layers_start_as_torchvisions() {
    // torchvision's own freshly built ResNet-18 (fixture): every BN weight
    // 1, bias 0, running mean 0, running variance 1. tch's default draws
    // the weights from U(0, 1), which this test caught.
    let fx = fixture();
    let expected = fx["resnet18_initial_norm_state"].as_object().unwrap();
    assert_eq!(expected.len(), 80, "20 BN layers × 4 tensors");
    let (vs, _) = build(Depth::ResNet18, 1.0);
    let ours = vs.variables();
    for (name, stats) in expected {
        let tensor = ours
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from the tch ResNet-18"));
        for (what, value) in [
            ("min", tensor.min().double_value(&[])),
            ("max", tensor.max().double_value(&[])),
            ("mean", tensor.mean(tch::Kind::Double).double_value(&[])),
        ] {
            assert_eq!(value, stats[what].as_f64().unwrap(), "{name} {what}");
        }
    }
}

#[test]
fn width_multiplier_scales_channels_and_embedding() {
    let (_, net) = build(Depth::ResNet18, 0.25);
    let x = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    assert_eq!(net.features(&x, false).size(), vec![1, 128, 2, 2]);
    assert_eq!(net.embed(&x, false).size(), vec![1, 128]);
    assert_eq!(net.config.embedding_dim(), 128);
    let (_, net) = build(Depth::ResNet50, 0.25);
    assert_eq!(net.embed(&x, false).size(), vec![1, 512]);
}

#[test]
fn safetensors_round_trip_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("w.safetensors");
    tch::manual_seed(3);
    let (vs, _) = build(Depth::ResNet18, 0.5);
    weights::save(&vs, &path).unwrap();
    tch::manual_seed(4);
    let (mut other, _) = build(Depth::ResNet18, 0.5);
    let loaded = weights::load(&mut other, &path, Strictness::Exact).unwrap();
    assert_eq!(loaded.len(), vs.variables().len());
    let a = vs.variables();
    for (name, t) in other.variables() {
        assert!(t.equal(&a[&name]), "{name} differs after the round trip");
    }
    // A backbone file loads into a model with a new head only partially.
    let (mut wider, _) = build(Depth::ResNet18, 1.0);
    assert!(
        weights::load(&mut wider, &path, Strictness::Partial).is_err(),
        "shape mismatch must fail"
    );
}
