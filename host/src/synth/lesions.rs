//! Lesion models per tumour family, placed on an axial level of the atlas and
//! painted as layers of tissue (T1, T2, contrast enhancement) over the brain.
//! Figures follow `shared/notes/dataset-17-classes.md` (radiology, simplified).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tumorxai_shared::Family;

use super::atlas::AxialLevel;

/// Relative tissue signal before noise: (T1, T2) and T1C+ enhancement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signal {
    pub t1: f32,
    pub t2: f32,
    pub enhancement: f32,
}

const fn signal(t1: f32, t2: f32, enhancement: f32) -> Signal {
    Signal {
        t1,
        t2,
        enhancement,
    }
}

pub const CSF: Signal = signal(0.10, 1.00, 0.0);
pub const GREY_MATTER: Signal = signal(0.58, 0.55, 0.0);
pub const WHITE_MATTER: Signal = signal(0.85, 0.36, 0.0);
pub const BONE: Signal = signal(0.04, 0.04, 0.0);
pub const DIPLOE: Signal = signal(0.55, 0.35, 0.0);
pub const SCALP_FAT: Signal = signal(0.88, 0.62, 0.0);
const OEDEMA: Signal = signal(0.48, 0.86, 0.0);
const SOLID_TUMOUR: Signal = signal(0.46, 0.72, 0.62);
const LOW_GRADE_TUMOUR: Signal = signal(0.42, 0.82, 0.06);
const NECROSIS: Signal = signal(0.20, 0.92, 0.0);
const MENINGIOMA: Signal = signal(0.56, 0.60, 0.55);
const SCHWANNOMA: Signal = signal(0.45, 0.76, 0.60);
const NEUROCYTOMA: Signal = signal(0.55, 0.62, 0.32);
const CYST: Signal = signal(0.14, 0.96, 0.0);
const ABSCESS_CAPSULE: Signal = signal(0.60, 0.30, 0.55);
const DURAL_TAIL_ENHANCEMENT: f32 = 0.35;

// Radiology the table above must respect, checked at compile time:
// T1: CSF dark < GM < WM; T2: CSF bright > GM > WM; oedema T2-bright; cysts never enhance.
const _: () = assert!(CSF.t1 < GREY_MATTER.t1 && GREY_MATTER.t1 < WHITE_MATTER.t1);
const _: () = assert!(CSF.t2 > GREY_MATTER.t2 && GREY_MATTER.t2 > WHITE_MATTER.t2);
const _: () = assert!(OEDEMA.t2 > WHITE_MATTER.t2 && CYST.enhancement == 0.0);

/// Kinds of lesion the generator draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LesionKind {
    Glioma { high_grade: bool },
    Meningioma,
    Schwannoma,
    Neurocytoma,
    Abscess,
    Cyst,
    Encephalopathy,
}

/// An irregular outline: radius R × (1 + Σ aₖ cos((k + 2) θ + φₖ)).
#[derive(Debug, Clone, Copy)]
struct Outline {
    amplitude: [f32; 4],
    phase: [f32; 4],
}

impl Outline {
    fn random(rng: &mut ChaCha8Rng, roughness: f32) -> Outline {
        let mut amplitude = [0.0; 4];
        let mut phase = [0.0; 4];
        for k in 0..4 {
            amplitude[k] = rng.random_range(0.3..1.0) * roughness / (k as f32 + 1.0);
            phase[k] = rng.random_range(0.0..std::f32::consts::TAU);
        }
        Outline { amplitude, phase }
    }

    /// Distance from the centre relative to the outline (1 on the outline).
    fn relative_radius(&self, dx: f32, dy: f32, radius: f32) -> f32 {
        let r = (dx * dx + dy * dy).sqrt();
        if r < 1e-6 {
            return 0.0;
        }
        let theta = dy.atan2(dx);
        let mut scale = 1.0;
        for k in 0..4 {
            scale += self.amplitude[k] * ((k as f32 + 2.0) * theta + self.phase[k]).cos();
        }
        r / (radius * scale.max(0.3))
    }
}

/// A small round sub-structure (cyst bubble, encephalopathy patch).
#[derive(Debug, Clone, Copy)]
struct Blob {
    centre: [f32; 2],
    radius: f32,
}

/// One planned lesion in the template frame (mm).
#[derive(Debug, Clone)]
pub struct Lesion {
    pub kind: LesionKind,
    pub centre: [f32; 2],
    pub radius: f32,
    outline: Outline,
    oedema_outline: Outline,
    oedema_scale: f32,
    /// Meningioma: unit vector pointing out of the brain at its dural base.
    outward: [f32; 2],
    /// Schwannoma: unit vector towards the internal auditory canal.
    canal: [f32; 2],
    blobs: Vec<Blob>,
}

/// What a lesion does to one pixel: layers composited in order (at most
/// three per lesion; a fixed-capacity list keeps the per-pixel hot loop free
/// of heap allocation), and whether the pixel belongs to the lesion proper.
#[derive(Debug, Clone, Default)]
pub struct Paint {
    pub layers: heapless::Vec<(f32, Signal), 4>,
    pub extra_enhancement: f32,
    pub in_lesion: bool,
}

impl Paint {
    fn add(&mut self, fraction: f32, signal: Signal) {
        // Every lesion kind paints at most three layers: capacity 4 never overflows.
        let _ = self.layers.push((fraction, signal));
    }
}

fn edge(relative_radius: f32, softness: f32) -> f32 {
    // 1 inside, 0 outside, smooth across ±softness around 1.
    let t = ((1.0 + softness - relative_radius) / (2.0 * softness)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

impl Lesion {
    /// How strongly the lesion pushes surrounding tissue away (0 = none).
    pub fn mass_effect(&self) -> f32 {
        match self.kind {
            LesionKind::Glioma { .. } => 0.45,
            LesionKind::Meningioma => 0.55,
            LesionKind::Schwannoma => 0.40,
            LesionKind::Neurocytoma => 0.50,
            LesionKind::Abscess => 0.35,
            LesionKind::Cyst => 0.45,
            LesionKind::Encephalopathy => 0.0,
        }
    }

    /// Radius beyond which the lesion paints nothing.
    pub fn reach(&self) -> f32 {
        match self.kind {
            LesionKind::Glioma { .. } | LesionKind::Abscess => {
                self.radius * self.oedema_scale * 1.6
            }
            LesionKind::Meningioma => self.radius + 20.0,
            LesionKind::Schwannoma => self.radius + 14.0,
            LesionKind::Encephalopathy => 200.0,
            _ => self.radius * 1.4,
        }
    }

    /// Paints the lesion at template point `p` (mm); `white_matter` is the WM
    /// probability there (oedema spreads along white matter), `texture` a
    /// smooth noise value in [−1, 1].
    pub fn paint(&self, p: [f32; 2], white_matter: f32, texture: f32) -> Paint {
        let (dx, dy) = (p[0] - self.centre[0], p[1] - self.centre[1]);
        let mut paint = Paint::default();
        if dx * dx + dy * dy > self.reach() * self.reach() {
            return paint;
        }
        let rho = self.outline.relative_radius(dx, dy, self.radius);
        let tex = texture;
        match self.kind {
            LesionKind::Glioma { high_grade } => {
                let rho_o =
                    self.oedema_outline
                        .relative_radius(dx, dy, self.radius * self.oedema_scale);
                let oedema = edge(rho_o, 0.15) * (0.25 + 0.9 * white_matter).min(1.0);
                paint.add(oedema * 0.85, OEDEMA);
                let solid = edge(rho, 0.08);
                if high_grade {
                    let mut s = SOLID_TUMOUR;
                    s.enhancement *= 0.7 + 0.3 * tex;
                    paint.add(solid, s);
                    let necrosis = edge(rho / (0.55 + 0.08 * tex), 0.1);
                    paint.add(necrosis, NECROSIS);
                } else {
                    let mut s = LOW_GRADE_TUMOUR;
                    s.t2 += 0.06 * tex;
                    paint.add(solid, s);
                }
                paint.in_lesion = solid > 0.5;
            }
            LesionKind::Meningioma => {
                let solid = edge(rho, 0.05);
                // CSF cleft around the mass.
                let cleft = edge(rho / 1.0, 0.0 + 1.5 / self.radius) * (1.0 - solid);
                paint.add(cleft * 0.8, CSF);
                let mut s = MENINGIOMA;
                s.enhancement *= 0.9 + 0.1 * tex;
                s.t1 += 0.03 * tex;
                paint.add(solid, s);
                // Dural tail: a thin enhancing strip along the dura, both ways
                // from the base of the mass.
                let base = [
                    self.centre[0] + self.outward[0] * self.radius * 0.8,
                    self.centre[1] + self.outward[1] * self.radius * 0.8,
                ];
                let (bx, by) = (p[0] - base[0], p[1] - base[1]);
                let along = bx * -self.outward[1] + by * self.outward[0];
                let across = bx * self.outward[0] + by * self.outward[1];
                let length = self.radius + 12.0;
                if across.abs() < 1.6 && along.abs() < length {
                    paint.extra_enhancement +=
                        DURAL_TAIL_ENHANCEMENT * (1.0 - along.abs() / length) * (1.0 - solid);
                }
                paint.in_lesion = solid > 0.5;
            }
            LesionKind::Schwannoma => {
                // Round mass plus a narrow extension into the internal auditory canal.
                let (cx, cy) = (
                    dx * self.canal[0] + dy * self.canal[1],
                    -dx * self.canal[1] + dy * self.canal[0],
                );
                let in_canal = if cx > 0.0 && cx < self.radius + 10.0 {
                    edge(cy.abs() / 2.5, 0.2)
                } else {
                    0.0
                };
                let solid = edge(rho, 0.06).max(in_canal);
                let mut s = SCHWANNOMA;
                s.enhancement *= 0.75 + 0.25 * tex;
                paint.add(solid, s);
                let cysts = self.blob_cover(p);
                paint.add(cysts * solid, CYST);
                paint.in_lesion = solid > 0.5;
            }
            LesionKind::Neurocytoma => {
                let solid = edge(rho, 0.07);
                let mut s = NEUROCYTOMA;
                s.enhancement *= 0.6 + 0.4 * tex;
                paint.add(solid, s);
                let bubbles = self.blob_cover(p);
                paint.add(bubbles * solid * 0.9, CYST);
                paint.in_lesion = solid > 0.5;
            }
            LesionKind::Abscess => {
                let r = (dx * dx + dy * dy).sqrt();
                let rho_o =
                    self.oedema_outline
                        .relative_radius(dx, dy, self.radius * self.oedema_scale);
                let oedema = edge(rho_o, 0.15) * (0.3 + 0.8 * white_matter).min(1.0);
                paint.add(oedema * 0.8, OEDEMA);
                let outer = edge(rho, 0.05);
                let wall = (1.8 / self.radius).max(0.12);
                let core = edge(r / (self.radius * (1.0 - wall)), 0.04);
                paint.add(outer, ABSCESS_CAPSULE);
                paint.add(core, NECROSIS);
                paint.in_lesion = outer > 0.5;
            }
            LesionKind::Cyst => {
                let solid = edge(rho, 0.04);
                paint.add(solid, CYST);
                paint.in_lesion = solid > 0.5;
            }
            LesionKind::Encephalopathy => {
                let patches = self.blob_cover(p);
                let weight = patches * (0.2 + 0.8 * white_matter);
                paint.add(weight * 0.75, OEDEMA);
                paint.in_lesion = weight > 0.35;
            }
        }
        paint
    }

    fn blob_cover(&self, p: [f32; 2]) -> f32 {
        self.blobs.iter().fold(0.0f32, |acc, b| {
            let d = ((p[0] - b.centre[0]).powi(2) + (p[1] - b.centre[1]).powi(2)).sqrt();
            acc.max(edge(d / b.radius, 0.2))
        })
    }
}

/// Axial levels (MNI z, mm) where a family is drawn. The ranges overlap, and
/// NORMAL spans all of them, so the level alone never tells the class.
pub fn level_range(family: Family) -> (f32, f32) {
    match family {
        Family::Glioma => (-22.0, 45.0),
        Family::Meningioma => (-18.0, 50.0),
        Family::Schwannoma => (-36.0, -18.0),
        Family::Neurocitoma => (4.0, 24.0),
        Family::Outros => (-30.0, 45.0),
        Family::Normal => (-36.0, 50.0),
    }
}

fn random_point_where(
    rng: &mut ChaCha8Rng,
    level: &AxialLevel,
    x: (f32, f32),
    y: (f32, f32),
    accept: impl Fn(&super::atlas::TissueSample) -> bool,
) -> [f32; 2] {
    let mut fallback = [(x.0 + x.1) / 2.0, (y.0 + y.1) / 2.0];
    for attempt in 0..200 {
        let p = [rng.random_range(x.0..x.1), rng.random_range(y.0..y.1)];
        let s = level.sample(p[0], p[1]);
        if accept(&s) {
            return p;
        }
        if attempt == 0 || s.in_brain() {
            fallback = p;
        }
    }
    fallback
}

/// Where the brain ends along a ray from `from` in direction `dir` (mm).
fn brain_edge(level: &AxialLevel, from: [f32; 2], dir: [f32; 2]) -> [f32; 2] {
    let mut last = from;
    for step in 0..120 {
        let t = step as f32;
        let p = [from[0] + dir[0] * t, from[1] + dir[1] * t];
        if level.sample(p[0], p[1]).in_brain() {
            last = p;
        }
    }
    last
}

fn blobs(
    rng: &mut ChaCha8Rng,
    centre: [f32; 2],
    spread: f32,
    count: usize,
    radius: (f32, f32),
) -> Vec<Blob> {
    (0..count)
        .map(|_| {
            let a = rng.random_range(0.0..std::f32::consts::TAU);
            let d = spread * rng.random::<f32>().sqrt();
            Blob {
                centre: [centre[0] + d * a.cos(), centre[1] + d * a.sin()],
                radius: rng.random_range(radius.0..radius.1),
            }
        })
        .collect()
}

/// Plans the lesions of one slice of a family on a given level.
pub fn plan(family: Family, level: &AxialLevel, rng: &mut ChaCha8Rng) -> Vec<Lesion> {
    let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    let base = |kind, centre, radius, rng: &mut ChaCha8Rng, roughness| Lesion {
        kind,
        centre,
        radius,
        outline: Outline::random(rng, roughness),
        oedema_outline: Outline::random(rng, 0.45),
        oedema_scale: rng.random_range(1.5..2.1),
        outward: [1.0, 0.0],
        canal: [side, 0.0],
        blobs: Vec::new(),
    };
    match family {
        Family::Normal => Vec::new(),
        Family::Glioma => {
            let high_grade = rng.random_bool(0.6);
            let centre =
                random_point_where(rng, level, (-60.0, 60.0), (-80.0, 50.0), |s| s.wm > 0.55);
            let radius = rng.random_range(10.0..26.0);
            vec![base(
                LesionKind::Glioma { high_grade },
                centre,
                radius,
                rng,
                0.22,
            )]
        }
        Family::Meningioma => {
            let radius = rng.random_range(9.0..24.0);
            let (centre, outward) = if rng.random_bool(0.3) {
                // Falx: along the midline, growing into one hemisphere.
                let y = rng.random_range(-60.0..40.0);
                ([side * radius * 0.55, y], [-side, 0.0])
            } else {
                let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
                let dir = [angle.cos(), angle.sin()];
                let edge = brain_edge(level, [0.0, -15.0], dir);
                (
                    [
                        edge[0] - dir[0] * radius * 0.45,
                        edge[1] - dir[1] * radius * 0.45,
                    ],
                    dir,
                )
            };
            let mut lesion = base(LesionKind::Meningioma, centre, radius, rng, 0.05);
            lesion.outward = outward;
            vec![lesion]
        }
        Family::Schwannoma => {
            let radius = rng.random_range(7.0..17.0);
            let centre = [
                side * rng.random_range(22.0..30.0),
                rng.random_range(-38.0..-26.0),
            ];
            let mut lesion = base(LesionKind::Schwannoma, centre, radius, rng, 0.06);
            lesion.canal = [side * 0.95, 0.31];
            if radius > 12.0 {
                let count = rng.random_range(2..5);
                lesion.blobs = blobs(rng, centre, radius * 0.6, count, (1.5, radius * 0.3));
            }
            vec![lesion]
        }
        Family::Neurocitoma => {
            let centre =
                random_point_where(rng, level, (-16.0, 16.0), (-30.0, 20.0), |s| s.csf() > 0.6);
            let radius = rng.random_range(10.0..20.0);
            let mut lesion = base(LesionKind::Neurocytoma, centre, radius, rng, 0.12);
            let count = rng.random_range(6..13);
            lesion.blobs = blobs(rng, centre, radius * 0.8, count, (1.5, 4.0));
            vec![lesion]
        }
        Family::Outros => match rng.random_range(0..3) {
            0 => {
                let centre = random_point_where(rng, level, (-60.0, 60.0), (-80.0, 50.0), |s| {
                    s.wm + s.gm > 0.8
                });
                let radius = rng.random_range(8.0..18.0);
                vec![base(LesionKind::Abscess, centre, radius, rng, 0.04)]
            }
            1 => {
                let centre =
                    random_point_where(rng, level, (-60.0, 60.0), (-80.0, 50.0), |s| s.in_brain());
                let radius = rng.random_range(6.0..20.0);
                vec![base(LesionKind::Cyst, centre, radius, rng, 0.04)]
            }
            _ => {
                let mut lesion = base(LesionKind::Encephalopathy, [0.0, -15.0], 0.0, rng, 0.0);
                let count = rng.random_range(3..8);
                let mut patches = Vec::new();
                for _ in 0..count {
                    let c = random_point_where(rng, level, (-55.0, 55.0), (-75.0, 45.0), |s| {
                        s.wm > 0.5
                    });
                    let r = rng.random_range(5.0..14.0);
                    patches.push(Blob {
                        centre: c,
                        radius: r,
                    });
                    // Encephalopathies are often roughly symmetric.
                    if rng.random_bool(0.7) {
                        patches.push(Blob {
                            centre: [-c[0], c[1]],
                            radius: r * rng.random_range(0.7..1.2),
                        });
                    }
                }
                lesion.blobs = patches;
                vec![lesion]
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_is_one_inside_zero_outside() {
        assert_eq!(edge(0.0, 0.1), 1.0);
        assert_eq!(edge(2.0, 0.1), 0.0);
        assert!((edge(1.0, 0.1) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn round_outline_has_relative_radius_of_distance_over_radius() {
        let round = Outline {
            amplitude: [0.0; 4],
            phase: [0.0; 4],
        };
        assert!((round.relative_radius(3.0, 4.0, 10.0) - 0.5).abs() < 1e-6);
    }
}
