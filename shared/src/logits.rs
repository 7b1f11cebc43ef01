//! Logit arithmetic that the workstation and the device must do the same way:
//! softmax at a temperature, top-1, and the comparisons behind self-tests and
//! parity checks. Every function here treats a non-finite value as a failure
//! rather than letting it slip through a comparison (`NaN > x` is false, and
//! `f32::max` silently drops NaN).

/// True when every value is finite (no NaN, no ±∞).
pub fn all_finite(values: &[f32]) -> bool {
    values.iter().all(|v| v.is_finite())
}

/// Index of the largest value, the lowest index on ties. `None` for an empty
/// slice or when any value is not finite: no top-1 can be vouched for then.
pub fn argmax(values: &[f32]) -> Option<usize> {
    if !all_finite(values) {
        return None;
    }
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in values.iter().enumerate() {
        match best {
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i)
}

/// Largest |a[i] − b[i]|. `+∞` when the lengths differ or any value is not
/// finite, so the result fails every finite tolerance.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || !all_finite(a) || !all_finite(b) {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Difference between the largest and the second largest value (`+∞` for a
/// single value, `None` when empty or not finite): how far the top-1 is from
/// changing.
pub fn top1_margin(values: &[f32]) -> Option<f32> {
    let top = argmax(values)?;
    let top_value = *values.get(top)?;
    let second = values
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != top)
        .map(|(_, &v)| v)
        .fold(f32::NEG_INFINITY, f32::max);
    Some(top_value - second)
}

/// `softmax(z / temperature)`, computed in f64 with the maximum subtracted.
/// A temperature that is not finite and positive, or a non-finite logit,
/// gives all-NaN probabilities: callers check [`all_finite`] first.
pub fn softmax(logits: &[f32], temperature: f64) -> Vec<f32> {
    if !(temperature.is_finite() && temperature > 0.0 && all_finite(logits)) {
        return vec![f32::NAN; logits.len()];
    }
    let scaled: Vec<f64> = logits.iter().map(|&z| f64::from(z) / temperature).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scaled.iter().map(|z| (z - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_ties_and_refuses_non_finite() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -2.0]), Some(1));
        assert_eq!(argmax(&[-5.0]), Some(0));
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[1.0, f32::NAN, 0.0]), None);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), None);
        assert_eq!(argmax(&[1.0, f32::INFINITY]), None);
    }

    #[test]
    fn nan_never_passes_a_tolerance() {
        // The old `fold(0.0, f32::max)` gave 0.0 here: a NaN model passed.
        assert_eq!(
            max_abs_diff(&[f32::NAN, f32::NAN], &[0.5, -1.0]),
            f32::INFINITY
        );
        assert_eq!(max_abs_diff(&[0.5], &[0.5, 1.0]), f32::INFINITY);
        assert_eq!(max_abs_diff(&[0.5, -1.0], &[0.25, -1.5]), 0.5);
        assert_eq!(max_abs_diff(&[], &[]), 0.0);
    }

    #[test]
    fn margin_is_top_minus_runner_up() {
        assert_eq!(top1_margin(&[1.0, 4.0, 2.5]), Some(1.5));
        assert_eq!(top1_margin(&[2.0, 2.0]), Some(0.0));
        assert_eq!(top1_margin(&[7.0]), Some(f32::INFINITY));
        assert_eq!(top1_margin(&[1.0, f32::NAN]), None);
    }

    #[test]
    fn softmax_matches_hand_computed_values() {
        // softmax([0, ln 3]) = [1/4, 3/4]; at T = 2: [0, ln 9] / 2 → same.
        let p = softmax(&[0.0, 3f32.ln()], 1.0);
        assert!((p[0] - 0.25).abs() < 1e-6 && (p[1] - 0.75).abs() < 1e-6);
        let q = softmax(&[0.0, 9f32.ln()], 2.0);
        assert!((q[0] - 0.25).abs() < 1e-6 && (q[1] - 0.75).abs() < 1e-6);
        // Large logits do not overflow.
        let r = softmax(&[1000.0, 1000.0], 1.0);
        assert_eq!(r, vec![0.5, 0.5]);
    }

    #[test]
    fn softmax_of_doubtful_input_is_nan_not_confident() {
        assert!(softmax(&[1.0, f32::NAN], 1.0).iter().all(|p| p.is_nan()));
        assert!(softmax(&[1.0, 2.0], 0.0).iter().all(|p| p.is_nan()));
        assert!(softmax(&[1.0, 2.0], f64::NAN).iter().all(|p| p.is_nan()));
    }
}
