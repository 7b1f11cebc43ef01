//! The views each method draws from an image: augmentation recipes for
//! grayscale MRI (no hue or saturation: crop, flip, small rotation,
//! brightness/contrast, blur, solarisation), built from the shared
//! [`AugmentConfig::ssl`] so every method uses one pipeline.

use crate::data::augment::AugmentConfig;
use crate::data::loader::ViewSpec;

/// The first view's augmentation, and every further view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRecipe {
    pub first: AugmentConfig,
    pub extra: Vec<ViewSpec>,
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

/// Two views with the same augmentation (SimCLR).
pub fn symmetric_pair(size: i64) -> ViewRecipe {
    let view = AugmentConfig::ssl();
    ViewRecipe {
        first: view,
        extra: vec![ViewSpec {
            augment: view,
            size,
        }],
    }
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
}
