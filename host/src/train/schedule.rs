//! Learning-rate schedule as a pure function of the step: linear warm-up to
//! the peak, then half-cosine decay to `final_fraction × peak`.

/// Learning rate at `step` (0-based) of `total` steps.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64, final_fraction: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup.min(step)) as f64 / decay as f64).min(1.0);
    let floor = peak * final_fraction;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Half-cosine ramp from `start` (step 0) to `end` (step `total`): the
/// momentum of BYOL/MoCo v3/DINO targets (0.99 → 1) and DINO's weight decay
/// (0.04 → 0.4) follow it.
pub fn cosine_ramp(step: usize, total: usize, start: f64, end: f64) -> f64 {
    let progress = (step as f64 / total.max(1) as f64).min(1.0);
    end - (end - start) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Linear ramp from `start` to `end` over `steps`, then `end` (DINO's
/// teacher-temperature warm-up).
pub fn linear_ramp(step: usize, steps: usize, start: f64, end: f64) -> f64 {
    if step >= steps {
        return end;
    }
    start + (end - start) * step as f64 / steps as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        // 10 steps, 2 warm-up, peak 1: 0.5, 1.0, then cos over 8 steps.
        assert_eq!(lr_at(0, 10, 2, 1.0, 0.0), 0.5);
        assert_eq!(lr_at(1, 10, 2, 1.0, 0.0), 1.0);
        assert_eq!(lr_at(2, 10, 2, 1.0, 0.0), 1.0);
        // Halfway through the decay (step 6 = 4 of 8): 0.5.
        assert!((lr_at(6, 10, 2, 1.0, 0.0) - 0.5).abs() < 1e-12);
        assert!(lr_at(9, 10, 2, 1.0, 0.0) < 0.05);
        // With a floor of 10%: halfway = 0.1 + 0.9 × 0.5.
        assert!((lr_at(6, 10, 2, 1.0, 0.1) - 0.55).abs() < 1e-12);
        assert_eq!(lr_at(0, 4, 0, 2.0, 0.0), 2.0);
    }

    #[test]
    fn ramps_hit_their_ends_and_midpoints() {
        // BYOL's τ: 1 − (1 − 0.99)·(cos(πk/K) + 1)/2 → 0.99, 0.995, 1.
        assert!((cosine_ramp(0, 10, 0.99, 1.0) - 0.99).abs() < 1e-12);
        assert!((cosine_ramp(5, 10, 0.99, 1.0) - 0.995).abs() < 1e-12);
        assert!((cosine_ramp(10, 10, 0.99, 1.0) - 1.0).abs() < 1e-12);
        assert!((cosine_ramp(20, 10, 0.99, 1.0) - 1.0).abs() < 1e-12);
        // A quarter of the way: (1 − cos(π/4))/2 = 0.14645 of the range.
        assert!((cosine_ramp(1, 4, 0.0, 1.0) - 0.146_446_609_4).abs() < 1e-9);
        assert!((linear_ramp(0, 4, 0.04, 0.07) - 0.04).abs() < 1e-12);
        assert!((linear_ramp(2, 4, 0.04, 0.07) - 0.055).abs() < 1e-12);
        assert_eq!(linear_ramp(9, 4, 0.04, 0.07), 0.07);
    }
}
