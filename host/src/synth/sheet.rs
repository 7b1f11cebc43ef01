//! Contact sheet of an ImageFolder dataset (phantom or real): one row per
//! class, the first few images of each, labelled, so a person can look at it.

use std::path::Path;

use anyhow::{Context, Result};
use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Gray8;
use embedded_graphics::prelude::*;
use embedded_graphics::text::Text;
use image::GrayImage;
use tumorxai_shared::{decode_luminance, ClassInfo, DecodeLimits};

use super::canvas::GrayCanvas;
use crate::dataset::ImageFolder;

const LABEL_WIDTH: u32 = 110;

/// Builds the sheet: `per_class` thumbnails of `thumb` pixels per class row.
pub fn contact_sheet(dataset: &ImageFolder, per_class: usize, thumb: u32) -> Result<GrayImage> {
    let rows = dataset.classes.len() as u32;
    let width = LABEL_WIDTH + per_class as u32 * (thumb + 2);
    let height = rows * (thumb + 2);
    let mut sheet = GrayImage::new(width, height);
    for (row, class) in dataset.classes.iter().enumerate() {
        let top = row as u32 * (thumb + 2);
        for (col, item) in dataset.items_of(row).take(per_class).enumerate() {
            let bytes = std::fs::read(&item.path)
                .with_context(|| format!("reading {}", item.path.display()))?;
            let lum = decode_luminance(&bytes, DecodeLimits::default())
                .with_context(|| format!("decoding {}", item.path.display()))?;
            let small = tumorxai_shared::resize::resize_triangle(
                &lum.data,
                lum.width as usize,
                lum.height as usize,
                thumb as usize,
                thumb as usize,
            );
            let left = LABEL_WIDTH + col as u32 * (thumb + 2);
            for y in 0..thumb {
                for x in 0..thumb {
                    let v = (small[(y * thumb + x) as usize] * 255.0)
                        .round()
                        .clamp(0.0, 255.0) as u8;
                    sheet.put_pixel(left + x, top + y, image::Luma([v]));
                }
            }
        }
        let (family, sequence) = match ClassInfo::parse(class) {
            Some(info) => (
                info.family.label().to_string(),
                info.sequence.label().to_string(),
            ),
            None => (class.chars().take(16).collect(), String::new()),
        };
        let (w, h) = (sheet.width(), sheet.height());
        let mut canvas = GrayCanvas::new(&mut sheet, w, h);
        let style = MonoTextStyle::new(&FONT_6X10, Gray8::WHITE);
        let y = top as i32 + thumb as i32 / 2;
        // Drawing into memory cannot fail (Infallible).
        let _ = Text::new(&family, Point::new(6, y), style).draw(&mut canvas);
        let _ = Text::new(&sequence, Point::new(6, y + 12), style).draw(&mut canvas);
    }
    Ok(sheet)
}

/// Writes the sheet of a dataset folder to a PNG file.
pub fn write_contact_sheet(
    dataset_dir: &Path,
    out: &Path,
    per_class: usize,
    thumb: u32,
) -> Result<()> {
    let dataset = ImageFolder::scan(dataset_dir)?;
    let sheet = contact_sheet(&dataset, per_class, thumb)?;
    sheet
        .save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
