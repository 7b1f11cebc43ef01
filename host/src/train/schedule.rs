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
}
