//! Executes an experiment: each SSL method is pre-trained once per seed
//! (or once, with `pretrain_seed`) and its backbone reused by all its
//! cells; every finished cell is a JSON file in `cells/` that records the
//! pre-training it used, so a re-run skips it (and an interrupted
//! pre-training or fine-tuning resumes from its checkpoint). Cross-source
//! test sets added later are scored on finished cells. Ctrl-C stops
//! between steps.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{HumanDuration, ProgressBar};
use serde::{Deserialize, Serialize};

use super::{Arm, Cell, ExperimentFile, Protocol};
use crate::metrics;
use crate::split::Side;
use crate::ssl::pretrain::{backbone_weights, load_data as load_pretrain_data, pretrain};
use crate::ssl::Method;
use crate::synth::write_atomic;
use crate::train::checkpoint;
use crate::train::config::{parse_device, TrainConfig};
use crate::train::fit::{self, Outcome, Start};
use crate::train::probe::{frozen_features, linear_probe};
use crate::train::run_eval::{evaluate_run, EvaluationData};

/// Accuracy and macro averages of one cell on one test set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub accuracy: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub test_images: usize,
}

impl Scores {
    pub fn of(report: &metrics::Report) -> Scores {
        Scores {
            accuracy: report.accuracy,
            macro_precision: report.macro_precision,
            macro_recall: report.macro_recall,
            macro_f1: report.macro_f1,
            test_images: report.samples,
        }
    }
}

/// The scores of one finished cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub cell: Cell,
    /// On the split's test side.
    #[serde(flatten)]
    pub test: Scores,
    /// Wall time of the cell itself (not its pre-training).
    pub seconds: f64,
    /// The cell's resolved configuration: a re-run reuses the result only
    /// when it is unchanged.
    pub config: TrainConfig,
    /// The configuration of the pre-training whose backbone the cell used
    /// (none for the supervised arm): reused only when it is unchanged too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrain: Option<TrainConfig>,
    /// Scores on the cross-source test sets, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cross: BTreeMap<String, Scores>,
}

impl CellResult {
    /// The scores on the split's test side (`None`) or on a cross-source
    /// test set by name.
    pub fn scores(&self, test: Option<&str>) -> Option<Scores> {
        match test {
            None => Some(self.test),
            Some(name) => self.cross.get(name).copied(),
        }
    }
}

#[cfg(test)]
impl CellResult {
    /// A finished cell whose scores all come from `f1` (accuracy 0.1 above),
    /// for the table tests.
    pub(crate) fn for_test(
        arm: Arm,
        protocol: Protocol,
        label_percent: u8,
        seed: u64,
        f1: f64,
    ) -> CellResult {
        CellResult {
            cell: Cell {
                arm,
                protocol,
                label_percent,
                seed,
            },
            test: Scores {
                accuracy: f1 + 0.1,
                macro_precision: f1,
                macro_recall: f1,
                macro_f1: f1,
                test_images: 100,
            },
            seconds: 1.0,
            config: TrainConfig::default(),
            pretrain: None,
            cross: BTreeMap::new(),
        }
    }
}

pub enum Finish {
    Done(Vec<CellResult>),
    Interrupted,
}

fn result_path(file: &ExperimentFile, cell: &Cell) -> PathBuf {
    file.experiment
        .out
        .join("cells")
        .join(format!("{}.json", cell.id()))
}

fn load_result(path: &Path) -> Result<Option<CellResult>> {
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
    ))
}

/// Jobs: one per pre-training (method and its pre-training seed), one per
/// cell.
pub(crate) fn job_count(file: &ExperimentFile) -> usize {
    let cells = file.cells();
    let pretrains: HashSet<(Method, u64)> = cells
        .iter()
        .filter_map(|c| Some((c.arm.method()?, file.pretrain_seed(c.seed))))
        .collect();
    pretrains.len() + cells.len()
}

/// Mean duration of the jobs of one kind run so far.
#[derive(Default, Clone, Copy)]
struct Timing {
    runs: usize,
    seconds: f64,
}

impl Timing {
    fn add(&mut self, seconds: f64) {
        self.runs += 1;
        self.seconds += seconds;
    }

    fn mean(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.seconds / self.runs as f64)
    }
}

/// Refuses to reuse work done under another configuration.
fn same_config<T: PartialEq>(saved: &T, now: &T, what: &Path) -> Result<()> {
    if saved != now {
        anyhow::bail!(
            "{} was computed with another configuration than the experiment file now gives: delete it to redo it, or choose another --out",
            what.display()
        );
    }
    Ok(())
}

/// Runs every unfinished job. `bar` counts jobs; its message names the
/// running one and an ETA from the mean time of each kind of job so far
/// (pre-trainings and cells apart: they differ by orders of magnitude).
pub fn run(file: &ExperimentFile, interrupt: &AtomicBool, bar: &ProgressBar) -> Result<Finish> {
    std::fs::create_dir_all(file.experiment.out.join("cells"))?;
    let total = job_count(file);
    bar.set_length(total as u64);
    let cells = file.cells();
    let pretrains = total.saturating_sub(cells.len());
    let (mut pretrain_time, mut cell_time) = (Timing::default(), Timing::default());
    let mut done_jobs = 0usize;
    let started = Instant::now();
    let mut pretrained: HashSet<(Method, u64)> = HashSet::new();
    let mut results = Vec::new();
    let cross = file.cross_tests()?;
    for (index, cell) in cells.iter().enumerate() {
        if interrupt.load(Ordering::SeqCst) {
            return Ok(Finish::Interrupted);
        }
        let announce = |what: &str, done: usize, pretrains_seen: usize, times: (Timing, Timing)| {
            let pretrains_left = pretrains.saturating_sub(pretrains_seen) as f64;
            let cells_left = cells.len().saturating_sub(index) as f64;
            let eta = match times.1.mean() {
                Some(c) => {
                    let left = pretrains_left * times.0.mean().unwrap_or(0.0) + cells_left * c;
                    format!(", ETA ~{}", HumanDuration(Duration::from_secs_f64(left)))
                }
                None => String::new(),
            };
            bar.set_position(done as u64);
            bar.set_message(format!("{what}{eta}"));
        };
        // The pre-trained backbone and the configuration that made it.
        let backbone: Option<(PathBuf, TrainConfig)> = match cell.arm.method() {
            Some(method) => {
                let seed = file.pretrain_seed(cell.seed);
                let config = file.pretrain_config(method, seed)?;
                let path = backbone_weights(&config.run.out);
                if pretrained.insert((method, seed)) {
                    if path.exists() {
                        let saved = checkpoint::load_state(&config.run.out)?;
                        same_config(&saved.config, &config, &config.run.out)?;
                    } else {
                        let what = format!("pre-training {} · seed {seed}", method.name());
                        announce(
                            &what,
                            done_jobs,
                            pretrained.len() - 1,
                            (pretrain_time, cell_time),
                        );
                        let t = Instant::now();
                        if !pretrain_once(&config, interrupt)? {
                            return Ok(Finish::Interrupted);
                        }
                        pretrain_time.add(t.elapsed().as_secs_f64());
                    }
                    done_jobs += 1;
                }
                Some((path, config))
            }
            None => None,
        };
        let pretrain_config = backbone.as_ref().map(|(_, pre)| pre);
        let config = file.cell_config(cell)?;
        let path = result_path(file, cell);
        if let Some(mut result) = load_result(&path)? {
            same_config(&result.config, &config, &path)?;
            same_config(&result.pretrain.as_ref(), &pretrain_config, &path)?;
            let missing: Vec<(String, PathBuf)> = cross
                .iter()
                .filter(|(name, _)| !result.cross.contains_key(name))
                .cloned()
                .collect();
            // A fine-tuned cell keeps its model: only the new test sets are
            // scored. A linear probe is not kept: it is recomputed below
            // (seeded; its own test scores come out the same on a CPU).
            if missing.is_empty() || cell.protocol == Protocol::Finetune {
                if !missing.is_empty() {
                    announce(
                        &format!("scoring {} on the cross-source test sets", cell.id()),
                        done_jobs,
                        pretrained.len(),
                        (pretrain_time, cell_time),
                    );
                    if !fit::final_weights(&config.run.out).exists() {
                        anyhow::bail!(
                            "{} is finished but its model in {} is gone: delete the JSON to train the cell again",
                            path.display(),
                            config.run.out.display()
                        );
                    }
                    result.cross.extend(score_run(&config.run.out, &missing)?);
                    write_atomic(&path, serde_json::to_string_pretty(&result)?.as_bytes())?;
                }
                results.push(result);
                done_jobs += 1;
                continue;
            }
        }
        let what = format!(
            "{} · {} · {} % labels · seed {}",
            cell.arm.name(),
            cell.protocol.name(),
            cell.label_percent,
            cell.seed
        );
        announce(
            &what,
            done_jobs,
            pretrained.len(),
            (pretrain_time, cell_time),
        );
        let t = Instant::now();
        let backbone = backbone.as_ref().map(|(path, pre)| (path.as_path(), pre));
        let Some((report, cross_scores)) = run_cell(&config, cell, backbone, &cross, interrupt)?
        else {
            return Ok(Finish::Interrupted);
        };
        let seconds = t.elapsed().as_secs_f64();
        cell_time.add(seconds);
        let result = CellResult {
            cell: *cell,
            test: Scores::of(&report),
            seconds,
            config,
            pretrain: pretrain_config.cloned(),
            cross: cross_scores,
        };
        write_atomic(&path, serde_json::to_string_pretty(&result)?.as_bytes())?;
        results.push(result);
        done_jobs += 1;
    }
    bar.set_position(total as u64);
    bar.set_message(format!("done in {}", HumanDuration(started.elapsed())));
    Ok(Finish::Done(results))
}

/// Pre-trains (or resumes) one method; false when interrupted.
fn pretrain_once(config: &TrainConfig, interrupt: &AtomicBool) -> Result<bool> {
    let resume = checkpoint::checkpoint_dir(&config.run.out).exists();
    let data = load_pretrain_data(config, &ProgressBar::hidden())?;
    std::fs::create_dir_all(&config.run.out)?;
    std::fs::write(config.run.out.join("config.toml"), config.to_toml())?;
    let outcome = pretrain(config, resume, &data, interrupt, None, true)?;
    Ok(matches!(outcome, Outcome::Finished(_)))
}

/// Scores the final model of the finished run in `out` on each test set;
/// the reports go to `out/cross/<name>/`.
fn score_run(out: &Path, tests: &[(String, PathBuf)]) -> Result<BTreeMap<String, Scores>> {
    tests
        .iter()
        .map(|(name, dir)| {
            let data = EvaluationData::Folder(dir.clone());
            let report = evaluate_run(out, &data, false, &out.join("cross").join(name), || {})
                .with_context(|| format!("scoring {} on {}", out.display(), dir.display()))?;
            Ok((name.clone(), Scores::of(&report)))
        })
        .collect()
}

/// Cuts `rows` into consecutive pieces of the given lengths, which must
/// add up to all of them.
fn split_rows<'a, T>(mut rows: &'a [T], lengths: &[usize]) -> Result<Vec<&'a [T]>> {
    let expected: usize = lengths.iter().sum();
    if expected != rows.len() {
        anyhow::bail!("{} logit rows where {expected} were expected", rows.len());
    }
    let mut pieces = Vec::with_capacity(lengths.len());
    for &n in lengths {
        let (piece, rest) = rows.split_at(n);
        pieces.push(piece);
        rows = rest;
    }
    Ok(pieces)
}

type CellScores = (metrics::Report, BTreeMap<String, Scores>);

/// One cell's test-side report and its scores on the cross-source test
/// sets; None when interrupted.
fn run_cell(
    config: &TrainConfig,
    cell: &Cell,
    backbone: Option<(&Path, &TrainConfig)>,
    cross: &[(String, PathBuf)],
    interrupt: &AtomicBool,
) -> Result<Option<CellScores>> {
    let pretrain = backbone.map(|(_, pre)| pre);
    let backbone = backbone.map(|(path, _)| path);
    match cell.protocol {
        Protocol::Linear => {
            // Supervised arm: features of a seeded random initialisation.
            let dirs: Vec<PathBuf> = cross.iter().map(|(_, dir)| dir.clone()).collect();
            let f = frozen_features(config, backbone, &dirs, || {})?;
            // One probe; its logits on the test side, then on each folder
            // (the features are standardised with the training statistics
            // alone, so what is scored along does not change them, up to
            // the rounding of a larger matrix product).
            let mut scored = f.test_x.clone();
            let mut lengths = vec![f.test_x.len()];
            for (x, _) in &f.folders {
                scored.extend(x.iter().cloned());
                lengths.push(x.len());
            }
            let logits = linear_probe(
                &f.train_x,
                &f.train_y,
                &scored,
                f.classes.len(),
                &config.optim,
                config.run.seed,
                parse_device(&config.run.device)?,
            )?;
            let pieces = split_rows(&logits, &lengths)?;
            let classes = f.classes.len();
            let mut labels = std::iter::once(&f.test_y).chain(f.folders.iter().map(|(_, y)| y));
            let mut reports = pieces
                .iter()
                .zip(&mut labels)
                .map(|(logits, truth)| metrics::report(logits, truth, classes, 1.0));
            let Some(report) = reports.next() else {
                anyhow::bail!("the probe returned no test logits");
            };
            let cross_scores = cross
                .iter()
                .zip(reports)
                .map(|((name, _), r)| (name.clone(), Scores::of(&r)))
                .collect();
            Ok(Some((report, cross_scores)))
        }
        Protocol::Finetune => {
            let out = &config.run.out;
            // An interrupted fine-tuning resumes only on the backbone it began with.
            let backbone_record = out.join("pretrain.toml");
            let record = pretrain.map(TrainConfig::to_toml).unwrap_or_default();
            let start = if checkpoint::checkpoint_dir(out).exists() {
                let began = std::fs::read_to_string(&backbone_record).unwrap_or_default();
                same_config(&began, &record, out)?;
                Start::Resume
            } else {
                match (cell.arm, backbone) {
                    (Arm::Supervised, _) => Start::Scratch,
                    (_, Some(path)) => Start::Finetune(path.to_path_buf()),
                    (arm, None) => anyhow::bail!("{} has no pre-trained backbone", arm.name()),
                }
            };
            let device = parse_device(&config.run.device)?;
            let data = fit::load_data(config, device, &ProgressBar::hidden())?;
            std::fs::create_dir_all(out)?;
            std::fs::write(out.join("config.toml"), config.to_toml())?;
            std::fs::write(&backbone_record, record)?;
            match fit::fit(config, start, &data, interrupt, None, true)? {
                Outcome::Interrupted(_) => Ok(None),
                Outcome::Finished(_) => {
                    let report =
                        evaluate_run(out, &EvaluationData::Side(Side::Test), false, out, || {})?;
                    Ok(Some((report, score_run(out, cross)?)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_into_the_given_lengths_and_must_add_up() {
        let rows = [1, 2, 3, 4, 5, 6];
        let pieces = split_rows(&rows, &[1, 3, 2]).unwrap();
        assert_eq!(pieces, vec![&[1][..], &[2, 3, 4][..], &[5, 6][..]]);
        assert!(split_rows(&rows, &[1, 3]).is_err(), "rows left over");
        assert!(split_rows(&rows, &[4, 3]).is_err(), "rows missing");
    }

    #[test]
    fn a_shared_pretraining_is_one_job() {
        let text = |extra: &str| {
            format!(
                "[experiment]\nname = \"t\"\nout = \"/tmp/x\"\nmethods = [\"simclr\", \"dino\", \"supervised\"]\nlabel_percents = [1, 100]\nprotocols = [\"linear\", \"finetune\"]\nseeds = [0, 1, 2]\n{extra}\n[common.data]\nroot = \"/d\"\nsplit = \"/s.json\"\n"
            )
        };
        // 3 arms × 2 fractions × 2 protocols × 3 seeds = 36 cells.
        let per_seed: ExperimentFile = toml::from_str(&text("")).unwrap();
        assert_eq!(job_count(&per_seed), 36 + 2 * 3);
        let shared: ExperimentFile = toml::from_str(&text("pretrain_seed = 0")).unwrap();
        assert_eq!(job_count(&shared), 36 + 2);
    }
}
