//! Training configuration: a TOML file with every field defaulted, CLI
//! overrides as `section.key=value`, and the device choice.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::model::{Depth, ResNetConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    pub depth: Depth,
    /// Channel multiplier (1.0 = the paper's ResNet widths).
    pub width: f64,
    /// Model input side S.
    pub input_size: u32,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            depth: Depth::ResNet18,
            width: 0.25,
            input_size: 64,
        }
    }
}

impl ModelSection {
    pub fn resnet(&self) -> ResNetConfig {
        ResNetConfig {
            depth: self.depth,
            width: self.width,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// Dataset folder (ImageFolder layout).
    pub root: PathBuf,
    /// Split file from `tumorxai split`.
    pub split: PathBuf,
    /// Label fraction of the training side to train on (1, 10, 25, 50, 100).
    pub label_percent: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    AdamW,
    Lars,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimSection {
    pub optimizer: OptimizerKind,
    /// Peak learning rate (after warm-up).
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub epochs: usize,
    pub warmup_epochs: f64,
    /// Final learning rate as a fraction of the peak (cosine decay target).
    pub final_lr_fraction: f64,
    pub label_smoothing: f64,
    /// Weight the loss by inverse class frequency (the real set is ~10× imbalanced).
    pub class_balanced: bool,
    /// Fine-tuning: backbone learning rate = lr × this.
    pub backbone_lr_mult: f64,
    /// LARS trust coefficient η.
    pub lars_eta: f64,
}

impl Default for OptimSection {
    fn default() -> Self {
        OptimSection {
            optimizer: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            batch_size: 32,
            epochs: 10,
            warmup_epochs: 1.0,
            final_lr_fraction: 0.0,
            label_smoothing: 0.0,
            class_balanced: false,
            backbone_lr_mult: 0.1,
            lars_eta: 0.001,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    pub seed: u64,
    /// auto | cpu | cuda | cuda:N
    pub device: String,
    /// Output folder: checkpoints and reports.
    pub out: PathBuf,
    /// Light augmentation on training batches.
    pub augment: bool,
    /// With `augment`: also randomise the scanner domain (intensity curves,
    /// bias fields, resolution, JPEG quality; `data::domain`). Off by
    /// default so that earlier runs' configurations reproduce.
    pub domain_randomisation: bool,
    /// bf16 autocast on CUDA (ignored on CPU).
    pub mixed_precision: bool,
    /// Channels-last memory format on CUDA.
    pub channels_last: bool,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            seed: 0,
            device: "auto".to_string(),
            out: PathBuf::from("runs/train"),
            augment: true,
            domain_randomisation: false,
            mixed_precision: true,
            channels_last: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelSection,
    pub data: DataSection,
    pub optim: OptimSection,
    pub run: RunSection,
    /// Self-supervised pre-training (`tumorxai pretrain`); ignored by `train`.
    pub ssl: crate::ssl::config::SslSection,
}

impl TrainConfig {
    /// The training images: the label-fraction subset, or the whole training side.
    pub fn train_selection(&self) -> crate::data::Selection {
        match self.data.label_percent {
            Some(p) if p < 100 => crate::data::Selection::TrainSubset(p),
            _ => crate::data::Selection::Side(crate::split::Side::Train),
        }
    }

    /// Reads a TOML file (if any) and applies `section.key=value` overrides
    /// (values in TOML syntax; bare words are taken as strings).
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<TrainConfig> {
        Self::load_layered(&[], file, overrides)
    }

    /// As [`TrainConfig::load`], with `defaults` (same syntax as overrides)
    /// applied first: a method's recipe, under the user's file and flags.
    pub fn load_layered(
        defaults: &[&str],
        file: Option<&Path>,
        overrides: &[String],
    ) -> Result<TrainConfig> {
        let user: toml::Table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                text.parse()
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        Self::from_tables(defaults, &[user], overrides)
    }

    /// `defaults` (override syntax), then each table (TOML sections) in
    /// order, then `overrides`: the later wins, field by field.
    pub fn from_tables(
        defaults: &[&str],
        tables: &[toml::Table],
        overrides: &[String],
    ) -> Result<TrainConfig> {
        let mut table = toml::Table::new();
        for assignment in defaults {
            apply_override(&mut table, assignment)?;
        }
        for layer in tables {
            merge(&mut table, layer.clone());
        }
        for assignment in overrides {
            apply_override(&mut table, assignment)?;
        }
        let config: TrainConfig = toml::Value::Table(table)
            .try_into()
            .context("invalid training configuration")?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        if self.optim.batch_size < 2 {
            bail!("optim.batch_size must be at least 2 (BatchNorm needs a batch)");
        }
        if self.optim.epochs == 0 {
            bail!("optim.epochs must be at least 1");
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.optim.lr) || !positive(self.model.width) {
            bail!("optim.lr and model.width must be positive");
        }
        if !(0.0..1.0).contains(&self.optim.label_smoothing) {
            bail!("optim.label_smoothing must be in [0, 1)");
        }
        if self.model.input_size < 32 {
            bail!("model.input_size must be at least 32 (the ResNet downsamples by 32)");
        }
        if let Some(p) = self.data.label_percent {
            if !crate::split::LABEL_PERCENTS.contains(&p) {
                bail!(
                    "data.label_percent must be one of {:?}",
                    crate::split::LABEL_PERCENTS
                );
            }
        }
        parse_device(&self.run.device)?;
        if let Some(problem) = self.ssl.problems().into_iter().next() {
            bail!("{problem}");
        }
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// A path as a TOML string value (for `section.key=value` overrides).
pub fn toml_string(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Merges `user` into `base`, section by section (user values win).
fn merge(base: &mut toml::Table, user: toml::Table) {
    for (key, value) in user {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(into)), toml::Value::Table(from)) => {
                into.extend(from);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let Some((key, raw)) = assignment.split_once('=') else {
        bail!("override {assignment:?} is not of the form section.key=value");
    };
    let Some((section, field)) = key.trim().split_once('.') else {
        bail!("override key {key:?} must be section.key (e.g. optim.lr)");
    };
    let raw = raw.trim();
    let value: toml::Value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => {
            t.insert(field.to_string(), value);
            Ok(())
        }
        _ => bail!("{section} is not a section"),
    }
}

/// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(text: &str) -> Result<Device> {
    Ok(match text {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Device::Cuda(n),
            None => bail!("unknown device {other:?}: use auto, cpu, cuda or cuda:N"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_overrides_compose() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[optim]\nlr = 0.2\nepochs = 3\n[model]\ndepth = \"resnet50\"\n",
        )
        .unwrap();
        let c = TrainConfig::load(
            Some(&file),
            &[
                "optim.lr=0.01".into(),
                "run.device=cpu".into(),
                "data.label_percent=10".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.optim.lr, 0.01);
        assert_eq!(c.optim.epochs, 3);
        assert_eq!(c.model.depth, Depth::ResNet50);
        assert_eq!(c.run.device, "cpu");
        assert_eq!(c.data.label_percent, Some(10));
        assert_eq!(c.optim.batch_size, OptimSection::default().batch_size);
        // Round trip through TOML.
        let again: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn method_defaults_sit_under_the_file_and_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[optim]\nlr = 0.1\n[ssl]\nout_dim = 64\n").unwrap();
        let defaults = [
            "optim.lr=0.3",
            "optim.optimizer=\"lars\"",
            "ssl.out_dim=128",
        ];
        let c =
            TrainConfig::load_layered(&defaults, Some(&file), &["optim.epochs=2".into()]).unwrap();
        assert_eq!(c.optim.lr, 0.1, "the file beats the default");
        assert_eq!(
            c.optim.optimizer,
            OptimizerKind::Lars,
            "the default fills the gap"
        );
        assert_eq!(c.ssl.out_dim, 64);
        assert_eq!(c.optim.epochs, 2);
        assert!(TrainConfig::load(None, &["ssl.temperature=0".into()]).is_err());
    }

    #[test]
    fn bad_configs_are_refused_with_reasons() {
        assert!(TrainConfig::load(None, &["optim.typo=1".into()]).is_err());
        assert!(TrainConfig::load(None, &["optim.batch_size=1".into()]).is_err());
        assert!(TrainConfig::load(None, &["data.label_percent=7".into()]).is_err());
        assert!(TrainConfig::load(None, &["nonsense".into()]).is_err());
        assert!(TrainConfig::load(None, &["run.device=tpu".into()]).is_err());
        assert!(parse_device("cuda:1").is_ok_and(|d| d == Device::Cuda(1)));
    }
}
