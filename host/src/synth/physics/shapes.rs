//! 3-D shape primitives of the physics engine's lesions, in template
//! millimetres: lobulated ellipsoids (a radius modulated by a few smooth
//! functions on the sphere), partial-volume edges at the pixel scale, 3-D
//! smooth random fields for texture, and the incompressible mass effect of
//! a growing mass.
//!
//! Mass effect: a mass of volume (4/3)π a³ inserted at c pushes the
//! surrounding tissue outward as an incompressible medium, so tissue now at
//! distance r from c was at r′ = (r³ − a³)^(1/3) (volume between spheres
//! conserved; the displacement decays as a³/(3r²), cf. the spherical
//! inclusion in linear elasticity, e.g. Hogea et al., "Modeling glioma
//! growth and mass effect in 3D MR images of the brain", MICCAI 2007).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub type Vec3 = [f32; 3];

pub fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub fn add(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

pub fn scale(a: Vec3, k: f32) -> Vec3 {
    [a[0] * k, a[1] * k, a[2] * k]
}

pub fn dot(a: Vec3, b: Vec3) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn norm(a: Vec3) -> f32 {
    dot(a, a).sqrt()
}

/// A random unit vector (uniform on the sphere).
pub fn random_direction(rng: &mut ChaCha8Rng) -> Vec3 {
    let z: f32 = rng.random_range(-1.0..1.0);
    let phi = rng.random_range(0.0..std::f32::consts::TAU);
    let r = (1.0 - z * z).max(0.0).sqrt();
    [r * phi.cos(), r * phi.sin(), z]
}

/// Partial-volume fraction of a shape at a voxel whose signed depth inside
/// the surface is `depth_mm` (negative outside), for voxels `voxel_mm` wide:
/// a linear ramp across one voxel.
pub fn coverage(depth_mm: f32, voxel_mm: f32) -> f32 {
    (0.5 + depth_mm / voxel_mm.max(1e-3)).clamp(0.0, 1.0)
}

/// An ellipsoid whose radius is modulated on the sphere:
/// R(u) = 1 + Σₖ aₖ cos(fₖ (u · dₖ) + φₖ), u the unit direction from the centre.
#[derive(Debug, Clone)]
pub struct Lobulated {
    pub centre: Vec3,
    /// Semi-axes (mm) along x, y, z before lobulation.
    pub radii: Vec3,
    lobes: Vec<(Vec3, f32, f32, f32)>,
}

impl Lobulated {
    /// A lobulated ellipsoid; `roughness` 0 gives a smooth ellipsoid.
    pub fn random(rng: &mut ChaCha8Rng, centre: Vec3, radii: Vec3, roughness: f32) -> Lobulated {
        let count = if roughness > 0.0 { 5 } else { 0 };
        let lobes = (0..count)
            .map(|k| {
                (
                    random_direction(rng),
                    rng.random_range(2.0..5.0) + k as f32,
                    rng.random_range(0.0..std::f32::consts::TAU),
                    roughness * rng.random_range(0.3..1.0) / (1.0 + k as f32),
                )
            })
            .collect();
        Lobulated {
            centre,
            radii,
            lobes,
        }
    }

    /// Smooth round shape.
    pub fn sphere(centre: Vec3, radius: f32) -> Lobulated {
        Lobulated {
            centre,
            radii: [radius; 3],
            lobes: Vec::new(),
        }
    }

    /// A copy scaled about its centre (same lobes).
    pub fn scaled(&self, k: f32) -> Lobulated {
        Lobulated {
            centre: self.centre,
            radii: scale(self.radii, k),
            lobes: self.lobes.clone(),
        }
    }

    /// The mean semi-axis (mm).
    pub fn radius(&self) -> f32 {
        (self.radii[0] + self.radii[1] + self.radii[2]) / 3.0
    }

    /// Normalised radius: < 1 inside, 1 on the surface.
    pub fn rho(&self, p: Vec3) -> f32 {
        let d = sub(p, self.centre);
        let e = [
            d[0] / self.radii[0],
            d[1] / self.radii[1],
            d[2] / self.radii[2],
        ];
        let r = norm(e);
        if r < 1e-6 {
            return 0.0;
        }
        let u = scale(e, 1.0 / r);
        let mut m = 1.0;
        for (dir, freq, phase, amp) in &self.lobes {
            m += amp * (freq * dot(u, *dir) + phase).cos();
        }
        r / m.max(0.3)
    }

    /// Approximate depth inside the surface in mm (negative outside).
    pub fn depth_mm(&self, p: Vec3) -> f32 {
        (1.0 - self.rho(p)) * self.radius()
    }

    /// Partial-volume fraction inside the shape at a voxel of `voxel_mm`.
    pub fn cover(&self, p: Vec3, voxel_mm: f32) -> f32 {
        coverage(self.depth_mm(p), voxel_mm)
    }

    /// A distance from the centre beyond which `coverage(depth_mm, w)` is 0
    /// for every ramp width up to `w` (mm), so callers may skip the shape.
    /// Coverage needs depth > −w/2, i.e. ρ < 1 + w/(2R̄); ρ ≥ r / (aₘₐₓ mₘₐₓ)
    /// with aₘₐₓ the longest semi-axis and mₘₐₓ = 1 + Σ|aₖ| the largest
    /// lobulation factor, so r < aₘₐₓ mₘₐₓ (1 + w/(2R̄)) wherever it is > 0.
    pub fn reach(&self, w: f32) -> f32 {
        let longest = self.radii.iter().copied().fold(0.0, f32::max);
        let lobes: f32 = self.lobes.iter().map(|l| l.3.abs()).sum();
        longest * (1.0 + lobes) * (1.0 + w / (2.0 * self.radius().max(1e-3)))
    }

    /// Whether `p` may be covered for ramp widths up to `w` (see [`reach`](Self::reach)).
    pub fn near(&self, p: Vec3, w: f32) -> bool {
        let d = sub(p, self.centre);
        let r = self.reach(w);
        dot(d, d) < r * r
    }
}

/// A smooth 3-D random field in about [−1, 1]: a sum of random plane waves.
#[derive(Debug, Clone)]
pub struct Field3 {
    waves: Vec<(Vec3, f32)>,
}

impl Field3 {
    pub fn random(rng: &mut ChaCha8Rng, wavelength_mm: f32, count: usize) -> Field3 {
        let waves = (0..count)
            .map(|_| {
                let k = std::f32::consts::TAU / (wavelength_mm * rng.random_range(0.7..1.4));
                (
                    scale(random_direction(rng), k),
                    rng.random_range(0.0..std::f32::consts::TAU),
                )
            })
            .collect();
        Field3 { waves }
    }

    pub fn at(&self, p: Vec3) -> f32 {
        if self.waves.is_empty() {
            return 0.0;
        }
        let sum: f32 = self
            .waves
            .iter()
            .map(|(k, ph)| (dot(*k, p) + ph).sin())
            .sum();
        sum * (2.0 / self.waves.len() as f32).sqrt()
    }
}

/// Where the tissue now at `p` came from, for a mass of effective radius `a`
/// at `centre`: r′ = (r³ − a³)^(1/3) along the same direction.
pub fn pushed_from(p: Vec3, centre: Vec3, a: f32) -> Vec3 {
    if a <= 0.0 {
        return p;
    }
    let d = sub(p, centre);
    let r = norm(d);
    if r < 1e-6 {
        return centre;
    }
    // Beyond 6a the displacement is below a/108: skip the cube root.
    if r > 6.0 * a {
        return p;
    }
    let r0 = (r * r * r - a * a * a).max(0.0).cbrt();
    add(centre, scale(d, r0 / r))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn mass_effect_conserves_volume_as_hand_computed() {
        // a = 10 mm, r = 20 mm: r′ = (8000 − 1000)^(1/3) = 7000^(1/3) = 19.1293 mm.
        let q = pushed_from([20.0, 0.0, 0.0], [0.0; 3], 10.0);
        assert!((q[0] - 19.1293).abs() < 1e-3 && q[1] == 0.0, "{q:?}");
        // Inside the mass, tissue came from the centre.
        assert_eq!(pushed_from([5.0, 0.0, 0.0], [0.0; 3], 10.0), [0.0; 3]);
        // No mass: no displacement.
        assert_eq!(pushed_from([3.0, 4.0, 5.0], [0.0; 3], 0.0), [3.0, 4.0, 5.0]);
    }

    #[test]
    fn smooth_sphere_has_rho_distance_over_radius_and_ramped_edges() {
        let s = Lobulated::sphere([1.0, 2.0, 3.0], 10.0);
        assert!((s.rho([6.0, 2.0, 3.0]) - 0.5).abs() < 1e-6);
        assert!((s.depth_mm([1.0, 2.0, 16.0]) + 3.0).abs() < 1e-5);
        // On the surface: half a voxel covered.
        assert!((s.cover([11.0, 2.0, 3.0], 1.0) - 0.5).abs() < 1e-5);
        assert_eq!(s.cover([1.0, 2.0, 3.0], 1.0), 1.0);
        assert_eq!(s.cover([1.0, 2.0, 15.0], 1.0), 0.0);
    }

    #[test]
    fn nothing_is_covered_beyond_the_reach() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for _ in 0..20 {
            let s = Lobulated::random(&mut rng, [1.0, -2.0, 3.0], [6.0, 9.0, 4.0], 0.3);
            for w in [1.0, 8.0] {
                let r = s.reach(w);
                for _ in 0..200 {
                    let u = random_direction(&mut rng);
                    // Just beyond the reach: nothing; the centre: covered.
                    let p = add(s.centre, scale(u, r * 1.001));
                    assert_eq!(coverage(s.depth_mm(p), w), 0.0, "{r} {w}");
                    assert!(!s.near(p, w));
                }
                assert!(s.near(s.centre, w));
            }
        }
    }

    #[test]
    fn lobulated_shapes_stay_near_their_radius() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let s = Lobulated::random(&mut rng, [0.0; 3], [10.0; 3], 0.25);
        for _ in 0..100 {
            let u = random_direction(&mut rng);
            let rho_at_10 = s.rho(scale(u, 10.0));
            // Σ aₖ ≤ 0.25 (1 + 1/2 + 1/3 + 1/4 + 1/5) = 0.571: ρ ∈ [1/1.571, 1/0.429].
            assert!((0.63..2.34).contains(&rho_at_10), "{rho_at_10}");
        }
    }
}
