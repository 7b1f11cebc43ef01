//! The preprocessing pipeline: luminance → optional brain crop → square →
//! resize → normalise → `1×3×S×S` CHW f32 (gray replicated to three channels).

use crate::decode::{decode_luminance, DecodeLimits, Luminance};
use crate::error::PreprocessError;
use crate::resize::resize_triangle;
use crate::spec::{AspectPolicy, BrainCrop, PreprocessSpec, ResizeFilter};

/// A model input: `1×3×size×size`, CHW, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessed {
    pub size: u32,
    pub data: Vec<f32>,
}

impl Preprocessed {
    pub fn shape(&self) -> [usize; 4] {
        let s = self.size as usize;
        [1, 3, s, s]
    }
}

/// Decodes and preprocesses an image file's bytes.
pub fn preprocess_bytes(
    bytes: &[u8],
    spec: &PreprocessSpec,
    limits: DecodeLimits,
) -> Result<Preprocessed, PreprocessError> {
    spec.validate()?;
    let lum = decode_luminance(bytes, limits)?;
    preprocess_luminance(&lum, spec)
}

/// Preprocesses an already decoded luminance plane.
pub fn preprocess_luminance(
    lum: &Luminance,
    spec: &PreprocessSpec,
) -> Result<Preprocessed, PreprocessError> {
    let plane = input_plane(lum, spec)?;
    Ok(normalize_plane(&plane, spec))
}

/// The contract up to (not including) normalisation: the S×S luminance plane
/// in [0, 1] after crop, square and resize. Training caches these planes and
/// augments them before [`normalize_plane`].
pub fn input_plane(lum: &Luminance, spec: &PreprocessSpec) -> Result<Vec<f32>, PreprocessError> {
    let region = input_geometry(lum, spec)?.crop;
    let cropped = region.extract(lum);
    let (plane, w, h) = match spec.aspect {
        AspectPolicy::PadToSquare => {
            let side = region.w.max(region.h);
            (pad_to_square(&cropped, region.w, region.h), side, side)
        }
        AspectPolicy::Stretch => (cropped, region.w, region.h),
    };
    let s = spec.input_size as usize;
    Ok(match spec.resize {
        ResizeFilter::Triangle => resize_triangle(&plane, w, h, s, s),
    })
}

/// Replicates an S×S plane to three channels and normalises each with the
/// spec's mean and std: `(v − mean) / std`, in f32.
pub fn normalize_plane(plane: &[f32], spec: &PreprocessSpec) -> Preprocessed {
    let mut data = Vec::with_capacity(3 * plane.len());
    for c in 0..3 {
        let (mean, std) = (spec.mean[c], spec.std[c]);
        data.extend(plane.iter().map(|v| (v - mean) / std));
    }
    Preprocessed {
        size: spec.input_size,
        data,
    }
}

/// Where the model input's pixels come from in the original image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputGeometry {
    /// The crop (the whole frame without a brain crop).
    pub crop: CropBox,
    /// Size of the frame that is resized to S×S (the padded square, or the crop when stretching).
    pub frame_w: usize,
    pub frame_h: usize,
    /// Offset of the crop inside that frame.
    pub offset_x: usize,
    pub offset_y: usize,
    pub input_size: u32,
}

impl InputGeometry {
    /// Continuous model-input coordinates (pixel-centre convention, S×S) of
    /// the original pixel (x, y); `None` outside the crop.
    pub fn to_input(&self, x: usize, y: usize) -> Option<(f32, f32)> {
        let c = self.crop;
        if x < c.x || y < c.y || x >= c.x + c.w || y >= c.y + c.h {
            return None;
        }
        let s = self.input_size as f32;
        let u = ((x - c.x + self.offset_x) as f32 + 0.5) * s / self.frame_w as f32 - 0.5;
        let v = ((y - c.y + self.offset_y) as f32 + 0.5) * s / self.frame_h as f32 - 0.5;
        Some((u, v))
    }
}

/// The crop and framing the contract applies to a luminance plane.
pub fn input_geometry(
    lum: &Luminance,
    spec: &PreprocessSpec,
) -> Result<InputGeometry, PreprocessError> {
    spec.validate()?;
    if lum.width == 0 || lum.height == 0 {
        return Err(PreprocessError::ZeroSized {
            width: lum.width,
            height: lum.height,
        });
    }
    let crop = match spec.crop {
        Some(crop) => brain_box(lum, crop),
        None => CropBox {
            x: 0,
            y: 0,
            w: lum.width as usize,
            h: lum.height as usize,
        },
    };
    let (frame_w, frame_h, offset_x, offset_y) = match spec.aspect {
        AspectPolicy::PadToSquare => {
            let side = crop.w.max(crop.h);
            (side, side, (side - crop.w) / 2, (side - crop.h) / 2)
        }
        AspectPolicy::Stretch => (crop.w, crop.h, 0, 0),
    };
    Ok(InputGeometry {
        crop,
        frame_w,
        frame_h,
        offset_x,
        offset_y,
        input_size: spec.input_size,
    })
}

/// A rectangle inside an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

impl CropBox {
    fn extract(&self, lum: &Luminance) -> Vec<f32> {
        let width = lum.width as usize;
        let mut out = Vec::with_capacity(self.w * self.h);
        for y in self.y..self.y + self.h {
            out.extend_from_slice(&lum.data[y * width + self.x..y * width + self.x + self.w]);
        }
        out
    }
}

/// Bounding box of pixels brighter than `threshold × max`, grown by the margin.
/// A blank image (max ≤ 0, or nothing above threshold) keeps its full frame.
pub fn brain_box(lum: &Luminance, crop: BrainCrop) -> CropBox {
    let (width, height) = (lum.width as usize, lum.height as usize);
    let full = CropBox {
        x: 0,
        y: 0,
        w: width,
        h: height,
    };
    let max = lum.data.iter().copied().fold(0f32, f32::max);
    if max <= 0.0 {
        return full;
    }
    let cut = crop.threshold * max;
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0usize, 0usize);
    for y in 0..height {
        let row = &lum.data[y * width..(y + 1) * width];
        for (x, &v) in row.iter().enumerate() {
            if v > cut {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
        }
    }
    if x0 == usize::MAX {
        return full;
    }
    let long = (x1 - x0 + 1).max(y1 - y0 + 1);
    let margin = (crop.margin as f64 * long as f64).round() as usize;
    let x0 = x0.saturating_sub(margin);
    let y0 = y0.saturating_sub(margin);
    let x1 = (x1 + margin).min(width - 1);
    let y1 = (y1 + margin).min(height - 1);
    CropBox {
        x: x0,
        y: y0,
        w: x1 - x0 + 1,
        h: y1 - y0 + 1,
    }
}

fn pad_to_square(src: &[f32], w: usize, h: usize) -> Vec<f32> {
    let side = w.max(h);
    if side == w && side == h {
        return src.to_vec();
    }
    let (ox, oy) = ((side - w) / 2, (side - h) / 2);
    let mut out = vec![0f32; side * side];
    for y in 0..h {
        out[(y + oy) * side + ox..(y + oy) * side + ox + w]
            .copy_from_slice(&src[y * w..(y + 1) * w]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain_spec(size: u32) -> PreprocessSpec {
        let mut spec = PreprocessSpec::with_input_size(size);
        spec.crop = None;
        spec.mean = [0.0; 3];
        spec.std = [1.0; 3];
        spec
    }

    #[test]
    fn brain_box_finds_the_bright_region_and_adds_the_margin() {
        // 10×6 image, bright block at x 3..=5, y 2..=3.
        let mut data = vec![0.0f32; 60];
        for y in 2..=3 {
            for x in 3..=5 {
                data[y * 10 + x] = 1.0;
            }
        }
        data[0] = 0.04; // below 0.05 × max: background noise
        let lum = Luminance::new(10, 6, data);
        let tight = brain_box(
            &lum,
            BrainCrop {
                threshold: 0.05,
                margin: 0.0,
            },
        );
        assert_eq!(
            tight,
            CropBox {
                x: 3,
                y: 2,
                w: 3,
                h: 2
            }
        );
        // margin 0.34 × long side 3 = 1.02 → 1 pixel each side.
        let grown = brain_box(
            &lum,
            BrainCrop {
                threshold: 0.05,
                margin: 0.34,
            },
        );
        assert_eq!(
            grown,
            CropBox {
                x: 2,
                y: 1,
                w: 5,
                h: 4
            }
        );
        // margin 1.0 × 3 = 3: x 0..=8; y clamps to the frame 0..=5.
        let all = brain_box(
            &lum,
            BrainCrop {
                threshold: 0.05,
                margin: 1.0,
            },
        );
        assert_eq!(
            all,
            CropBox {
                x: 0,
                y: 0,
                w: 9,
                h: 6
            }
        );
    }

    #[test]
    fn blank_image_keeps_full_frame() {
        let lum = Luminance::new(4, 3, vec![0.0; 12]);
        let b = brain_box(
            &lum,
            BrainCrop {
                threshold: 0.05,
                margin: 0.1,
            },
        );
        assert_eq!(
            b,
            CropBox {
                x: 0,
                y: 0,
                w: 4,
                h: 3
            }
        );
    }

    #[test]
    fn golden_values_pad_resize_normalise() {
        // 2×1 image [0.2, 0.6] → pad to 2×2 with the row at y = 0 (offset
        // floor(1/2) = 0) → [[0.2, 0.6], [0, 0]] → resize to 1×1: scale 2,
        // every tap weight equal → mean 0.2 → normalise (0.2 − 0.1) / 0.5 = 0.2
        // on channel 0, (0.2 − 0.2) / 0.25 = 0 on channel 1, (0.2 − 0.0) / 2 = 0.1.
        let lum = Luminance::new(2, 1, vec![0.2, 0.6]);
        let mut spec = plain_spec(1);
        spec.mean = [0.1, 0.2, 0.0];
        spec.std = [0.5, 0.25, 2.0];
        let out = preprocess_luminance(&lum, &spec).unwrap();
        assert_eq!(out.shape(), [1, 3, 1, 1]);
        let expect = [0.2f32, 0.0, 0.1];
        for (a, b) in out.data.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{:?}", out.data);
        }
    }

    #[test]
    fn golden_values_with_crop_and_default_normalisation() {
        // 4×4 image, bright 2×2 block in the middle at 0.8, background 0.
        // Crop (margin 0) → the 2×2 block → resize to 1×1 → 0.8.
        // ImageNet normalisation: (0.8 − 0.485) / 0.229, (0.8 − 0.456) / 0.224, (0.8 − 0.406) / 0.225.
        let mut data = vec![0.0f32; 16];
        for (y, x) in [(1, 1), (1, 2), (2, 1), (2, 2)] {
            data[y * 4 + x] = 0.8;
        }
        let lum = Luminance::new(4, 4, data);
        let mut spec = PreprocessSpec::with_input_size(1);
        spec.crop = Some(BrainCrop {
            threshold: 0.05,
            margin: 0.0,
        });
        let out = preprocess_luminance(&lum, &spec).unwrap();
        let expect = [
            (0.8 - 0.485) / 0.229,
            (0.8 - 0.456) / 0.224,
            (0.8 - 0.406) / 0.225,
        ];
        for (a, b) in out.data.iter().zip(expect) {
            assert!((a - b).abs() < 1e-5, "{:?}", out.data);
        }
    }

    #[test]
    fn stretch_policy_scales_axes_independently() {
        let lum = Luminance::new(4, 1, vec![0.0, 1.0, 2.0, 3.0]);
        let mut spec = plain_spec(2);
        spec.aspect = AspectPolicy::Stretch;
        let out = preprocess_luminance(&lum, &spec).unwrap();
        // Width 4 → 2 as in the resize golden test; height 1 → 2 repeats the row.
        let row = [5.0 / 7.0, 16.0 / 7.0];
        for c in 0..3 {
            for y in 0..2 {
                for (x, expected) in row.iter().enumerate() {
                    let v = out.data[c * 4 + y * 2 + x];
                    assert!((v - expected).abs() < 1e-6);
                }
            }
        }
    }

    #[test]
    fn channels_are_replicated_before_normalisation() {
        let lum = Luminance::new(3, 3, (0..9).map(|i| i as f32 / 8.0).collect());
        let out = preprocess_luminance(&lum, &plain_spec(3)).unwrap();
        assert_eq!(&out.data[0..9], &out.data[9..18]);
        assert_eq!(&out.data[0..9], &out.data[18..27]);
        assert_eq!(&out.data[0..9], &lum.data[..]);
    }

    #[test]
    fn geometry_maps_original_pixels_into_the_input_frame() {
        // 10×6 image, bright block x 3..=5, y 2..=3 → crop 3×2 at (3, 2), padded
        // to 3×3 with the rows at offset floor(1/2) = 0, resized to S = 6.
        let mut data = vec![0.0f32; 60];
        for y in 2..=3 {
            for x in 3..=5 {
                data[y * 10 + x] = 1.0;
            }
        }
        let lum = Luminance::new(10, 6, data);
        let mut spec = PreprocessSpec::with_input_size(6);
        spec.crop = Some(BrainCrop {
            threshold: 0.05,
            margin: 0.0,
        });
        let g = input_geometry(&lum, &spec).unwrap();
        assert_eq!((g.frame_w, g.frame_h, g.offset_x, g.offset_y), (3, 3, 0, 0));
        assert_eq!(g.to_input(0, 0), None);
        // Pixel (3, 2) is the crop's first pixel: centre 0.5 × 6/3 − 0.5 = 0.5.
        assert_eq!(g.to_input(3, 2), Some((0.5, 0.5)));
        assert_eq!(g.to_input(5, 3), Some((4.5, 2.5)));
    }

    #[test]
    fn zero_sized_luminance_is_an_error() {
        let lum = Luminance::new(0, 3, vec![]);
        assert!(matches!(
            preprocess_luminance(&lum, &plain_spec(4)),
            Err(PreprocessError::ZeroSized { .. })
        ));
    }
}
