//! PNG figures of a run with plotters: confusion-matrix heat map and the
//! loss / validation curves. Text uses the embedded DejaVu Sans font, so no
//! system fonts are needed.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::checkpoint::EpochLog;

pub(crate) fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!(
            "the embedded DejaVu Sans font could not be registered"
        ))
    }
}

pub(crate) fn save_rgb(path: &Path, width: u32, height: u32, buffer: Vec<u8>) -> Result<()> {
    image::RgbImage::from_raw(width, height, buffer)
        .context("plot buffer size")?
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

/// Heat map of `confusion[true][predicted]`, each row normalised to its
/// support, with the counts written in the cells.
pub fn confusion_png(path: &Path, confusion: &[Vec<usize>], title: &str) -> Result<()> {
    ensure_font()?;
    let k = confusion.len();
    let (width, height) = (760u32, 760u32);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(40)
            .build_cartesian_2d(0..k as i32, k as i32..0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted class")
            .y_desc("true class")
            .x_labels(k)
            .y_labels(k)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(plot_error)?;
        for (t, row) in confusion.iter().enumerate() {
            let support: usize = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let share = if support == 0 {
                    0.0
                } else {
                    count as f64 / support as f64
                };
                let shade = (255.0 * (1.0 - share)) as u8;
                let colour = RGBColor(shade, shade, 255);
                let (x, y) = (p as i32, t as i32);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x, y), (x + 1, y + 1)],
                        colour.filled(),
                    )))
                    .map_err(plot_error)?;
                if count > 0 {
                    let text_colour = if share > 0.5 { WHITE } else { BLACK };
                    chart
                        .draw_series(std::iter::once(Text::new(
                            count.to_string(),
                            (x, y),
                            ("sans-serif", 12).into_font().color(&text_colour),
                        )))
                        .map_err(plot_error)?;
                }
            }
        }
        root.present().map_err(plot_error)?;
    }
    save_rgb(path, width, height, buffer)
}

/// Training loss and validation accuracy / macro-F1 per epoch.
pub fn curves_png(path: &Path, history: &[EpochLog]) -> Result<()> {
    ensure_font()?;
    let (width, height) = (900u32, 380u32);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (left, right) = root.split_horizontally(width / 2);
        let epochs = history.len().max(1) as f64;
        let max_loss = history
            .iter()
            .map(|h| h.train_loss)
            .fold(0.0f64, f64::max)
            .max(1e-3)
            * 1.1;
        let mut loss = ChartBuilder::on(&left)
            .caption("training loss", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(1f64..epochs.max(2.0), 0f64..max_loss)
            .map_err(plot_error)?;
        loss.configure_mesh()
            .x_desc("epoch")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(plot_error)?;
        loss.draw_series(LineSeries::new(
            history.iter().map(|h| (h.epoch as f64, h.train_loss)),
            &RED,
        ))
        .map_err(plot_error)?;
        let mut val = ChartBuilder::on(&right)
            .caption("validation", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(1f64..epochs.max(2.0), 0f64..1f64)
            .map_err(plot_error)?;
        val.configure_mesh()
            .x_desc("epoch")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(plot_error)?;
        val.draw_series(LineSeries::new(
            history.iter().map(|h| (h.epoch as f64, h.val_accuracy)),
            &BLUE,
        ))
        .map_err(plot_error)?
        .label("accuracy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        val.draw_series(LineSeries::new(
            history.iter().map(|h| (h.epoch as f64, h.val_macro_f1)),
            &GREEN,
        ))
        .map_err(plot_error)?
        .label("macro-F1")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN));
        val.configure_series_labels()
            .label_font(("sans-serif", 12))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    save_rgb(path, width, height, buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_written_and_the_diagonal_is_darkest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cm.png");
        confusion_png(&path, &[vec![5, 0], vec![1, 4]], "test").unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (760, 760));
        // Some cell is saturated blue (a full diagonal share of 1.0 → RGB(0, 0, 255)).
        assert!(img.pixels().any(|p| p.0 == [0, 0, 255]));
        let history: Vec<EpochLog> = (1..=3)
            .map(|e| EpochLog {
                epoch: e,
                train_loss: 3.0 / e as f64,
                val_accuracy: 0.2 * e as f64,
                val_macro_f1: 0.15 * e as f64,
                learning_rate: 0.1,
                images_per_second: 100.0,
                embedding_spread: None,
                teacher_entropy: None,
                teacher_student_kl: None,
            })
            .collect();
        let curves = dir.path().join("curves.png");
        curves_png(&curves, &history).unwrap();
        let img = image::open(&curves).unwrap().to_rgb8();
        assert!(
            img.pixels().any(|p| p.0 == [255, 0, 0]),
            "the red loss line is drawn"
        );
    }
}
