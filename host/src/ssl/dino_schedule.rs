//! DINO's schedules and safeguards as pure functions of the optimizer step,
//! after facebookresearch/dino (`utils.cosine_scheduler`,
//! `utils.clip_gradients`, `utils.cancel_gradients_last_layer`,
//! `DINOLoss.teacher_temp_schedule`). The reference sets its lengths in
//! epochs of ~1,250 steps; here every length is `epochs × steps_per_epoch`,
//! so a run of 11 steps per epoch keeps the reference's proportions.

use tch::Tensor;

use crate::train::schedule::cosine_ramp;

/// The batch the reference's learning rate is given at: DINO's linear
/// scaling rule is `lr × batch / 256` (`main_dino.py`, "linear scaling rule").
pub const REFERENCE_BATCH: f64 = 256.0;

/// `epochs` of `steps_per_epoch` steps, rounded to whole steps.
pub fn epochs_to_steps(epochs: f64, steps_per_epoch: usize) -> usize {
    (epochs.max(0.0) * steps_per_epoch as f64).round() as usize
}

/// Entry `step` of the reference's `cosine_scheduler`: a linear warm-up
/// from `start_warmup` (step 0) to `base` (step `warmup − 1`, numpy's
/// `linspace`), then a half cosine from `base` to `last` over the remaining
/// `total − warmup` steps.
pub fn cosine_schedule(
    step: usize,
    total: usize,
    warmup: usize,
    start_warmup: f64,
    base: f64,
    last: f64,
) -> f64 {
    if step < warmup {
        return linspace(step, warmup, start_warmup, base);
    }
    cosine_ramp(step - warmup, total.saturating_sub(warmup), base, last)
}

/// Entry `step` of numpy's `linspace(start, end, points)`; `end` past it.
fn linspace(step: usize, points: usize, start: f64, end: f64) -> f64 {
    if step + 1 >= points {
        return end;
    }
    start + (end - start) * step as f64 / (points - 1) as f64
}

/// DINO's learning rate: `lr × batch / 256` after a linear warm-up from 0,
/// then a cosine down to `min_lr` (`main_dino.py`'s `lr_schedule`).
pub fn lr_at(step: usize, total: usize, warmup: usize, lr: f64, batch: usize, min_lr: f64) -> f64 {
    let peak = lr * batch as f64 / REFERENCE_BATCH;
    cosine_schedule(step, total, warmup, 0.0, peak, min_lr)
}

/// The teacher temperature: `linspace(start, end, warmup)` over the warm-up
/// steps, then `end` (`DINOLoss.teacher_temp_schedule`, per step here).
pub fn teacher_temp_at(step: usize, warmup: usize, start: f64, end: f64) -> f64 {
    linspace(step, warmup, start, end)
}

/// The teacher's starting EMA momentum for a run of `total` steps: the
/// configured one (DINO's 0.996), or lower so that the teacher's initial
/// (random) weights keep a weight of at most e^(−turnover/2) at the end.
/// With the cosine to 1 the initial weights keep ≈ exp(−(1 − m₀)·total/2)
/// (the mean of (1 − m) over a half cosine is (1 − m₀)/2); the reference's
/// 0.996 over 125,100 steps keeps e^(−250), but over 1,100 steps it keeps
/// e^(−2.2) ≈ 11 %: the teacher handed on would be a tenth random. A
/// turnover of 10 (m₀ = 1 − 10/total, ≤ 0.7 % left) gives 0.991 at 1,100
/// steps, close to BYOL's 0.99 for its shorter schedules (Grill et al.
/// 2020, §3.3) and to DINO's help, which raises m₀ only as steps shrink per
/// sample seen. Never below [`MIN_BASE_MOMENTUM`]; `turnover ≤ 0` keeps
/// the configured momentum.
pub fn base_momentum(configured: f64, turnover: f64, total: usize) -> f64 {
    if turnover <= 0.0 || total == 0 {
        return configured;
    }
    configured
        .min(1.0 - turnover / total as f64)
        .max(MIN_BASE_MOMENTUM.min(configured))
}

/// The fastest teacher a short run gets: BYOL's ablation (Grill et al.
/// 2020, Table 5a) trains well from τ = 0.9 to 0.999 while τ = 0 (the
/// target is the online network) collapses, as DINO's "student copy".
pub const MIN_BASE_MOMENTUM: f64 = 0.9;

/// The teacher's momentum at `step`: cosine from `base` to 1 over the run
/// (`main_dino.py`'s `momentum_schedule`, no warm-up).
pub fn momentum_at(step: usize, total: usize, base: f64) -> f64 {
    cosine_schedule(step, total, 0, base, base, 1.0)
}

/// Scales each parameter's gradient to an L2 norm of at most `clip`,
/// parameter by parameter (not one global norm): `utils.clip_gradients`,
/// `clip / (‖g‖ + 1e-6)` when below 1. Parameters without a gradient (the
/// frozen prototypes) are skipped. `clip ≤ 0` turns clipping off.
pub fn clip_gradients(params: &[Tensor], clip: f64) {
    if clip <= 0.0 {
        return;
    }
    tch::no_grad(|| {
        for p in params {
            let mut grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let norm = grad.norm().double_value(&[]);
            let coefficient = clip / (norm + 1e-6);
            if coefficient < 1.0 {
                let _ = grad.g_mul_scalar_(coefficient);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-12)
    }

    #[test]
    fn lr_matches_the_reference_scheduler_at_eleven_steps_per_epoch() {
        // numpy, the reference's utils.cosine_scheduler evaluated offline:
        //   s = cosine_scheduler(5e-4 * 32 / 256, 1e-6, 100, 11, warmup_epochs=10)
        //   [s[i] for i in (0, 1, 55, 109, 110, 111, 605, 1099)]
        let reference = [
            (0, 0.0),
            (1, 5.733_944_954_128_441e-7),
            (55, 3.153_669_724_770_643e-5),
            (109, 6.25e-5),
            (110, 6.25e-5),
            (111, 6.249_984_517_392_07e-5),
            (605, 3.175e-5),
            (1099, 1.000_154_826_079_304_5e-6),
        ];
        let warmup = epochs_to_steps(10.0, 11);
        assert_eq!(warmup, 110, "10 warm-up epochs of 11 steps");
        for (step, want) in reference {
            let got = lr_at(step, 1100, warmup, 5e-4, 32, 1e-6);
            assert!(
                (got - want).abs() <= 1e-12 + 1e-9 * want,
                "step {step}: {got:e} vs {want:e}"
            );
        }
    }

    #[test]
    fn teacher_temperature_follows_linspace_then_holds() {
        // numpy: np.linspace(0.04, 0.07, 330)[[0, 1, 100, 329]] (30 warm-up
        // epochs of 11 steps) = 0.04, 0.040091185…, 0.049118541…, 0.07.
        let warmup = epochs_to_steps(30.0, 11);
        assert!(close(teacher_temp_at(0, warmup, 0.04, 0.07), 0.04, 1e-12));
        let t1 = teacher_temp_at(1, warmup, 0.04, 0.07);
        assert!(close(t1, 0.040_091_185_410_334_344, 1e-12), "{t1}");
        let t100 = teacher_temp_at(100, warmup, 0.04, 0.07);
        assert!(close(t100, 0.049_118_541_033_434_65, 1e-12), "{t100}");
        assert!(close(teacher_temp_at(329, warmup, 0.04, 0.07), 0.07, 1e-12));
        assert!(close(
            teacher_temp_at(5000, warmup, 0.04, 0.07),
            0.07,
            1e-12
        ));
        // No warm-up (the reference's default, 0 epochs): the end value.
        assert!(close(teacher_temp_at(0, 0, 0.04, 0.07), 0.07, 1e-12));
    }

    #[test]
    fn the_teacher_sheds_its_random_start_over_a_short_run() {
        // 1,100 steps (100 epochs × 11): m₀ = 1 − 10/1100 = 0.990909…
        let m0 = base_momentum(0.996, 10.0, 1100);
        assert!(close(m0, 0.990_909_090_909_090_9, 1e-12), "{m0}");
        // The reference's run length keeps the configured 0.996.
        assert_eq!(base_momentum(0.996, 10.0, 125_100), 0.996);
        assert_eq!(base_momentum(0.996, 0.0, 1100), 0.996);
        // 20 steps would give 0.5: held at 0.9.
        assert_eq!(base_momentum(0.996, 10.0, 20), 0.9);
        // numpy: m = cosine_scheduler(m0, 1, 100, 11); np.prod(m) is the
        // weight the initial teacher keeps after the run:
        //   m0 = 0.996            → 0.110216… (the "11 %")
        //   m0 = 1 − 10/1100      → 0.006593…
        //   m[550] (m0 = 0.996)   → 0.998
        let keeps = |m0: f64| (0..1100).map(|k| momentum_at(k, 1100, m0)).product::<f64>();
        let today = keeps(0.996);
        assert!(close(today, 0.110_216_202_676_622_81, 1e-6), "{today}");
        let fixed = keeps(m0);
        assert!(close(fixed, 0.006_593_319_751_047_851, 1e-6), "{fixed}");
        assert!(fixed < 0.01);
        assert!(close(momentum_at(550, 1100, 0.996), 0.998, 1e-12));
    }

    #[test]
    fn gradients_are_clipped_per_parameter_at_three() {
        let a = Tensor::from_slice(&[1.0f64, 1.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[1.0f64, 1.0]).set_requires_grad(true);
        let frozen = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        // ∂/∂a of 3a₀ + 4a₁ = (3, 4), norm 5; ∂/∂b = (0.3, 0.4), norm 0.5.
        let loss = (&a * Tensor::from_slice(&[3.0f64, 4.0])).sum(Kind::Double)
            + (&b * Tensor::from_slice(&[0.3f64, 0.4])).sum(Kind::Double);
        loss.backward();
        clip_gradients(&[a.shallow_clone(), b.shallow_clone(), frozen], 3.0);
        // By hand: (3, 4) · 3/(5 + 1e-6) = (1.79999964, 2.39999952); b is
        // under the limit and untouched. One global norm (5.025) would have
        // scaled b too, to (0.179…, 0.238…).
        let g: Vec<f64> = Vec::try_from(a.grad()).unwrap();
        assert!(close(g[0], 1.799_999_640_000_072, 1e-12), "{g:?}");
        assert!(close(g[1], 2.399_999_520_000_096, 1e-12), "{g:?}");
        let g: Vec<f64> = Vec::try_from(b.grad()).unwrap();
        assert_eq!(g, vec![0.3, 0.4]);
    }
}
