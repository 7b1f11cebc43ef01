//! The paper's label-efficiency experiment: {SimCLR, BYOL, DINO, MoCo v3,
//! supervised-from-scratch} × label fractions × {linear evaluation,
//! fine-tuning} × seeds on one split. This file reads the experiment file
//! and lays out the cells and each run's configuration; [`run`] executes
//! them (pre-training once per method and seed, skipping finished cells),
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
        for (percent, epochs) in &plan.finetune_epochs {
            let known = percent
                .parse::<u8>()
                .is_ok_and(|p| plan.label_percents.contains(&p));
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

    /// Every run's configuration, built and checked before hours are spent.
    pub fn validate(&self) -> Result<()> {
        self.validate_plan()?;
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
mod tests {
    use super::*;

    const FILE: &str = r#"
[experiment]
name = "t"
out = "/tmp/x"
methods = ["simclr", "supervised"]
label_percents = [1, 100]
protocols = ["linear", "finetune"]
seeds = [0, 1]

[common.model]
width = 0.5
[common.data]
root = "/d"
split = "/s.json"

[pretrain.optim]
epochs = 7
[pretrain.simclr.optim]
lr = 0.9

[finetune.optim]
epochs = 3
[supervised.optim]
epochs = 5
"#;

    #[test]
    fn cells_and_layered_configurations() {
        let file: ExperimentFile = toml::from_str(FILE).unwrap();
        file.validate().unwrap();
        let cells = file.cells();
        assert_eq!(cells.len(), 2 * 2 * 2 * 2);
        assert_eq!(cells[0].id(), "simclr-linear-1-s0");
        let pre = file.pretrain_config(Method::Simclr, 1).unwrap();
        assert_eq!(pre.optim.lr, 0.9, "per-method table wins");
        assert_eq!(pre.optim.epochs, 7, "pretrain section");
        assert_eq!(pre.model.width, 0.5, "common");
        assert_eq!(
            pre.optim.weight_decay, 1e-6,
            "SimCLR's recipe fills the rest"
        );
        assert_eq!(pre.run.seed, 1);
        assert!(pre.run.out.ends_with("pretrain/simclr-s1"));
        let sup = Cell {
            arm: Arm::Supervised,
            protocol: Protocol::Finetune,
            label_percent: 1,
            seed: 0,
        };
        let c = file.cell_config(&sup).unwrap();
        assert_eq!((c.optim.epochs, c.data.label_percent), (5, Some(1)));
        let fine = Cell {
            arm: Arm::Simclr,
            ..sup
        };
        assert_eq!(file.cell_config(&fine).unwrap().optim.epochs, 3);
        // 100 % is the whole training side.
        let full = Cell {
            label_percent: 100,
            ..fine
        };
        assert_eq!(
            file.cell_config(&full).unwrap().data.label_percent,
            Some(100)
        );
    }

    #[test]
    fn one_shared_pretraining_and_epochs_per_label_fraction() {
        let plain: ExperimentFile = toml::from_str(FILE).unwrap();
        assert_eq!(plain.pretrain_seed(1), 1, "by default each seed pre-trains");
        let text = FILE.replace(
            "seeds = [0, 1]",
            "seeds = [0, 1]\npretrain_seed = 0\nfinetune_epochs = { 1 = 40 }",
        );
        let file: ExperimentFile = toml::from_str(&text).unwrap();
        file.validate().unwrap();
        // Both seeds' SimCLR cells use the one backbone of seed 0.
        let dirs: std::collections::HashSet<PathBuf> = file
            .cells()
            .iter()
            .filter_map(|c| Some(file.pretrain_dir(c.arm.method()?, file.pretrain_seed(c.seed))))
            .collect();
        assert_eq!(dirs.len(), 1);
        assert!(dirs.iter().all(|d| d.ends_with("pretrain/simclr-s0")));
        let epochs = |arm, protocol, label_percent| {
            let cell = Cell {
                arm,
                protocol,
                label_percent,
                seed: 1,
            };
            file.cell_config(&cell).unwrap().optim.epochs
        };
        // 1 %: the plan's 40 for fine-tuning and from scratch alike.
        assert_eq!(epochs(Arm::Supervised, Protocol::Finetune, 1), 40);
        assert_eq!(epochs(Arm::Simclr, Protocol::Finetune, 1), 40);
        // 100 %: the sections' own (5 from scratch, 3 fine-tuning).
        assert_eq!(epochs(Arm::Supervised, Protocol::Finetune, 100), 5);
        assert_eq!(epochs(Arm::Simclr, Protocol::Finetune, 100), 3);
        // Linear probes keep theirs (no [linear] section: the default).
        assert_eq!(
            epochs(Arm::Simclr, Protocol::Linear, 1),
            TrainConfig::default().optim.epochs
        );
        for bad in ["{ 3 = 40 }", "{ 1 = 0 }", "{ one = 4 }"] {
            let text = FILE.replace(
                "seeds = [0, 1]",
                &format!("seeds = [0, 1]\nfinetune_epochs = {bad}"),
            );
            let file: ExperimentFile = toml::from_str(&text).unwrap();
            let err = file.validate().unwrap_err().to_string();
            assert!(err.contains("finetune_epochs"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_pretraining_pool_apart_from_the_labelled_dataset() {
        let mut file: ExperimentFile = toml::from_str(FILE).unwrap();
        file.set_data(
            Some(Path::new("/labelled")),
            Some(Path::new("/labelled.json")),
        );
        file.set_pretrain_data(Some(Path::new("/pool")), Some(Path::new("/pool.json")));
        file.validate().unwrap();
        let pre = file.pretrain_config(Method::Simclr, 0).unwrap();
        assert_eq!(pre.data.root, Path::new("/pool"));
        assert_eq!(pre.data.split, Path::new("/pool.json"));
        for cell in file.cells() {
            let run = file.cell_config(&cell).unwrap();
            assert_eq!(run.data.root, Path::new("/labelled"), "{}", cell.id());
            assert_eq!(run.data.split, Path::new("/labelled.json"));
        }
    }

    #[test]
    fn the_large_experiment_shares_its_pretraining_and_keeps_dino_s_weak_views() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/large.toml");
        let mut file = ExperimentFile::load(&path).unwrap();
        file.set_data(Some(Path::new("/d")), Some(Path::new("/s.json")));
        file.validate().unwrap();
        assert_eq!(file.experiment.pretrain_seed, Some(0));
        assert!(
            file.experiment.seeds.len() >= 3,
            "the issue asks for 3 seeds"
        );
        let dino = file.pretrain_config(Method::Dino, 0).unwrap();
        assert_eq!(dino.ssl.global_crop_min, Some(0.9));
        assert_eq!(
            (dino.ssl.brightness, dino.ssl.contrast),
            (Some(0.0), Some(0.0))
        );
        assert!(
            !file
                .pretrain_config(Method::Simclr, 0)
                .unwrap()
                .ssl
                .solarize
        );
    }

    #[test]
    fn the_shipped_experiment_files_are_valid() {
        for name in ["ci", "cpu", "paper"] {
            let path =
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("experiments/{name}.toml"));
            let mut file = ExperimentFile::load(&path).unwrap();
            file.set_data(Some(Path::new("/d")), Some(Path::new("/s.json")));
            file.validate().unwrap();
            assert_eq!(file.experiment.name, name);
            assert_eq!(file.cells().len() % 40, 0, "{name}: the full table");
            // MRI sequences are classes: no shipped recipe solarises.
            for method in [Method::Simclr, Method::Byol, Method::Dino, Method::Mocov3] {
                let config = file.pretrain_config(method, 0).unwrap();
                assert!(!config.ssl.solarize, "{name}: {method:?} solarises");
            }
        }
    }

    #[test]
    fn bad_files_are_refused_before_any_training() {
        let bad = FILE.replace("label_percents = [1, 100]", "label_percents = [3]");
        let file: ExperimentFile = toml::from_str(&bad).unwrap();
        assert!(file
            .validate()
            .unwrap_err()
            .to_string()
            .contains("3 is not"));
        let bad = FILE.replace("[pretrain.simclr.optim]", "[pretrain.simclrr.optim]");
        let file: ExperimentFile = toml::from_str(&bad).unwrap();
        assert!(file.validate().is_err());
        let bad = FILE.replace("seeds = [0, 1]", "seeds = [0, 0]");
        let file: ExperimentFile = toml::from_str(&bad).unwrap();
        assert!(file.validate().unwrap_err().to_string().contains("repeat"));
        let bad = FILE.replace(
            "[pretrain.optim]",
            "[pretrain.model]\nwidth = 1.0\n[pretrain.optim]",
        );
        let file: ExperimentFile = toml::from_str(&bad).unwrap();
        assert!(file
            .validate()
            .unwrap_err()
            .to_string()
            .contains("[common.model]"));
        let bad = FILE.replace("epochs = 5", "epochs = 0");
        let file: ExperimentFile = toml::from_str(&bad).unwrap();
        assert!(file.validate().is_err());
        assert!(
            toml::from_str::<ExperimentFile>(&FILE.replace("[common.model]", "[commn.model]"))
                .is_err()
        );
    }
}
