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
    /// view (solarisation off, other intensity jitter).
    pub fn adjusted(mut self, ssl: &SslSection) -> ViewRecipe {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
