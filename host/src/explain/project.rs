//! Putting a layer-resolution map where it belongs: on the model input
//! (S×S, for perturbation metrics) or on the original slice through the
//! preprocessing geometry (crop, pad, resize), so an overlay lies on the
//! pixels the radiographer sees. Bilinear, pixel-centre convention, edges
//! clamped (as `F.interpolate(..., align_corners=False)`).

use tumorxai_shared::InputGeometry;

/// Bilinear sample of `map` (h×w, row-major) at continuous map coordinates.
pub fn bilinear(map: &[f32], h: usize, w: usize, x: f32, y: f32) -> f32 {
    if h == 0 || w == 0 || map.len() < h * w {
        return 0.0;
    }
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |xx: usize, yy: usize| map[yy * w + xx];
    let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
    let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Map coordinate of input coordinate `u` (S pixels ↔ n map cells).
fn to_map(u: f32, input: usize, cells: usize) -> f32 {
    (u + 0.5) * cells as f32 / input as f32 - 0.5
}

/// The map upsampled to the model input, S×S.
pub fn on_input(map: &[f32], h: usize, w: usize, s: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(s * s);
    for v in 0..s {
        for u in 0..s {
            out.push(bilinear(
                map,
                h,
                w,
                to_map(u as f32, s, w),
                to_map(v as f32, s, h),
            ));
        }
    }
    out
}

/// The map on the original slice (width × height); 0 outside the crop.
pub fn on_slice(
    map: &[f32],
    h: usize,
    w: usize,
    geometry: &InputGeometry,
    width: usize,
    height: usize,
) -> Vec<f32> {
    let s = geometry.input_size as usize;
    let mut out = vec![0f32; width * height];
    for y in 0..height {
        for x in 0..width {
            if let Some((u, v)) = geometry.to_input(x, y) {
                out[y * width + x] = bilinear(map, h, w, to_map(u, s, w), to_map(v, s, h));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_by_hand() {
        // 2×2 map [[0, 1], [2, 3]].
        let m = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(bilinear(&m, 2, 2, 0.0, 0.0), 0.0);
        assert_eq!(bilinear(&m, 2, 2, 0.5, 0.5), 1.5);
        assert_eq!(bilinear(&m, 2, 2, 1.0, 0.25), 1.5);
        // Clamped outside.
        assert_eq!(bilinear(&m, 2, 2, -3.0, 9.0), 2.0);
    }

    #[test]
    fn upsampling_matches_align_corners_false() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]),
        // size=4, mode="bilinear", align_corners=False)[0, 0, 0] =
        // [0.0, 0.25, 0.75, 1.0]; row 1 = [0.5, 0.75, 1.25, 1.5].
        let up = on_input(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4);
        assert_eq!(&up[..4], &[0.0, 0.25, 0.75, 1.0]);
        assert_eq!(&up[4..8], &[0.5, 0.75, 1.25, 1.5]);
    }
}
