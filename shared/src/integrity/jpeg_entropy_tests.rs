//! The entropy walk on hand-built streams, on clean files from three
//! encoders (the image crate, libjpeg through Pillow, the committed samples)
//! and on the same files with a zeroed run.

use std::path::PathBuf;

use super::*;

/// A grey 8-bit JPEG of `width`×8 with one-code tables: DC "0" → category 0,
/// AC "0" → end of block, so each 8×8 block is the two bits "00".
fn hand_built(width: u16, restart_interval: u16, entropy: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    // DHT: DC slot 0 and AC slot 0, each one code of length 1 (symbol 0).
    let mut table = |class_slot: u8| {
        out.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x14, class_slot, 1]);
        out.extend_from_slice(&[0; 15]);
        out.push(0x00);
    };
    table(0x00);
    table(0x10);
    let [wh, wl] = width.to_be_bytes();
    out.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 8, 0, 8, wh, wl, 1, 1, 0x11, 0]);
    if restart_interval > 0 {
        let [rh, rl] = restart_interval.to_be_bytes();
        out.extend_from_slice(&[0xFF, 0xDD, 0x00, 0x04, rh, rl]);
    }
    out.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0]);
    out.extend_from_slice(entropy);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

#[test]
fn hand_built_streams() {
    // One block: "00" then six 1-bits of padding = 0x3F.
    assert_eq!(walk(&hand_built(8, 0, &[0x3F])), Ok(Walk::Consistent));
    // Two blocks in one byte: "00 00" + "1111" = 0x0F.
    assert_eq!(walk(&hand_built(16, 0, &[0x0F])), Ok(Walk::Consistent));
    // Two blocks promised, one written: the second DC code runs into EOI.
    let short = walk(&hand_built(16, 0, &[0x3F])).unwrap_err();
    assert!(short.contains("after 1 of its 2 MCUs"), "{short}");
    // One block promised, a byte more written.
    let long = walk(&hand_built(8, 0, &[0x3F, 0x3F])).unwrap_err();
    assert!(
        long.contains("1 bytes of entropy data after the last of 1 MCUs"),
        "{long}"
    );
    // Restart interval 1: RST0 between the two blocks; RST1 there is wrong.
    let rst = |n: u8| hand_built(16, 1, &[0x3F, 0xFF, 0xD0 + n, 0x3F]);
    assert_eq!(walk(&rst(0)), Ok(Walk::Consistent));
    assert!(walk(&rst(1))
        .unwrap_err()
        .contains("RST0 missing after 1 MCUs"));
    // Fill bytes before a restart marker (T.81 B.1.1.2).
    assert_eq!(
        walk(&hand_built(16, 1, &[0x3F, 0xFF, 0xFF, 0xFF, 0xD0, 0x3F])),
        Ok(Walk::Consistent)
    );
    // A restart marker after the last interval is tolerated, as libjpeg does.
    assert_eq!(
        walk(&hand_built(16, 1, &[0x3F, 0xFF, 0xD0, 0x3F, 0xFF, 0xD1])),
        Ok(Walk::Consistent)
    );
    // No end-of-image marker, and a scan before any frame.
    let mut cut = hand_built(8, 0, &[0x3F]);
    cut.truncate(cut.len() - 2);
    assert!(walk(&cut).is_err());
    assert!(walk(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02]).is_err());
}

#[test]
fn what_decoders_tolerate_is_not_called_damage() {
    // A baseline scan header with zeros where Ss, Se and Ah/Al belong.
    let mut zeros = hand_built(8, 0, &[0x3F]);
    let sos = zeros.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    zeros[sos + 7..sos + 10].copy_from_slice(&[0, 0, 0]);
    assert_eq!(walk(&zeros), Ok(Walk::Consistent));
    // No DHT segment (Motion-JPEG): the standard tables are implied.
    let mut mjpeg = hand_built(8, 0, &[0x3F]);
    let dht = mjpeg.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
    mjpeg.drain(dht..dht + 2 * 22);
    assert_eq!(
        walk(&mjpeg),
        Ok(Walk::NotChecked("Huffman tables left out (Motion-JPEG)"))
    );
}

#[test]
fn coefficients_past_the_64th_are_refused() {
    // AC table: "0" → 0x11 (a run of one zero, then a value of size 1). With
    // all-zero data a block reads DC "0", then AC codes "0" + one value bit,
    // each advancing two coefficient positions: 31 codes reach position 63,
    // and the 32nd would place a coefficient at 64.
    let mut bytes = hand_built(8, 0, &[0x00; 17]);
    let ac = bytes
        .windows(2)
        .position(|w| w == [0x10, 0x01])
        .expect("AC table");
    bytes[ac + 17] = 0x11;
    let why = walk(&bytes).unwrap_err();
    assert!(why.contains("coefficients past the 64th"), "{why}");
}

fn repo_file(path: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn samples() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn image_crate_jpeg(img: image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[test]
fn clean_files_of_three_encoders_are_consistent() {
    let mut clean = samples();
    assert_eq!(clean.len(), 17);
    for path in [
        "tests/fixtures/jpeg/rgb-420-restart-blocks.jpg",
        "tests/fixtures/jpeg/rgb-444-restart-rows.jpg",
        "tests/fixtures/jpeg/rgb-422-optimized.jpg",
        "tests/fixtures/jpeg/gray-optimized-restart.jpg",
        "device/tests/fixtures/slice-cmyk.jpg",
        "device/tests/fixtures/hostile-base.jpg",
    ] {
        clean.push((path.to_string(), repo_file(path)));
    }
    let gray = image::GrayImage::from_fn(61, 37, |x, y| image::Luma([(x * 3 + y * 2) as u8]));
    let rgb = image::RgbImage::from_fn(45, 23, |x, y| image::Rgb([x as u8 * 5, y as u8 * 9, 90]));
    clean.push(("image crate, grey".into(), image_crate_jpeg(gray.into())));
    clean.push(("image crate, RGB".into(), image_crate_jpeg(rgb.into())));
    for (name, bytes) in &clean {
        assert_eq!(walk(bytes), Ok(Walk::Consistent), "{name}");
    }
    let progressive = repo_file("tests/fixtures/jpeg/gray-progressive.jpg");
    assert_eq!(walk(&progressive), Ok(Walk::NotChecked("progressive")));
}

/// Damaged variants judged by libjpeg-turbo's djpeg (see
/// tests/fixtures/jpeg/djpeg_verdicts.py): whatever djpeg calls corrupt, the
/// walk must find too. The walk may find more (djpeg, like most decoders,
/// lets a block's coefficients run past the 64th without a word).
#[test]
fn the_walk_finds_every_corruption_djpeg_finds() {
    let verdicts: serde_json::Value =
        serde_json::from_slice(&repo_file("tests/fixtures/jpeg/djpeg-verdicts.json")).unwrap();
    let variants = verdicts["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 378);
    let (mut both, mut walk_only, mut neither) = (0, 0, 0);
    for v in variants {
        let source = v["source"].as_str().unwrap();
        let at = v["offset"].as_u64().unwrap() as usize;
        let replacement = hex::decode(v["replacement"].as_str().unwrap()).unwrap();
        let mut bytes = repo_file(source);
        bytes[at..at + replacement.len()].copy_from_slice(&replacement);
        let djpeg_corrupt = !v["djpeg"].as_str().unwrap().is_empty();
        match (djpeg_corrupt, walk(&bytes).is_err()) {
            (true, true) => both += 1,
            (false, true) => walk_only += 1,
            (false, false) => neither += 1,
            (true, false) => panic!(
                "{source} damaged at {at}: djpeg says {:?}, the walk finds nothing",
                v["djpeg"]
            ),
        }
    }
    eprintln!("djpeg and walk: {both}; walk only: {walk_only}; neither: {neither}");
    assert_eq!(both, 279);
}
