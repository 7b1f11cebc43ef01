//! Layout and drawing of every screen. Sizes derive from the panel's size so
//! one code path serves 320×240 and 480×320 (and anything landscape between).

use embedded_graphics::mono_font::iso_8859_1::{
    FONT_10X20, FONT_6X10, FONT_7X13_BOLD, FONT_9X15_BOLD,
};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};

use super::{Bar, Frame, ResultView, Screen};
use crate::triage::Flag;

pub const BACKGROUND: Rgb565 = Rgb565::BLACK;
pub const TEXT: Rgb565 = Rgb565::WHITE;
pub const HEADER: Rgb565 = Rgb565::new(4, 8, 8);
pub const TUMOUR: Rgb565 = Rgb565::new(27, 6, 4);
pub const NO_TUMOUR: Rgb565 = Rgb565::new(3, 40, 8);
pub const REVIEW: Rgb565 = Rgb565::new(31, 44, 0);
pub const BAR: Rgb565 = Rgb565::new(8, 36, 28);
pub const BAR_TRACK: Rgb565 = Rgb565::new(5, 10, 6);
pub const WARNING_TEXT: Rgb565 = Rgb565::new(31, 58, 8);
pub const NOT_FOR_DIAGNOSTIC_USE: &str = "Not for diagnostic use";

/// Regions of the panel, from its size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    pub size: Size,
    pub header: Rectangle,
    pub footer: Rectangle,
    /// Square area for the slice (result screen).
    pub slice: Rectangle,
    /// Right-hand panel: banner and bars (result screen).
    pub panel: Rectangle,
    pub banner: Rectangle,
    /// Full-width body between header and footer (other screens).
    pub body: Rectangle,
    pub small: &'static MonoFont<'static>,
    pub bold: &'static MonoFont<'static>,
}

impl Layout {
    pub fn for_size(size: Size) -> Layout {
        let large = size.width >= 400;
        let (small, bold) = if large {
            (&FONT_7X13_BOLD, &FONT_10X20)
        } else {
            (&FONT_6X10, &FONT_9X15_BOLD)
        };
        let bar_h = small.character_size.height + 6;
        let header = Rectangle::new(Point::zero(), Size::new(size.width, bar_h));
        let footer = Rectangle::new(
            Point::new(0, (size.height - bar_h) as i32),
            Size::new(size.width, bar_h),
        );
        let body_h = size.height - 2 * bar_h;
        let body = Rectangle::new(Point::new(0, bar_h as i32), Size::new(size.width, body_h));
        let side = body_h.min(size.width / 2);
        let slice = Rectangle::new(Point::new(0, bar_h as i32), Size::new(side, side));
        let panel = Rectangle::new(
            Point::new(side as i32, bar_h as i32),
            Size::new(size.width - side, body_h),
        );
        let banner = Rectangle::new(
            panel.top_left + Point::new(4, 4),
            Size::new(
                panel.size.width.saturating_sub(8),
                2 * bold.character_size.height + 8,
            ),
        );
        Layout {
            size,
            header,
            footer,
            slice,
            panel,
            banner,
            body,
            small,
            bold,
        }
    }
}

pub fn flag_colour(flag: &Flag) -> Rgb565 {
    match flag {
        Flag::TumourLikely(_) => TUMOUR,
        Flag::NoTumour => NO_TUMOUR,
        Flag::Review => REVIEW,
    }
}

fn fill<D: DrawTarget<Color = Rgb565>>(d: &mut D, r: Rectangle, c: Rgb565) -> Result<(), D::Error> {
    r.into_styled(PrimitiveStyle::with_fill(c)).draw(d)
}

/// Text cut to `max_chars` (with "…" replaced by "." in the 8859-1 fonts).
fn fit(text: &str, max_chars: u32) -> String {
    let max = max_chars as usize;
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('.');
    out
}

fn text<D: DrawTarget<Color = Rgb565>>(
    d: &mut D,
    s: &str,
    at: Point,
    font: &'static MonoFont<'static>,
    colour: Rgb565,
    max_width: u32,
) -> Result<(), D::Error> {
    let chars = max_width / font.character_size.width.max(1);
    Text::with_baseline(
        &fit(s, chars),
        at,
        MonoTextStyle::new(font, colour),
        Baseline::Top,
    )
    .draw(d)?;
    Ok(())
}

/// Word-wraps `s` into lines of at most `chars` characters.
fn wrap(s: &str, chars: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > chars {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws `frame` over the whole target.
pub fn draw<D: DrawTarget<Color = Rgb565>>(d: &mut D, frame: &Frame) -> Result<Layout, D::Error> {
    let layout = Layout::for_size(d.bounding_box().size);
    d.clear(BACKGROUND)?;
    draw_header(d, &layout, frame)?;
    match &frame.screen {
        Screen::Idle => centred_message(d, &layout, "READY", "Waiting for scans", TEXT)?,
        Screen::Processing { file } => centred_message(d, &layout, "PROCESSING", file, TEXT)?,
        Screen::Result(view) => draw_result(d, &layout, view)?,
        Screen::Flashing { stage, done, total } => draw_flashing(d, &layout, stage, *done, *total)?,
        Screen::Error { message } => draw_error(d, &layout, message)?,
    }
    draw_footer(d, &layout)?;
    Ok(layout)
}

fn draw_header<D: DrawTarget<Color = Rgb565>>(
    d: &mut D,
    l: &Layout,
    frame: &Frame,
) -> Result<(), D::Error> {
    fill(d, l.header, HEADER)?;
    let cw = l.small.character_size.width;
    let time_w = frame.time.chars().count() as u32 * cw;
    let x_time = l.size.width.saturating_sub(time_w + 4) as i32;
    let model = frame
        .model
        .as_ref()
        .map(|m| format!("TumorXAI {} v{}", m.name, m.version))
        .unwrap_or_else(|| "TumorXAI (no model)".to_string());
    text(
        d,
        &model,
        Point::new(4, 3),
        l.small,
        TEXT,
        (x_time - 8).max(0) as u32,
    )?;
    text(d, &frame.time, Point::new(x_time, 3), l.small, TEXT, time_w)
}

fn draw_footer<D: DrawTarget<Color = Rgb565>>(d: &mut D, l: &Layout) -> Result<(), D::Error> {
    fill(d, l.footer, HEADER)?;
    let w = NOT_FOR_DIAGNOSTIC_USE.len() as u32 * l.small.character_size.width;
    let x = (l.size.width.saturating_sub(w) / 2) as i32;
    text(
        d,
        NOT_FOR_DIAGNOSTIC_USE,
        l.footer.top_left + Point::new(x, 3),
        l.small,
        WARNING_TEXT,
        l.size.width,
    )
}

fn centred_message<D: DrawTarget<Color = Rgb565>>(
    d: &mut D,
    l: &Layout,
    title: &str,
    detail: &str,
    colour: Rgb565,
) -> Result<(), D::Error> {
    let centre = l.body.center();
    let tw = title.len() as u32 * l.bold.character_size.width;
    let th = l.bold.character_size.height as i32;
    text(
        d,
        title,
        Point::new(centre.x - tw as i32 / 2, centre.y - th),
        l.bold,
        colour,
        l.size.width,
    )?;
    let detail = fit(detail, l.size.width / l.small.character_size.width - 2);
    let dw = detail.chars().count() as u32 * l.small.character_size.width;
    text(
        d,
        &detail,
        Point::new(centre.x - dw as i32 / 2, centre.y + 6),
        l.small,
        TEXT,
        l.size.width,
    )
}

/// Nearest-neighbour blit of `image` into `area`, aspect kept, centred.
fn blit<D: DrawTarget<Color = Rgb565>>(
    d: &mut D,
    image: &image::RgbImage,
    area: Rectangle,
) -> Result<(), D::Error> {
    let (iw, ih) = image.dimensions();
    if iw == 0 || ih == 0 {
        return Ok(());
    }
    let scale = (area.size.width as f32 / iw as f32).min(area.size.height as f32 / ih as f32);
    let (w, h) = (
        ((iw as f32 * scale) as u32).max(1),
        ((ih as f32 * scale) as u32).max(1),
    );
    let top_left = area.top_left
        + Point::new(
            ((area.size.width - w) / 2) as i32,
            ((area.size.height - h) / 2) as i32,
        );
    let target = Rectangle::new(top_left, Size::new(w, h));
    let colours = (0..h).flat_map(move |y| {
        let sy = ((y as u64 * ih as u64) / h as u64) as u32;
        (0..w).map(move |x| {
            let sx = ((x as u64 * iw as u64) / w as u64) as u32;
            let [r, g, b] = image.get_pixel(sx, sy).0;
            Rgb565::new(r >> 3, g >> 2, b >> 3)
        })
    });
    d.fill_contiguous(&target, colours)
}

fn draw_result<D: DrawTarget<Color = Rgb565>>(
    d: &mut D,
    l: &Layout,
    view: &ResultView,
) -> Result<(), D::Error> {
    blit(d, &view.overlay, l.slice)?;
    fill(d, l.banner, flag_colour(&view.flag))?;
    let (first, second) = match &view.flag {
        Flag::TumourLikely(family) => ("TUMOR LIKELY".to_string(), family.clone()),
        Flag::NoTumour => ("NO TUMOR".to_string(), "FLAGGED".to_string()),
        Flag::Review => (
            "REVIEW".to_string(),
            view.review_detail
                .clone()
                .unwrap_or_else(|| "low confidence".to_string()),
        ),
    };
    let inner = l.banner.size.width.saturating_sub(8);
    let line_h = l.bold.character_size.height as i32;
    let ink = if matches!(view.flag, Flag::Review) {
        BACKGROUND
    } else {
        TEXT
    };
    text(
        d,
        &first,
        l.banner.top_left + Point::new(4, 4),
        l.bold,
        ink,
        inner,
    )?;
    text(
        d,
        &second,
        l.banner.top_left + Point::new(4, 4 + line_h),
        l.bold,
        ink,
        inner,
    )?;
    let row_h = 2 * l.small.character_size.height as i32 + 8;
    let mut y = l.banner.top_left.y + l.banner.size.height as i32 + 8;
    let x = l.banner.top_left.x;
    let width = l.banner.size.width;
    for bar in view.top3.iter().take(3) {
        draw_bar(d, l, bar, Point::new(x, y), width)?;
        y += row_h;
    }
    let file_y = (l.footer.top_left.y - l.small.character_size.height as i32 - 4).max(y);
    text(d, &view.file, Point::new(x, file_y), l.small, TEXT, width)
}

fn draw_bar<D: DrawTarget<Color = Rgb565>>(
    d: &mut D,
    l: &Layout,
    bar: &Bar,
    at: Point,
    width: u32,
) -> Result<(), D::Error> {
    let percent = format!("{:.0}%", 100.0 * bar.probability.clamp(0.0, 1.0));
    let cw = l.small.character_size.width;
    let label_w = width.saturating_sub((percent.len() as u32 + 1) * cw);
    text(d, &bar.label, at, l.small, TEXT, label_w)?;
    let pw = percent.len() as u32 * cw;
    text(
        d,
        &percent,
        at + Point::new(width.saturating_sub(pw) as i32, 0),
        l.small,
        TEXT,
        pw,
    )?;
    let track = Rectangle::new(
        at + Point::new(0, l.small.character_size.height as i32 + 2),
        Size::new(
            width,
            l.small.character_size.height.saturating_sub(2).max(4),
        ),
    );
    fill(d, track, BAR_TRACK)?;
    let filled = (width as f32 * bar.probability.clamp(0.0, 1.0)).round() as u32;
    if filled > 0 {
        fill(
            d,
            Rectangle::new(track.top_left, Size::new(filled, track.size.height)),
            BAR,
        )?;
    }
    Ok(())
}

fn draw_flashing<D: DrawTarget<Color = Rgb565>>(
    d: &mut D,
    l: &Layout,
    stage: &str,
    done: u64,
    total: u64,
) -> Result<(), D::Error> {
    let fraction = if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    centred_message(d, l, "UPDATING MODEL", stage, TEXT)?;
    let margin = l.size.width / 10;
    let bar = Rectangle::new(
        Point::new(margin as i32, l.body.center().y + 24),
        Size::new(l.size.width - 2 * margin, l.small.character_size.height + 6),
    );
    fill(d, bar, BAR_TRACK)?;
    let filled = (bar.size.width as f64 * fraction).round() as u32;
    if filled > 0 {
        fill(
            d,
            Rectangle::new(bar.top_left, Size::new(filled, bar.size.height)),
            BAR,
        )?;
    }
    let label = format!("{:.0}%  -  do not power off", 100.0 * fraction);
    let w = label.len() as u32 * l.small.character_size.width;
    text(
        d,
        &label,
        Point::new(
            l.body.center().x - w as i32 / 2,
            bar.top_left.y + bar.size.height as i32 + 6,
        ),
        l.small,
        TEXT,
        l.size.width,
    )
}

fn draw_error<D: DrawTarget<Color = Rgb565>>(
    d: &mut D,
    l: &Layout,
    message: &str,
) -> Result<(), D::Error> {
    let banner = Rectangle::new(
        l.body.top_left + Point::new(4, 4),
        Size::new(l.size.width - 8, l.bold.character_size.height + 8),
    );
    fill(d, banner, TUMOUR)?;
    text(
        d,
        "ERROR",
        banner.top_left + Point::new(4, 4),
        l.bold,
        TEXT,
        banner.size.width,
    )?;
    let chars = (l.size.width - 8) / l.small.character_size.width;
    let line_h = l.small.character_size.height as i32 + 2;
    let mut y = banner.top_left.y + banner.size.height as i32 + 6;
    for line in wrap(message, chars as usize) {
        if y + line_h > l.footer.top_left.y {
            break;
        }
        text(d, &line, Point::new(4, y), l.small, TEXT, l.size.width - 8)?;
        y += line_h;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_and_fit_by_hand() {
        assert_eq!(wrap("a bb ccc dddd", 6), vec!["a bb", "ccc", "dddd"]);
        assert_eq!(fit("abcdef", 4), "abc.");
        assert_eq!(fit("abc", 4), "abc");
    }

    #[test]
    fn layouts_tile_the_panel() {
        for (w, h) in [(320, 240), (480, 320)] {
            let l = Layout::for_size(Size::new(w, h));
            assert_eq!(
                l.header.size.height + l.body.size.height + l.footer.size.height,
                h
            );
            assert_eq!(l.slice.size.width + l.panel.size.width, w);
            assert_eq!(l.slice.size.width, l.slice.size.height);
            assert!(l.banner.bottom_right().unwrap().x < w as i32);
        }
    }
}
