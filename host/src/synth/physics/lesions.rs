//! The physics engine's own lesion models: 3-D compartments (tissue types of
//! `tissue.rs`, each with its own relaxation and gadolinium kinetics) placed
//! in template space, so that a thick slice cuts them with real partial
//! volume and the contrast follows from physics, not from painted levels.
//!
//! Radiology per family (`shared/notes/dataset-17-classes.md`; Osborn,
//! *Osborn's Brain*, 2nd ed., Elsevier 2017; Smirniotopoulos et al.,
//! "Patterns of contrast enhancement in the brain and meninges",
//! RadioGraphics 27 (2007) 525–551):
//! - glioma: intra-axial white-matter mass; high grade = thick irregular
//!   enhancing wall around necrosis, vasogenic oedema spreading along white
//!   matter; low grade = infiltrative, T2-bright, barely enhancing,
//!   sometimes calcified (oligodendroglioma);
//! - meningioma: extra-axial, dural-based dome on the convexity or the falx,
//!   CSF cleft, strong homogeneous enhancement, dural tail, calcification;
//! - schwannoma: cerebellopontine angle at the level of the pons, round, with
//!   an extension into the internal auditory canal ("ice-cream cone"),
//!   enhancing, cystic when large; small ones included;
//! - neurocytoma: lateral ventricle near the septum pellucidum, solid with
//!   many small cysts ("soap bubbles"), calcified, moderately enhancing,
//!   hydrocephalus;
//! - other: abscess (thin smooth enhancing capsule, T2-dark, pus, oedema),
//!   cyst (CSF-like, no enhancement; intra- or extra-axial), encephalopathy
//!   (roughly symmetric white-matter gliosis, no enhancement, no mass).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tumorxai_shared::Family;

use super::anatomy::{sample_brain, BrainSample, Mixture};
use super::shapes::{add, coverage, dot, norm, pushed_from, scale, sub, Field3, Lobulated, Vec3};
use super::tissue::Tissue;
use crate::synth::atlas::Atlas;

/// Kinds of lesion the engine draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    GliomaHighGrade,
    GliomaLowGrade,
    Meningioma,
    Schwannoma,
    Neurocytoma,
    Abscess,
    Cyst,
    Encephalopathy,
}

/// A dural attachment: the point of the dura under the mass, the outward
/// normal, and the length of the enhancing dural tail (mm).
#[derive(Debug, Clone, Copy)]
struct Dural {
    base: Vec3,
    normal: Vec3,
    tail_mm: f32,
}

/// A tapering tube (the internal auditory canal part of a schwannoma).
#[derive(Debug, Clone, Copy)]
struct Canal {
    start: Vec3,
    dir: Vec3,
    length: f32,
    radius: [f32; 2],
}

/// One lesion.
#[derive(Debug, Clone)]
pub struct Lesion {
    pub kind: Kind,
    body: Lobulated,
    /// Necrotic / purulent core thickness of the wall (mm), where there is one.
    wall_mm: f32,
    halo: Option<Lobulated>,
    bubbles: Vec<Lobulated>,
    calcifications: Vec<Lobulated>,
    patches: Vec<Lobulated>,
    texture: Field3,
    /// Effective radius of the mass effect (mm).
    push: f32,
    /// Ventricular enlargement (hydrocephalus) around the body, 0 = none.
    hydrocephalus: f32,
    dural: Option<Dural>,
    canal: Option<Canal>,
    /// Patchy enhancement of a low-grade glioma.
    patchy: bool,
}

/// MNI z ranges (mm) the slice of each family is drawn from; they overlap,
/// and NORMAL spans all of them.
pub fn level_range(family: Family) -> (f32, f32) {
    match family {
        Family::Glioma => (-15.0, 45.0),
        Family::Meningioma => (-20.0, 52.0),
        Family::Schwannoma => (-36.0, -22.0),
        Family::Neurocitoma => (5.0, 22.0),
        Family::Outros => (-25.0, 45.0),
        Family::Normal => (-36.0, 52.0),
    }
}

fn find_point(
    atlas: &Atlas,
    rng: &mut ChaCha8Rng,
    x: (f32, f32),
    y: (f32, f32),
    z: f32,
    accept: impl Fn(&BrainSample) -> bool,
) -> Vec3 {
    let mut fallback = [0.0, -17.0, z];
    for attempt in 0..300 {
        let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let p = [
            side * rng.random_range(x.0..x.1),
            rng.random_range(y.0..y.1),
            z,
        ];
        let s = sample_brain(atlas, p);
        if accept(&s) {
            return p;
        }
        if attempt == 0 || s.inside {
            fallback = p;
        }
    }
    fallback
}

/// The last brain point along a ray in the axial plane from the head's centre.
fn brain_surface(atlas: &Atlas, z: f32, angle: f32) -> Vec3 {
    let (c, s) = (angle.cos(), angle.sin());
    let mut last = [0.0, -17.0, z];
    for step in 0..110 {
        let t = step as f32;
        let p = [c * t, -17.0 + s * t, z];
        if sample_brain(atlas, p).inside {
            last = p;
        }
    }
    last
}

fn calcifications(rng: &mut ChaCha8Rng, centre: Vec3, spread: f32, count: usize) -> Vec<Lobulated> {
    (0..count)
        .map(|_| {
            let off = scale(
                super::shapes::random_direction(rng),
                spread * rng.random::<f32>(),
            );
            Lobulated::sphere(add(centre, off), rng.random_range(0.8..1.8))
        })
        .collect()
}

impl Lesion {
    fn new(kind: Kind, body: Lobulated, rng: &mut ChaCha8Rng) -> Lesion {
        Lesion {
            kind,
            body,
            wall_mm: 0.0,
            halo: None,
            bubbles: Vec::new(),
            calcifications: Vec::new(),
            patches: Vec::new(),
            texture: Field3::random(rng, 9.0, 6),
            push: 0.0,
            hydrocephalus: 0.0,
            dural: None,
            canal: None,
            patchy: false,
        }
    }
}

/// Plans the lesions of one study of `family` whose slice is at `z` mm.
pub fn plan(family: Family, atlas: &Atlas, z: f32, rng: &mut ChaCha8Rng) -> Vec<Lesion> {
    let side: f32 = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    match family {
        Family::Normal => Vec::new(),
        Family::Glioma => {
            let high = rng.random_bool(0.6);
            let r = if high {
                rng.random_range(11.0..26.0)
            } else {
                rng.random_range(12.0..28.0)
            };
            let zc = z + rng.random_range(-0.3..0.3) * r;
            let c = find_point(atlas, rng, (12.0, 50.0), (-75.0, 40.0), zc, |s| s.wm > 0.5);
            let radii = [
                r,
                r * rng.random_range(0.8..1.2),
                r * rng.random_range(0.7..1.0),
            ];
            let body = Lobulated::random(rng, c, radii, if high { 0.22 } else { 0.28 });
            let mut l = Lesion::new(
                if high {
                    Kind::GliomaHighGrade
                } else {
                    Kind::GliomaLowGrade
                },
                body,
                rng,
            );
            let halo_scale = if high {
                rng.random_range(1.6..2.5)
            } else {
                rng.random_range(1.1..1.35)
            };
            l.halo = Some(Lobulated::random(rng, c, scale(radii, halo_scale), 0.35));
            l.wall_mm = rng.random_range(2.5..6.0);
            l.push = r * if high { 0.6 } else { 0.4 };
            l.patchy = !high && rng.random_bool(0.3);
            if !high && rng.random_bool(0.25) {
                let n = rng.random_range(1..5);
                l.calcifications = calcifications(rng, c, 0.7 * r, n);
            }
            vec![l]
        }
        Family::Meningioma => {
            let r = rng.random_range(9.0..27.0);
            let zc = z + rng.random_range(-0.3..0.3) * r;
            let (base, normal) = if rng.random_bool(0.3) {
                let y = rng.random_range(-60.0..35.0);
                ([0.0, y, zc], [-side, 0.0, 0.0])
            } else {
                let angle = rng.random_range(0.0..std::f32::consts::TAU);
                let s = brain_surface(atlas, zc, angle);
                (s, [angle.cos(), angle.sin(), 0.0])
            };
            let c = sub(base, scale(normal, 0.55 * r));
            let radii = [
                r,
                r * rng.random_range(0.85..1.1),
                r * rng.random_range(0.8..1.0),
            ];
            let mut l = Lesion::new(
                Kind::Meningioma,
                Lobulated::random(rng, c, radii, 0.05),
                rng,
            );
            l.push = 0.8 * r;
            l.dural = Some(Dural {
                base,
                normal,
                tail_mm: rng.random_range(6.0..20.0),
            });
            if rng.random_bool(0.25) {
                let n = rng.random_range(2..7);
                l.calcifications = calcifications(rng, c, 0.6 * r, n);
            }
            if rng.random_bool(0.3) {
                l.halo = Some(Lobulated::random(rng, c, scale(radii, 1.5), 0.3));
            }
            vec![l]
        }
        Family::Schwannoma => {
            let r = rng.random_range(5.0..18.0);
            let zc = z + rng.random_range(-0.3..0.3) * r;
            let c = [
                side * rng.random_range(17.0..25.0),
                rng.random_range(-38.0..-28.0),
                zc,
            ];
            let mut l = Lesion::new(
                Kind::Schwannoma,
                Lobulated::random(rng, c, [r, r * 0.9, r * 0.9], 0.06),
                rng,
            );
            let dir = [side * 0.93, 0.36, 0.05];
            let n = norm(dir);
            l.canal = Some(Canal {
                start: c,
                dir: scale(dir, 1.0 / n),
                length: r + rng.random_range(6.0..12.0),
                radius: [0.5 * r, rng.random_range(1.8..2.8)],
            });
            if r > 11.0 {
                let count = rng.random_range(2..5);
                l.bubbles = (0..count)
                    .map(|_| {
                        let off = scale(super::shapes::random_direction(rng), 0.5 * r);
                        Lobulated::sphere(add(c, off), rng.random_range(0.15..0.32) * r)
                    })
                    .collect();
            }
            l.push = 0.7 * r;
            vec![l]
        }
        Family::Neurocitoma => {
            let zc = z + rng.random_range(-3.0..3.0);
            let c = find_point(atlas, rng, (2.0, 12.0), (-22.0, 12.0), zc, |s| s.csf > 0.6);
            let r = rng.random_range(9.0..20.0);
            let body = Lobulated::random(rng, c, [r * 0.8, r, r * 0.8], 0.15);
            let mut l = Lesion::new(Kind::Neurocytoma, body, rng);
            let count = rng.random_range(8..17);
            l.bubbles = (0..count)
                .map(|_| {
                    let off = scale(
                        super::shapes::random_direction(rng),
                        0.75 * r * rng.random::<f32>(),
                    );
                    Lobulated::sphere(add(c, off), rng.random_range(1.5..4.5))
                })
                .collect();
            if rng.random_bool(0.5) {
                let n = rng.random_range(2..6);
                l.calcifications = calcifications(rng, c, 0.6 * r, n);
            }
            l.push = 0.5 * r;
            l.hydrocephalus = rng.random_range(0.15..0.4);
            vec![l]
        }
        Family::Outros => match rng.random_range(0..3) {
            0 => {
                let r = rng.random_range(7.0..18.0);
                let zc = z + rng.random_range(-0.3..0.3) * r;
                let c = find_point(atlas, rng, (10.0, 50.0), (-75.0, 40.0), zc, |s| {
                    s.gm + s.wm > 0.85
                });
                let mut l =
                    Lesion::new(Kind::Abscess, Lobulated::random(rng, c, [r; 3], 0.04), rng);
                l.wall_mm = rng.random_range(1.5..3.5);
                let halo = r * rng.random_range(1.8..2.6);
                l.halo = Some(Lobulated::random(rng, c, [halo; 3], 0.35));
                l.push = 0.6 * r;
                vec![l]
            }
            1 => {
                let r = rng.random_range(6.0..22.0);
                let zc = z + rng.random_range(-0.3..0.3) * r;
                let c = if rng.random_bool(0.35) {
                    let angle = rng.random_range(0.0..std::f32::consts::TAU);
                    let s = brain_surface(atlas, zc, angle);
                    sub(s, scale([angle.cos(), angle.sin(), 0.0], 0.5 * r))
                } else {
                    find_point(atlas, rng, (8.0, 50.0), (-75.0, 40.0), zc, |s| s.inside)
                };
                let mut l = Lesion::new(Kind::Cyst, Lobulated::random(rng, c, [r; 3], 0.03), rng);
                l.push = 0.8 * r;
                vec![l]
            }
            _ => {
                let mut l =
                    Lesion::new(Kind::Encephalopathy, Lobulated::sphere([0.0; 3], 1.0), rng);
                let count = rng.random_range(3..8);
                for _ in 0..count {
                    let zc = z + rng.random_range(-4.0..4.0);
                    let c = find_point(atlas, rng, (8.0, 45.0), (-70.0, 35.0), zc, |s| s.wm > 0.5);
                    let r = rng.random_range(6.0..16.0);
                    l.patches.push(Lobulated::random(rng, c, [r; 3], 0.3));
                    if rng.random_bool(0.7) {
                        let m = [-c[0], c[1], c[2]];
                        let rm = r * rng.random_range(0.7..1.2);
                        l.patches.push(Lobulated::random(rng, m, [rm; 3], 0.3));
                    }
                }
                vec![l]
            }
        },
    }
}

impl Lesion {
    /// Where the brain tissue now at `p` came from (mass effect and
    /// hydrocephalus).
    pub fn displace(&self, p: Vec3) -> Vec3 {
        let mut q = pushed_from(p, self.body.centre, self.push);
        if self.hydrocephalus > 0.0 {
            let d = sub(q, self.body.centre);
            let w = (-dot(d, d) / (40.0 * 40.0)).exp();
            q = add(
                self.body.centre,
                scale(d, 1.0 / (1.0 + self.hydrocephalus * w)),
            );
        }
        q
    }

    /// Writes the lesion's compartments at `p` into `mix` (replacing normal
    /// tissue); `brain` is the displaced brain sample there. Returns the
    /// fraction of the voxel that is lesion proper (for the mask).
    pub fn compose(&self, p: Vec3, brain: &BrainSample, voxel_mm: f32, mix: &mut Mixture) -> f32 {
        let tex = self.texture.at(p);
        let wm_weight = (brain.wm * 1.4).clamp(0.0, 1.0);
        if let Some(halo) = &self.halo {
            // Vasogenic oedema tracks along white matter, sparing cortex.
            let oedema = coverage(halo.depth_mm(p), 8.0) * wm_weight * 0.9;
            mix.replace(Tissue::Oedema, oedema, 1.0);
        }
        let body = match self.kind {
            Kind::GliomaLowGrade => coverage(self.body.depth_mm(p), 5.0),
            Kind::Encephalopathy => 0.0,
            _ => self.body.cover(p, voxel_mm),
        };
        let lesion = match self.kind {
            Kind::GliomaHighGrade | Kind::Abscess => {
                let (wall_tissue, core_tissue) = if self.kind == Kind::Abscess {
                    (Tissue::AbscessCapsule, Tissue::Pus)
                } else {
                    (Tissue::EnhancingRim, Tissue::Necrosis)
                };
                let wall = if self.kind == Kind::Abscess {
                    self.wall_mm
                } else {
                    self.wall_mm * (1.0 + 0.45 * tex)
                };
                let core = coverage(self.body.depth_mm(p) - wall, voxel_mm).min(body);
                let uptake = if self.kind == Kind::Abscess {
                    1.0
                } else {
                    (0.8 + 0.35 * tex).max(0.2)
                };
                mix.replace_many(&[(wall_tissue, body - core, uptake), (core_tissue, core, 1.0)]);
                body
            }
            Kind::GliomaLowGrade => {
                let uptake = if self.patchy {
                    1.0 + 40.0 * (tex - 0.5).max(0.0)
                } else {
                    1.0
                };
                mix.replace(Tissue::SolidTumour, body, uptake);
                body
            }
            Kind::Meningioma | Kind::Schwannoma | Kind::Neurocytoma => {
                let tissue = match self.kind {
                    Kind::Meningioma => Tissue::Meningioma,
                    Kind::Schwannoma => Tissue::Schwannoma,
                    _ => Tissue::Neurocytoma,
                };
                let uptake = match self.kind {
                    Kind::Meningioma => 1.0 + 0.08 * tex,
                    Kind::Schwannoma => 0.95 + 0.25 * tex,
                    _ => 0.8 + 0.3 * tex,
                };
                let canal = self.canal.map_or(0.0, |c| canal_cover(&c, p, voxel_mm));
                let solid = body.max(canal);
                if self.kind == Kind::Meningioma {
                    // CSF cleft: a thin rim of CSF on the brain side.
                    let cleft = coverage(self.body.depth_mm(p) + 1.6, voxel_mm) - solid;
                    mix.replace(Tissue::Csf, 0.7 * cleft.max(0.0), 1.0);
                }
                mix.replace(tissue, solid, uptake);
                let bubbles = self
                    .bubbles
                    .iter()
                    .map(|b| b.cover(p, voxel_mm))
                    .fold(0.0, f32::max);
                mix.replace(Tissue::Cyst, bubbles * solid * 0.9, 1.0);
                solid
            }
            Kind::Cyst => {
                mix.replace(Tissue::Cyst, body, 1.0);
                body
            }
            Kind::Encephalopathy => {
                let patch = self
                    .patches
                    .iter()
                    .map(|b| coverage(b.depth_mm(p), 6.0))
                    .fold(0.0, f32::max);
                let gliosis = patch * (0.2 + 0.8 * wm_weight) * 0.85;
                mix.replace(Tissue::Gliosis, gliosis, 1.0);
                gliosis / 0.85
            }
        };
        if let Some(d) = &self.dural {
            mix.replace(Tissue::Dura, self.dural_tail(d, p) * 0.8, 1.5);
        }
        let calc = self
            .calcifications
            .iter()
            .map(|b| b.cover(p, voxel_mm))
            .fold(0.0, f32::max);
        mix.replace(Tissue::Calcification, calc * lesion, 0.0);
        lesion
    }

    /// The enhancing dural tail: a thin sheet in the dura beside the base.
    fn dural_tail(&self, d: &Dural, p: Vec3) -> f32 {
        let rel = sub(p, d.base);
        let height = dot(rel, d.normal);
        let along = norm(sub(rel, scale(d.normal, height)));
        let r = self.body.radius();
        if along < 0.6 * r || !(0.0..3.0).contains(&height) {
            return 0.0;
        }
        let t = ((along - 0.6 * r) / d.tail_mm).clamp(0.0, 1.0);
        let thickness = 2.5 * (1.0 - t);
        coverage(thickness - (height - 0.5).abs(), 1.0)
    }
}

fn canal_cover(c: &Canal, p: Vec3, voxel_mm: f32) -> f32 {
    let rel = sub(p, c.start);
    let t = dot(rel, c.dir);
    if !(0.0..=c.length).contains(&t) {
        return 0.0;
    }
    let radial = norm(sub(rel, scale(c.dir, t)));
    let f = t / c.length;
    let radius = c.radius[0] + (c.radius[1] - c.radius[0]) * f;
    coverage(radius - radial, voxel_mm)
}
