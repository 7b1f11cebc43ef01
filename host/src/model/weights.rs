//! Weights as safetensors under torchvision's names. Saving adds the
//! `num_batches_tracked` buffers torchvision's BatchNorm keeps (tch has none),
//! so a file loads into `torchvision.models.resnetNN()` with `strict=True`;
//! loading ignores them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{nn, Kind, Tensor};

const BATCHES_TRACKED: &str = "num_batches_tracked";

/// Every variable of the store, plus a zero `num_batches_tracked` per BatchNorm.
pub fn named_tensors(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let extra: Vec<(String, Tensor)> = named
        .iter()
        .filter_map(|(name, _)| name.strip_suffix(".running_mean"))
        .map(|prefix| (format!("{prefix}.{BATCHES_TRACKED}"), Tensor::from(0i64)))
        .collect();
    named.extend(extra);
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

pub fn save(vs: &nn::VarStore, path: &Path) -> Result<()> {
    write(&named_tensors(vs), path)
}

/// Writes named tensors (moved to the CPU) as a safetensors file.
pub fn write(named: &[(String, Tensor)], path: &Path) -> Result<()> {
    let cpu: Vec<(String, Tensor)> = named
        .iter()
        // Contiguous: channels-last (CUDA) tensors cannot be written as they are.
        .map(|(n, t)| (n.clone(), t.to_device(tch::Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, path).with_context(|| format!("writing {}", path.display()))
}

/// Which file entries may be absent from, or unknown to, the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Every store variable must be in the file and every file tensor in the store.
    Exact,
    /// Store variables missing from the file keep their values (e.g. a new
    /// `fc` head on a pre-trained backbone); file tensors unknown to the store
    /// are ignored (e.g. an SSL projector).
    Partial,
}

/// Loads a safetensors file into the store by name; shapes must match.
/// Returns the names that were loaded.
pub fn load(vs: &mut nn::VarStore, path: &Path, strictness: Strictness) -> Result<Vec<String>> {
    let file: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .filter(|(n, _)| !n.ends_with(BATCHES_TRACKED))
        .collect();
    load_named(vs, &file, strictness).with_context(|| format!("loading {}", path.display()))
}

pub fn load_named(
    vs: &mut nn::VarStore,
    file: &HashMap<String, Tensor>,
    strictness: Strictness,
) -> Result<Vec<String>> {
    let variables = vs.variables();
    if strictness == Strictness::Exact {
        let unknown: Vec<&String> = file
            .keys()
            .filter(|n| !variables.contains_key(*n))
            .collect();
        if !unknown.is_empty() {
            bail!("tensors not in the model: {unknown:?}");
        }
    }
    let mut loaded = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in variables {
            match file.get(&name) {
                Some(t) => {
                    if t.size() != var.size() {
                        bail!(
                            "{name}: file has shape {:?}, model {:?}",
                            t.size(),
                            var.size()
                        );
                    }
                    var.copy_(&t.to_kind(Kind::Float).to_device(var.device()));
                    loaded.push(name);
                }
                None if strictness == Strictness::Exact => bail!("{name} missing from the file"),
                None => {}
            }
        }
        Ok(())
    })?;
    loaded.sort();
    Ok(loaded)
}
