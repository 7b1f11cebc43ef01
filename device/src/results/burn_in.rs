//! The Secondary Capture's picture: the overlay (slice and EigenCAM map, or
//! the slice alone when the map is withheld), enlarged to a readable size,
//! with a caption band below it that carries the notice, the flag, the
//! top-3 calibrated probabilities and the model. The text is burnt into the
//! pixels (Burned In Annotation YES): a viewer shows it whatever it does
//! with the header.

use embedded_graphics::mono_font::ascii::{FONT_7X13, FONT_7X13_BOLD};
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::text::{Baseline, Text};
use image::{imageops, Rgb, RgbImage};

use crate::display::short_class_label;

use super::content::{Finding, ResultContent, NOT_FOR_DIAGNOSTIC_USE};

/// The picture is enlarged (whole factors, nearest neighbour) to at least
/// this width, so that the caption's 7-pixel font reads at the image's size.
const MIN_WIDTH: u32 = 448;
const LINE_HEIGHT: u32 = 15;
const CHAR_WIDTH: u32 = 7;
const MARGIN: i32 = 6;

/// An `RgbImage` as an embedded-graphics drawing surface.
struct Canvas<'a>(&'a mut RgbImage);

impl OriginDimensions for Canvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for Canvas<'_> {
    type Color = Rgb888;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(point, colour) in pixels {
            let (Ok(x), Ok(y)) = (u32::try_from(point.x), u32::try_from(point.y)) else {
                continue;
            };
            if x < self.0.width() && y < self.0.height() {
                self.0
                    .put_pixel(x, y, Rgb([colour.r(), colour.g(), colour.b()]));
            }
        }
        Ok(())
    }
}

/// The caption's lines and their colours.
fn caption(content: &ResultContent) -> Vec<(String, Rgb888, bool)> {
    let white = Rgb888::new(235, 235, 235);
    let flag_colour = match content.finding {
        Finding::TumourLikely { .. } => Rgb888::new(255, 80, 60),
        Finding::NoTumour => Rgb888::new(90, 210, 110),
        Finding::Review { .. } | Finding::NotTriaged { .. } => Rgb888::new(255, 200, 40),
    };
    let mut lines = vec![
        (
            NOT_FOR_DIAGNOSTIC_USE.to_string(),
            Rgb888::new(255, 200, 40),
            true,
        ),
        (content.finding.banner(), flag_colour, true),
    ];
    for (rank, (class, p)) in content.top3.iter().enumerate() {
        let label = short_class_label(class);
        lines.push((
            format!("{}. {label}  {:.1}%", rank + 1, 100.0 * p),
            white,
            false,
        ));
    }
    if let Finding::NotTriaged { reason } = &content.finding {
        lines.push((reason.clone(), white, false));
    }
    if content.map_withheld == Some(true) {
        lines.push((
            "EigenCAM map withheld (low confidence)".into(),
            white,
            false,
        ));
    }
    lines.push((
        format!(
            "TumorXAI {} {}",
            content.algorithm.model_id, content.algorithm.model_version
        ),
        white,
        false,
    ));
    lines
}

/// The captioned picture.
pub fn captioned(overlay: &RgbImage, content: &ResultContent) -> RgbImage {
    let factor = MIN_WIDTH.div_ceil(overlay.width().max(1)).max(1);
    let picture = if factor > 1 {
        imageops::resize(
            overlay,
            overlay.width().saturating_mul(factor),
            overlay.height().saturating_mul(factor),
            imageops::FilterType::Nearest,
        )
    } else {
        overlay.clone()
    };
    let lines = caption(content);
    let band = LINE_HEIGHT * lines.len() as u32 + 2 * MARGIN as u32;
    let mut out = RgbImage::new(picture.width(), picture.height().saturating_add(band));
    imageops::replace(&mut out, &picture, 0, 0);
    let fits = (picture.width().saturating_sub(2 * MARGIN as u32) / CHAR_WIDTH) as usize;
    let mut canvas = Canvas(&mut out);
    let top = picture.height() as i32 + MARGIN;
    for (i, (text, colour, bold)) in lines.iter().enumerate() {
        let font = if *bold { &FONT_7X13_BOLD } else { &FONT_7X13 };
        let shown: String = text
            .chars()
            .map(|c| if c.is_ascii() { c } else { '?' })
            .take(fits)
            .collect();
        let y = top + (i as i32) * LINE_HEIGHT as i32;
        let _ = Text::with_baseline(
            &shown,
            Point::new(MARGIN, y),
            MonoTextStyle::new(font, *colour),
            Baseline::Top,
        )
        .draw(&mut canvas);
    }
    out
}
