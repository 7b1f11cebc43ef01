//! The views each method draws from an image: augmentation recipes for
//! grayscale MRI (no hue or saturation: crop, flip, small rotation,
//! brightness/contrast, blur, solarisation), built from the shared
//! [`AugmentConfig::ssl`] so every method uses one pipeline.

use super::SslSection;
use crate::data::augment::AugmentConfig;
use crate::data::loader::ViewSpec;

/// The first view's augmentation, and every further view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRecipe {
    pub first: AugmentConfig,
    pub extra: Vec<ViewSpec>,
}

impl ViewRecipe {
    /// The recipe with the `[ssl]` section's view settings applied to every
    /// view (solarisation off, other intensity jitter) and to the full-size
    /// views (the smallest crop area).
    pub fn adjusted(mut self, ssl: &SslSection) -> ViewRecipe {
        // The first view is always full size; the extra views of the largest
        // side are the other global ones (DINO's local crops are smaller).
        let global_side = self.extra.iter().map(|v| v.size).max();
        let crop = |a: &mut AugmentConfig| {
            if let Some(min) = ssl.global_crop_min {
                a.crop_scale.0 = min;
                a.crop_scale.1 = a.crop_scale.1.max(min);
            }
        };
        crop(&mut self.first);
        for view in &mut self.extra {
            if Some(view.size) == global_side {
                crop(&mut view.augment);
            }
        }
        let adjust = |a: &mut AugmentConfig| {
            if !ssl.solarize {
                a.solarize_p = 0.0;
            }
            if let Some(b) = ssl.brightness {
                a.brightness = b;
            }
            if let Some(c) = ssl.contrast {
                a.contrast = c;
            }
        };
        adjust(&mut self.first);
        for view in &mut self.extra {
            adjust(&mut view.augment);
        }
        self
    }
}

/// The references' blur at 224²: σ from 0.1 to 2.0 px (SimCLR, Chen et al.
/// 2020, Appendix A: a kernel of 10 % of the image side, σ ∈ [0.1, 2.0];
/// BYOL and DINO use the same). The blur is scaled with the view's side, and
/// off at 32² and below, where SimCLR's own CIFAR-10 recipe has none
/// (Appendix B.9): blur at a fixed pixel size removes proportionally more of
/// a small image, the small-lesion texture few labels must separate.
const REFERENCE_BLUR_SIGMA: (f64, f64) = (0.1, 2.0);
const REFERENCE_SIDE: f64 = 224.0;
const NO_BLUR_AT_OR_BELOW: i64 = 32;

/// `augment` with its blur scaled to a view of `size`² (see above).
pub fn blur_for_size(mut augment: AugmentConfig, size: i64) -> AugmentConfig {
    if size <= NO_BLUR_AT_OR_BELOW {
        augment.blur_p = 0.0;
        augment.blur_sigma = (0.0, 0.0);
    } else {
        let scale = size as f64 / REFERENCE_SIDE;
        augment.blur_sigma = (
            REFERENCE_BLUR_SIGMA.0 * scale,
            REFERENCE_BLUR_SIGMA.1 * scale,
        );
    }
    augment
}

impl ViewRecipe {
    /// Every view's blur scaled to its size; the first view is `size`².
    fn blur_scaled(mut self, size: i64) -> ViewRecipe {
        self.first = blur_for_size(self.first, size);
        for view in &mut self.extra {
            view.augment = blur_for_size(view.augment, view.size);
        }
        self
    }
}

/// A global view with the given blur and solarisation probabilities (BYOL's
/// asymmetric pair: blur always on the first view, solarisation only on the
/// second; Grill et al. 2020, Table 6).
pub fn global(blur_p: f64, solarize_p: f64) -> AugmentConfig {
    AugmentConfig {
        blur_p,
        solarize_p,
        ..AugmentConfig::ssl()
    }
}

/// Two views with the same augmentation (SimCLR). No solarisation: the
/// original SimCLR never solarises (Chen et al. 2020, Appendix A: crop,
/// flip, colour distortion, blur).
pub fn symmetric_pair(size: i64) -> ViewRecipe {
    let view = AugmentConfig {
        solarize_p: 0.0,
        ..AugmentConfig::ssl()
    };
    ViewRecipe {
        first: view,
        extra: vec![ViewSpec {
            augment: view,
            size,
        }],
    }
    .blur_scaled(size)
}

/// BYOL's asymmetric pair (also MoCo v3's).
pub fn asymmetric_pair(size: i64) -> ViewRecipe {
    ViewRecipe {
        first: global(1.0, 0.0),
        extra: vec![ViewSpec {
            augment: global(0.1, 0.2),
            size,
        }],
    }
    .blur_scaled(size)
}

/// DINO's multi-crop: two global crops of 40–100 % of the area at full
/// size, `locals` crops of 5–40 % at `fraction` of the size (96/224 in the
/// paper; at least 16 px so the ResNet still has a 1×1 map).
pub fn multi_crop(size: i64, locals: usize, fraction: f64) -> ViewRecipe {
    let global_crop = |blur_p, solarize_p| AugmentConfig {
        crop_scale: (0.4, 1.0),
        ..global(blur_p, solarize_p)
    };
    let local_size = ((size as f64 * fraction).round() as i64).max(16);
    let mut extra = vec![ViewSpec {
        augment: global_crop(0.1, 0.2),
        size,
    }];
    extra.extend((0..locals).map(|_| ViewSpec {
        augment: AugmentConfig {
            crop_scale: (0.05, 0.4),
            ..global(0.5, 0.0)
        },
        size: local_size,
    }));
    ViewRecipe {
        first: global_crop(1.0, 0.0),
        extra,
    }
    .blur_scaled(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simclr_never_solarises() {
        let simclr = symmetric_pair(224);
        assert_eq!(simclr.first.solarize_p, 0.0);
        assert_eq!(simclr.extra[0].augment.solarize_p, 0.0);
    }

    #[test]
    fn blur_follows_the_view_size() {
        // 224²: the references' σ ∈ [0.1, 2.0] px; 64²: × 64/224, i.e.
        // [0.0286, 0.571] (hand-computed); 32²: none.
        let at = |size: i64| asymmetric_pair(size).first;
        assert_eq!(at(224).blur_sigma, (0.1, 2.0));
        let (lo, hi) = at(64).blur_sigma;
        assert!((lo - 0.028_571).abs() < 1e-5 && (hi - 0.571_43).abs() < 1e-4);
        assert_eq!((at(32).blur_p, at(32).blur_sigma), (0.0, (0.0, 0.0)));
        // DINO's local crops blur at their own (smaller) size: 96² → × 96/224.
        let dino = multi_crop(224, 2, 96.0 / 224.0);
        let (_, local_hi) = dino.extra[1].augment.blur_sigma;
        assert!((local_hi - 2.0 * 96.0 / 224.0).abs() < 1e-9);
    }

    #[test]
    fn recipes_and_their_adjustment() {
        let byol = asymmetric_pair(64);
        assert_eq!((byol.first.blur_p, byol.first.solarize_p), (1.0, 0.0));
        assert_eq!(
            (
                byol.extra[0].augment.blur_p,
                byol.extra[0].augment.solarize_p
            ),
            (0.1, 0.2)
        );
        let dino = multi_crop(224, 6, 96.0 / 224.0);
        assert_eq!(dino.extra.len(), 7);
        assert_eq!(dino.extra[1].size, 96);
        assert_eq!(dino.extra[1].augment.crop_scale, (0.05, 0.4));
        assert_eq!(
            multi_crop(32, 2, 96.0 / 224.0).extra[1].size,
            16,
            "at least 16 px"
        );
        let ssl = SslSection {
            solarize: false,
            contrast: Some(0.1),
            ..SslSection::default()
        };
        let adjusted = byol.adjusted(&ssl);
        assert_eq!(adjusted.extra[0].augment.solarize_p, 0.0);
        assert_eq!(adjusted.first.contrast, 0.1);
        assert_eq!(
            adjusted.first.brightness,
            AugmentConfig::ssl().brightness,
            "untouched"
        );
    }

    #[test]
    fn global_crop_min_sets_the_full_size_crops_only() {
        let ssl = SslSection {
            global_crop_min: Some(0.9),
            ..SslSection::default()
        };
        // DINO at 224² with two local crops of 96 px: globals 40–100 % → 90–100 %,
        // locals keep 5–40 %.
        let dino = multi_crop(224, 2, 96.0 / 224.0).adjusted(&ssl);
        assert_eq!(dino.first.crop_scale, (0.9, 1.0));
        assert_eq!(dino.extra[0].augment.crop_scale, (0.9, 1.0));
        assert_eq!(dino.extra[1].augment.crop_scale, (0.05, 0.4));
        assert_eq!(dino.extra[2].augment.crop_scale, (0.05, 0.4));
        // Unset: the method's own range.
        let unset = multi_crop(224, 0, 96.0 / 224.0).adjusted(&SslSection::default());
        assert_eq!(unset.first.crop_scale, (0.4, 1.0));
        let bad = SslSection {
            global_crop_min: Some(0.0),
            ..SslSection::default()
        };
        assert!(bad.problems().iter().any(|p| p.contains("global_crop_min")));
    }
}
