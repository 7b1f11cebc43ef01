//! Pictures of explanations: a slice with its map as a colour heat map and a
//! caption, the raw map as a 16-bit PNG, and a contact sheet comparing the
//! methods side by side (true class above, lesion outline when a mask is
//! known).

use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::text::Text;
use image::{ImageBuffer, Luma, Rgb, RgbImage};

/// Heat-map opacity where the map is 1 (0 where it is 0).
const MAX_ALPHA: f32 = 0.6;
/// Caption strip height.
const CAPTION: u32 = 14;

/// The "jet" colour map (blue → cyan → yellow → red) at `v` in [0, 1].
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let channel = |centre: f32| ((1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0) * 255.0) as u8;
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// An RGB image as an embedded-graphics target (for captions).
struct RgbCanvas<'a>(&'a mut RgbImage);

impl OriginDimensions for RgbCanvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for RgbCanvas<'_> {
    type Color = Rgb888;
    type Error = core::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Self::Error> {
        for Pixel(p, c) in pixels {
            if p.x >= 0
                && p.y >= 0
                && (p.x as u32) < self.0.width()
                && (p.y as u32) < self.0.height()
            {
                self.0
                    .put_pixel(p.x as u32, p.y as u32, Rgb([c.r(), c.g(), c.b()]));
            }
        }
        Ok(())
    }
}

fn caption(image: &mut RgbImage, text: &str, x: i32, y: i32) {
    let style = MonoTextStyle::new(&FONT_6X10, Rgb888::WHITE);
    // Drawing into memory cannot fail.
    let _ = Text::new(text, Point::new(x, y + 9), style).draw(&mut RgbCanvas(image));
}

/// The slice (grey, `width × height` values in [0, 1]) with `map` (same
/// grid, [0, 1]) blended on top, and a caption strip above.
pub fn overlay(slice: &[f32], map: &[f32], width: u32, height: u32, text: &str) -> RgbImage {
    let mut out = RgbImage::new(width, height + CAPTION);
    for y in 0..height {
        for x in 0..width {
            let i = (y * width + x) as usize;
            let g = slice.get(i).copied().unwrap_or(0.0).clamp(0.0, 1.0) * 255.0;
            let m = map.get(i).copied().unwrap_or(0.0).clamp(0.0, 1.0);
            let heat = jet(m);
            let a = MAX_ALPHA * m;
            let px = |c: u8| (g * (1.0 - a) + f32::from(c) * a).round() as u8;
            out.put_pixel(x, y + CAPTION, Rgb([px(heat[0]), px(heat[1]), px(heat[2])]));
        }
    }
    caption(&mut out, text, 2, 1);
    out
}

/// The map as a 16-bit grey PNG image (0..65535 for [0, 1]).
pub fn raw_map(map: &[f32], width: u32, height: u32) -> ImageBuffer<Luma<u16>, Vec<u16>> {
    ImageBuffer::from_fn(width, height, |x, y| {
        let v = map.get((y * width + x) as usize).copied().unwrap_or(0.0);
        Luma([(v.clamp(0.0, 1.0) * 65535.0).round() as u16])
    })
}

/// Draws the outline of `mask` (pixels inside with a neighbour outside) in
/// green onto the image part below the caption.
pub fn outline(image: &mut RgbImage, mask: &[bool], width: u32, height: u32) {
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && x < i64::from(width)
            && y < i64::from(height)
            && mask
                .get((y * i64::from(width) + x) as usize)
                .copied()
                .unwrap_or(false)
    };
    for y in 0..i64::from(height) {
        for x in 0..i64::from(width) {
            if inside(x, y)
                && [(1, 0), (-1, 0), (0, 1), (0, -1)]
                    .iter()
                    .any(|(dx, dy)| !inside(x + dx, y + dy))
            {
                image.put_pixel(x as u32, y as u32 + CAPTION, Rgb([0, 255, 0]));
            }
        }
    }
}

/// One row of a comparison sheet: tiles side by side, a label strip above.
pub fn sheet(rows: &[(String, Vec<RgbImage>)], tile: u32) -> RgbImage {
    let columns = rows.iter().map(|(_, t)| t.len()).max().unwrap_or(0) as u32;
    let row_height = tile + CAPTION + CAPTION;
    let mut out = RgbImage::new(
        (columns * (tile + 2)).max(1),
        (rows.len() as u32 * row_height).max(1),
    );
    for (r, (label, tiles)) in rows.iter().enumerate() {
        let top = r as u32 * row_height;
        caption(&mut out, label, 2, top as i32 + 1);
        for (c, t) in tiles.iter().enumerate() {
            let scaled = image::imageops::resize(
                t,
                tile,
                tile + CAPTION,
                image::imageops::FilterType::Triangle,
            );
            image::imageops::overlay(
                &mut out,
                &scaled,
                i64::from(c as u32 * (tile + 2)),
                i64::from(top + CAPTION),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_ends_and_middle() {
        assert_eq!(jet(0.0), [0, 0, 127]);
        assert_eq!(jet(0.5), [127, 255, 127]);
        assert_eq!(jet(1.0), [127, 0, 0]);
    }

    #[test]
    fn overlay_keeps_the_slice_where_the_map_is_zero() {
        let img = overlay(&[0.5, 0.5], &[0.0, 1.0], 2, 1, "");
        assert_eq!(img.get_pixel(0, CAPTION).0, [128, 128, 128]);
        // Map 1: 40 % grey 127.5 + 60 % jet(1) = (127, 0, 0).
        assert_eq!(img.get_pixel(1, CAPTION).0, [127, 51, 51]);
    }
}
