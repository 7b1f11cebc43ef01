//! Linux framebuffer backend (`/dev/fbN`). The geometry comes from sysfs
//! (`/sys/class/graphics/fbN/{virtual_size,bits_per_pixel,stride}`), which
//! needs no ioctl (and so no unsafe code); pixel layouts are the standard
//! ones those depths use on Linux panels: 16 bpp RGB565, 24 bpp BGR888,
//! 32 bpp XRGB8888 (little-endian bytes B, G, R, X). A frame smaller than the
//! panel is drawn at the top-left; a larger one is clipped.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::raw::RawU16;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use thiserror::Error;

use super::framebuffer::FrameBuffer;

#[derive(Debug, Error)]
pub enum FbError {
    #[error("framebuffer geometry {path}: {why}")]
    Geometry { path: PathBuf, why: String },
    #[error("{0} bits per pixel is not supported (16, 24 or 32)")]
    Depth(u32),
    #[error("writing the framebuffer {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FbGeometry {
    pub width: u32,
    pub height: u32,
    pub bits_per_pixel: u32,
    /// Bytes per row (≥ width × bytes per pixel).
    pub stride: u32,
}

fn read_sysfs(dir: &Path, name: &str) -> Result<String, FbError> {
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| FbError::Geometry {
            path,
            why: e.to_string(),
        })
}

/// Largest panel side accepted from sysfs.
const MAX_SIDE: u32 = 8192;
/// Largest framebuffer memory written (stride × height).
const MAX_BYTES: u32 = 256 << 20;

/// Reads the geometry of a framebuffer from its sysfs folder.
pub fn read_geometry(sysfs_dir: &Path) -> Result<FbGeometry, FbError> {
    let bad = |why: &str| FbError::Geometry {
        path: sysfs_dir.to_path_buf(),
        why: why.to_string(),
    };
    let size = read_sysfs(sysfs_dir, "virtual_size")?;
    let (w, h) = size
        .split_once(',')
        .ok_or_else(|| bad("virtual_size is not W,H"))?;
    let width: u32 = w.parse().map_err(|_| bad("bad width"))?;
    let height: u32 = h.parse().map_err(|_| bad("bad height"))?;
    let bits_per_pixel: u32 = read_sysfs(sysfs_dir, "bits_per_pixel")?
        .parse()
        .map_err(|_| bad("bad bits_per_pixel"))?;
    if ![16, 24, 32].contains(&bits_per_pixel) {
        return Err(FbError::Depth(bits_per_pixel));
    }
    // Panels beside a scanner are small; sysfs text from a broken driver
    // (or a file put there) must not size our buffers or overflow a u32.
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(bad("virtual_size is outside 1–8192 per side"));
    }
    let row = width * (bits_per_pixel / 8);
    let stride = match read_sysfs(sysfs_dir, "stride") {
        Ok(s) => s.parse().map_err(|_| bad("bad stride"))?,
        Err(_) => row,
    };
    if stride < row {
        return Err(bad("stride is shorter than a row"));
    }
    if stride
        .checked_mul(height)
        .is_none_or(|bytes| bytes > MAX_BYTES)
    {
        return Err(bad("framebuffer memory would exceed 256 MiB"));
    }
    Ok(FbGeometry {
        width,
        height,
        bits_per_pixel,
        stride,
    })
}

/// The bytes of the whole framebuffer memory showing `frame`.
pub fn encode(frame: &FrameBuffer, g: &FbGeometry) -> Result<Vec<u8>, FbError> {
    let bytes_per_pixel = match g.bits_per_pixel {
        16 => 2,
        24 => 3,
        32 => 4,
        other => return Err(FbError::Depth(other)),
    };
    let too_big = || FbError::Geometry {
        path: PathBuf::from("(geometry)"),
        why: format!("{g:?} does not fit in memory"),
    };
    let total = g
        .stride
        .checked_mul(g.height)
        .filter(|&bytes| bytes <= MAX_BYTES)
        .ok_or_else(too_big)?;
    let row = g.width.checked_mul(bytes_per_pixel).ok_or_else(too_big)?;
    if row > g.stride {
        return Err(too_big());
    }
    let mut out = vec![0u8; total as usize];
    let size = frame.size();
    // Every offset below is < stride × height (checked above), so the row
    // and pixel slices are in range; `get_mut` keeps that an invariant
    // rather than a panic if it ever broke.
    for y in 0..g.height.min(size.height) {
        let start = (y * g.stride) as usize;
        let Some(line) = out.get_mut(start..start + row as usize) else {
            return Err(too_big());
        };
        for (x, px) in
            (0..g.width.min(size.width)).zip(line.chunks_exact_mut(bytes_per_pixel as usize))
        {
            let Some(p) = frame.pixel(x, y) else { continue };
            match px {
                [lo, hi] => [*lo, *hi] = RawU16::from(p).into_inner().to_le_bytes(),
                [blue, green, red, rest @ ..] => {
                    let c: Rgb888 = p.into();
                    (*blue, *green, *red) = (c.b(), c.g(), c.r());
                    if let [a] = rest {
                        *a = 0xFF;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// A Linux framebuffer device with its geometry.
#[derive(Debug, Clone)]
pub struct LinuxFramebuffer {
    pub device: PathBuf,
    pub geometry: FbGeometry,
}

impl LinuxFramebuffer {
    /// `/dev/fbN` with the geometry of `/sys/class/graphics/fbN`.
    pub fn open(device: &Path) -> Result<LinuxFramebuffer, FbError> {
        let name = device
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sysfs = Path::new("/sys/class/graphics").join(name);
        Ok(LinuxFramebuffer {
            device: device.to_path_buf(),
            geometry: read_geometry(&sysfs)?,
        })
    }

    /// A frame buffer of the panel's size to draw into.
    pub fn frame(&self) -> FrameBuffer {
        FrameBuffer::new(self.geometry.width, self.geometry.height)
    }

    pub fn show(&self, frame: &FrameBuffer) -> Result<(), FbError> {
        let bytes = encode(frame, &self.geometry)?;
        let write = |bytes: &[u8]| -> std::io::Result<()> {
            let mut file = OpenOptions::new().write(true).open(&self.device)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(bytes)
        };
        write(&bytes).map_err(|source| FbError::Write {
            path: self.device.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::pixelcolor::Rgb565;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    fn frame() -> FrameBuffer {
        let mut fb = FrameBuffer::new(3, 2);
        Rectangle::new(Point::new(1, 0), Size::new(1, 1))
            .into_styled(PrimitiveStyle::with_fill(Rgb565::RED))
            .draw(&mut fb)
            .unwrap();
        fb
    }

    #[test]
    fn sixteen_bit_rows_honour_the_stride() {
        let g = FbGeometry {
            width: 2,
            height: 2,
            bits_per_pixel: 16,
            stride: 6,
        };
        let bytes = encode(&frame(), &g).unwrap();
        // Row 0: black, red (0xF800 little-endian), padding; row 1: black.
        assert_eq!(bytes, vec![0, 0, 0x00, 0xF8, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn thirty_two_bit_is_xrgb_little_endian() {
        let g = FbGeometry {
            width: 3,
            height: 1,
            bits_per_pixel: 32,
            stride: 12,
        };
        let bytes = encode(&frame(), &g).unwrap();
        assert_eq!(&bytes[4..8], &[0, 0, 255, 255]);
        assert_eq!(&bytes[0..4], &[0, 0, 0, 255]);
    }

    #[test]
    fn hostile_geometry_is_refused_not_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let write = |size: &str, bpp: &str, stride: Option<&str>| {
            std::fs::write(dir.path().join("virtual_size"), size).unwrap();
            std::fs::write(dir.path().join("bits_per_pixel"), bpp).unwrap();
            match stride {
                Some(s) => std::fs::write(dir.path().join("stride"), s).unwrap(),
                None => {
                    let _ = std::fs::remove_file(dir.path().join("stride"));
                }
            }
            read_geometry(dir.path())
        };
        assert!(write("100000,100000", "32", None).is_err(), "huge panel");
        assert!(write("0,240", "16", None).is_err(), "zero width");
        assert!(
            write("320,240", "16", Some("4294967295")).is_err(),
            "overflowing stride"
        );
        // 40,000 × 8,000 = 320,000,000 bytes > 256 MiB (268,435,456).
        assert!(
            write("8192,8000", "32", Some("40000")).is_err(),
            "256 MiB exceeded"
        );
        assert!(write("320,240", "16", Some("100")).is_err(), "short stride");
        assert!(write("320,240", "16", None).is_ok());
        // encode() checks a geometry built by hand too.
        for g in [
            FbGeometry {
                width: 4,
                height: 2,
                bits_per_pixel: 32,
                stride: 8,
            },
            FbGeometry {
                width: 2,
                height: u32::MAX,
                bits_per_pixel: 16,
                stride: u32::MAX,
            },
        ] {
            assert!(encode(&frame(), &g).is_err(), "{g:?}");
        }
    }

    #[test]
    fn geometry_from_sysfs_and_writing_to_the_device_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("virtual_size"), "3,2\n").unwrap();
        std::fs::write(dir.path().join("bits_per_pixel"), "16\n").unwrap();
        std::fs::write(dir.path().join("stride"), "6\n").unwrap();
        let g = read_geometry(dir.path()).unwrap();
        assert_eq!(
            g,
            FbGeometry {
                width: 3,
                height: 2,
                bits_per_pixel: 16,
                stride: 6
            }
        );
        let device = dir.path().join("fb0");
        std::fs::write(&device, vec![0xAA; 12]).unwrap();
        let fb = LinuxFramebuffer {
            device: device.clone(),
            geometry: g,
        };
        fb.show(&frame()).unwrap();
        assert_eq!(&std::fs::read(&device).unwrap()[..4], &[0, 0, 0x00, 0xF8]);
        std::fs::write(dir.path().join("bits_per_pixel"), "8\n").unwrap();
        assert!(matches!(read_geometry(dir.path()), Err(FbError::Depth(8))));
    }
}
