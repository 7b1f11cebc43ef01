//! A grey 8-bit pixel buffer as an embedded-graphics draw target, for burnt-in
//! scanner text and contact-sheet labels.

use embedded_graphics::pixelcolor::{Gray8, GrayColor};
use embedded_graphics::prelude::*;

pub struct GrayCanvas<'a> {
    pixels: &'a mut [u8],
    width: u32,
    height: u32,
}

impl<'a> GrayCanvas<'a> {
    /// `pixels` is row-major and holds `width × height` values.
    pub fn new(pixels: &'a mut [u8], width: u32, height: u32) -> GrayCanvas<'a> {
        debug_assert_eq!(pixels.len(), (width * height) as usize);
        GrayCanvas {
            pixels,
            width,
            height,
        }
    }
}

impl OriginDimensions for GrayCanvas<'_> {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for GrayCanvas<'_> {
    type Color = Gray8;
    type Error = core::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Gray8>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Self::Error> {
        for Pixel(p, color) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < self.width && (p.y as u32) < self.height {
                self.pixels[p.y as usize * self.width as usize + p.x as usize] = color.luma();
            }
        }
        Ok(())
    }
}
