//! The head outline on the output grid: closing the skull-stripped
//! template's holes (basal cisterns enclosed by brain are CSF, not air), the
//! outline closed morphologically (where the skull base fills the notches
//! between temporal lobes, frontal base and cerebellum), and the distance
//! of every outside pixel to both, from which the skull and scalp layers
//! are laid (`head.rs`).
//!
//! Distance: the two-pass 3-4 chamfer transform of Borgefors, "Distance
//! transformations in digital images", CVGIP 34 (1986) 344–371 (within 8 %
//! of the Euclidean distance).

/// Marks pixels not reachable from the border through outside pixels as
/// inside (4-connected flood fill from the border).
pub fn fill_enclosed(inside: &mut [bool], n: usize) {
    let mut reached = vec![false; inside.len()];
    let mut stack = Vec::new();
    for k in 0..n {
        for i in [k, (n - 1) * n + k, k * n, k * n + n - 1] {
            if !inside[i] && !reached[i] {
                reached[i] = true;
                stack.push(i);
            }
        }
    }
    while let Some(i) = stack.pop() {
        let (x, y) = (i % n, i / n);
        let mut next = [None; 4];
        if x > 0 {
            next[0] = Some(i - 1);
        }
        if x + 1 < n {
            next[1] = Some(i + 1);
        }
        if y > 0 {
            next[2] = Some(i - n);
        }
        if y + 1 < n {
            next[3] = Some(i + n);
        }
        for j in next.into_iter().flatten() {
            if !inside[j] && !reached[j] {
                reached[j] = true;
                stack.push(j);
            }
        }
    }
    for (v, r) in inside.iter_mut().zip(&reached) {
        if !r {
            *v = true;
        }
    }
}

/// Distance (pixels) from each outside pixel to the nearest inside pixel,
/// measured between pixel edges (an outside pixel touching the brain is at
/// 0.5); 0 inside.
pub fn distance_outside(inside: &[bool], n: usize) -> Vec<f32> {
    const FAR: u32 = u32::MAX / 4;
    let mut d: Vec<u32> = inside.iter().map(|&v| if v { 0 } else { FAR }).collect();
    // Forward pass: neighbours above and to the left.
    for y in 0..n {
        for x in 0..n {
            let i = y * n + x;
            let mut best = d[i];
            if x > 0 {
                best = best.min(d[i - 1] + 3);
            }
            if y > 0 {
                best = best.min(d[i - n] + 3);
                if x > 0 {
                    best = best.min(d[i - n - 1] + 4);
                }
                if x + 1 < n {
                    best = best.min(d[i - n + 1] + 4);
                }
            }
            d[i] = best;
        }
    }
    // Backward pass: below and to the right.
    for y in (0..n).rev() {
        for x in (0..n).rev() {
            let i = y * n + x;
            let mut best = d[i];
            if x + 1 < n {
                best = best.min(d[i + 1] + 3);
            }
            if y + 1 < n {
                best = best.min(d[i + n] + 3);
                if x + 1 < n {
                    best = best.min(d[i + n + 1] + 4);
                }
                if x > 0 {
                    best = best.min(d[i + n - 1] + 4);
                }
            }
            d[i] = best;
        }
    }
    d.iter()
        .map(|&v| if v == 0 { 0.0 } else { v as f32 / 3.0 - 0.5 })
        .collect()
}

/// The outline closed by a disc of `radius` pixels (dilation, then erosion,
/// both by chamfer distance): concavities narrower than about two radii are
/// filled, the convex parts stay where they were. The result holds every
/// pixel of `inside`.
pub fn close(inside: &[bool], n: usize, radius: f32) -> Vec<bool> {
    let grown: Vec<bool> = distance_outside(inside, n)
        .iter()
        .map(|&d| d < radius)
        .collect();
    let beyond: Vec<bool> = grown.iter().map(|&g| !g).collect();
    distance_outside(&beyond, n)
        .iter()
        .zip(&grown)
        .zip(inside)
        .map(|((&d, &g), &i)| i || (g && d >= radius))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enclosed_holes_are_filled_open_bays_are_not() {
        // 5 × 5 ring with a hole in the middle, and a bay open to the border.
        #[rustfmt::skip]
        let mut inside = [
            false, false, false, false, false,
            false, true,  true,  true,  false,
            false, true,  false, true,  false,
            false, true,  false, true,  false,
            false, true,  false, true,  false,
        ]
        .to_vec();
        fill_enclosed(&mut inside, 5);
        // The bay (column 2, rows 2–4) reaches the bottom border: stays outside.
        assert!(!inside[12] && !inside[22]);
        let mut ring = vec![true; 25];
        for i in [0, 1, 2, 3, 4, 5, 9, 10, 14, 15, 19, 20, 21, 22, 23, 24] {
            ring[i] = false;
        }
        ring[12] = false;
        fill_enclosed(&mut ring, 5);
        assert!(ring[12]);
    }

    #[test]
    fn closing_fills_a_notch_and_keeps_a_disc() {
        // A disc of radius 12 px on 40 × 40 with a 4 px wide, 8 px deep notch
        // cut into its top: closing by 4 px fills the notch; the disc's own
        // outline does not move.
        let n = 40;
        let disc = |x: usize, y: usize| {
            let (dx, dy) = (x as f32 - 19.5, y as f32 - 19.5);
            dx * dx + dy * dy < 144.0
        };
        let notch = |x: usize, y: usize| (18..22).contains(&x) && y < 16;
        let inside: Vec<bool> = (0..n * n)
            .map(|i| disc(i % n, i / n) && !notch(i % n, i / n))
            .collect();
        let closed = close(&inside, n, 4.0);
        for y in 10..16 {
            for x in 18..22 {
                assert!(closed[y * n + x], "notch pixel ({x}, {y}) not filled");
            }
        }
        let added = (0..n * n)
            .filter(|&i| closed[i] && !inside[i] && !notch(i % n, i / n))
            .count();
        assert!(added <= 4, "{added} pixels added outside the notch");
        assert!(inside.iter().zip(&closed).all(|(&a, &b)| !a || b));
    }

    #[test]
    fn chamfer_distance_matches_hand_values() {
        // One inside pixel at (2, 2) of 7 × 7: straight neighbours 3/3 − 0.5
        // = 0.5, diagonal 4/3 − 0.5 = 0.8333, two steps straight 6/3 − 0.5 = 1.5.
        let mut inside = vec![false; 49];
        inside[2 * 7 + 2] = true;
        let d = distance_outside(&inside, 7);
        assert_eq!(d[2 * 7 + 2], 0.0);
        assert!((d[2 * 7 + 3] - 0.5).abs() < 1e-6);
        assert!((d[3 * 7 + 3] - 0.833_333).abs() < 1e-5);
        assert!((d[2 * 7 + 4] - 1.5).abs() < 1e-6);
    }
}
