//! Host and device preprocess the same files into identical tensors, bit for
//! bit: the host path (file → shared contract → libtorch tensor) against the
//! device path (file → shared contract → array), over phantom slices and
//! every supported encoding.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
use tumorxai_host::synth::{self, Atlas};
use tumorxai_shared::{DecodeLimits, PreprocessSpec, CLASS_NAMES};

fn write(dir: &Path, name: &str, image: DynamicImage, format: ImageFormat) -> PathBuf {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes.into_inner()).unwrap();
    path
}

fn sample_files(dir: &Path) -> Vec<PathBuf> {
    let atlas = Atlas::embedded().unwrap();
    let mut files = Vec::new();
    for class in [1, 6, 10, 15] {
        let g = synth::generate(atlas, 77, class, 0, 200).unwrap();
        let path = dir.join(format!("class{class}.jpg"));
        std::fs::write(&path, &g.jpeg).unwrap();
        files.push(path);
        // The same slice as 16-bit PNG, RGB BMP, RGBA PNG and TIFF, and non-square.
        let px = &g.phantom.pixels;
        let (w, h) = (200u32, 200u32);
        let g16 = ImageBuffer::<Luma<u16>, _>::from_fn(w, h, |x, y| {
            Luma([u16::from(px[(y * w + x) as usize]) * 257])
        });
        files.push(write(
            dir,
            &format!("class{class}-16.png"),
            DynamicImage::ImageLuma16(g16),
            ImageFormat::Png,
        ));
        let rgb = ImageBuffer::<Rgb<u8>, _>::from_fn(w, h, |x, y| {
            let v = px[(y * w + x) as usize];
            Rgb([v, v / 2, v])
        });
        files.push(write(
            dir,
            &format!("class{class}.bmp"),
            DynamicImage::ImageRgb8(rgb),
            ImageFormat::Bmp,
        ));
        let rgba = ImageBuffer::<Rgba<u8>, _>::from_fn(w, h - 37, |x, y| {
            let v = px[(y * w + x) as usize];
            Rgba([v, v, v, 128])
        });
        files.push(write(
            dir,
            &format!("class{class}-rgba.png"),
            DynamicImage::ImageRgba8(rgba),
            ImageFormat::Png,
        ));
        let gray =
            ImageBuffer::<Luma<u8>, _>::from_fn(w - 50, h, |x, y| Luma([px[(y * w + x) as usize]]));
        files.push(write(
            dir,
            &format!("class{class}.tiff"),
            DynamicImage::ImageLuma8(gray),
            ImageFormat::Tiff,
        ));
    }
    files
}

#[test]
fn host_and_device_tensors_are_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample_files(tmp.path());
    assert_eq!(CLASS_NAMES.len(), 17);
    for size in [64u32, 224] {
        let spec = PreprocessSpec::with_input_size(size);
        for file in &files {
            let host =
                tumorxai_host::tensor::load_input(file, &spec, DecodeLimits::default()).unwrap();
            let device =
                tumorxai_device::input::load_input(file, &spec, DecodeLimits::default()).unwrap();
            let s = size as i64;
            assert_eq!(host.size(), vec![1, 3, s, s]);
            assert_eq!(host.kind(), tch::Kind::Float);
            let host_values: Vec<f32> = Vec::<f32>::try_from(host.flatten(0, -1)).unwrap();
            assert_eq!(host_values.len(), device.data.len());
            let host_bits: Vec<u32> = host_values.iter().map(|v| v.to_bits()).collect();
            let device_bits: Vec<u32> = device.data.iter().map(|v| v.to_bits()).collect();
            assert!(
                host_bits == device_bits,
                "{} differs at size {size}",
                file.display()
            );
            // Not a trivially constant tensor.
            let (min, max) = host_values
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            assert!(max - min > 1.0, "{}: range {min}..{max}", file.display());
        }
    }
}

#[test]
fn both_sides_refuse_bad_files_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = PreprocessSpec::with_input_size(32);
    for (name, bytes) in [("empty.jpg", &b""[..]), ("text.png", &b"not an image"[..])] {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let host =
            tumorxai_host::tensor::load_input(&path, &spec, DecodeLimits::default()).unwrap_err();
        let device =
            tumorxai_device::input::load_input(&path, &spec, DecodeLimits::default()).unwrap_err();
        assert_eq!(format!("{:#}", host), format!("{:#}", device));
    }
}
