//! An in-memory RGB565 frame: the `DrawTarget` every screen is drawn into,
//! for the PNG snapshot (headless runs, tests, remote viewing) and as the
//! source the Linux framebuffer backend copies from.

use core::convert::Infallible;

use embedded_graphics::pixelcolor::raw::RawU16;
use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameBuffer {
    width: u32,
    height: u32,
    pixels: Vec<Rgb565>,
}

impl FrameBuffer {
    pub fn new(width: u32, height: u32) -> FrameBuffer {
        FrameBuffer {
            width,
            height,
            pixels: vec![Rgb565::BLACK; (width * height) as usize],
        }
    }

    pub fn pixel(&self, x: u32, y: u32) -> Option<Rgb565> {
        (x < self.width && y < self.height).then(|| self.pixels[(y * self.width + x) as usize])
    }

    pub fn pixels(&self) -> &[Rgb565] {
        &self.pixels
    }

    /// Raw RGB565 values, row-major (what a 16-bit panel takes).
    pub fn raw_rgb565(&self) -> impl Iterator<Item = u16> + '_ {
        self.pixels.iter().map(|&p| RawU16::from(p).into_inner())
    }

    /// The frame widened to 8-bit RGB (each channel's high bits replicated
    /// into the low ones, so white stays 255).
    pub fn to_rgb_image(&self) -> image::RgbImage {
        let mut out = image::RgbImage::new(self.width, self.height);
        for (dst, &p) in out.pixels_mut().zip(&self.pixels) {
            let c: Rgb888 = p.into();
            *dst = image::Rgb([c.r(), c.g(), c.b()]);
        }
        out
    }

    /// PNG bytes of [`FrameBuffer::to_rgb_image`].
    pub fn to_png(&self) -> Result<Vec<u8>, image::ImageError> {
        let mut out = std::io::Cursor::new(Vec::new());
        self.to_rgb_image()
            .write_to(&mut out, image::ImageFormat::Png)?;
        Ok(out.into_inner())
    }
}

impl OriginDimensions for FrameBuffer {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for FrameBuffer {
    type Color = Rgb565;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Infallible>
    where
        I: IntoIterator<Item = Pixel<Rgb565>>,
    {
        for Pixel(point, color) in pixels {
            if point.x >= 0
                && point.y >= 0
                && (point.x as u32) < self.width
                && (point.y as u32) < self.height
            {
                self.pixels[(point.y as u32 * self.width + point.x as u32) as usize] = color;
            }
        }
        Ok(())
    }

    fn fill_solid(
        &mut self,
        area: &embedded_graphics::primitives::Rectangle,
        color: Rgb565,
    ) -> Result<(), Infallible> {
        let area = area.intersection(&self.bounding_box());
        if let Some(bottom_right) = area.bottom_right() {
            for y in area.top_left.y..=bottom_right.y {
                let row = (y as u32 * self.width) as usize;
                let start = row + area.top_left.x as usize;
                let end = row + bottom_right.x as usize + 1;
                self.pixels[start..end].fill(color);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    #[test]
    fn drawing_is_clipped_and_converted() {
        let mut fb = FrameBuffer::new(4, 3);
        Rectangle::new(Point::new(2, 1), Size::new(5, 5))
            .into_styled(PrimitiveStyle::with_fill(Rgb565::RED))
            .draw(&mut fb)
            .unwrap();
        assert_eq!(fb.pixel(1, 1), Some(Rgb565::BLACK));
        assert_eq!(fb.pixel(3, 2), Some(Rgb565::RED));
        assert_eq!(fb.pixel(4, 0), None);
        assert_eq!(fb.raw_rgb565().nth(3 + 4), Some(0xF800));
        let rgb = fb.to_rgb_image();
        assert_eq!(rgb.get_pixel(2, 1).0, [255, 0, 0]);
        assert_eq!(rgb.get_pixel(0, 0).0, [0, 0, 0]);
    }
}
