//! Every screen drawn into an in-memory RGB565 frame at 320×240 and 480×320:
//! pixel-level checks of the layout regions (header, banner colour by flag,
//! bars proportional to probabilities, slice pixels, the permanent
//! "Not for diagnostic use" line) and golden PNG snapshots.
//!
//! Regenerate the snapshots after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p tumorxai-device --test display`.

use std::path::PathBuf;

use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::*;
use tumorxai_device::display::framebuffer::FrameBuffer;
use tumorxai_device::display::{draw, Bar, Frame, Layout, ModelLabel, ResultView, Screen};
use tumorxai_device::triage::Flag;

const SIZES: [(u32, u32); 2] = [(320, 240), (480, 320)];
const BANNER_TUMOUR: Rgb565 = Rgb565::new(27, 6, 4);
const BANNER_NO_TUMOUR: Rgb565 = Rgb565::new(3, 40, 8);
const BANNER_REVIEW: Rgb565 = Rgb565::new(31, 44, 0);
const BAR_FILL: Rgb565 = Rgb565::new(8, 36, 28);
const BAR_TRACK: Rgb565 = Rgb565::new(5, 10, 6);
const HEADER: Rgb565 = Rgb565::new(4, 8, 8);
const WARNING_TEXT: Rgb565 = Rgb565::new(31, 58, 8);

/// A 64×64 test "slice": a red square on blue.
fn slice() -> image::RgbImage {
    image::RgbImage::from_fn(64, 64, |x, y| {
        if (16..48).contains(&x) && (16..48).contains(&y) {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    })
}

fn result(flag: Flag) -> Screen {
    Screen::Result(ResultView {
        overlay: slice(),
        flag,
        review_detail: None,
        top3: vec![
            Bar {
                label: "Glioma T1C+".into(),
                probability: 0.75,
            },
            Bar {
                label: "Glioma T1".into(),
                probability: 0.2,
            },
            Bar {
                label: "Meningioma T1".into(),
                probability: 0.05,
            },
        ],
        file: "scan-0042.png".into(),
    })
}

fn frame(screen: Screen) -> Frame {
    Frame {
        screen,
        model: Some(ModelLabel {
            name: "tumorxai-demo".into(),
            version: "1.0.0".into(),
        }),
        time: "2026-11-27 14:03 UTC".into(),
    }
}

fn render(screen: Screen, (w, h): (u32, u32)) -> (FrameBuffer, Layout) {
    let mut fb = FrameBuffer::new(w, h);
    let layout = draw(&mut fb, &frame(screen)).unwrap();
    (fb, layout)
}

fn count(fb: &FrameBuffer, area: embedded_graphics::primitives::Rectangle, c: Rgb565) -> usize {
    area.points()
        .filter(|p| fb.pixel(p.x as u32, p.y as u32) == Some(c))
        .count()
}

#[test]
fn result_screen_regions_by_pixel() {
    for size in SIZES {
        for (flag, colour) in [
            (Flag::TumourLikely("Glioma".into()), BANNER_TUMOUR),
            (Flag::NoTumour, BANNER_NO_TUMOUR),
            (Flag::Review, BANNER_REVIEW),
        ] {
            let (fb, l) = render(result(flag.clone()), size);
            // The banner is mostly its flag colour (text covers a little).
            let banner = count(&fb, l.banner, colour);
            let area = (l.banner.size.width * l.banner.size.height) as usize;
            assert!(banner * 10 > area * 6, "{size:?} {flag:?}: {banner}/{area}");
            // Header band and footer band in the header colour, with the
            // warning text drawn in the footer.
            assert!(
                count(&fb, l.header, HEADER) * 2
                    > (l.header.size.width * l.header.size.height) as usize
            );
            assert!(
                count(&fb, l.footer, WARNING_TEXT) > 50,
                "{size:?}: no warning text"
            );
        }
        let (fb, l) = render(result(Flag::NoTumour), size);
        // The slice is scaled into the square: its centre is the red square,
        // its corner the blue background.
        let c = l.slice.center();
        assert_eq!(fb.pixel(c.x as u32, c.y as u32), Some(Rgb565::RED));
        let corner = l.slice.top_left + Point::new(2, 2);
        assert_eq!(
            fb.pixel(corner.x as u32, corner.y as u32),
            Some(Rgb565::BLUE)
        );
        // Bars: filled length ∝ probability (0.75, 0.2, 0.05).
        let filled = count(&fb, l.panel, BAR_FILL) as f64;
        let track = count(&fb, l.panel, BAR_TRACK) as f64;
        let fraction = filled / (filled + track);
        assert!((fraction - 1.0 / 3.0).abs() < 0.02, "{size:?}: {fraction}");
    }
}

#[test]
fn every_screen_keeps_the_not_for_diagnostic_use_line() {
    let screens = [
        Screen::Idle,
        Screen::Processing {
            file: "scan.png".into(),
        },
        Screen::Flashing {
            stage: "writing bundle".into(),
            done: 300,
            total: 1000,
        },
        Screen::Error {
            message: "scan.png: image is corrupt: unexpected end of file".into(),
        },
        result(Flag::Review),
    ];
    for size in SIZES {
        for screen in &screens {
            let (fb, l) = render(screen.clone(), size);
            assert!(
                count(&fb, l.footer, WARNING_TEXT) > 50,
                "{size:?} {screen:?}"
            );
        }
    }
    // Flashing progress: 30 % of the bar is filled.
    let (fb, l) = render(screens[2].clone(), (320, 240));
    let filled = count(&fb, l.body, BAR_FILL) as f64;
    let track = count(&fb, l.body, BAR_TRACK) as f64;
    assert!((filled / (filled + track) - 0.3).abs() < 0.02);
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn screens_match_their_golden_snapshots() {
    let screens = [
        ("idle", Screen::Idle),
        (
            "processing",
            Screen::Processing {
                file: "scan-0042.png".into(),
            },
        ),
        ("result-tumour", result(Flag::TumourLikely("Glioma".into()))),
        ("result-review", result(Flag::Review)),
        (
            "flashing",
            Screen::Flashing {
                stage: "verifying signature".into(),
                done: 640,
                total: 1000,
            },
        ),
        (
            "error",
            Screen::Error {
                message: "scan-0042.png: image is too large: 20000x20000 exceeds the limit".into(),
            },
        ),
    ];
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    std::fs::create_dir_all(golden_dir()).unwrap();
    for (name, screen) in screens {
        for size in SIZES {
            let (fb, _) = render(screen.clone(), size);
            let path = golden_dir().join(format!("{name}-{}x{}.png", size.0, size.1));
            if update {
                std::fs::write(&path, fb.to_png().unwrap()).unwrap();
                continue;
            }
            let golden = image::open(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()))
                .to_rgb8();
            let got = fb.to_rgb_image();
            assert_eq!(golden.dimensions(), got.dimensions(), "{name}");
            let differing = golden
                .pixels()
                .zip(got.pixels())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(
                differing,
                0,
                "{name} {size:?}: {differing} pixels differ from {}",
                path.display()
            );
        }
    }
}
