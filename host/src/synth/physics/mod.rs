//! The physics phantom engine (`tumorxai synth --engine physics`): a second
//! source of phantom slices, independent of the painted engine by
//! construction. It shares only the anatomy (the MNI templates of
//! `synth::atlas`) and the dataset layout; tissue contrast, gadolinium,
//! lesions, head, acquisition and export are its own:
//!
//! 1. a study is drawn: slice level, subject pose (`anatomy.rs`), head
//!    build (`head.rs`), lesions as 3-D compartments (`placement.rs`,
//!    `lesions.rs`, `shapes.rs`), scanner and protocols (`scanner.rs`, `sequence.rs`),
//!    injection (`contrast.rs`);
//! 2. every voxel of a thick slice (three sub-planes across its thickness)
//!    becomes a mixture of tissues, each with T1, T2, T2*, PD at the
//!    scanner's field (`tissue.rs`) and, on T1C+, T1 shortened by its
//!    gadolinium concentration; the signal equation of the protocol gives
//!    the magnetisation, averaged over the sub-planes (partial volume);
//! 3. the receive coil, k-space truncation, motion and complex noise act as
//!    in a scanner (`acquisition.rs`), and the magnitude image is exported
//!    through a display window (`scanner.rs`) and JPEG-encoded.
//!
//! The classic reference for simulating MR images this way is BrainWeb
//! (Kwan, Evans & Pike, IEEE TMI 18 (1999) 1085–1097; Collins et al., IEEE
//! TMI 17 (1998) 463–468). Every image is a pure function of (seed, class,
//! index): its random streams are seeded from them alone.

pub mod acquisition;
pub mod anatomy;
pub mod contrast;
pub mod head;
pub mod lesions;
pub mod outline;
pub mod placement;
pub mod scanner;
pub mod sequence;
pub mod shapes;
pub mod tissue;

#[cfg(test)]
mod tests;

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tumorxai_shared::{ClassInfo, Family, Sequence, CLASS_NAMES};

use self::anatomy::{brain_mixture, sample_brain, BrainSample, Mixture, Pose};
use self::contrast::{shortened_t1_ms, Injection};
use self::head::{Head, Outside};
use self::lesions::Lesion;
use self::scanner::Scanner;
use self::sequence::Protocol;
use self::tissue::{table_at, Tissue};
use super::atlas::Atlas;
use super::render::{Phantom, TissueLabel};
use super::Generated;

/// Mixed into every seed, so that the two engines never share a stream.
const ENGINE_SALT: u64 = 0x5048_5953_4943_5321;
/// Radius (mm) of the disc that closes the brain outline into the skull's:
/// the notches it fills (up to about 30 mm wide) hold the skull base.
const SKULL_BASE_CLOSING_MM: f32 = 15.0;
/// Separates the per-series streams (noise, motion, window) of one study.
const SERIES_SALT: [u64; 3] = [0x7431, 0x0074_31C0, 0x7432];

#[derive(Debug, thiserror::Error)]
pub enum PhysicsError {
    #[error("class index {0} out of range (17 classes)")]
    ClassIndex(usize),
    #[error("unknown class folder name {0:?}")]
    ClassName(String),
    #[error("image side {0} px: need 32 to 2048")]
    Size(u32),
    #[error("encoding JPEG: {0}")]
    Jpeg(#[from] image::ImageError),
}

/// One simulated study: a subject, its lesions, a scanner and an injection.
#[derive(Debug, Clone)]
pub struct Study {
    pub family: Family,
    pub size: usize,
    pub z_mm: f32,
    pub pose: Pose,
    pub head: Head,
    pub lesions: Vec<Lesion>,
    pub scanner: Scanner,
    pub injection: Injection,
    seed: u64,
}

/// One rendered series.
#[derive(Debug, Clone)]
pub struct Series {
    /// Noise-free magnetisation before the coil and acquisition.
    pub object: Vec<f32>,
    /// Reconstructed magnitude image (coil, k-space, motion, noise).
    pub image: Vec<f32>,
    /// 255 where the lesion proper covers most of the pixel.
    pub mask: Vec<u8>,
    /// Dominant tissue of each pixel's central sub-plane (None: air).
    pub labels: Vec<Option<Tissue>>,
}

impl Study {
    /// Draws a study of `family` from `seed` (image side `size` pixels).
    pub fn draw(atlas: &Atlas, family: Family, size: usize, seed: u64) -> Study {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ENGINE_SALT);
        let (lo, hi) = placement::level_range(family);
        let z_mm = rng.random_range(lo..hi);
        let pose = Pose::random(&mut rng, size);
        let head = Head::random(&mut rng);
        let lesions = placement::plan(family, atlas, z_mm, &mut rng);
        let scanner = Scanner::draw(&mut rng, size);
        let injection = Injection::draw(scanner.field, &mut rng);
        Study {
            family,
            size,
            z_mm,
            pose,
            head,
            lesions,
            scanner,
            injection,
            seed,
        }
    }

    fn protocol(&self, sequence: Sequence) -> Protocol {
        match sequence {
            Sequence::T1 | Sequence::T1C => self.scanner.t1,
            Sequence::T2 => self.scanner.t2,
        }
    }

    /// Renders one series; `vessel_scale` multiplies the study's vessel
    /// conspicuity on T1C+.
    pub fn render(&self, atlas: &Atlas, sequence: Sequence, vessel_scale: f32) -> Series {
        let n = self.size;
        let voxel = self.pose.mm_per_px;
        let protocol = self.protocol(sequence);
        let relax = table_at(self.scanner.field);
        let mut injection = self.injection;
        injection.vessel_conspicuity *= vessel_scale;
        let gd: [f32; 23] = Tissue::ALL.map(|t| {
            if sequence == Sequence::T1C {
                injection.concentration(t)
            } else {
                0.0
            }
        });
        let flow = self.scanner.flow_factor(&protocol);
        // Magnetisation of one whole voxel of `tissue` whose gadolinium
        // uptake is `uptake` times its kinetics' (flowing blood washed out
        // or brightened by inflow).
        let pure = |tissue: Tissue, uptake: f32| -> f32 {
            let r = &relax[tissue.index()];
            let t1 = shortened_t1_ms(r.t1_ms, injection.r1, gd[tissue.index()] * uptake);
            let s = protocol.signal(r, t1);
            if tissue == Tissue::Blood {
                s * flow
            } else {
                s
            }
        };
        // Most compartments take up exactly as their kinetics say: their
        // signal is computed once per series, not once per voxel.
        let typical: [f32; 23] = Tissue::ALL.map(|t| pure(t, 1.0));
        let signal = |mix: &Mixture| -> f32 {
            mix.parts()
                .iter()
                .map(|p| {
                    let s = if p.uptake == 1.0 {
                        typical[p.tissue.index()]
                    } else {
                        pure(p.tissue, p.uptake)
                    };
                    s * p.fraction
                })
                .sum()
        };

        // Template (x, y) of every pixel: the same on every sub-plane.
        let template: Vec<[f32; 2]> = (0..n * n)
            .map(|i| self.pose.to_template((i % n) as f32, (i / n) as f32))
            .collect();

        // Pass 1: the head outline of the central plane (whose brain
        // samples pass 2 reuses).
        let mut inside = vec![false; n * n];
        let mut central = vec![BrainSample::default(); n * n];
        for (i, v) in inside.iter_mut().enumerate() {
            let t = template[i];
            let p = [t[0], t[1], self.z_mm];
            let b = sample_brain(atlas, self.displaced(p));
            let mut scratch = Mixture::default();
            let lesion = self.lesions.iter().fold(0.0f32, |acc, l| {
                acc.max(l.compose(p, &b, voxel, &mut scratch))
            });
            *v = b.inside || lesion > 0.3;
            central[i] = b;
        }
        outline::fill_enclosed(&mut inside, n);
        let to_mm = |d: Vec<f32>| -> Vec<f32> { d.iter().map(|d| d * voxel).collect() };
        let distance = to_mm(outline::distance_outside(&inside, n));
        let closed = outline::close(&inside, n, SKULL_BASE_CLOSING_MM / voxel);
        let to_closed = to_mm(outline::distance_outside(&closed, n));

        // Pass 2: mixtures and signal over three sub-planes of the slice.
        let offsets = [-1.0 / 3.0, 0.0, 1.0 / 3.0].map(|k| k * self.scanner.slice_mm);
        let mut object = vec![0f32; n * n];
        let mut mask = vec![0u8; n * n];
        let mut labels = vec![None; n * n];
        for (plane, dz) in offsets.iter().enumerate() {
            let z = self.z_mm + dz;
            for i in 0..n * n {
                let t = template[i];
                let p = [t[0], t[1], z];
                let q = self.displaced(p);
                let b = if *dz == 0.0 {
                    central[i]
                } else {
                    sample_brain(atlas, q)
                };
                let mut mix = Mixture::default();
                if b.inside {
                    brain_mixture(&b, &mut mix);
                    self.head.inside(q, &b, voxel, &mut mix);
                } else if inside[i] {
                    mix.push(Tissue::Csf, 1.0, 1.0);
                } else {
                    let at = Outside {
                        brain_mm: distance[i],
                        closed_mm: to_closed[i],
                    };
                    self.head.outside(at, t, z, voxel, &mut mix);
                }
                let lesion = self
                    .lesions
                    .iter()
                    .fold(0.0f32, |acc, l| acc.max(l.compose(p, &b, voxel, &mut mix)));
                object[i] += signal(&mix) / offsets.len() as f32;
                if plane == 1 {
                    mask[i] = if lesion > 0.5 { 255 } else { 0 };
                    labels[i] = mix.dominant();
                }
            }
        }

        // Acquisition.
        let mut rng = self.series_rng(sequence);
        let wm = &relax[Tissue::WhiteMatter.index()];
        let wm_signal = protocol.signal(wm, wm.t1_ms);
        let sampling = self.scanner.sampling(n, voxel, wm_signal, &mut rng);
        let coil = self.scanner.coil.sensitivity(n);
        let image = acquisition::acquire(&object, n, &coil, &sampling, &mut rng);
        Series {
            object,
            image,
            mask,
            labels,
        }
    }

    fn displaced(&self, p: [f32; 3]) -> [f32; 3] {
        self.lesions.iter().fold(p, |q, l| l.displace(q))
    }

    fn series_rng(&self, sequence: Sequence) -> ChaCha8Rng {
        let salt = match sequence {
            Sequence::T1 => SERIES_SALT[0],
            Sequence::T1C => SERIES_SALT[1],
            Sequence::T2 => SERIES_SALT[2],
        };
        ChaCha8Rng::seed_from_u64(
            (self.seed ^ ENGINE_SALT).rotate_left(17) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
    }
}

fn label(t: Option<Tissue>) -> TissueLabel {
    match t {
        None => TissueLabel::Background,
        Some(Tissue::Csf) => TissueLabel::Csf,
        Some(Tissue::GreyMatter) => TissueLabel::GreyMatter,
        Some(Tissue::WhiteMatter) => TissueLabel::WhiteMatter,
        Some(t) if t.is_lesion() => TissueLabel::Lesion,
        Some(_) => TissueLabel::SkullScalp,
    }
}

/// Renders and JPEG-encodes image `index` of class `class_index` with the
/// physics engine; the vessel factor is drawn per image from
/// `vessel_enhancement` = [low, high] on its own stream (low = high draws
/// nothing) and multiplies the study's own vessel conspicuity.
pub fn generate(
    atlas: &Atlas,
    seed: u64,
    class_index: usize,
    index: usize,
    size: u32,
    vessel_enhancement: [f32; 2],
) -> Result<Generated, PhysicsError> {
    if !(32..=2048).contains(&size) {
        return Err(PhysicsError::Size(size));
    }
    let name = CLASS_NAMES
        .get(class_index)
        .ok_or(PhysicsError::ClassIndex(class_index))?;
    let class = ClassInfo::parse(name).ok_or_else(|| PhysicsError::ClassName(name.to_string()))?;
    let study_seed = super::image_seed(seed, class_index, index);
    let [low, high] = vessel_enhancement;
    let vessel_scale = if high > low {
        ChaCha8Rng::seed_from_u64(study_seed ^ ENGINE_SALT ^ 0x007E_55E1).random_range(low..high)
    } else {
        low
    };
    let study = Study::draw(atlas, class.family, size as usize, study_seed);
    let series = study.render(atlas, class.sequence, vessel_scale);
    let mut rng = study.series_rng(class.sequence);
    // Skip past the acquisition's draws: the export has its own stream.
    rng.set_word_pos(1 << 40);
    let pixels = scanner::window(&series.image, &mut rng);
    let quality = rng.random_range(70..=95);
    let mut jpeg = Cursor::new(Vec::new());
    JpegEncoder::new_with_quality(&mut jpeg, quality).encode(
        &pixels,
        size,
        size,
        ExtendedColorType::L8,
    )?;
    Ok(Generated {
        phantom: Phantom {
            size,
            pixels,
            lesion_mask: series.mask,
            tissue: series.labels.into_iter().map(label).collect(),
            z_mm: study.z_mm,
        },
        jpeg: jpeg.into_inner(),
    })
}
