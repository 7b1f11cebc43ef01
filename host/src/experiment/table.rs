//! The experiment's table in the paper's shape: per method, protocol and
//! label fraction, accuracy and macro precision / recall / F1 on the test
//! side and on each cross-source test set, as mean ± sample standard
//! deviation over seeds; written as Markdown, JSON (rows, the paired
//! comparison and raw cells), CSV per test set, and a PNG of macro-F1
//! against the label fraction (test side).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;
use serde::Serialize;

use super::paired::{markdown as paired_markdown, pairs, Pair};
use super::run::{CellResult, Scores};
use super::{Arm, Protocol};
use crate::train::plots::{ensure_font, plot_error, save_rgb};

/// Mean and sample standard deviation (0 for a single seed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
}

impl Stat {
    pub fn of(values: &[f64]) -> Stat {
        let n = values.len();
        if n == 0 {
            return Stat {
                mean: f64::NAN,
                std: f64::NAN,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Stat { mean, std }
    }

    fn show(&self, seeds: usize) -> String {
        if seeds > 1 {
            format!("{:.2} ± {:.2}", 100.0 * self.mean, 100.0 * self.std)
        } else {
            format!("{:.2}", 100.0 * self.mean)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub arm: Arm,
    pub protocol: Protocol,
    pub label_percent: u8,
    pub seeds: usize,
    pub accuracy: Stat,
    pub precision: Stat,
    pub recall: Stat,
    pub f1: Stat,
}

/// One row per (arm, protocol, label fraction), in table order, on the
/// split's test side (`test` None) or a cross-source test set by name.
pub fn aggregate(results: &[CellResult], test: Option<&str>) -> Vec<Row> {
    let mut groups: BTreeMap<(Arm, Protocol, u8), Vec<Scores>> = BTreeMap::new();
    for r in results {
        if let Some(scores) = r.scores(test) {
            groups
                .entry((r.cell.arm, r.cell.protocol, r.cell.label_percent))
                .or_default()
                .push(scores);
        }
    }
    groups
        .into_iter()
        .map(|((arm, protocol, label_percent), cells)| {
            let stat = |f: fn(&Scores) -> f64| Stat::of(&cells.iter().map(f).collect::<Vec<_>>());
            Row {
                arm,
                protocol,
                label_percent,
                seeds: cells.len(),
                accuracy: stat(|c| c.accuracy),
                precision: stat(|c| c.macro_precision),
                recall: stat(|c| c.macro_recall),
                f1: stat(|c| c.macro_f1),
            }
        })
        .collect()
}

fn protocol_title(arm: Arm, protocol: Protocol) -> &'static str {
    match (arm, protocol) {
        (Arm::Supervised, Protocol::Linear) => "linear (random-init features)",
        (Arm::Supervised, Protocol::Finetune) => "trained from scratch",
        (_, Protocol::Linear) => "linear eval",
        (_, Protocol::Finetune) => "fine-tune",
    }
}

/// The table under `title`, scored `on` (the split's test side, or a
/// cross-source test set).
pub fn markdown(title: &str, on: &str, rows: &[Row]) -> String {
    let mut md = format!(
        "# Label efficiency: {title}\n\nOn {on}: macro averages over the classes, in %{}.\n\n",
        if rows.iter().any(|r| r.seeds > 1) {
            " (mean ± sample std over seeds; the labelled subsets are the split's, the same for every seed)"
        } else {
            ""
        }
    );
    md.push_str("| Method | Protocol | Labels | Seeds | Accuracy | Precision | Recall | F1 |\n|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {} % | {} | {} | {} | {} | {} |\n",
            r.arm.title(),
            protocol_title(r.arm, r.protocol),
            r.label_percent,
            r.seeds,
            r.accuracy.show(r.seeds),
            r.precision.show(r.seeds),
            r.recall.show(r.seeds),
            r.f1.show(r.seeds),
        ));
    }
    md
}

pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "method,protocol,label_percent,seeds,accuracy_mean,accuracy_std,precision_mean,precision_std,recall_mean,recall_std,f1_mean,f1_std\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6}\n",
            r.arm.name(),
            r.protocol.name(),
            r.label_percent,
            r.seeds,
            r.accuracy.mean,
            r.accuracy.std,
            r.precision.mean,
            r.precision.std,
            r.recall.mean,
            r.recall.std,
            r.f1.mean,
            r.f1.std
        ));
    }
    out
}

/// The table and the paired comparison on one test set.
#[derive(Serialize)]
pub struct TestTables {
    pub rows: Vec<Row>,
    pub paired: Vec<Pair>,
}

#[derive(Serialize)]
struct TableJson<'a> {
    name: &'a str,
    rows: &'a [Row],
    paired: &'a [Pair],
    /// Per cross-source test set (by folder name): its rows and pairs.
    cross: &'a BTreeMap<String, TestTables>,
    cells: &'a [CellResult],
}

/// What [`write_all`] wrote: the Markdown of `table.md` and `paired.md`.
pub struct Written {
    pub table: String,
    pub paired: String,
}

/// Writes table.md, paired.md, table.json, table.csv (and table-<name>.csv
/// per cross-source test set) and f1.png into `out`.
pub fn write_all(out: &Path, name: &str, results: &[CellResult]) -> Result<Written> {
    const OWN: &str = "the split's test side";
    let rows = aggregate(results, None);
    let paired = pairs(results, None);
    let mut table = markdown(name, OWN, &rows);
    let cross_names: std::collections::BTreeSet<&String> =
        results.iter().flat_map(|r| r.cross.keys()).collect();
    let mut cross = BTreeMap::new();
    for test in cross_names {
        let tables = TestTables {
            rows: aggregate(results, Some(test)),
            paired: pairs(results, Some(test)),
        };
        let on = format!("{test} (labelled, never trained on)");
        table.push_str(&format!(
            "\n{}",
            markdown(&format!("{name}, tested on {test}"), &on, &tables.rows)
        ));
        std::fs::write(out.join(format!("table-{test}.csv")), csv(&tables.rows))?;
        cross.insert(test.clone(), (on, tables));
    }
    let mut sections: Vec<(&str, &[Pair])> = vec![(OWN, &paired)];
    sections.extend(
        cross
            .values()
            .map(|(on, t)| (on.as_str(), t.paired.as_slice())),
    );
    let paired_md = paired_markdown(&sections);
    let cross: BTreeMap<String, TestTables> = cross.into_iter().map(|(k, (_, t))| (k, t)).collect();
    std::fs::write(out.join("table.md"), &table)?;
    std::fs::write(out.join("paired.md"), &paired_md)?;
    std::fs::write(out.join("table.csv"), csv(&rows))?;
    std::fs::write(
        out.join("table.json"),
        serde_json::to_string_pretty(&TableJson {
            name,
            rows: &rows,
            paired: &paired,
            cross: &cross,
            cells: results,
        })?,
    )?;
    f1_png(&out.join("f1.png"), name, &rows)?;
    Ok(Written {
        table,
        paired: paired_md,
    })
}

fn colour(arm: Arm) -> RGBColor {
    match arm {
        Arm::Simclr => RGBColor(31, 119, 180),
        Arm::Byol => RGBColor(255, 127, 14),
        Arm::Dino => RGBColor(44, 160, 44),
        Arm::Mocov3 => RGBColor(148, 103, 189),
        Arm::Supervised => RGBColor(80, 80, 80),
    }
}

/// Macro-F1 against the label fraction (log scale), a line per method and
/// protocol: linear evaluation left, fine-tuning right.
pub fn f1_png(path: &Path, name: &str, rows: &[Row]) -> Result<()> {
    ensure_font()?;
    let (width, height) = (1000u32, 420u32);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let panels = root.split_evenly((1, 2));
        for (panel, protocol) in panels.iter().zip([Protocol::Linear, Protocol::Finetune]) {
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{name}: {}", protocol.name()), ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d((0.8f64..130.0).log_scale(), 0f64..1f64)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("labelled fraction of the training side (%)")
                .y_desc("macro-F1")
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(plot_error)?;
            let arms: Vec<Arm> = {
                let mut a: Vec<Arm> = rows.iter().map(|r| r.arm).collect();
                a.dedup();
                a
            };
            for arm in arms {
                let points: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.arm == arm && r.protocol == protocol && r.f1.mean.is_finite())
                    .map(|r| (f64::from(r.label_percent), r.f1.mean))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                let c = colour(arm);
                chart
                    .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                    .map_err(plot_error)?
                    .label(arm.title())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(plot_error)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font(("sans-serif", 12))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    save_rgb(path, width, height, buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(arm: Arm, seed: u64, f1: f64) -> CellResult {
        CellResult::for_test(arm, Protocol::Linear, 10, seed, f1)
    }

    #[test]
    fn seeds_aggregate_to_mean_and_sample_std() {
        // F1 0.5, 0.7 → mean 0.6, sample std √((0.01 + 0.01)/1) = 0.141421.
        let rows = aggregate(
            &[
                result(Arm::Byol, 0, 0.5),
                result(Arm::Simclr, 0, 0.9),
                result(Arm::Byol, 1, 0.7),
            ],
            None,
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].arm,
            Arm::Simclr,
            "table order follows the arm order"
        );
        let byol = &rows[1];
        assert_eq!(byol.seeds, 2);
        assert!((byol.f1.mean - 0.6).abs() < 1e-12);
        assert!((byol.f1.std - 0.141_421_356).abs() < 1e-8);
        assert_eq!(rows[0].f1.std, 0.0);
        let md = markdown("t", "the split's test side", &rows);
        assert!(
            md.contains("| BYOL | linear eval | 10 % | 2 | 70.00 ± 14.14 | 60.00 ± 14.14 |"),
            "{md}"
        );
        let csv = csv(&rows);
        assert_eq!(csv.lines().count(), 3);
        assert!(csv
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("byol,linear,10,2,0.700000,0.141421,0.600000"));
    }

    #[test]
    fn cross_source_rows_come_from_the_cross_scores_alone() {
        let mut a = result(Arm::Byol, 0, 0.5);
        let mut b = result(Arm::Byol, 1, 0.7);
        let c = result(Arm::Simclr, 0, 0.9);
        for (cell, f1) in [(&mut a, 0.2), (&mut b, 0.4)] {
            let mut scores = cell.scores(None).unwrap();
            scores.macro_f1 = f1;
            cell.cross.insert("physics".into(), scores);
        }
        let rows = aggregate(&[a, b, c], Some("physics"));
        // SimCLR has no physics score: no row. BYOL: mean of 0.2 and 0.4.
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].arm, Arm::Byol);
        assert!((rows[0].f1.mean - 0.3).abs() < 1e-12);
        // The other scores are the cell's own (0.5 and 0.7 → accuracy 0.6, 0.8).
        assert!((rows[0].accuracy.mean - 0.7).abs() < 1e-12);
    }
}
