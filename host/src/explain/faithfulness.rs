//! How faithful a saliency map is, measured by what the model does when the
//! pixels it names are taken away or given back, and (with the phantom
//! generator's lesion masks) by whether it points at the lesion.
//!
//! - Deletion / insertion (Petsiuk et al., BMVC 2018): pixels in order of
//!   decreasing saliency are set to black (deletion) or restored into a
//!   blurred copy (insertion), in [`STEPS`] equal steps; the target class's
//!   probability is traced and its area under the curve taken (trapezoid
//!   over the removed fraction). Deletion: lower is better; insertion:
//!   higher is better.
//! - ROAD (Rong et al., ICML 2022), remove and debias: at each of 10 %…90 %
//!   the removed pixels are imputed from their neighbours (the discrete
//!   Laplace equation with the kept pixels as boundary, ROAD's linear
//!   imputation, solved here coarse to fine by Jacobi sweeps, plus its
//!   small noise),
//!   so the removal shape leaks less class information than a black hole.
//!   Most-relevant-first (MoRF, lower is better) and least-relevant-first
//!   (LeRF, higher is better), averaged over the percentages.
//! - With a lesion mask: the pointing game (the map's maximum lies in the
//!   lesion) and the share of the map's energy inside the lesion.
//!
//! Perturbations act on the luminance plane before normalisation (what a
//! scanner could have produced), S×S.

use anyhow::Result;
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

use crate::data::normalize;
use crate::model::ResNet;
use tumorxai_shared::PreprocessSpec;

/// Steps of the deletion and insertion curves.
pub const STEPS: usize = 20;
/// ROAD's removal percentages.
pub const ROAD_PERCENTS: [u32; 9] = [10, 20, 30, 40, 50, 60, 70, 80, 90];
/// Jacobi sweeps per level of the ROAD imputation pyramid (each level starts
/// from the coarser solution, so few are needed).
const ROAD_ITERATIONS: usize = 40;
/// Standard deviation of ROAD's imputation noise (plane units, [0, 1]).
const ROAD_NOISE: f64 = 0.01;

/// Faithfulness of one map on one image.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Scores {
    pub deletion_auc: f64,
    pub insertion_auc: f64,
    pub road_morf: f64,
    pub road_lerf: f64,
}

/// Trapezoid area under `values` sampled at equal steps over [0, 1].
pub fn auc(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return values.first().copied().unwrap_or(0.0);
    }
    let dx = 1.0 / (values.len() - 1) as f64;
    values.windows(2).map(|w| (w[0] + w[1]) * 0.5 * dx).sum()
}

/// Pixel indices of `saliency` from most to least salient (ties by index).
pub fn order(saliency: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..saliency.len()).collect();
    idx.sort_by(|&a, &b| saliency[b].total_cmp(&saliency[a]).then(a.cmp(&b)));
    idx
}

/// The pointing game: is the map's maximum inside the mask?
pub fn pointing_hit(saliency: &[f32], mask: &[bool]) -> bool {
    order(saliency)
        .first()
        .is_some_and(|&i| mask.get(i).copied().unwrap_or(false))
}

/// Share of the map's total (non-negative) energy inside the mask.
pub fn energy_in_mask(saliency: &[f32], mask: &[bool]) -> f64 {
    let (mut inside, mut total) = (0f64, 0f64);
    for (&s, &m) in saliency.iter().zip(mask) {
        let s = f64::from(s.max(0.0));
        total += s;
        if m {
            inside += s;
        }
    }
    if total > 0.0 {
        inside / total
    } else {
        0.0
    }
}

/// Probability of `target` for a batch of planes `[B, 1, S, S]`.
fn probabilities(
    model: &ResNet,
    spec: &PreprocessSpec,
    planes: &Tensor,
    target: usize,
) -> Result<Vec<f64>> {
    let logits = tch::no_grad(|| model.forward_t(&normalize(planes, spec), false));
    let p = logits.softmax(1, Kind::Double).select(1, target as i64);
    Ok(Vec::<f64>::try_from(p)?)
}

/// Gaussian blur of a plane `[1, 1, S, S]` (σ in pixels), for insertion's
/// starting point.
fn blurred(plane: &Tensor, sigma: f64) -> Tensor {
    let radius = (3.0 * sigma).ceil() as i64;
    let xs = Tensor::arange_start(-radius, radius + 1, (Kind::Float, plane.device()));
    let k = (-(xs.square()) / (2.0 * sigma * sigma)).exp();
    let k = &k / k.sum(Kind::Float);
    let n = 2 * radius + 1;
    let horizontal = k.reshape([1, 1, 1, n]);
    let vertical = k.reshape([1, 1, n, 1]);
    let padded = plane.reflection_pad2d([radius, radius, 0, 0]);
    let h = padded.conv2d(&horizontal, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
    let padded = h.reflection_pad2d([0, 0, radius, radius]);
    padded.conv2d(&vertical, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
}

/// Masks `[steps+1, 1, S, S]` (1 = taken) after taking `k/steps` of the
/// pixels in `order`, on `device`.
fn step_masks(order: &[usize], s: usize, steps: usize, device: tch::Device) -> Tensor {
    let n = s * s;
    let mut data = vec![0f32; (steps + 1) * n];
    for step in 0..=steps {
        let count = n * step / steps;
        let base = step * n;
        for &i in &order[..count] {
            data[base + i] = 1.0;
        }
    }
    Tensor::from_slice(&data)
        .reshape([(steps + 1) as i64, 1, s as i64, s as i64])
        .to_device(device)
}

/// The deletion and insertion batches for step masks (1 = the most salient
/// pixels taken so far): deletion blacks them out of the plane; insertion
/// restores them, and only them, into the blurred plane.
pub fn perturbation_batches(plane: &Tensor, blur: &Tensor, masks: &Tensor) -> (Tensor, Tensor) {
    let keep = masks.ones_like() - masks;
    let deleted = plane * &keep;
    let inserted = plane * masks + blur * &keep;
    (deleted, inserted)
}

/// ROAD's imputation: removed pixels (mask 1) take the solution of the
/// discrete Laplace equation with the kept pixels fixed (neighbour weights
/// 1/6 for the 4-neighbours and 1/12 for the diagonals, as in ROAD), plus
/// Gaussian noise. Solved coarse to fine (a cascadic multigrid): the
/// problem is halved down to ≤ 12 pixels, solved there, and each solution
/// is upsampled as the next finer level's start, so large holes converge
/// instead of keeping their start value.
fn impute(planes: &Tensor, masks: &Tensor, seed: i64) -> Tensor {
    let solved = solve_laplace(planes, masks);
    tch::manual_seed(seed);
    let noise = solved.randn_like() * ROAD_NOISE;
    (solved + noise * masks).clamp(0.0, 1.0)
}

fn solve_laplace(planes: &Tensor, masks: &Tensor) -> Tensor {
    let size = planes.size();
    let (h, w) = (size[2], size[3]);
    let keep = masks.ones_like() - masks;
    let start = if h.min(w) > 12 {
        // Coarser level: kept values averaged over kept pixels only; a
        // coarse pixel is kept if any of its fine pixels is.
        let kept_sum = (planes * &keep).avg_pool2d([2, 2], [2, 2], [0, 0], true, true, None::<i64>);
        let kept_share = keep.avg_pool2d([2, 2], [2, 2], [0, 0], true, true, None::<i64>);
        let coarse_keep = kept_share.gt(0.0).to_kind(Kind::Float);
        let coarse_plane = kept_sum / kept_share.clamp_min(1e-6);
        let coarse = solve_laplace(&coarse_plane, &(coarse_keep.ones_like() - coarse_keep));
        coarse.upsample_bilinear2d([h, w], false, None, None)
    } else {
        let mean = (planes * &keep).sum(Kind::Float) / keep.sum(Kind::Float).clamp_min(1.0);
        planes * &keep + masks * mean
    };
    let kernel = Tensor::from_slice(&[
        1.0f32 / 12.0,
        1.0 / 6.0,
        1.0 / 12.0,
        1.0 / 6.0,
        0.0,
        1.0 / 6.0,
        1.0 / 12.0,
        1.0 / 6.0,
        1.0 / 12.0,
    ])
    .reshape([1, 1, 3, 3])
    .to_device(planes.device());
    let mut x = planes * &keep + start * masks;
    for _ in 0..ROAD_ITERATIONS {
        let padded = x.replication_pad2d([1, 1, 1, 1]);
        let avg = padded.conv2d(&kernel, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        x = planes * &keep + avg * masks;
    }
    x
}

/// Deletion, insertion and ROAD for one image's plane `[1, 1, S, S]`,
/// target class and saliency on the input (S×S).
pub fn scores(
    model: &ResNet,
    spec: &PreprocessSpec,
    plane: &Tensor,
    target: usize,
    saliency: &[f32],
) -> Result<Scores> {
    let s = spec.input_size as usize;
    let ranked = order(saliency);
    let masks = step_masks(&ranked, s, STEPS, plane.device());
    let blur = blurred(plane, s as f64 / 16.0);
    let (deleted, inserted) = perturbation_batches(plane, &blur, &masks);
    let deletion = probabilities(model, spec, &deleted, target)?;
    let insertion = probabilities(model, spec, &inserted, target)?;
    let road = |ranking: &[usize]| -> Result<f64> {
        let n = s * s;
        let mut data = vec![0f32; ROAD_PERCENTS.len() * n];
        for (row, &p) in ROAD_PERCENTS.iter().enumerate() {
            for &i in &ranking[..n * p as usize / 100] {
                data[row * n + i] = 1.0;
            }
        }
        let m = Tensor::from_slice(&data)
            .reshape([ROAD_PERCENTS.len() as i64, 1, s as i64, s as i64])
            .to_device(plane.device());
        let imputed = impute(&plane.expand_as(&m), &m, 0);
        let p = probabilities(model, spec, &imputed, target)?;
        Ok(p.iter().sum::<f64>() / p.len() as f64)
    };
    let least_first: Vec<usize> = ranked.iter().rev().copied().collect();
    Ok(Scores {
        deletion_auc: auc(&deletion),
        insertion_auc: auc(&insertion),
        road_morf: road(&ranked)?,
        road_lerf: road(&least_first)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_by_hand() {
        assert!((auc(&[1.0, 0.0]) - 0.5).abs() < 1e-12);
        assert!((auc(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        // (1 + 0.5)/2·0.5 + (0.5 + 0)/2·0.5 = 0.5.
        assert!((auc(&[1.0, 0.5, 0.0]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn pointing_and_energy_by_hand() {
        let map = [0.1, 0.9, 0.3, 0.0];
        let mask = [false, true, true, false];
        assert!(pointing_hit(&map, &mask));
        assert!(!pointing_hit(&map, &[true, false, false, true]));
        // f32 inputs: 1e-6.
        assert!((energy_in_mask(&map, &mask) - 1.2 / 1.3).abs() < 1e-6);
        assert_eq!(order(&[0.5, 0.5, 1.0]), vec![2, 0, 1]);
    }

    #[test]
    fn insertion_starts_blurred_and_deletion_starts_whole() {
        // Plane (1, 2, 3, 4), blur all 10; masks: nothing, then pixel 3,
        // then everything taken.
        let plane = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([1, 1, 1, 4]);
        let blur = Tensor::from_slice(&[10.0f32; 4]).reshape([1, 1, 1, 4]);
        let masks = Tensor::from_slice(&[
            0.0f32, 0.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 1.0, //
            1.0, 1.0, 1.0, 1.0,
        ])
        .reshape([3, 1, 1, 4]);
        let (deleted, inserted) = perturbation_batches(&plane, &blur, &masks);
        let rows = |t: Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        assert_eq!(
            rows(deleted),
            vec![1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(
            rows(inserted),
            vec![10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 4.0, 1.0, 2.0, 3.0, 4.0]
        );
    }

    /// A horizontal ramp over s×s (it solves the Laplace equation, so a
    /// hole must be imputed as the ramp) and a mask of the square hole
    /// `lo..hi` in both directions.
    fn ramp_with_hole(s: usize, lo: usize, hi: usize) -> (Vec<f32>, Tensor, Tensor) {
        let ramp: Vec<f32> = (0..s * s)
            .map(|i| (i % s) as f32 / (s - 1) as f32)
            .collect();
        let hole: Vec<f32> = (0..s * s)
            .map(|i| {
                f32::from(u8::from(
                    (lo..hi).contains(&(i / s)) && (lo..hi).contains(&(i % s)),
                ))
            })
            .collect();
        let shape = [1, 1, s as i64, s as i64];
        let plane = Tensor::from_slice(&ramp).reshape(shape);
        let mask = Tensor::from_slice(&hole).reshape(shape);
        (ramp, plane, mask)
    }

    fn largest_error(filled: &Tensor, ramp: &[f32]) -> f32 {
        let filled = Vec::<f32>::try_from(filled.flatten(0, -1)).unwrap();
        filled
            .iter()
            .zip(ramp)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    }

    #[test]
    fn imputation_fills_a_large_hole_in_a_ramp_with_the_ramp() {
        // A 64×64 hole in a 128×128 ramp: a plain Jacobi solve leaves its
        // middle near the start value (error 0.10 measured); coarse to fine,
        // it converges to the ramp.
        let (ramp, plane, mask) = ramp_with_hole(128, 32, 96);
        let worst = largest_error(&solve_laplace(&plane, &mask), &ramp);
        assert!(worst < 0.02, "largest error {worst}");
    }

    #[test]
    fn imputation_fills_a_hole_in_a_linear_ramp_with_the_ramp() {
        // With ROAD's noise (σ 0.01) on top: within 0.05.
        let (ramp, plane, mask) = ramp_with_hole(12, 4, 8);
        let worst = largest_error(&impute(&plane, &mask, 1), &ramp);
        assert!(worst < 0.05, "largest error {worst}");
    }
}
