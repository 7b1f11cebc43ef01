//! The faithfulness report of `tumorxai explain`: per slice and method the
//! perturbation scores and lesion measures, and their means per method
//! (all slices), per method and tumour family, and per method and class
//! (JSON only), with each method's ratio
//! to the random-map baseline; JSON, Markdown and a PNG chart.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::Serialize;
use tumorxai_shared::ClassInfo;

use super::faithfulness::Scores;
use crate::train::plots::{ensure_font, plot_error, save_rgb};

/// One method's measures on one slice.
#[derive(Debug, Clone, Serialize)]
pub struct MethodRow {
    pub scores: Option<Scores>,
    /// The map's maximum lies in the lesion (slices with a lesion only).
    pub pointing: Option<bool>,
    /// Share of the map's energy inside the lesion.
    pub energy_in_lesion: Option<f64>,
}

/// One slice.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub file: String,
    pub truth: Option<usize>,
    pub target: usize,
    pub probability: f32,
    pub eigengap: f64,
    pub lesion_pixels: Option<usize>,
    /// By method key (`gradcam`, `gradcampp`, `eigencam`, `random`).
    pub methods: BTreeMap<String, MethodRow>,
}

/// Means of one method over a group of slices (`None`: nothing measured).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub slices: usize,
    pub deletion_auc: Option<f64>,
    pub insertion_auc: Option<f64>,
    pub road_morf: Option<f64>,
    pub road_lerf: Option<f64>,
    pub pointing: Option<f64>,
    pub energy_in_lesion: Option<f64>,
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values {
        sum += v;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

fn summarise<'a>(rows: impl Iterator<Item = &'a MethodRow> + Clone) -> Summary {
    let scores =
        |f: fn(&Scores) -> f64| mean(rows.clone().filter_map(|r| r.scores.as_ref().map(f)));
    Summary {
        slices: rows.clone().count(),
        deletion_auc: scores(|s| s.deletion_auc),
        insertion_auc: scores(|s| s.insertion_auc),
        road_morf: scores(|s| s.road_morf),
        road_lerf: scores(|s| s.road_lerf),
        pointing: mean(
            rows.clone()
                .filter_map(|r| r.pointing.map(|p| f64::from(u8::from(p)))),
        ),
        energy_in_lesion: mean(rows.filter_map(|r| r.energy_in_lesion)),
    }
}

impl Summary {
    /// The six measures in table order (deletion, insertion, ROAD MoRF,
    /// ROAD LeRF, pointing, energy), three decimals, "–" when not measured.
    fn texts(&self) -> [String; 6] {
        [
            self.deletion_auc,
            self.insertion_auc,
            self.road_morf,
            self.road_lerf,
            self.pointing,
            self.energy_in_lesion,
        ]
        .map(|v| v.map_or_else(|| "–".to_string(), |v| format!("{v:.3}")))
    }
}

/// One measure of a summary, for the chart.
type Measure = fn(&Summary) -> Option<f64>;

#[derive(Debug, Serialize)]
pub struct FaithfulnessReport {
    pub layer: String,
    pub classes: Vec<String>,
    pub perturbation_measured: bool,
    /// By method key.
    pub methods: BTreeMap<String, Summary>,
    /// By family, then method key (family of the explained class).
    pub by_family: BTreeMap<String, BTreeMap<String, Summary>>,
    /// By explained class (folder name), then method key.
    pub by_class: BTreeMap<String, BTreeMap<String, Summary>>,
    /// Random-map deletion AUC ÷ the method's (higher is better; ≥ 2 is the goal).
    pub deletion_gain_over_random: BTreeMap<String, f64>,
    /// The method's energy in the lesion ÷ the random map's.
    pub energy_gain_over_random: BTreeMap<String, f64>,
    pub rows: Vec<Row>,
}

fn family(classes: &[String], class: usize) -> String {
    classes
        .get(class)
        .and_then(|c| ClassInfo::parse(c))
        .map_or_else(|| "?".to_string(), |i| i.family.label().to_string())
}

impl FaithfulnessReport {
    pub fn new(
        layer: &str,
        classes: &[String],
        rows: Vec<Row>,
        perturbation_measured: bool,
    ) -> Self {
        let keys: Vec<String> = rows
            .first()
            .map(|r| r.methods.keys().cloned().collect())
            .unwrap_or_default();
        let mut methods = BTreeMap::new();
        let mut by_family: BTreeMap<String, BTreeMap<String, Summary>> = BTreeMap::new();
        for key in &keys {
            methods.insert(
                key.clone(),
                summarise(rows.iter().filter_map(|r| r.methods.get(key))),
            );
            let mut families: Vec<String> =
                rows.iter().map(|r| family(classes, r.target)).collect();
            families.sort();
            families.dedup();
            for f in families {
                let summary = summarise(
                    rows.iter()
                        .filter(|r| family(classes, r.target) == f)
                        .filter_map(|r| r.methods.get(key)),
                );
                by_family.entry(f).or_default().insert(key.clone(), summary);
            }
        }
        let mut by_class: BTreeMap<String, BTreeMap<String, Summary>> = BTreeMap::new();
        for key in &keys {
            for (index, class) in classes.iter().enumerate() {
                let group = rows
                    .iter()
                    .filter(|r| r.target == index)
                    .collect::<Vec<_>>();
                if group.is_empty() {
                    continue;
                }
                let summary = summarise(group.iter().filter_map(|r| r.methods.get(key)));
                by_class
                    .entry(class.clone())
                    .or_default()
                    .insert(key.clone(), summary);
            }
        }
        let random = methods.get("random").cloned().unwrap_or_default();
        let mut deletion_gain_over_random = BTreeMap::new();
        let mut energy_gain_over_random = BTreeMap::new();
        for (key, s) in &methods {
            if key == "random" {
                continue;
            }
            if let (Some(r), Some(m)) = (random.deletion_auc, s.deletion_auc) {
                if m > 0.0 {
                    deletion_gain_over_random.insert(key.clone(), r / m);
                }
            }
            if let (Some(r), Some(m)) = (random.energy_in_lesion, s.energy_in_lesion) {
                if r > 0.0 {
                    energy_gain_over_random.insert(key.clone(), m / r);
                }
            }
        }
        FaithfulnessReport {
            layer: layer.to_string(),
            classes: classes.to_vec(),
            perturbation_measured,
            methods,
            by_family,
            by_class,
            deletion_gain_over_random,
            energy_gain_over_random,
            rows,
        }
    }

    fn table(&self, rows: &BTreeMap<String, Summary>) -> String {
        let mut out = String::from(
            "| method | slices | deletion AUC ↓ | insertion AUC ↑ | ROAD MoRF ↓ | ROAD LeRF ↑ | pointing game ↑ | energy in lesion ↑ |\n|---|---|---|---|---|---|---|---|\n",
        );
        for (key, s) in rows {
            let [d, i, m, l, p, e] = s.texts();
            out += &format!(
                "| {key} | {} | {d} | {i} | {m} | {l} | {p} | {e} |\n",
                s.slices
            );
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# Explanation faithfulness (layer {}, {} slices)\n\n",
            self.layer,
            self.rows.len()
        );
        out += &self.table(&self.methods);
        out += "\nGain over the random map: ";
        for (key, g) in &self.deletion_gain_over_random {
            out += &format!("{key} deletion ×{g:.2}; ");
        }
        for (key, g) in &self.energy_gain_over_random {
            out += &format!("{key} energy in lesion ×{g:.2}; ");
        }
        out += "\n\n## Per family (of the explained class)\n";
        for (family, rows) in &self.by_family {
            out += &format!("\n### {family}\n\n{}", self.table(rows));
        }
        out
    }

    /// One line per method for the terminal.
    pub fn summary(&self) -> String {
        self.methods
            .iter()
            .map(|(k, s)| {
                let [d, i, m, l, p, e] = s.texts();
                format!(
                    "{k:>10}: deletion {d} insertion {i} ROAD MoRF {m} LeRF {l} pointing {p} energy-in-lesion {e}"
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let json = dir.join("faithfulness.json");
        std::fs::write(&json, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", json.display()))?;
        let md = dir.join("faithfulness.md");
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("writing {}", md.display()))?;
        self.chart(&dir.join("faithfulness.png"))
    }

    /// Bars per method: deletion AUC, insertion AUC, energy in lesion.
    fn chart(&self, path: &Path) -> Result<()> {
        ensure_font()?;
        let measures: [(&str, Measure); 3] = [
            ("deletion AUC (lower is better)", |s| s.deletion_auc),
            ("insertion AUC", |s| s.insertion_auc),
            ("energy in lesion", |s| s.energy_in_lesion),
        ];
        let keys: Vec<&String> = self.methods.keys().collect();
        let (width, height) = (900u32, 320u32);
        let mut buffer = vec![255u8; (width * height * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            let panels = root.split_evenly((1, measures.len()));
            for (panel, (title, get)) in panels.iter().zip(measures) {
                let mut chart = ChartBuilder::on(panel)
                    .caption(title, ("sans-serif", 14))
                    .margin(8)
                    .x_label_area_size(24)
                    .y_label_area_size(36)
                    .build_cartesian_2d((0..keys.len()).into_segmented(), 0f64..1f64)
                    .map_err(plot_error)?;
                chart
                    .configure_mesh()
                    .disable_x_mesh()
                    .x_label_formatter(&|v| match v {
                        SegmentValue::CenterOf(i) => {
                            keys.get(*i).map_or(String::new(), |k| k.to_string())
                        }
                        _ => String::new(),
                    })
                    .draw()
                    .map_err(plot_error)?;
                chart
                    .draw_series(keys.iter().enumerate().filter_map(|(i, k)| {
                        let v = get(self.methods.get(*k)?)?;
                        let colour = if k.as_str() == "random" {
                            RGBColor(160, 160, 160)
                        } else {
                            RGBColor(30, 100, 200)
                        };
                        Some(Rectangle::new(
                            [
                                (SegmentValue::Exact(i), 0.0),
                                (SegmentValue::Exact(i + 1), v),
                            ],
                            colour.filled(),
                        ))
                    }))
                    .map_err(plot_error)?;
            }
            root.present().map_err(plot_error)?;
        }
        save_rgb(path, width, height, buffer)
    }
}
