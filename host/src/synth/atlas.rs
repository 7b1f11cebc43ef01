//! The anatomy behind every phantom: the MNI ICBM152 2009a T1 template and its
//! grey/white-matter probability maps (embedded; notices in
//! `host/assets/brain-templates/README.md`), loaded once and cut into axial
//! planes at any height.

use std::io::Read;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use nifti::{InMemNiftiObject, IntoNdArray, NiftiObject};

const T1_GZ: &[u8] = include_bytes!("../../assets/brain-templates/mni152_2009a_t1.nii.gz");
const GM_GZ: &[u8] = include_bytes!("../../assets/brain-templates/mni152_2009a_gm.nii.gz");
const WM_GZ: &[u8] = include_bytes!("../../assets/brain-templates/mni152_2009a_wm.nii.gz");

/// A 3-D scalar volume on an axis-aligned grid (x fastest), values in [0, 1].
#[derive(Debug, Clone)]
pub struct Volume {
    pub dims: [usize; 3],
    /// World coordinate (mm, RAS) of voxel (0, 0, 0).
    pub origin: [f32; 3],
    /// Voxel size (mm) along x, y, z.
    pub spacing: [f32; 3],
    pub data: Vec<f32>,
}

impl Volume {
    fn from_nifti_gz(bytes: &[u8], name: &str) -> Result<Volume> {
        let mut raw = Vec::new();
        GzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .with_context(|| format!("decompressing {name}"))?;
        let object = InMemNiftiObject::from_reader(raw.as_slice())
            .with_context(|| format!("parsing NIfTI {name}"))?;
        let header = object.header().clone();
        let array = object
            .into_volume()
            .into_ndarray::<f32>()
            .with_context(|| format!("reading voxels of {name}"))?;
        let array = array
            .into_dimensionality::<ndarray::Ix3>()
            .with_context(|| format!("{name} is not a 3-D volume"))?;
        let (nx, ny, nz) = array.dim();
        // The templates are axis-aligned RAS grids; refuse anything else
        // rather than cutting oblique slices by mistake.
        let diagonal = [header.srow_x[0], header.srow_y[1], header.srow_z[2]];
        let off_diagonal = [
            header.srow_x[1],
            header.srow_x[2],
            header.srow_y[0],
            header.srow_y[2],
            header.srow_z[0],
            header.srow_z[1],
        ];
        if diagonal.iter().any(|d| *d <= 0.0) || off_diagonal.iter().any(|d| d.abs() > 1e-4) {
            bail!(
                "{name}: expected an axis-aligned RAS sform, got {diagonal:?} / {off_diagonal:?}"
            );
        }
        let max = array.iter().copied().fold(0f32, f32::max).max(1e-6);
        let mut data = Vec::with_capacity(nx * ny * nz);
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    data.push(array[[x, y, z]] / max);
                }
            }
        }
        Ok(Volume {
            dims: [nx, ny, nz],
            origin: [header.srow_x[3], header.srow_y[3], header.srow_z[3]],
            spacing: diagonal,
            data,
        })
    }

    /// Axial plane at world height `z_mm`, linearly interpolated between the
    /// two nearest voxel planes (clamped to the volume).
    pub fn axial_plane(&self, z_mm: f32) -> Plane {
        let [nx, ny, nz] = self.dims;
        let fz = ((z_mm - self.origin[2]) / self.spacing[2]).clamp(0.0, (nz - 1) as f32);
        let z0 = fz.floor() as usize;
        let z1 = (z0 + 1).min(nz - 1);
        let t = fz - z0 as f32;
        let a = &self.data[z0 * nx * ny..(z0 + 1) * nx * ny];
        let b = &self.data[z1 * nx * ny..(z1 + 1) * nx * ny];
        Plane {
            width: nx,
            height: ny,
            origin: [self.origin[0], self.origin[1]],
            spacing: [self.spacing[0], self.spacing[1]],
            data: a.iter().zip(b).map(|(p, q)| p + (q - p) * t).collect(),
        }
    }
}

/// A 2-D axial plane in world millimetres.
#[derive(Debug, Clone)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub origin: [f32; 2],
    pub spacing: [f32; 2],
    pub data: Vec<f32>,
}

impl Plane {
    /// Bilinear sample at world (x, y) mm; 0 outside the grid.
    pub fn sample(&self, x_mm: f32, y_mm: f32) -> f32 {
        let fx = (x_mm - self.origin[0]) / self.spacing[0];
        let fy = (y_mm - self.origin[1]) / self.spacing[1];
        if !(fx >= 0.0 && fy >= 0.0) {
            return 0.0;
        }
        let (x0, y0) = (fx as usize, fy as usize);
        if x0 + 1 >= self.width || y0 + 1 >= self.height {
            return 0.0;
        }
        let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
        let i = y0 * self.width + x0;
        let d = &self.data;
        let top = d[i] + (d[i + 1] - d[i]) * tx;
        let bottom = d[i + self.width] + (d[i + self.width + 1] - d[i + self.width]) * tx;
        top + (bottom - top) * ty
    }
}

/// T1 template with its tissue maps, plus the template's own T1 levels of each
/// tissue (for remapping its real texture onto target contrasts).
#[derive(Debug)]
pub struct Atlas {
    pub t1: Volume,
    pub gm: Volume,
    pub wm: Volume,
    /// Mean template T1 value where CSF, GM and WM are each near-certain.
    pub t1_level_csf: f32,
    pub t1_level_gm: f32,
    pub t1_level_wm: f32,
}

/// Brain tissue at one point of an axial plane.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TissueSample {
    pub t1: f32,
    pub gm: f32,
    pub wm: f32,
}

impl TissueSample {
    /// Whether the point is inside the (skull-stripped) brain mask.
    pub fn in_brain(&self) -> bool {
        self.t1 > 0.02 || self.gm + self.wm > 0.3
    }

    /// CSF fraction: what the brain mask holds besides GM and WM.
    pub fn csf(&self) -> f32 {
        if self.in_brain() {
            (1.0 - self.gm - self.wm).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// The three planes of one axial level, interleaved per texel so one
/// bilinear lookup serves T1, GM and WM (the generator's hottest path).
#[derive(Debug, Clone)]
pub struct AxialLevel {
    pub z_mm: f32,
    width: usize,
    height: usize,
    origin: [f32; 2],
    spacing: [f32; 2],
    texels: Vec<[f32; 3]>,
}

impl AxialLevel {
    fn interleave(z_mm: f32, t1: Plane, gm: Plane, wm: Plane) -> AxialLevel {
        let texels = (0..t1.data.len())
            .map(|i| [t1.data[i], gm.data[i], wm.data[i]])
            .collect();
        AxialLevel {
            z_mm,
            width: t1.width,
            height: t1.height,
            origin: t1.origin,
            spacing: t1.spacing,
            texels,
        }
    }

    /// Bilinear sample at world (x, y) mm; all zero outside the grid.
    pub fn sample(&self, x_mm: f32, y_mm: f32) -> TissueSample {
        let fx = (x_mm - self.origin[0]) / self.spacing[0];
        let fy = (y_mm - self.origin[1]) / self.spacing[1];
        if !(fx >= 0.0 && fy >= 0.0) {
            return TissueSample::default();
        }
        let (x0, y0) = (fx as usize, fy as usize);
        if x0 + 1 >= self.width || y0 + 1 >= self.height {
            return TissueSample::default();
        }
        let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
        let i = y0 * self.width + x0;
        let (a, b, c, d) = (
            self.texels[i],
            self.texels[i + 1],
            self.texels[i + self.width],
            self.texels[i + self.width + 1],
        );
        let mut out = [0f32; 3];
        for k in 0..3 {
            let top = a[k] + (b[k] - a[k]) * tx;
            let bottom = c[k] + (d[k] - c[k]) * tx;
            out[k] = top + (bottom - top) * ty;
        }
        TissueSample {
            t1: out[0],
            gm: out[1],
            wm: out[2],
        }
    }
}

impl Atlas {
    /// The embedded atlas, decoded on first use (≈ 1 s) and shared afterwards.
    pub fn embedded() -> Result<&'static Atlas> {
        static ATLAS: OnceLock<std::result::Result<Atlas, String>> = OnceLock::new();
        ATLAS
            .get_or_init(|| Atlas::load().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("loading the embedded brain templates: {e}"))
    }

    fn load() -> Result<Atlas> {
        let t1 = Volume::from_nifti_gz(T1_GZ, "mni152_2009a_t1")?;
        let gm = Volume::from_nifti_gz(GM_GZ, "mni152_2009a_gm")?;
        let wm = Volume::from_nifti_gz(WM_GZ, "mni152_2009a_wm")?;
        if t1.dims != gm.dims || t1.dims != wm.dims {
            bail!(
                "template grids differ: {:?} {:?} {:?}",
                t1.dims,
                gm.dims,
                wm.dims
            );
        }
        let mut sums = [(0f64, 0usize); 3];
        for i in 0..t1.data.len() {
            let (t, g, w) = (t1.data[i], gm.data[i], wm.data[i]);
            let inside = t > 0.02;
            let csf = if inside { 1.0 - g - w } else { 0.0 };
            for (k, p) in [csf, g, w].into_iter().enumerate() {
                if inside && p > 0.9 {
                    sums[k].0 += f64::from(t);
                    sums[k].1 += 1;
                }
            }
        }
        let level = |k: usize| (sums[k].0 / sums[k].1.max(1) as f64) as f32;
        Ok(Atlas {
            t1_level_csf: level(0),
            t1_level_gm: level(1),
            t1_level_wm: level(2),
            t1,
            gm,
            wm,
        })
    }

    pub fn level(&self, z_mm: f32) -> AxialLevel {
        AxialLevel::interleave(
            z_mm,
            self.t1.axial_plane(z_mm),
            self.gm.axial_plane(z_mm),
            self.wm.axial_plane(z_mm),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_templates_load_in_mni_space() {
        let atlas = Atlas::embedded().unwrap();
        assert_eq!(atlas.t1.dims, [197, 233, 189]);
        assert_eq!(atlas.t1.spacing, [1.0, 1.0, 1.0]);
        // The template's own contrast: CSF < GM < WM on T1.
        assert!(atlas.t1_level_csf < atlas.t1_level_gm, "{atlas:?}");
        assert!(atlas.t1_level_gm < atlas.t1_level_wm);
        // MNI origin (0, 0, 0) lies inside the brain; a point 120 mm lateral does not.
        let level = atlas.level(10.0);
        assert!(level.sample(0.0, 0.0).in_brain() || level.sample(5.0, 0.0).in_brain());
        assert!(!level.sample(120.0, 0.0).in_brain());
        // 30 mm lateral at the level of the basal ganglia / deep white matter.
        let s = level.sample(28.0, -10.0);
        assert!(s.gm + s.wm > 0.5, "{s:?}");
    }

    #[test]
    fn plane_sampling_is_bilinear() {
        let plane = Plane {
            width: 2,
            height: 2,
            origin: [0.0, 0.0],
            spacing: [1.0, 1.0],
            data: vec![0.0, 1.0, 2.0, 3.0],
        };
        assert_eq!(plane.sample(0.5, 0.5), 1.5);
        assert_eq!(plane.sample(0.25, 0.0), 0.25);
        assert_eq!(plane.sample(-1.0, 0.0), 0.0);
    }
}
