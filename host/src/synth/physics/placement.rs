//! Where the physics engine's lesions go, how big they are and which
//! compartments they have, per family, in template millimetres (the
//! compartments themselves: `lesions.rs`).
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

use super::anatomy::{sample_brain, BrainSample};
use super::head::in_fissure;
use super::lesions::{Canal, Dural, Kind, Lesion};
use super::shapes::{add, norm, random_direction, scale, sub, Lobulated, Vec3};
use crate::synth::atlas::Atlas;

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
            let off = scale(random_direction(rng), spread * rng.random::<f32>());
            Lobulated::sphere(add(centre, off), rng.random_range(0.8..1.8))
        })
        .collect()
}

/// Plans the lesions of one study of `family` whose slice is at `z` mm.
pub fn plan(family: Family, atlas: &Atlas, z: f32, rng: &mut ChaCha8Rng) -> Vec<Lesion> {
    draw(family, atlas, z, rng)
        .into_iter()
        .map(Lesion::sealed)
        .collect()
}

fn draw(family: Family, atlas: &Atlas, z: f32, rng: &mut ChaCha8Rng) -> Vec<Lesion> {
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
            let falx = [0.0, rng.random_range(-60.0..35.0), zc];
            // On the falx only where the level has one (not between the
            // thalami); elsewhere on the convexity.
            let (base, normal) = if rng.random_bool(0.3) && in_fissure(falx) {
                (falx, [-side, 0.0, 0.0])
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
                        let off = scale(random_direction(rng), 0.5 * r);
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
                    let off = scale(random_direction(rng), 0.75 * r * rng.random::<f32>());
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
