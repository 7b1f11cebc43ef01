//! Class activation maps on the workstation: Grad-CAM, Grad-CAM++ and
//! EigenCAM at a chosen layer, for a batch, with libtorch's autograd.
//!
//! - Grad-CAM (Selvaraju et al., ICCV 2017): channel weights are the spatial
//!   mean of ∂y_target/∂A; map = ReLU(Σ_c w_c A_c).
//! - Grad-CAM++ (Chattopadhay et al., WACV 2018), in the closed form of the
//!   exponential-score assumption as pytorch-grad-cam implements it:
//!   α = g² / (2g² + Σ_xy A · g³ + ε), α = 0 where g = 0;
//!   w_c = Σ_xy ReLU(g) · α; map = ReLU(Σ_c w_c A_c).
//! - EigenCAM (Muhammad & Yeasin, IJCNN 2020): the device's definition —
//!   first principal component of the centred activations, sign fixed
//!   against the mean activation, ReLU ([`super::eigencam`]).
//!
//! Maps are returned at the layer's resolution (h×w) in [0, 1]: Grad-CAM and
//! Grad-CAM++ scaled as pytorch-grad-cam scales them (min to 0, max to 1),
//! EigenCAM as the device does (ReLU, divided by the maximum); mapping onto
//! the slice is [`super::project`]'s job.

use anyhow::{ensure, Context, Result};
use tch::{Kind, Tensor};

use super::eigencam::{eigencam_with_gap, EigenMap};
use crate::model::{LayerPoint, ResNet};

/// ε of Grad-CAM++'s α denominator (as pytorch-grad-cam 1.5.7).
const GRADCAM_PP_EPS: f64 = 1e-6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[value(name = "gradcam")]
    #[serde(rename = "gradcam")]
    GradCam,
    #[value(name = "gradcampp")]
    #[serde(rename = "gradcampp")]
    GradCamPlusPlus,
    #[value(name = "eigencam")]
    #[serde(rename = "eigencam")]
    EigenCam,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::GradCam, Method::GradCamPlusPlus, Method::EigenCam];

    pub fn label(self) -> &'static str {
        match self {
            Method::GradCam => "Grad-CAM",
            Method::GradCamPlusPlus => "Grad-CAM++",
            Method::EigenCam => "EigenCAM",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Method::GradCam => "gradcam",
            Method::GradCamPlusPlus => "gradcampp",
            Method::EigenCam => "eigencam",
        }
    }
}

/// Grad-CAM channel weights `[N, C]` from gradients `[N, C, h, w]`.
pub fn gradcam_weights(grads: &Tensor) -> Tensor {
    grads.mean_dim(&[2i64, 3][..], false, Kind::Double)
}

/// Grad-CAM++ channel weights `[N, C]` from activations and gradients.
pub fn gradcampp_weights(activations: &Tensor, grads: &Tensor) -> Tensor {
    let a = activations.to_kind(Kind::Double);
    let g = grads.to_kind(Kind::Double);
    let g2 = g.pow_tensor_scalar(2);
    let g3 = g.pow_tensor_scalar(3);
    let sum_a = a.sum_dim_intlist(&[2i64, 3][..], true, Kind::Double);
    let alpha = &g2 / (&g2 * 2.0 + sum_a * &g3 + GRADCAM_PP_EPS);
    let alpha = alpha.where_self(&g.ne(0.0), &alpha.zeros_like());
    (g.relu() * alpha).sum_dim_intlist(&[2i64, 3][..], false, Kind::Double)
}

/// `ReLU(Σ_c w_c A_c)` `[N, h, w]` for weights `[N, C]`.
pub fn weighted_map(activations: &Tensor, weights: &Tensor) -> Tensor {
    let a = activations.to_kind(Kind::Double);
    let w = weights.to_kind(Kind::Double).unsqueeze(-1).unsqueeze(-1);
    (a * w)
        .sum_dim_intlist(&[1i64][..], false, Kind::Double)
        .relu()
}

/// pytorch-grad-cam's `scale_cam_image` on each map `[h, w]`: minus its
/// minimum, divided by (the new maximum + 1e-7), so the least relevant
/// position is 0 even when every weighted activation is positive.
fn normalised_rows(maps: &Tensor) -> Result<Vec<Vec<f32>>> {
    let n = maps.size().first().copied().unwrap_or(0);
    (0..n)
        .map(|i| {
            let m = maps.get(i).flatten(0, -1);
            let m = &m - m.min();
            let m = &m / (m.max() + 1e-7);
            Ok(Vec::<f32>::try_from(m.to_kind(Kind::Float))?)
        })
        .collect()
}

/// The maps of one image.
#[derive(Debug, Clone)]
pub struct ImageMaps {
    pub logits: Vec<f32>,
    /// The class explained (the prediction unless a target was given).
    pub target: usize,
    /// One map per requested method, h·w values in [0, 1].
    pub maps: Vec<(Method, Vec<f32>)>,
    /// EigenCAM's eigengap `(λ1 − λ2) / λ1` of the centred activations'
    /// covariance: near 0, the first two components are nearly tied and the
    /// EigenCAM map is unstable.
    pub eigengap: f64,
    pub height: usize,
    pub width: usize,
}

/// Explains a batch `[N, 3, S, S]` (already normalised) at `point`.
/// `targets`: the class per image, or `None` for each image's prediction.
pub fn explain_batch(
    model: &ResNet,
    inputs: &Tensor,
    point: LayerPoint,
    targets: Option<&[usize]>,
    methods: &[Method],
) -> Result<Vec<ImageMaps>> {
    let activations = tch::no_grad(|| model.forward_to(inputs, point, false))
        .detach()
        .set_requires_grad(true);
    let logits = model.forward_from(&activations, point, false);
    let n = logits.size().first().copied().unwrap_or(0);
    let predicted = Vec::<i64>::try_from(logits.argmax(1, false))?;
    let targets: Vec<i64> = match targets {
        Some(t) => {
            ensure!(t.len() as i64 == n, "one target per image");
            t.iter().map(|&c| c as i64).collect()
        }
        None => predicted,
    };
    let classes = logits.size().get(1).copied().unwrap_or(0);
    ensure!(
        targets.iter().all(|&t| (0..classes).contains(&t)),
        "target class out of range (the model has {classes} classes)"
    );
    let index = Tensor::from_slice(&targets)
        .unsqueeze(1)
        .to_device(logits.device());
    // Each image's score depends only on its own activations, so the
    // gradient of the sum gives every image its own ∂y/∂A.
    let score = logits.gather(1, &index, false).sum(Kind::Float);
    let grads = Tensor::run_backward(&[&score], &[&activations], false, false)
        .into_iter()
        .next()
        .context("no gradient for the activations")?;
    let activations = activations.detach();
    let gradcam = if methods.contains(&Method::GradCam) {
        Some(normalised_rows(&weighted_map(
            &activations,
            &gradcam_weights(&grads),
        ))?)
    } else {
        None
    };
    let gradcampp = if methods.contains(&Method::GradCamPlusPlus) {
        Some(normalised_rows(&weighted_map(
            &activations,
            &gradcampp_weights(&activations, &grads),
        ))?)
    } else {
        None
    };
    let (_, _, h, w) = activations.size4()?;
    let logits = logits.detach();
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let row = i as usize;
        let EigenMap { map, eigengap } = eigencam_with_gap(&activations.get(i))?;
        let maps = methods
            .iter()
            .map(|&m| {
                let values = match m {
                    Method::GradCam => gradcam.as_ref().map(|g| g[row].clone()),
                    Method::GradCamPlusPlus => gradcampp.as_ref().map(|g| g[row].clone()),
                    Method::EigenCam => Some(map.clone()),
                };
                (m, values.unwrap_or_default())
            })
            .collect();
        out.push(ImageMaps {
            logits: Vec::<f32>::try_from(logits.get(i).to_kind(Kind::Float))?,
            target: targets[row] as usize,
            maps,
            eigengap,
            height: h as usize,
            width: w as usize,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(values: &[f64], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values).reshape(shape)
    }

    #[test]
    fn gradcam_by_hand() {
        // One image, 2 channels of 1×2. Gradients: channel 0 (1, 3) → mean 2;
        // channel 1 (−1, −1) → −1. A0 = (1, 0), A1 = (0, 4):
        // map = ReLU(2·(1,0) − (0,4)) = ReLU(2, −4) = (2, 0).
        let a = t(&[1.0, 0.0, 0.0, 4.0], &[1, 2, 1, 2]);
        let g = t(&[1.0, 3.0, -1.0, -1.0], &[1, 2, 1, 2]);
        let w = gradcam_weights(&g);
        assert_eq!(
            Vec::<f64>::try_from(w.flatten(0, -1)).unwrap(),
            vec![2.0, -1.0]
        );
        let map = weighted_map(&a, &w);
        assert_eq!(
            Vec::<f64>::try_from(map.flatten(0, -1)).unwrap(),
            vec![2.0, 0.0]
        );
    }

    #[test]
    fn gradcampp_by_hand() {
        // One channel, two positions: A = (1, 3) (Σ A = 4), g = (1, 2).
        // α1 = 1 / (2 + 4·1) = 1/6; α2 = 4 / (8 + 4·8) = 0.1.
        // w = 1·1/6 + 2·0.1 = 0.366667 (ε = 1e-6 is below the tolerance).
        let a = t(&[1.0, 3.0], &[1, 1, 1, 2]);
        let g = t(&[1.0, 2.0], &[1, 1, 1, 2]);
        let w = gradcampp_weights(&a, &g).double_value(&[0, 0]);
        assert!((w - (1.0 / 6.0 + 0.2)).abs() < 1e-6, "{w}");
        // Negative gradients contribute nothing (ReLU), zero gradients
        // have α = 0 (no 0/0).
        let g = t(&[-1.0, 0.0], &[1, 1, 1, 2]);
        assert_eq!(gradcampp_weights(&a, &g).double_value(&[0, 0]), 0.0);
    }
}
