//! The physics engine's own lesion models: 3-D compartments (tissue types of
//! `tissue.rs`, each with its own relaxation and gadolinium kinetics) placed
//! in template space, so that a thick slice cuts them with real partial
//! volume and the contrast follows from physics, not from painted levels.
//! Where each family's lesion goes and how big it is: `placement.rs`; how a
//! lesion fills a voxel (wall and core, oedema along white matter, cysts,
//! calcification, dural tail, the canal of a schwannoma): here.

use rand_chacha::ChaCha8Rng;

use super::anatomy::{BrainSample, Mixture};
use super::shapes::{add, coverage, dot, norm, pushed_from, scale, sub, Field3, Lobulated, Vec3};
use super::tissue::Tissue;

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
pub struct Dural {
    pub(super) base: Vec3,
    pub(super) normal: Vec3,
    pub(super) tail_mm: f32,
}

/// A tapering tube (the internal auditory canal part of a schwannoma).
#[derive(Debug, Clone, Copy)]
pub struct Canal {
    pub(super) start: Vec3,
    pub(super) dir: Vec3,
    pub(super) length: f32,
    pub(super) radius: [f32; 2],
}

/// One lesion.
#[derive(Debug, Clone)]
pub struct Lesion {
    pub kind: Kind,
    pub(super) body: Lobulated,
    /// Necrotic / purulent core thickness of the wall (mm), where there is one.
    pub(super) wall_mm: f32,
    pub(super) halo: Option<Lobulated>,
    pub(super) bubbles: Vec<Lobulated>,
    pub(super) calcifications: Vec<Lobulated>,
    pub(super) patches: Vec<Lobulated>,
    pub(super) texture: Field3,
    /// Effective radius of the mass effect (mm).
    pub(super) push: f32,
    /// Ventricular enlargement (hydrocephalus) around the body, 0 = none.
    pub(super) hydrocephalus: f32,
    pub(super) dural: Option<Dural>,
    pub(super) canal: Option<Canal>,
    /// Patchy enhancement of a low-grade glioma.
    pub(super) patchy: bool,
    /// Centre and radius of a sphere holding every part (`sealed`).
    bound: (Vec3, f32),
}

impl Lesion {
    pub(super) fn new(kind: Kind, body: Lobulated, rng: &mut ChaCha8Rng) -> Lesion {
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
            bound: ([0.0; 3], f32::INFINITY),
        }
    }

    /// The lesion with its bounding sphere computed, once the plan has set
    /// every part.
    pub(super) fn sealed(mut self) -> Lesion {
        self.bound = self.bounding_sphere();
        self
    }

    /// A sphere outside which the lesion writes nothing into any voxel, so
    /// that `compose` may skip most of the slice. Ramp widths up to 16 mm
    /// are covered: the 8 mm oedema ramp, and voxels up to 250 mm / 32 px
    /// ≈ 7.8 mm; the meningioma's CSF cleft reaches 1.6 mm further.
    fn bounding_sphere(&self) -> (Vec3, f32) {
        const W: f32 = 16.0;
        let centre = if self.kind == Kind::Encephalopathy && !self.patches.is_empty() {
            let sum = self
                .patches
                .iter()
                .fold([0.0; 3], |acc, p| add(acc, p.centre));
            scale(sum, 1.0 / self.patches.len() as f32)
        } else {
            self.body.centre
        };
        let mut radius = 0.0f32;
        let mut include = |at: Vec3, reach: f32| radius = radius.max(norm(sub(at, centre)) + reach);
        if self.kind != Kind::Encephalopathy {
            include(self.body.centre, self.body.reach(W + 4.0));
        }
        for shape in self
            .halo
            .iter()
            .chain(&self.bubbles)
            .chain(&self.calcifications)
            .chain(&self.patches)
        {
            include(shape.centre, shape.reach(W));
        }
        if let Some(d) = &self.dural {
            include(d.base, 0.6 * self.body.radius() + d.tail_mm + 3.0 + W);
        }
        if let Some(c) = &self.canal {
            include(c.start, c.length + c.radius[0].max(c.radius[1]) + W);
        }
        (centre, radius)
    }

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
        let off = sub(p, self.bound.0);
        if dot(off, off) > self.bound.1 * self.bound.1 {
            return 0.0;
        }
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
        // The tail tapers to nothing `tail_mm` beyond the mass's footprint
        // (without the outer limit the zero-thickness sheet would still
        // cover half of every voxel it crosses, across the whole head).
        if along < 0.6 * r || along > 0.6 * r + d.tail_mm || !(0.0..3.0).contains(&height) {
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
