//! The four self-supervised losses against reference implementations:
//! fixed inputs and the values lightly 1.6.0 (SimCLR NT-Xent, DINO),
//! solo-learn 1.0.2 (BYOL) and the MoCo v3 paper's Algorithm 1 in PyTorch
//! compute (`fixtures/make_ssl_loss_fixtures.py`, versions in the JSON).

use serde_json::Value;
use tch::{Kind, Tensor};
use tumorxai_host::ssl::byol::byol_loss;
use tumorxai_host::ssl::dino::{dino_loss, update_center};
use tumorxai_host::ssl::mocov3::mocov3_loss;
use tumorxai_host::ssl::simclr::nt_xent;

fn fixtures() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ssl_loss_fixtures.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn matrix(v: &Value) -> Tensor {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    let width = rows[0].len() as i64;
    let flat: Vec<f64> = rows.into_iter().flatten().collect();
    Tensor::from_slice(&flat).reshape([-1, width])
}

fn matrices(v: &Value) -> Vec<Tensor> {
    v.as_array().unwrap().iter().map(matrix).collect()
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn close(got: &Tensor, expected: f64, what: &str) {
    assert_eq!(
        got.kind(),
        Kind::Double,
        "{what}: computed in double precision"
    );
    let got = got.double_value(&[]);
    assert!(
        (got - expected).abs() < 1e-5,
        "{what}: {got} vs reference {expected}"
    );
}

#[test]
fn simclr_nt_xent_matches_lightly() {
    let f = fixtures();
    let cases = f["simclr"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for (i, c) in cases.iter().enumerate() {
        let loss = nt_xent(
            &matrix(&c["z1"]),
            &matrix(&c["z2"]),
            number(&c["temperature"]),
        );
        close(&loss, number(&c["loss"]), &format!("simclr case {i}"));
    }
}

#[test]
fn byol_summed_loss_matches_solo_learn() {
    let f = fixtures();
    for (i, c) in f["byol"].as_array().unwrap().iter().enumerate() {
        let loss = byol_loss(
            &matrix(&c["p1"]),
            &matrix(&c["p2"]),
            &matrix(&c["z1"]),
            &matrix(&c["z2"]),
        );
        close(&loss, number(&c["loss"]), &format!("byol case {i}"));
    }
}

#[test]
fn mocov3_loss_matches_the_papers_algorithm() {
    let f = fixtures();
    for (i, c) in f["mocov3"].as_array().unwrap().iter().enumerate() {
        let loss = mocov3_loss(
            &matrix(&c["q1"]),
            &matrix(&c["q2"]),
            &matrix(&c["k1"]),
            &matrix(&c["k2"]),
            number(&c["temperature"]),
        );
        close(&loss, number(&c["loss"]), &format!("mocov3 case {i}"));
    }
}

#[test]
fn dino_loss_and_centre_match_lightly_over_two_steps() {
    let f = fixtures();
    for (i, c) in f["dino"].as_array().unwrap().iter().enumerate() {
        let teacher = matrices(&c["teacher"]);
        let student = matrices(&c["student"]);
        let dim = teacher[0].size()[1];
        let (tt, ts, m) = (
            number(&c["teacher_temp"]),
            number(&c["student_temp"]),
            number(&c["center_momentum"]),
        );
        let center = Tensor::zeros([1, dim], (Kind::Double, tch::Device::Cpu));
        let first = dino_loss(&teacher, &student, &center, tt, ts);
        close(
            &first,
            number(&c["loss_first"]),
            &format!("dino case {i} step 1"),
        );
        let center = update_center(&center, &teacher, m);
        let expected: Vec<f64> = serde_json::from_value(c["center_after_first"].clone()).unwrap();
        let got = Vec::<f64>::try_from(center.reshape([-1])).unwrap();
        for (a, b) in got.iter().zip(&expected) {
            assert!(
                (a - b).abs() < 1e-9,
                "dino case {i} centre: {got:?} vs {expected:?}"
            );
        }
        let teacher2 = matrices(&c["teacher_second"]);
        let second = dino_loss(&teacher2, &student, &center, tt, ts);
        close(
            &second,
            number(&c["loss_second"]),
            &format!("dino case {i} step 2"),
        );
        let center = update_center(&center, &teacher2, m);
        let expected: Vec<f64> = serde_json::from_value(c["center_after_second"].clone()).unwrap();
        let got = Vec::<f64>::try_from(center.reshape([-1])).unwrap();
        for (a, b) in got.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-9, "dino case {i} centre 2: {a} vs {b}");
        }
    }
}

#[test]
fn hand_computed_nt_xent_of_two_orthogonal_pairs() {
    // B = 2, D = 2: z1 = [e₁, e₂], z2 = [e₁, e₂] (partners identical), τ = 1.
    // Anchor e₁ (view 1): others are e₂ (cos 0), e₁ (partner, cos 1), e₂ (0):
    // loss = −log(e / (e + 2)) for each of the 4 anchors.
    let z = Tensor::from_slice(&[1.0f64, 0.0, 0.0, 1.0]).reshape([2, 2]);
    let loss = nt_xent(&z, &z, 1.0).double_value(&[]);
    let e = std::f64::consts::E;
    let expected = -(e / (e + 2.0)).ln();
    assert!((loss - expected).abs() < 1e-12, "{loss} vs {expected}");
}
