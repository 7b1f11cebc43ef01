//! The paper's label-efficiency experiment: {SimCLR, BYOL, DINO, MoCo v3,
//! supervised-from-scratch} × label fractions × {linear evaluation,
//! fine-tuning} × seeds on one split. This file reads the experiment file
//! and lays out the cells and each run's configuration; [`run`] executes
//! them (pre-training once per method and seed, or once with
//! `pretrain_seed`, skipping finished cells),
//! [`table`] writes the paper-shaped table.

pub mod paired;
pub mod run;
pub mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::ssl::Method;
use crate::train::config::{toml_string, TrainConfig};

/// One row family of the table: an SSL method, or supervised from scratch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    Simclr,
    Byol,
    Dino,
    Mocov3,
    Supervised,
}

impl Arm {
    pub fn method(self) -> Option<Method> {
        match self {
            Arm::Simclr => Some(Method::Simclr),
            Arm::Byol => Some(Method::Byol),
            Arm::Dino => Some(Method::Dino),
            Arm::Mocov3 => Some(Method::Mocov3),
            Arm::Supervised => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self.method() {
            Some(m) => m.name(),
            None => "supervised",
        }
    }

    /// As the table prints it.
    pub fn title(self) -> &'static str {
        match self {
            Arm::Simclr => "SimCLR",
            Arm::Byol => "BYOL",
            Arm::Dino => "DINO",
            Arm::Mocov3 => "MoCo v3",
            Arm::Supervised => "Supervised (scratch)",
        }
    }
}

/// How the labelled fraction is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// A linear classifier on frozen features (for the supervised arm:
    /// on a randomly initialised backbone, the floor any pre-training must beat).
    Linear,
    /// The whole network trained (for the supervised arm: from scratch).
    Finetune,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Linear => "linear",
            Protocol::Finetune => "finetune",
        }
    }
}

/// The `[experiment]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub name: String,
    /// Output folder (pre-trained backbones, cells, table).
    pub out: PathBuf,
    pub methods: Vec<Arm>,
    pub label_percents: Vec<u8>,
    pub protocols: Vec<Protocol>,
    pub seeds: Vec<u64>,
    /// Pre-train each method once, with this seed, and share the backbone
    /// among the seeds of its cells (absent: one pre-training per seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrain_seed: Option<u64>,
    /// Epochs of the fine-tuning and from-scratch cells per label fraction
    /// (`{ 1 = 300, 10 = 60 }`), over their sections' `optim.epochs`: a
    /// 1 % subset is a few steps an epoch. Linear probes keep theirs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub finetune_epochs: BTreeMap<String, usize>,
    /// Further labelled test sets (ImageFolders, e.g. another source's
    /// phantoms): every cell is scored on them too, by folder name, for the
    /// cross-source columns. Adding one later scores finished cells anew
    /// without retraining a fine-tuned one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cross_tests: Vec<PathBuf>,
}

/// An experiment file: the plan, and training sections layered per run:
/// `common` under everything; `pretrain` (with optional per-method tables
/// `[pretrain.simclr]`…) over each method's recipe; `linear` for the
/// probes; `finetune` for fine-tuning a pre-trained backbone; `supervised`
/// for training from scratch. Each section holds TrainConfig sections
/// (`[common.model]`, `[finetune.optim]`, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    pub experiment: Plan,
    #[serde(default)]
    pub common: toml::Table,
    #[serde(default)]
    pub pretrain: toml::Table,
    #[serde(default)]
    pub linear: toml::Table,
    #[serde(default)]
    pub finetune: toml::Table,
    #[serde(default)]
    pub supervised: toml::Table,
}

/// The name a cross-source test set goes by in cells and tables: its
/// folder's name.
pub fn cross_test_name(dir: &Path) -> Result<String> {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => bail!("cross test set {} has no folder name", dir.display()),
    }
}

/// Sets `data.root` / `data.split` in one section table.
fn set_data_in(section: &mut toml::Table, root: Option<&Path>, split: Option<&Path>) {
    let data = section
        .entry("data")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(data) = data {
        for (key, path) in [("root", root), ("split", split)] {
            if let Some(path) = path {
                data.insert(key.into(), toml::Value::String(path.display().to_string()));
            }
        }
    }
}

/// One table cell of one seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cell {
    pub arm: Arm,
    pub protocol: Protocol,
    pub label_percent: u8,
    pub seed: u64,
}

impl Cell {
    /// File-name-safe identity: `simclr-linear-10-s0`.
    pub fn id(&self) -> String {
        format!(
            "{}-{}-{}-s{}",
            self.arm.name(),
            self.protocol.name(),
            self.label_percent,
            self.seed
        )
    }
}

impl ExperimentFile {
    pub fn load(path: &Path) -> Result<ExperimentFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: ExperimentFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        file.validate_plan()?;
        Ok(file)
    }

    /// Plan, label fractions and section names (dataset paths may still
    /// come from the command line).
    fn validate_plan(&self) -> Result<()> {
        let plan = &self.experiment;
        if plan.methods.is_empty()
            || plan.label_percents.is_empty()
            || plan.protocols.is_empty()
            || plan.seeds.is_empty()
        {
            bail!("experiment.methods, label_percents, protocols and seeds must each name at least one");
        }
        fn has_duplicates<T: PartialEq>(items: &[T]) -> bool {
            items
                .iter()
                .enumerate()
                .any(|(i, a)| items[..i].contains(a))
        }
        if has_duplicates(&plan.methods)
            || has_duplicates(&plan.label_percents)
            || has_duplicates(&plan.protocols)
            || has_duplicates(&plan.seeds)
        {
            bail!(
                "experiment.methods, label_percents, protocols and seeds must not repeat an entry"
            );
        }
        let names = plan
            .cross_tests
            .iter()
            .map(|dir| cross_test_name(dir))
            .collect::<Result<Vec<_>>>()?;
        if has_duplicates(&names) {
            bail!("experiment.cross_tests: two different folders have the same name ({names:?})");
        }
        for (percent, epochs) in &plan.finetune_epochs {
            // Exactly as a label fraction prints ("1", not "01"): the cells
            // look their epochs up by that text.
            let known = plan
                .label_percents
                .iter()
                .any(|p| p.to_string() == *percent);
            if !known || *epochs == 0 {
                bail!(
                    "experiment.finetune_epochs: {percent} = {epochs} must name one of label_percents {:?} and at least one epoch",
                    plan.label_percents
                );
            }
        }
        for p in &plan.label_percents {
            if !crate::split::LABEL_PERCENTS.contains(p) {
                bail!(
                    "experiment.label_percents: {p} is not one of the split's fractions {:?}",
                    crate::split::LABEL_PERCENTS
                );
            }
        }
        for key in self.pretrain.keys() {
            let is_method = Method::ALL.iter().any(|m| m.name() == key);
            let is_section = ["model", "data", "optim", "run", "ssl"].contains(&key.as_str());
            if !is_method && !is_section {
                bail!("[pretrain.{key}] is neither a method nor a training section");
            }
        }
        Ok(())
    }

    /// Adds a cross-source test set unless the same folder is already one.
    pub fn add_cross_test(&mut self, dir: PathBuf) {
        if !self.experiment.cross_tests.contains(&dir) {
            self.experiment.cross_tests.push(dir);
        }
    }

    /// Every run's configuration, built and checked before hours are spent;
    /// the cross-source folders must exist and hold only known classes.
    pub fn validate(&self) -> Result<()> {
        self.validate_plan()?;
        if let Some(cell) = self.cells().first() {
            if !self.experiment.cross_tests.is_empty() {
                let split = crate::split::SplitFile::load(&self.cell_config(cell)?.data.split)?;
                for dir in &self.experiment.cross_tests {
                    let folder = crate::dataset::ImageFolder::scan(dir)
                        .with_context(|| format!("cross test set {}", dir.display()))?;
                    crate::train::run_eval::class_map(&folder, &split.classes)?;
                }
            }
        }
        for cell in self.cells() {
            let run = self.cell_config(&cell)?;
            if let Some(method) = cell.arm.method() {
                let pre = self.pretrain_config(method, self.pretrain_seed(cell.seed))?;
                // The cells load the pre-trained backbone into their own model.
                if pre.model != run.model {
                    bail!(
                        "{} is pre-trained as {:?} but cell {} uses {:?}: set the model in [common.model] only",
                        method.name(),
                        pre.model,
                        cell.id(),
                        run.model
                    );
                }
            }
        }
        Ok(())
    }

    /// Points every run at another dataset (`--data`, `--split`).
    pub fn set_data(&mut self, root: Option<&Path>, split: Option<&Path>) {
        set_data_in(&mut self.common, root, split);
    }

    /// Points the pre-trainings alone at another pool (`--pretrain-data`,
    /// `--pretrain-split`): unlabeled slices of more sources, while the
    /// labelled cells keep the common dataset and its test side.
    pub fn set_pretrain_data(&mut self, root: Option<&Path>, split: Option<&Path>) {
        set_data_in(&mut self.pretrain, root, split);
    }

    /// Every cell, in run order: seed, arm, label fraction, protocol.
    pub fn cells(&self) -> Vec<Cell> {
        let plan = &self.experiment;
        let mut cells = Vec::new();
        for &seed in &plan.seeds {
            for &arm in &plan.methods {
                for &label_percent in &plan.label_percents {
                    for &protocol in &plan.protocols {
                        cells.push(Cell {
                            arm,
                            protocol,
                            label_percent,
                            seed,
                        });
                    }
                }
            }
        }
        cells
    }

    /// The cross-source test sets as (name, folder).
    pub fn cross_tests(&self) -> Result<Vec<(String, PathBuf)>> {
        self.experiment
            .cross_tests
            .iter()
            .map(|dir| Ok((cross_test_name(dir)?, dir.clone())))
            .collect()
    }

    /// The seed of the pre-training whose backbone a cell of `cell_seed` uses.
    pub fn pretrain_seed(&self, cell_seed: u64) -> u64 {
        self.experiment.pretrain_seed.unwrap_or(cell_seed)
    }

    pub fn pretrain_dir(&self, method: Method, seed: u64) -> PathBuf {
        self.experiment
            .out
            .join("pretrain")
            .join(format!("{}-s{seed}", method.name()))
    }

    pub fn cell_dir(&self, cell: &Cell) -> PathBuf {
        self.experiment.out.join("cells").join(cell.id())
    }

    /// Pre-training of `method`: its recipe ← common ← pretrain ←
    /// pretrain.<method>.
    pub fn pretrain_config(&self, method: Method, seed: u64) -> Result<TrainConfig> {
        let mut shared = self.pretrain.clone();
        let own = match shared.remove(method.name()) {
            Some(toml::Value::Table(t)) => t,
            Some(_) => bail!("[pretrain.{}] must be a table", method.name()),
            None => toml::Table::new(),
        };
        for m in Method::ALL {
            shared.remove(m.name());
        }
        let overrides = vec![
            format!("ssl.method={:?}", method.name()),
            format!("run.seed={seed}"),
            format!("run.out={}", toml_string(&self.pretrain_dir(method, seed))),
        ];
        TrainConfig::from_tables(
            method.defaults(),
            &[self.common.clone(), shared, own],
            &overrides,
        )
        .with_context(|| format!("the pre-training configuration of {}", method.name()))
    }

    /// The run of one cell: common ← linear | finetune | supervised, with
    /// its label fraction, seed and folder.
    pub fn cell_config(&self, cell: &Cell) -> Result<TrainConfig> {
        let section = match (cell.protocol, cell.arm) {
            (Protocol::Linear, _) => &self.linear,
            (Protocol::Finetune, Arm::Supervised) => &self.supervised,
            (Protocol::Finetune, _) => &self.finetune,
        };
        let mut overrides = vec![
            format!("data.label_percent={}", cell.label_percent),
            format!("run.seed={}", cell.seed),
            format!("run.out={}", toml_string(&self.cell_dir(cell))),
        ];
        if cell.protocol == Protocol::Finetune {
            if let Some(epochs) = self
                .experiment
                .finetune_epochs
                .get(&cell.label_percent.to_string())
            {
                overrides.push(format!("optim.epochs={epochs}"));
            }
        }
        let config =
            TrainConfig::from_tables(&[], &[self.common.clone(), section.clone()], &overrides)
                .with_context(|| format!("the configuration of cell {}", cell.id()))?;
        if config.data.root.as_os_str().is_empty() || config.data.split.as_os_str().is_empty() {
            bail!("no dataset: set [common.data] root and split, or pass --data and --split");
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
