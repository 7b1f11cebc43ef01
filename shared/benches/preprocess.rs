//! Preprocessing throughput: a 512×512 8-bit JPEG slice to a 224² model input.

use std::io::Cursor;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use image::{DynamicImage, ImageBuffer, ImageFormat};
use tumorxai_shared::{
    decode_luminance, preprocess_bytes, preprocess_luminance, DecodeLimits, PreprocessSpec,
};

fn slice_jpeg() -> Vec<u8> {
    // A disc with smooth texture: enough structure for a realistic JPEG size.
    let img = ImageBuffer::from_fn(512, 512, |x, y| {
        let (dx, dy) = (x as f32 - 256.0, y as f32 - 256.0);
        let r = (dx * dx + dy * dy).sqrt();
        let v = if r < 200.0 {
            120.0 + 60.0 * (x as f32 / 17.0).sin() * (y as f32 / 23.0).cos()
        } else {
            0.0
        };
        image::Luma([v as u8])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageLuma8(img)
        .write_to(&mut out, ImageFormat::Jpeg)
        .expect("encode");
    out.into_inner()
}

fn bench(c: &mut Criterion) {
    let bytes = slice_jpeg();
    let spec = PreprocessSpec::with_input_size(224);
    let lum = decode_luminance(&bytes, DecodeLimits::default()).expect("decode");
    let mut group = c.benchmark_group("preprocess");
    group.throughput(Throughput::Elements(1));
    group.bench_function("jpeg512_to_224_full", |b| {
        b.iter(|| preprocess_bytes(&bytes, &spec, DecodeLimits::default()).expect("preprocess"))
    });
    group.bench_function("decode_jpeg512", |b| {
        b.iter(|| decode_luminance(&bytes, DecodeLimits::default()).expect("decode"))
    });
    group.bench_function("luminance512_to_224", |b| {
        b.iter(|| preprocess_luminance(&lum, &spec).expect("preprocess"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
