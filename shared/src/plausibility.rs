//! Is this decoded image plausibly one brain MRI slice? Cheap checks on the
//! luminance, before any model is asked, for inputs the model's own
//! out-of-distribution score misses: documents and photographs (no dark
//! air around a head), flat or two-tone images (no tonal range), strips
//! (extreme aspect ratios) and montages (several heads side by side). Each check is deliberately loose:
//! a slice with burnt-in text, a bias field or an odd window must pass (see
//! the false-doubt rate measured on clean slices in the README); what fails
//! goes to REVIEW, never to an error.

use crate::decode::Luminance;

/// Measurements behind the verdict (for logs and for tuning).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SliceStats {
    /// 99th percentile of the luminance (the "bright" reference).
    pub p99: f32,
    /// Largest median of the four sides (2 % deep each) relative to `p99`.
    pub border_level: f32,
    /// Fraction of pixels above 10 % of `p99`.
    pub foreground: f32,
    /// Occupied bins (of 64) of the foreground's histogram.
    pub tonal_bins: u32,
    /// Foreground blobs of ≥ 2 % of the image not enclosed by another one.
    pub separate_blobs: u32,
}

// Limits of the checks, each well outside what 323 clean slices (the sample
// scans and the demo's phantom test split) reach: side medians ≤ 0.091 of
// the bright level, foreground 31–72 %, ≥ 52 tonal bins, one blob. A 2 × 2
// montage whose heads touch has 3 blobs.
const MAX_BORDER_LEVEL: f32 = 0.25;
const FOREGROUND_RANGE: std::ops::RangeInclusive<f32> = 0.03..=0.97;
const MIN_TONAL_BINS: u32 = 8;
const MAX_SEPARATE_BLOBS: u32 = 2;
/// Longer side / shorter side: MRI fields of view are square or close to it.
const MAX_ASPECT: u32 = 3;
/// Side of the coarse grid the blobs are counted on.
const GRID: usize = 64;

/// The measurements; `None` for an image too small to measure (< 8 px a side)
/// or without any signal.
pub fn slice_stats(lum: &Luminance) -> Option<SliceStats> {
    let (w, h) = (lum.width as usize, lum.height as usize);
    if w < 8 || h < 8 || lum.data.len() != w.checked_mul(h)? {
        return None;
    }
    let p99 = percentile(&lum.data, 0.99);
    if !(p99.is_finite() && p99 > 0.0) {
        return None;
    }
    // Each side of the field of view on its own: air surrounds a head on
    // all four (a damaged JPEG's grey tail or a photo's bright edge fails).
    let ring_x = (w / 50).max(1);
    let ring_y = (h / 50).max(1);
    let rows = |range: std::ops::Range<usize>| -> Vec<f32> {
        lum.data
            .chunks_exact(w)
            .skip(range.start)
            .take(range.len())
            .flatten()
            .copied()
            .collect()
    };
    let columns = |range: std::ops::Range<usize>| -> Vec<f32> {
        lum.data
            .chunks_exact(w)
            .flat_map(|row| row.get(range.clone()).unwrap_or_default().iter().copied())
            .collect()
    };
    let border_level = [
        rows(0..ring_y),
        rows(h - ring_y..h),
        columns(0..ring_x),
        columns(w - ring_x..w),
    ]
    .iter()
    .map(|side| percentile(side, 0.5))
    .fold(0f32, f32::max)
        / p99;
    let cut = 0.1 * p99;
    let foreground_values: Vec<f32> = lum.data.iter().copied().filter(|&v| v > cut).collect();
    let foreground = foreground_values.len() as f32 / lum.data.len() as f32;
    let mut bins = [false; 64];
    for v in &foreground_values {
        let bin = ((v / p99).clamp(0.0, 1.0) * 63.0).round() as usize;
        if let Some(b) = bins.get_mut(bin) {
            *b = true;
        }
    }
    let tonal_bins = bins.iter().filter(|&&b| b).count() as u32;
    Some(SliceStats {
        p99,
        border_level,
        foreground,
        tonal_bins,
        separate_blobs: separate_blobs(lum, cut),
    })
}

/// The device's input checks in order — damaged encoded data (`bytes`,
/// leniently decoded to `lum`), then plausibility — and why the input is
/// doubtful, or `None`.
pub fn input_doubt(bytes: &[u8], lum: &Luminance) -> Option<String> {
    crate::integrity::damage(bytes, lum).or_else(|| implausible(lum))
}

/// Why `lum` is not plausibly one brain slice, or `None` when it is.
pub fn implausible(lum: &Luminance) -> Option<String> {
    let (long, short) = (lum.width.max(lum.height), lum.width.min(lum.height).max(1));
    if long > MAX_ASPECT.saturating_mul(short) {
        return Some(format!(
            "a {}×{} image is no MRI field of view",
            lum.width, lum.height
        ));
    }
    let Some(s) = slice_stats(lum) else {
        return Some("no measurable image content".to_string());
    };
    if s.border_level > MAX_BORDER_LEVEL {
        return Some(format!(
            "no dark background around the head (border at {:.0} % of the bright level)",
            100.0 * s.border_level
        ));
    }
    if !FOREGROUND_RANGE.contains(&s.foreground) {
        return Some(format!(
            "{:.0} % of the image is foreground: not a head in a field of view",
            100.0 * s.foreground
        ));
    }
    if s.tonal_bins < MIN_TONAL_BINS {
        return Some(format!(
            "only {} intensity levels of 64: not an MRI slice",
            s.tonal_bins
        ));
    }
    if s.separate_blobs > MAX_SEPARATE_BLOBS {
        return Some(format!(
            "{} separate heads or objects: a montage, not one slice",
            s.separate_blobs
        ));
    }
    None
}

/// The `q` quantile of luminance values in [0, 1], from a 4096-bin
/// histogram (linear time: slices are up to 16 megapixels); accurate to one
/// bin (2.4e-4), which is all a plausibility check needs.
fn percentile(values: &[f32], q: f32) -> f32 {
    const BINS: usize = 4096;
    let mut histogram = [0u32; BINS];
    let mut count = 0u64;
    for &v in values {
        if v.is_finite() {
            let bin = (v.clamp(0.0, 1.0) * (BINS - 1) as f32).round() as usize;
            if let Some(h) = histogram.get_mut(bin) {
                *h += 1;
                count += 1;
            }
        }
    }
    if count == 0 {
        return 0.0;
    }
    let target = ((count - 1) as f64 * f64::from(q)).round() as u64;
    let mut seen = 0u64;
    for (bin, &h) in histogram.iter().enumerate() {
        seen += u64::from(h);
        if seen > target {
            return bin as f32 / (BINS - 1) as f32;
        }
    }
    1.0
}

/// Foreground blobs on a coarse grid (max-pooled, so thin gaps between
/// montage tiles survive as gaps only when wider than a cell), counting
/// those of ≥ 2 % of the grid whose bounding box lies inside no larger one
/// (a scalp ring enclosing a brain is one head).
fn separate_blobs(lum: &Luminance, cut: f32) -> u32 {
    let (w, h) = (lum.width as usize, lum.height as usize);
    let mut grid = vec![false; GRID * GRID];
    for (y, row) in lum.data.chunks_exact(w).enumerate() {
        let gy = y * GRID / h;
        for (x, &v) in row.iter().enumerate() {
            if v > cut {
                if let Some(cell) = grid.get_mut(gy * GRID + x * GRID / w) {
                    *cell = true;
                }
            }
        }
    }
    // 4-connected components by flood fill: (cells, min x, min y, max x, max y).
    let mut label = vec![0u32; GRID * GRID];
    let mut blobs: Vec<(usize, usize, usize, usize, usize)> = Vec::new();
    for start in 0..grid.len() {
        if !grid[start] || label[start] != 0 {
            continue;
        }
        let id = blobs.len() as u32 + 1;
        let mut stack = vec![start];
        label[start] = id;
        let mut blob = (0, GRID, GRID, 0, 0);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % GRID, i / GRID);
            blob = (
                blob.0 + 1,
                blob.1.min(x),
                blob.2.min(y),
                blob.3.max(x),
                blob.4.max(y),
            );
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < GRID).then(|| i + 1),
                (y > 0).then(|| i - GRID),
                (y + 1 < GRID).then(|| i + GRID),
            ];
            for n in neighbours.into_iter().flatten() {
                if grid[n] && label[n] == 0 {
                    label[n] = id;
                    stack.push(n);
                }
            }
        }
        blobs.push(blob);
    }
    let min_cells = GRID * GRID / 50;
    let large: Vec<_> = blobs.into_iter().filter(|b| b.0 >= min_cells).collect();
    let inside = |a: &(usize, usize, usize, usize, usize),
                  b: &(usize, usize, usize, usize, usize)| {
        a.1 >= b.1 && a.2 >= b.2 && a.3 <= b.3 && a.4 <= b.4 && a.0 < b.0
    };
    large
        .iter()
        .filter(|a| !large.iter().any(|b| inside(a, b)))
        .count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image from a function of (x, y) in [0, 1]².
    fn image(w: u32, h: u32, f: impl Fn(f32, f32) -> f32) -> Luminance {
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32))
            .collect();
        Luminance::new(w, h, data)
    }

    /// A textured ellipse ("head") on black, with a bright rim.
    fn head(cx: f32, cy: f32, r: f32) -> impl Fn(f32, f32) -> f32 {
        move |x, y| {
            let d = (((x - cx) / r).powi(2) + ((y - cy) / (1.2 * r)).powi(2)).sqrt();
            if d > 1.0 {
                0.01
            } else if d > 0.9 {
                0.9
            } else {
                0.3 + 0.4 * (0.5 + 0.5 * (20.0 * x).sin() * (17.0 * y).cos())
            }
        }
    }

    #[test]
    fn a_head_on_a_dark_field_is_plausible() {
        let lum = image(128, 128, head(0.5, 0.5, 0.38));
        let s = slice_stats(&lum).unwrap();
        assert!(s.border_level < 0.05, "{s:?}");
        assert_eq!(s.separate_blobs, 1, "{s:?}");
        assert_eq!(implausible(&lum), None, "{s:?}");
    }

    #[test]
    fn a_bright_page_is_not_a_slice() {
        // White paper with dark text lines.
        let lum = image(
            128,
            128,
            |_, y| if (y * 20.0).fract() < 0.1 { 0.1 } else { 0.95 },
        );
        let why = implausible(&lum).unwrap();
        assert!(why.contains("dark background"), "{why}");
    }

    #[test]
    fn a_two_tone_image_is_not_a_slice() {
        // A white disc on black: dark border, one blob, but two levels.
        let lum = image(128, 128, |x, y| {
            if (x - 0.5).powi(2) + (y - 0.5).powi(2) < 0.1 {
                1.0
            } else {
                0.0
            }
        });
        let why = implausible(&lum).unwrap();
        assert!(why.contains("intensity levels"), "{why}");
    }

    #[test]
    fn a_montage_of_slices_is_not_one_slice() {
        // 3 × 3 heads, as on a contact sheet.
        let lum = image(192, 192, |x, y| {
            let (tx, ty) = ((x * 3.0).fract(), (y * 3.0).fract());
            head(0.5, 0.5, 0.36)(tx, ty)
        });
        let s = slice_stats(&lum).unwrap();
        assert_eq!(s.separate_blobs, 9, "{s:?}");
        let why = implausible(&lum).unwrap();
        assert!(why.contains("montage"), "{why}");
    }

    #[test]
    fn degenerate_images_are_doubtful_not_panics() {
        assert!(implausible(&image(4, 4, |_, _| 0.5)).is_some());
        assert!(implausible(&image(64, 64, |_, _| 0.0)).is_some());
        assert!(implausible(&image(512, 8, head(0.5, 0.5, 0.4))).is_some());
    }

    #[test]
    fn percentiles_by_hand() {
        let v: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
        assert!((percentile(&v, 0.5) - 0.5).abs() < 3e-4);
        assert!((percentile(&v, 0.99) - 0.99).abs() < 3e-4);
        assert_eq!(percentile(&[f32::NAN], 0.5), 0.0);
        // 0.25 × 4095 = 1023.75 → bin 1024.
        assert_eq!(percentile(&[0.25, 0.25, 1.0], 0.0), 1024.0 / 4095.0);
    }
}
