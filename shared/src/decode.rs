//! Bytes → luminance: decodes JPEG, PNG, BMP and TIFF (8/16-bit, gray, RGB,
//! RGBA, CMYK where the `image` crate decodes it) and DICOM Part 10 files
//! (through [`crate::dicom`]) into one f32 plane in [0, 1], refusing bad input
//! with a typed error before it can cost memory.

use std::io::{Cursor, ErrorKind};

use image::error::UnsupportedErrorKind;
use image::{DynamicImage, ImageError, ImageFormat, ImageReader};

use crate::error::PreprocessError;

/// Limits that stop decompression bombs before decoding starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_pixels: u64,
    pub max_side: u32,
}

impl Default for DecodeLimits {
    /// 64 megapixels and 16,384 per side: far above any MRI slice.
    fn default() -> Self {
        DecodeLimits {
            max_pixels: 64 * 1024 * 1024,
            max_side: 16_384,
        }
    }
}

impl DecodeLimits {
    /// Refuses a zero-sized image or one above these limits, from its
    /// declared dimensions, before anything is decoded.
    pub fn check(&self, width: u32, height: u32) -> Result<(), PreprocessError> {
        if width == 0 || height == 0 {
            return Err(PreprocessError::ZeroSized { width, height });
        }
        if u64::from(width) * u64::from(height) > self.max_pixels
            || width > self.max_side
            || height > self.max_side
        {
            return Err(PreprocessError::TooLarge {
                width,
                height,
                max_pixels: self.max_pixels,
                max_side: self.max_side,
            });
        }
        Ok(())
    }

    /// What the scanner-side box accepts: 16 megapixels and 4,096 per side.
    /// MRI slices are 256²–1024² (2048² at most for high-resolution
    /// acquisitions); a larger image is not a slice, and decoding it would
    /// cost the box hundreds of megabytes (16 MP × f32 luminance = 64 MiB).
    pub const fn slice() -> DecodeLimits {
        DecodeLimits {
            max_pixels: 16 * 1024 * 1024,
            max_side: 4096,
        }
    }
}

/// A single-channel image, row-major, values in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Luminance {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

impl Luminance {
    pub fn new(width: u32, height: u32, data: Vec<f32>) -> Luminance {
        debug_assert_eq!(data.len(), width as usize * height as usize);
        Luminance {
            width,
            height,
            data,
        }
    }

    pub fn get(&self, x: u32, y: u32) -> f32 {
        self.data[y as usize * self.width as usize + x as usize]
    }
}

const SUPPORTED: [ImageFormat; 4] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
];

/// A decoded slice: its luminance and, for DICOM input, what the file says
/// about itself (modality, plane, declared sequence, UID hash).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedSlice {
    pub luminance: Luminance,
    pub dicom: Option<crate::dicom::DicomInfo>,
}

/// Decodes an image or DICOM file's bytes (DICOM recognised by its "DICM"
/// marker, whatever the file is called: scanners export files without an
/// extension).
pub fn decode_slice(bytes: &[u8], limits: DecodeLimits) -> Result<DecodedSlice, PreprocessError> {
    if crate::dicom::is_dicom(bytes) {
        let slice = crate::dicom::decode_dicom(bytes, limits)?;
        return Ok(DecodedSlice {
            luminance: slice.luminance,
            dicom: Some(slice.info),
        });
    }
    Ok(DecodedSlice {
        luminance: decode_image(bytes, limits)?,
        dicom: None,
    })
}

/// Decodes an image or DICOM file's bytes to luminance ([`decode_slice`]
/// without the DICOM description).
pub fn decode_luminance(bytes: &[u8], limits: DecodeLimits) -> Result<Luminance, PreprocessError> {
    decode_slice(bytes, limits).map(|s| s.luminance)
}

/// Decodes an image file's bytes to luminance.
///
/// Colour is reduced with the ITU-R BT.601 luma weights
/// `0.299 R + 0.587 G + 0.114 B` (what Pillow's "L" mode and torchvision's
/// `Grayscale` use); alpha is ignored; 8-bit values are divided by 255 and
/// 16-bit values by 65535.
fn decode_image(bytes: &[u8], limits: DecodeLimits) -> Result<Luminance, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty);
    }
    let format =
        image::guess_format(bytes).map_err(|_| PreprocessError::UnsupportedFormat(None))?;
    if !SUPPORTED.contains(&format) {
        return Err(PreprocessError::UnsupportedFormat(Some(format!(
            "{format:?}"
        ))));
    }

    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(decode_error)?;
    limits.check(width, height)?;

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    // Largest buffer we accept: RGBA, 16 bits per channel.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(image_limits);
    let image = reader.decode().map_err(decode_error)?;
    Ok(to_luminance(&image))
}

fn decode_error(err: ImageError) -> PreprocessError {
    match err {
        ImageError::IoError(e) if e.kind() == ErrorKind::UnexpectedEof => {
            PreprocessError::Truncated(e.to_string())
        }
        ImageError::Unsupported(e) => match e.kind() {
            UnsupportedErrorKind::Format(_) => {
                PreprocessError::UnsupportedFormat(Some(e.to_string()))
            }
            _ => PreprocessError::Corrupt(e.to_string()),
        },
        ImageError::Limits(e) => PreprocessError::Corrupt(format!("limits: {e}")),
        other => {
            let text = other.to_string();
            // Decoders report running out of data in their own words.
            let lower = text.to_lowercase();
            if lower.contains("eof")
                || lower.contains("end of file")
                || lower.contains("unexpected end")
                || lower.contains("truncated")
                || lower.contains("not enough data")
                || lower.contains("no more data")
            {
                PreprocessError::Truncated(text)
            } else {
                PreprocessError::Corrupt(text)
            }
        }
    }
}

fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

fn to_luminance(image: &DynamicImage) -> Luminance {
    let (width, height) = (image.width(), image.height());
    let data: Vec<f32> = match image {
        DynamicImage::ImageLuma8(buf) => buf.pixels().map(|p| f32::from(p.0[0]) / 255.0).collect(),
        DynamicImage::ImageLumaA8(buf) => buf.pixels().map(|p| f32::from(p.0[0]) / 255.0).collect(),
        DynamicImage::ImageLuma16(buf) => {
            buf.pixels().map(|p| f32::from(p.0[0]) / 65535.0).collect()
        }
        DynamicImage::ImageLumaA16(buf) => {
            buf.pixels().map(|p| f32::from(p.0[0]) / 65535.0).collect()
        }
        DynamicImage::ImageRgb8(buf) => buf
            .pixels()
            .map(|p| luma(p.0[0].into(), p.0[1].into(), p.0[2].into()) / 255.0)
            .collect(),
        DynamicImage::ImageRgba8(buf) => buf
            .pixels()
            .map(|p| luma(p.0[0].into(), p.0[1].into(), p.0[2].into()) / 255.0)
            .collect(),
        DynamicImage::ImageRgb16(buf) => buf
            .pixels()
            .map(|p| luma(p.0[0].into(), p.0[1].into(), p.0[2].into()) / 65535.0)
            .collect(),
        DynamicImage::ImageRgba16(buf) => buf
            .pixels()
            .map(|p| luma(p.0[0].into(), p.0[1].into(), p.0[2].into()) / 65535.0)
            .collect(),
        other => other
            .to_rgb32f()
            .pixels()
            .map(|p| luma(p.0[0], p.0[1], p.0[2]).clamp(0.0, 1.0))
            .collect(),
    };
    Luminance::new(width, height, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb, Rgba};

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn gray8_png_values_are_divided_by_255() {
        let img = ImageBuffer::from_raw(2, 1, vec![0u8, 255]).unwrap();
        let bytes = encode(DynamicImage::ImageLuma8(img), ImageFormat::Png);
        let lum = decode_luminance(&bytes, DecodeLimits::default()).unwrap();
        assert_eq!((lum.width, lum.height), (2, 1));
        assert_eq!(lum.data, vec![0.0, 1.0]);
    }

    #[test]
    fn gray16_png_values_are_divided_by_65535() {
        let img: ImageBuffer<Luma<u16>, _> =
            ImageBuffer::from_raw(2, 1, vec![0u16, 32768]).unwrap();
        let bytes = encode(DynamicImage::ImageLuma16(img), ImageFormat::Png);
        let lum = decode_luminance(&bytes, DecodeLimits::default()).unwrap();
        assert_eq!(lum.data, vec![0.0, 32768.0 / 65535.0]);
    }

    #[test]
    fn rgb_uses_bt601_luma_and_alpha_is_ignored() {
        let img: ImageBuffer<Rgb<u8>, _> = ImageBuffer::from_raw(1, 1, vec![255u8, 0, 0]).unwrap();
        let bytes = encode(DynamicImage::ImageRgb8(img), ImageFormat::Bmp);
        let lum = decode_luminance(&bytes, DecodeLimits::default()).unwrap();
        assert!((lum.data[0] - 0.299).abs() < 1e-6, "{}", lum.data[0]);

        let img: ImageBuffer<Rgba<u8>, _> =
            ImageBuffer::from_raw(1, 1, vec![0u8, 255, 0, 7]).unwrap();
        let bytes = encode(DynamicImage::ImageRgba8(img), ImageFormat::Png);
        let lum = decode_luminance(&bytes, DecodeLimits::default()).unwrap();
        assert!((lum.data[0] - 0.587).abs() < 1e-6);
    }

    #[test]
    fn tiff_and_jpeg_decode() {
        let img = ImageBuffer::from_raw(8, 8, vec![200u8; 64]).unwrap();
        let tiff = encode(DynamicImage::ImageLuma8(img.clone()), ImageFormat::Tiff);
        assert_eq!(
            decode_luminance(&tiff, DecodeLimits::default())
                .unwrap()
                .data[0],
            200.0 / 255.0
        );
        let jpeg = encode(DynamicImage::ImageLuma8(img), ImageFormat::Jpeg);
        let lum = decode_luminance(&jpeg, DecodeLimits::default()).unwrap();
        // A flat block survives JPEG within one grey level.
        assert!(lum.data.iter().all(|v| (v * 255.0 - 200.0).abs() <= 1.0));
    }

    #[test]
    fn every_error_path_is_typed() {
        let limits = DecodeLimits::default();
        assert_eq!(decode_luminance(&[], limits), Err(PreprocessError::Empty));
        assert_eq!(
            decode_luminance(b"hello, not an image", limits),
            Err(PreprocessError::UnsupportedFormat(None))
        );
        // A GIF signature: recognised, but not a format of the contract.
        assert!(matches!(
            decode_luminance(b"GIF89a\x01\x00\x01\x00\x00\x00\x00", limits),
            Err(PreprocessError::UnsupportedFormat(Some(_)))
        ));

        let img = ImageBuffer::from_raw(64, 64, vec![90u8; 64 * 64]).unwrap();
        let png = encode(DynamicImage::ImageLuma8(img.clone()), ImageFormat::Png);
        let cut = &png[..png.len() / 2];
        assert!(
            matches!(
                decode_luminance(cut, limits),
                Err(PreprocessError::Truncated(_))
            ),
            "{:?}",
            decode_luminance(cut, limits)
        );
        let jpeg = encode(DynamicImage::ImageLuma8(img), ImageFormat::Jpeg);
        let cut = &jpeg[..jpeg.len() / 3];
        assert!(
            matches!(
                decode_luminance(cut, limits),
                Err(PreprocessError::Truncated(_) | PreprocessError::Corrupt(_))
            ),
            "{:?}",
            decode_luminance(cut, limits)
        );

        let mut corrupt = png.clone();
        for b in corrupt.iter_mut().skip(40).take(40) {
            *b ^= 0x5a;
        }
        assert!(matches!(
            decode_luminance(&corrupt, limits),
            Err(PreprocessError::Corrupt(_) | PreprocessError::Truncated(_))
        ));

        let small = DecodeLimits {
            max_pixels: 1000,
            max_side: 16_384,
        };
        assert!(matches!(
            decode_luminance(&png, small),
            Err(PreprocessError::TooLarge {
                width: 64,
                height: 64,
                ..
            })
        ));
        let narrow = DecodeLimits {
            max_pixels: u64::MAX,
            max_side: 32,
        };
        assert!(matches!(
            decode_luminance(&png, narrow),
            Err(PreprocessError::TooLarge { .. })
        ));
    }

    #[test]
    fn decompression_bomb_header_is_refused_before_decoding() {
        // A PNG header claiming 100000×100000 pixels with no data behind it.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(b"IHDR");
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        // A token IDAT so the header parser reaches the dimensions; no pixel data follows.
        png.extend_from_slice(&4u32.to_be_bytes());
        png.extend_from_slice(b"IDAT\x78\x9c\x03\x00");
        png.extend_from_slice(&crc32(b"IDAT\x78\x9c\x03\x00").to_be_bytes());
        assert!(matches!(
            decode_luminance(&png, DecodeLimits::default()),
            Err(PreprocessError::TooLarge {
                width: 100_000,
                height: 100_000,
                ..
            })
        ));
    }

    #[test]
    fn zero_sized_bmp_is_refused() {
        // Hand-made BMP header with width 0.
        let mut bmp = Vec::new();
        bmp.extend_from_slice(b"BM");
        bmp.extend_from_slice(&58u32.to_le_bytes());
        bmp.extend_from_slice(&[0; 4]);
        bmp.extend_from_slice(&54u32.to_le_bytes());
        bmp.extend_from_slice(&40u32.to_le_bytes());
        bmp.extend_from_slice(&0i32.to_le_bytes()); // width
        bmp.extend_from_slice(&1i32.to_le_bytes()); // height
        bmp.extend_from_slice(&1u16.to_le_bytes());
        bmp.extend_from_slice(&24u16.to_le_bytes());
        bmp.extend_from_slice(&[0; 24]);
        bmp.extend_from_slice(&[0; 4]);
        let err = decode_luminance(&bmp, DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                PreprocessError::ZeroSized { .. } | PreprocessError::Corrupt(_)
            ),
            "{err:?}"
        );
    }

    /// CRC-32 (IEEE) written out for the test's hand-made PNG chunk.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
