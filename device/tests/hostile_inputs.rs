//! A hostile corpus, built here from one phantom slice and from scratch:
//! truncated and garbled JPEG/PNG/TIFF, decompression bombs, odd encodings
//! (16-bit, alpha, CMYK, 1×1, extreme aspect, huge dimensions), non-images and
//! images that are not brain slices. Through the device pipeline with the
//! demo bundle, every one ends in a clear error or REVIEW — never a panic,
//! never a confident flag; valid encodings of a real slice are triaged as the
//! slice itself is. Then the whole corpus goes through `serve --once`: the
//! service answers each file and keeps going.

use std::io::Cursor;

use crate::common::{demo_model, repo};
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
use tumorxai_device::pipeline::run_slice;
use tumorxai_device::triage::{Flag, Thresholds};

/// The slice the corpus is made from: the glioma T1C+ sample as it was
/// before the phantoms gained T1C+ vessels (the committed CMYK copies in
/// `fixtures/` were made from it by `make_cmyk.py`, and must stay copies of
/// the same slice).
fn base_slice() -> Vec<u8> {
    std::fs::read(repo().join("device/tests/fixtures/hostile-base.jpg")).unwrap()
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("models/samples").join(name)).unwrap()
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn gray(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> DynamicImage {
    DynamicImage::ImageLuma8(ImageBuffer::from_fn(w, h, |x, y| Luma([f(x, y)])))
}

/// CRC-32 (IEEE) for hand-made PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header claims `w × h` but carries almost no data: a
/// decompression bomb must be refused from the header alone.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1]);
    chunk(b"IEND", &[]);
    out
}

/// Offset of the first entropy-coded byte of a JPEG.
fn scan_start(bytes: &[u8]) -> usize {
    let sos = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    sos + 2 + usize::from(u16::from_be_bytes([bytes[sos + 2], bytes[sos + 3]]))
}

/// A 2 × 2 montage of four sample slices.
fn montage() -> DynamicImage {
    let tiles: Vec<image::GrayImage> = [
        "00-glioma-t1.jpg",
        "05-meningioma-t2.jpg",
        "07-normal-t2.jpg",
        "14-schwannoma-t1.jpg",
    ]
    .iter()
    .map(|n| image::load_from_memory(&sample(n)).unwrap().to_luma8())
    .collect();
    let (w, h) = (tiles[0].width(), tiles[0].height());
    DynamicImage::ImageLuma8(ImageBuffer::from_fn(2 * w, 2 * h, |x, y| {
        let tile = &tiles[((y / h) * 2 + x / w) as usize];
        *tile.get_pixel(
            (x % w).min(tile.width() - 1),
            (y % h).min(tile.height() - 1),
        )
    }))
}

/// (name, bytes, is a valid encoding of a real brain slice).
fn corpus() -> Vec<(String, Vec<u8>, bool)> {
    let jpeg = base_slice();
    let slice = image::load_from_memory(&jpeg).unwrap();
    let (w, h) = (slice.width(), slice.height());
    let start = scan_start(&jpeg);
    let mut c: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let mut add =
        |name: &str, bytes: Vec<u8>, valid: bool| c.push((name.to_string(), bytes, valid));
    // Truncated files.
    for percent in [5, 30, 60, 90, 99] {
        add(
            &format!("truncated-{percent}.jpg"),
            jpeg[..jpeg.len() * percent / 100].to_vec(),
            false,
        );
    }
    // Damaged entropy data that still decodes: a marker, zeroed runs,
    // flipped bits.
    let mut marker = jpeg.clone();
    let mid = start + (jpeg.len() - start) / 2;
    marker[mid] = 0xFF;
    marker[mid + 1] = 0xD0 + 3;
    add("marker-in-scan.jpg", marker, false);
    for (i, frac) in [0.2f64, 0.5, 0.8].iter().enumerate() {
        let mut zeroed = jpeg.clone();
        let at = start + ((jpeg.len() - start) as f64 * frac) as usize;
        zeroed[at..at + 64].fill(0);
        add(&format!("zeroed-run-{i}.jpg"), zeroed, false);
    }
    let mut flipped = jpeg.clone();
    for k in 0..40 {
        let at = start + 17 + k * (jpeg.len() - start - 40) / 40;
        flipped[at] ^= 0x5A;
    }
    add("bit-flips.jpg", flipped, false);
    let png = encode(slice.clone(), ImageFormat::Png);
    add("truncated.png", png[..png.len() / 2].to_vec(), false);
    let mut garbled_png = png.clone();
    let n = garbled_png.len();
    garbled_png[n / 2..n / 2 + 32].fill(0xAB);
    add("garbled.png", garbled_png, false);
    let tiff = encode(slice.clone(), ImageFormat::Tiff);
    add("truncated.tiff", tiff[..tiff.len() / 3].to_vec(), false);
    // Decompression bombs and huge dimensions.
    add("bomb-100000.png", png_bomb(100_000, 100_000), false);
    add("bomb-60000x20.png", png_bomb(60_000, 20), false);
    let mut jpeg_bomb = jpeg.clone();
    let sof = jpeg_bomb
        .windows(2)
        .position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])
        .unwrap();
    jpeg_bomb[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    add("bomb-65535.jpg", jpeg_bomb, false);
    add(
        "wide-5000.png",
        encode(gray(5000, 8, |x, _| (x % 256) as u8), ImageFormat::Png),
        false,
    );
    // Valid encodings of the real slice: triaged as the slice is.
    let luma16 = DynamicImage::ImageLuma16(ImageBuffer::from_fn(w, h, |x, y| {
        Luma([u16::from(slice.to_luma8().get_pixel(x, y)[0]) * 257])
    }));
    add("slice-16bit.png", encode(luma16, ImageFormat::Png), true);
    let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_fn(w, h, |x, y| {
        let v = slice.to_luma8().get_pixel(x, y)[0];
        Rgba([v, v, v, 100])
    }));
    add("slice-alpha.png", encode(rgba, ImageFormat::Png), true);
    add(
        "slice.bmp",
        encode(DynamicImage::ImageRgb8(slice.to_rgb8()), ImageFormat::Bmp),
        true,
    );
    // CMYK (JPEG with an Adobe marker, deflated TIFF), written by Pillow:
    // fixtures/make_cmyk.py.
    for name in ["slice-cmyk.jpg", "slice-cmyk.tif"] {
        let bytes = std::fs::read(repo().join("device/tests/fixtures").join(name)).unwrap();
        add(name, bytes, true);
    }
    // Degenerate images.
    add(
        "one-pixel.png",
        encode(gray(1, 1, |_, _| 200), ImageFormat::Png),
        false,
    );
    add(
        "strip-1024x16.png",
        encode(
            gray(1024, 16, |x, y| ((x * 7 + y * 13) % 251) as u8),
            ImageFormat::Png,
        ),
        false,
    );
    add(
        "black.png",
        encode(gray(256, 256, |_, _| 0), ImageFormat::Png),
        false,
    );
    add(
        "white.jpg",
        encode(gray(256, 256, |_, _| 255), ImageFormat::Jpeg),
        false,
    );
    // Not images at all.
    add("empty.jpg", Vec::new(), false);
    add(
        "text.jpg",
        b"Patient: DOE^JOHN  this is not an image".to_vec(),
        false,
    );
    add(
        "elf.png",
        b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".repeat(20),
        false,
    );
    add("zip.tiff", b"PK\x03\x04\x14\0\0\0\x08\0".repeat(30), false);
    add(
        "random.bin",
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        false,
    );
    add("gif.gif", b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xff\xff\xff!\xf9\x04\x01\0\0\0\0,\0\0\0\0\x01\0\x01\0\0\x02\x02D\x01\0;".to_vec(), false);
    // Images that are not brain slices.
    add(
        "page.png",
        encode(
            gray(400, 560, |_, y| if y % 24 < 3 { 30 } else { 245 }),
            ImageFormat::Png,
        ),
        false,
    );
    add(
        "checkerboard.png",
        encode(
            gray(
                256,
                256,
                |x, y| if (x / 32 + y / 32) % 2 == 0 { 0 } else { 255 },
            ),
            ImageFormat::Png,
        ),
        false,
    );
    add(
        "noise.png",
        encode(
            gray(256, 256, |x, y| {
                (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)).wrapping_mul(2_246_822_519)
                    as u8
            }),
            ImageFormat::Png,
        ),
        false,
    );
    add(
        "gradient.png",
        encode(gray(256, 256, |x, _| x as u8), ImageFormat::Png),
        false,
    );
    add(
        "colour-bars.png",
        encode(
            DynamicImage::ImageRgb8(ImageBuffer::from_fn(320, 240, |x, _| {
                const BARS: [[u8; 3]; 7] = [
                    [255, 255, 255],
                    [255, 255, 0],
                    [0, 255, 255],
                    [0, 255, 0],
                    [255, 0, 255],
                    [255, 0, 0],
                    [0, 0, 255],
                ];
                Rgb(BARS[(x * 7 / 320) as usize])
            })),
            ImageFormat::Png,
        ),
        false,
    );
    add("montage.jpg", encode(montage(), ImageFormat::Jpeg), false);
    c
}

#[test]
fn every_hostile_input_ends_in_an_error_or_review() {
    let model = demo_model();
    let corpus = corpus();
    assert!(corpus.len() >= 30, "{} inputs", corpus.len());
    // Valid encodings of the slice must be triaged as the slice itself is.
    let original = run_slice(&model, &base_slice(), Thresholds::default())
        .unwrap()
        .triage
        .flag;
    let mut report = Vec::new();
    let mut confident = Vec::new();
    for (name, bytes, valid) in &corpus {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_slice(&model, bytes, Thresholds::default())
        }));
        let Ok(result) = outcome else {
            panic!("{name}: the pipeline panicked");
        };
        match result {
            Err(e) => {
                let message = e.to_string();
                assert!(!message.is_empty(), "{name}: an error must say why");
                assert!(!valid, "{name}: a valid slice was refused: {message}");
                report.push(format!("{name}: error: {message}"));
            }
            Ok(r) => {
                report.push(format!(
                    "{name}: {} ({})",
                    r.triage.flag.banner(),
                    r.triage.reason
                ));
                if !valid && r.triage.flag != Flag::Review {
                    confident.push(name.clone());
                }
                if *valid {
                    assert_eq!(r.triage.flag, original, "{name}: triaged unlike the slice");
                }
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        confident.is_empty(),
        "confident flags for hostile inputs: {confident:?}\n{}",
        report.join("\n")
    );
}

#[test]
fn the_service_answers_every_hostile_input_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let corpus = corpus();
    for (name, bytes, _) in &corpus {
        std::fs::write(inbox.join(name), bytes).unwrap();
    }
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_tumorxai-device"))
        .current_dir(repo())
        .args(["serve", "--once", "--inbox"])
        .arg(&inbox)
        .arg("--outbox")
        .arg(tmp.path().join("outbox"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let answers = std::fs::read_dir(tmp.path().join("outbox"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(answers, corpus.len(), "one answer per input");
    let archived = std::fs::read_dir(tmp.path().join("archive"))
        .unwrap()
        .count();
    assert_eq!(archived, corpus.len());
    let audit = std::fs::read_to_string(tmp.path().join("audit/audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), corpus.len());
}
