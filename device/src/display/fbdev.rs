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
    let stride = match read_sysfs(sysfs_dir, "stride") {
        Ok(s) => s.parse().map_err(|_| bad("bad stride"))?,
        Err(_) => width * bits_per_pixel / 8,
    };
    if stride < width * bits_per_pixel / 8 {
        return Err(bad("stride is shorter than a row"));
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
    let mut out = vec![0u8; (g.stride * g.height) as usize];
    let size = frame.size();
    for y in 0..g.height.min(size.height) {
        for x in 0..g.width.min(size.width) {
            let Some(p) = frame.pixel(x, y) else { continue };
            let at = (y * g.stride + x * bytes_per_pixel) as usize;
            match bytes_per_pixel {
                2 => out[at..at + 2].copy_from_slice(&RawU16::from(p).into_inner().to_le_bytes()),
                _ => {
                    let c: Rgb888 = p.into();
                    out[at] = c.b();
                    out[at + 1] = c.g();
                    out[at + 2] = c.r();
                    if bytes_per_pixel == 4 {
                        out[at + 3] = 0xFF;
                    }
                }
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
