//! Host and device preprocess the same files into identical tensors, bit for
//! bit, over phantom slices and every supported encoding: the path training
//! and evaluation really take (a split's images decoded in parallel into a
//! plane tensor by `host::data::load`, then the batched libtorch
//! normalisation `host::data::normalize`, as the batch loader applies it)
//! against the device path (file → shared contract → array).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
use tumorxai_host::data::{self, Selection};
use tumorxai_host::split::{Side, SplitFile, SplitItem, SplitSettings, SPLIT_FORMAT};
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

/// A split holding `files` (relative to `root`) on the test side.
fn split_of(root: &Path, files: &[PathBuf]) -> SplitFile {
    SplitFile {
        format: SPLIT_FORMAT.to_string(),
        settings: SplitSettings {
            seed: 0,
            val_fraction: 0.0,
            test_fraction: 1.0,
            duplicate_threshold: 0,
        },
        classes: CLASS_NAMES.iter().map(|c| c.to_string()).collect(),
        items: files
            .iter()
            .enumerate()
            .map(|(i, file)| SplitItem {
                path: file
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                class: i % CLASS_NAMES.len(),
                sha256: "0".repeat(64),
                phash: "0".repeat(16),
                group: i,
                side: Side::Test,
                label_percent: None,
            })
            .collect(),
        unreadable: Vec::new(),
    }
}

#[test]
fn host_and_device_tensors_are_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let files = sample_files(tmp.path());
    assert_eq!(CLASS_NAMES.len(), 17);
    let split = split_of(tmp.path(), &files);
    for size in [64u32, 224] {
        let spec = PreprocessSpec::with_input_size(size);
        // The training/evaluation path: the whole set at once.
        let set = data::load(
            &split,
            tmp.path(),
            Selection::Side(Side::Test),
            &spec,
            tch::Device::Cpu,
            || {},
        )
        .unwrap();
        assert!(set.skipped.is_empty(), "{:?}", set.skipped);
        assert_eq!(set.len(), files.len());
        let batch = data::normalize(&set.planes, &spec);
        let s = size as i64;
        assert_eq!(batch.size(), vec![files.len() as i64, 3, s, s]);
        assert_eq!(batch.kind(), tch::Kind::Float);
        for (i, file) in files.iter().enumerate() {
            let host_values: Vec<f32> =
                Vec::<f32>::try_from(batch.get(i as i64).flatten(0, -1)).unwrap();
            let device =
                tumorxai_device::input::load_input(file, &spec, DecodeLimits::default()).unwrap();
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
