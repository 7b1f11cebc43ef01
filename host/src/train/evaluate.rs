//! Inference over a loaded set (eval mode, no augmentation) and the written
//! reports: JSON and Markdown.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use tch::nn::ModuleT;
use tch::{Device, Tensor};
use tumorxai_shared::PreprocessSpec;

use crate::data::loader::{BatchPlan, Prefetch};
use crate::data::LoadedSet;
use crate::metrics::{self, Report};
use crate::model::ResNet;

pub struct EvaluationSet<'a> {
    pub set: &'a LoadedSet,
    pub spec: &'a PreprocessSpec,
}

fn plan(batch_size: usize) -> BatchPlan {
    BatchPlan {
        batch_size,
        seed: 0,
        epoch: 0,
        shuffle: false,
        drop_last: false,
        augment: None,
        extra_views: Vec::new(),
        start_step: 0,
    }
}

/// The rows of a `[N, D]` tensor (on any device, any float kind) as f32.
pub(crate) fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let t = t.to_device(Device::Cpu).to_kind(tch::Kind::Float);
    let width = t.size()[1] as usize;
    let flat = Vec::<f32>::try_from(t.flatten(0, -1))?;
    Ok(flat.chunks(width).map(|c| c.to_vec()).collect())
}

/// Runs `f` on every batch of the set (eval mode, no augmentation, in set
/// order) and collects its rows.
fn map_batches(
    eval: &EvaluationSet,
    batch_size: usize,
    f: impl Fn(&Tensor) -> Tensor,
) -> Result<Vec<Vec<f32>>> {
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(eval.set.len());
    for batch in Prefetch::spawn(eval.set, eval.spec, plan(batch_size)) {
        out.extend(rows(&f(&batch?.inputs))?);
    }
    Ok(out)
}

/// Logits of every image, in set order.
pub fn predict(model: &ResNet, eval: &EvaluationSet, batch_size: usize) -> Result<Vec<Vec<f32>>> {
    map_batches(eval, batch_size, |x| model.forward_t(x, false))
}

/// Pooled embeddings of every image, in set order.
pub fn embed(model: &ResNet, eval: &EvaluationSet, batch_size: usize) -> Result<Vec<Vec<f32>>> {
    map_batches(eval, batch_size, |x| model.embed(x, false))
}

/// What `evaluate` writes as JSON.
#[derive(Debug, Serialize)]
pub struct EvaluationReport<'a> {
    pub what: &'a str,
    pub classes: &'a [String],
    pub temperature: f64,
    pub ece_before_scaling: f64,
    pub report: &'a Report,
}

/// Writes `<stem>.json` and `<stem>.md` into `dir`.
pub fn write_report(
    dir: &Path,
    stem: &str,
    what: &str,
    classes: &[String],
    logits: &[Vec<f32>],
    truth: &[usize],
    temperature: f64,
) -> Result<Report> {
    std::fs::create_dir_all(dir)?;
    let raw = metrics::report(logits, truth, classes.len(), 1.0);
    let report = metrics::report(logits, truth, classes.len(), temperature);
    let json = EvaluationReport {
        what,
        classes,
        temperature,
        ece_before_scaling: raw.ece,
        report: &report,
    };
    std::fs::write(
        dir.join(format!("{stem}.json")),
        serde_json::to_string_pretty(&json)?,
    )?;
    std::fs::write(
        dir.join(format!("{stem}.md")),
        markdown(what, classes, &report, temperature, raw.ece),
    )?;
    super::plots::confusion_png(
        &dir.join(format!("{stem}-confusion.png")),
        &report.confusion,
        what,
    )?;
    Ok(report)
}

pub fn markdown(
    what: &str,
    classes: &[String],
    r: &Report,
    temperature: f64,
    ece_before: f64,
) -> String {
    let mut md = format!("# {what}\n\n");
    md.push_str(&format!(
        "| samples | accuracy | macro P | macro R | macro F1 | weighted F1 | top-3 | ECE (T = {temperature:.3}) | ECE (T = 1) |\n|---|---|---|---|---|---|---|---|---|\n| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |\n\n",
        r.samples, r.accuracy, r.macro_precision, r.macro_recall, r.macro_f1, r.weighted_f1, r.top3_accuracy, r.ece, ece_before
    ));
    md.push_str("| # | class | precision | recall | F1 | support |\n|---|---|---|---|---|---|\n");
    for (i, (name, s)) in classes.iter().zip(&r.per_class).enumerate() {
        md.push_str(&format!(
            "| {i} | {name} | {:.3} | {:.3} | {:.3} | {} |\n",
            s.precision, s.recall, s.f1, s.support
        ));
    }
    md.push_str("\nConfusion matrix (rows: true class index, columns: predicted):\n\n| |");
    for i in 0..classes.len() {
        md.push_str(&format!(" {i} |"));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(classes.len()));
    md.push('\n');
    for (i, row) in r.confusion.iter().enumerate() {
        md.push_str(&format!("| **{i}** |"));
        for v in row {
            md.push_str(&format!(" {v} |"));
        }
        md.push('\n');
    }
    md
}
