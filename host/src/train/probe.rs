//! Frozen-backbone evaluations: a linear probe trained on features computed
//! once, and weighted k-nearest-neighbours on cosine similarity.

use std::path::{Path, PathBuf};

use anyhow::Result;
use tch::nn::{self, Module};
use tch::{Device, Kind, Reduction, Tensor};
use tumorxai_shared::PreprocessSpec;

use super::config::{parse_device, OptimSection, TrainConfig};
use super::evaluate::{embed, EvaluationSet};
use super::optim::Optimizer;
use super::run_eval::load_folder_for;
use super::schedule::lr_at;
use crate::data::loader::{epoch_order, stream_seed};
use crate::data::{self, Selection};
use crate::model::resnet;
use crate::model::weights::{self, Strictness};
use crate::split::{Side, SplitFile};
use crate::tensor::l2_normalize;

/// Rows as a `[N, D]` f32 tensor on `device`.
pub(crate) fn matrix(rows: &[Vec<f32>], device: Device) -> Tensor {
    let width = rows.first().map_or(0, Vec::len) as i64;
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat)
        .reshape([rows.len() as i64, width])
        .to_device(device)
}

fn to_rows(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    let width = t.size()[1] as usize;
    let flat = Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?;
    Ok(flat.chunks(width).map(|c| c.to_vec()).collect())
}

/// Frozen-backbone features of the labelled training subset
/// (`data.label_percent`), of the test side and of any further labelled
/// folders (other sources' test sets), computed once.
pub struct FrozenFeatures {
    pub config: TrainConfig,
    pub classes: Vec<String>,
    pub train_x: Vec<Vec<f32>>,
    pub train_y: Vec<usize>,
    pub test_x: Vec<Vec<f32>>,
    pub test_y: Vec<usize>,
    /// Features and labels of each of `folders`, in their order.
    pub folders: Vec<(Vec<Vec<f32>>, Vec<usize>)>,
}

/// Embeds the run's data (and the ImageFolders `folders`, class folders
/// matched by name) with the backbone in `backbone` (an `fc` or SSL heads
/// in the file are ignored), or with a seeded random initialisation.
pub fn frozen_features(
    config: &TrainConfig,
    backbone: Option<&Path>,
    folders: &[PathBuf],
    progress: impl Fn() + Sync,
) -> Result<FrozenFeatures> {
    let device = parse_device(&config.run.device)?;
    let split = SplitFile::load(&config.data.split)?;
    let spec = PreprocessSpec::with_input_size(config.model.input_size);
    tch::manual_seed(config.run.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let model = resnet(&vs.root(), config.model.resnet(), None);
    if let Some(path) = backbone {
        let loaded = weights::load(&mut vs, path, Strictness::Partial)?;
        if !loaded.iter().any(|n| n.starts_with("layer4.")) {
            anyhow::bail!(
                "{} holds no ResNet backbone of this architecture",
                path.display()
            );
        }
    }
    let root = &config.data.root;
    let train = data::load(
        &split,
        root,
        config.train_selection(),
        &spec,
        device,
        &progress,
    )?;
    let test = data::load(
        &split,
        root,
        Selection::Side(Side::Test),
        &spec,
        device,
        &progress,
    )?;
    let features = |set: &data::LoadedSet| embed(&model, &EvaluationSet { set, spec: &spec }, 64);
    let folders = folders
        .iter()
        .map(|dir| {
            let set = load_folder_for(dir, &split.classes, &spec, device, &progress)?;
            Ok((features(&set)?, set.label_vec()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(FrozenFeatures {
        config: config.clone(),
        classes: split.classes.clone(),
        train_x: features(&train)?,
        train_y: train.label_vec(),
        test_x: features(&test)?,
        test_y: test.label_vec(),
        folders,
    })
}

/// Trains a linear classifier (`fc`) on fixed features with mini-batch SGD /
/// AdamW / LARS and the warm-up + cosine schedule; returns test logits.
#[allow(clippy::too_many_arguments)]
pub fn linear_probe(
    train_features: &[Vec<f32>],
    train_labels: &[usize],
    test_features: &[Vec<f32>],
    classes: usize,
    optim: &OptimSection,
    seed: u64,
    device: Device,
) -> Result<Vec<Vec<f32>>> {
    tch::manual_seed(seed as i64);
    let x = matrix(train_features, device);
    // Standardise features with the training statistics (a frozen BatchNorm).
    let mean = x.mean_dim(&[0i64][..], true, Kind::Float);
    let std = x.std_dim(&[0i64][..], false, true) + 1e-6;
    let x = (&x - &mean) / &std;
    let y = Tensor::from_slice(&train_labels.iter().map(|&l| l as i64).collect::<Vec<_>>())
        .to_device(device);
    let vs = nn::VarStore::new(device);
    let fc = nn::linear(
        vs.root() / "fc",
        x.size()[1],
        classes as i64,
        Default::default(),
    );
    let mut optimizer = Optimizer::new(&vs, optim, 1.0);
    let n = train_labels.len();
    let batch = optim.batch_size.min(n).max(1);
    let steps = n.div_ceil(batch);
    let total = steps * optim.epochs;
    let warmup = (optim.warmup_epochs * steps as f64).round() as usize;
    let mut global = 0;
    for epoch in 0..optim.epochs {
        let order = epoch_order(n, stream_seed(&[seed, 0x11AE]), epoch, true);
        for chunk in order.chunks(batch) {
            let index = Tensor::from_slice(chunk).to_device(device);
            let logits = fc.forward(&x.index_select(0, &index));
            let loss = logits.cross_entropy_loss(
                &y.index_select(0, &index),
                None::<Tensor>,
                Reduction::Mean,
                -100,
                optim.label_smoothing,
            );
            optimizer.zero_grad();
            loss.backward();
            optimizer.step(lr_at(
                global,
                total,
                warmup,
                optim.lr,
                optim.final_lr_fraction,
            ));
            global += 1;
        }
    }
    let test = (matrix(test_features, device) - &mean) / &std;
    to_rows(&tch::no_grad(|| fc.forward(&test)))
}

/// Weighted k-NN (InstDisc / DINO style): cosine similarity to the training
/// features, the k nearest vote with weight exp(sim / τ). Returns per-class
/// vote totals (usable as logits: argmax is the prediction). The similarity
/// matrix and the top-k run on `device` (the large part on big sets).
pub fn knn_scores(
    train_features: &[Vec<f32>],
    train_labels: &[usize],
    test_features: &[Vec<f32>],
    classes: usize,
    k: usize,
    temperature: f64,
    device: Device,
) -> Result<Vec<Vec<f32>>> {
    let train = l2_normalize(&matrix(train_features, device));
    let test = l2_normalize(&matrix(test_features, device));
    let sim = test.matmul(&train.tr());
    let k = k.min(train_labels.len()).max(1) as i64;
    let (values, indices) = sim.topk(k, 1, true, true);
    let values = to_rows(&values.to_device(Device::Cpu))?;
    let indices: Vec<i64> = Vec::<i64>::try_from(indices.flatten(0, -1).to_device(Device::Cpu))?;
    let mut out = Vec::with_capacity(values.len());
    for (row, sims) in values.iter().enumerate() {
        let mut votes = vec![0f32; classes];
        for (j, &s) in sims.iter().enumerate() {
            let neighbour = indices[row * k as usize + j] as usize;
            votes[train_labels[neighbour]] += (f64::from(s) / temperature).exp() as f32;
        }
        // Log of the vote mass: monotone, so argmax and top-k are unchanged.
        out.push(votes.iter().map(|v| (v + 1e-12).ln()).collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_votes_for_the_nearest_cluster() {
        let train = vec![
            vec![1.0, 0.0],
            vec![0.9, 0.1],
            vec![0.0, 1.0],
            vec![0.1, 0.9],
        ];
        let labels = [0, 0, 1, 1];
        let scores = knn_scores(
            &train,
            &labels,
            &[vec![1.0, 0.05], vec![0.0, 2.0]],
            2,
            2,
            0.07,
            Device::Cpu,
        )
        .unwrap();
        assert!(scores[0][0] > scores[0][1]);
        assert!(scores[1][1] > scores[1][0]);
    }

    #[test]
    fn linear_probe_separates_separable_features() {
        let mut train = Vec::new();
        let mut labels = Vec::new();
        for i in 0..60 {
            let c = i % 3;
            let mut f = vec![0.1 * (i as f32 * 0.37).sin(); 4];
            f[c] += 2.0;
            train.push(f);
            labels.push(c);
        }
        let optim = OptimSection {
            epochs: 30,
            lr: 0.1,
            batch_size: 16,
            weight_decay: 0.0,
            ..Default::default()
        };
        let logits = linear_probe(&train, &labels, &train, 3, &optim, 0, Device::Cpu).unwrap();
        let correct = logits
            .iter()
            .zip(&labels)
            .filter(|(row, &l)| crate::metrics::argmax(row) == Some(l))
            .count();
        assert_eq!(correct, 60);
    }
}
