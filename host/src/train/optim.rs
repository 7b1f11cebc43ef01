//! SGD (momentum), AdamW and LARS over named parameters, written out so their
//! state can be checkpointed and resumed exactly (tch's optimizers keep theirs
//! private). Biases and normalisation parameters (all 1-D tensors) get no
//! weight decay and no LARS adaptation, as in SimCLR/BYOL practice.

use std::collections::HashMap;

use anyhow::{bail, Result};
use tch::{nn, Tensor};

use super::config::{OptimSection, OptimizerKind};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

struct Param {
    name: String,
    tensor: Tensor,
    lr_mult: f64,
    /// 1-D: bias or norm parameter.
    excluded: bool,
}

/// A tensor as safetensors can write it: on the CPU, in contiguous layout
/// (moments of channels-last weights are channels-last too).
pub(crate) fn cpu_contiguous(t: &Tensor) -> Tensor {
    t.to_device(tch::Device::Cpu).contiguous()
}

pub struct Optimizer {
    kind: OptimizerKind,
    momentum: f64,
    weight_decay: f64,
    lars_eta: f64,
    params: Vec<Param>,
    /// Per parameter: momentum buffer (SGD/LARS) or first moment (AdamW).
    first: HashMap<String, Tensor>,
    /// AdamW second moments.
    second: HashMap<String, Tensor>,
    pub steps_taken: i64,
}

impl Optimizer {
    /// Optimises every trainable variable of `vs`: the head (`fc.*`) at the
    /// full rate, the backbone at `lr × backbone_lr_mult`.
    pub fn new(vs: &nn::VarStore, optim: &OptimSection, backbone_lr_mult: f64) -> Optimizer {
        let mut params: Vec<Param> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, tensor)| Param {
                lr_mult: if name.starts_with("fc.") {
                    1.0
                } else {
                    backbone_lr_mult
                },
                excluded: tensor.dim() <= 1,
                name,
                tensor,
            })
            .collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        Optimizer {
            kind: optim.optimizer,
            momentum: optim.momentum,
            weight_decay: optim.weight_decay,
            lars_eta: optim.lars_eta,
            params,
            first: HashMap::new(),
            second: HashMap::new(),
            steps_taken: 0,
        }
    }

    /// Changes the weight decay from the next step on (DINO's schedule).
    pub fn set_weight_decay(&mut self, weight_decay: f64) {
        self.weight_decay = weight_decay;
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.tensor.zero_grad();
        }
    }

    /// One update at learning rate `lr` using the current gradients.
    pub fn step(&mut self, lr: f64) {
        self.steps_taken += 1;
        let t = self.steps_taken as f64;
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.tensor.grad();
                if !grad.defined() {
                    continue;
                }
                let lr = lr * p.lr_mult;
                let decay = if p.excluded { 0.0 } else { self.weight_decay };
                match self.kind {
                    OptimizerKind::Sgd | OptimizerKind::Lars => {
                        // In place, four passes and no allocation per parameter
                        // (as PyTorch's foreach SGD): d = g + wd·p; buf = μ·buf + d; p −= lr·buf.
                        let device = p.tensor.device();
                        let scalar = |v: f64| Tensor::from(v as f32).to_device(device);
                        let mut d = grad.shallow_clone();
                        if decay > 0.0 {
                            let _ = d.addcmul_(&p.tensor, &scalar(decay));
                        }
                        if self.kind == OptimizerKind::Lars && !p.excluded {
                            let w = p.tensor.norm().double_value(&[]);
                            let g = d.norm().double_value(&[]);
                            if w > 0.0 && g > 0.0 {
                                let _ = d.g_mul_scalar_(self.lars_eta * w / g);
                            }
                        }
                        let buf = match self.first.get_mut(&p.name) {
                            Some(buf) => {
                                let _ = buf.g_mul_scalar_(self.momentum).g_add_(&d);
                                buf.shallow_clone()
                            }
                            None => {
                                let buf = d.detach().copy();
                                self.first.insert(p.name.clone(), buf.shallow_clone());
                                buf
                            }
                        };
                        let _ = p.tensor.addcmul_(&buf, &scalar(-lr));
                    }
                    OptimizerKind::AdamW => {
                        let m = self
                            .first
                            .entry(p.name.clone())
                            .or_insert_with(|| grad.zeros_like());
                        let _ = m.g_mul_scalar_(BETA1).g_add_(&(&grad * (1.0 - BETA1)));
                        let m_hat = &*m / (1.0 - BETA1.powf(t));
                        let v = self
                            .second
                            .entry(p.name.clone())
                            .or_insert_with(|| grad.zeros_like());
                        let _ = v
                            .g_mul_scalar_(BETA2)
                            .g_add_(&(&grad * &grad * (1.0 - BETA2)));
                        let v_hat = &*v / (1.0 - BETA2.powf(t));
                        if decay > 0.0 {
                            let _ = p.tensor.g_mul_scalar_(1.0 - lr * decay);
                        }
                        let update = m_hat / (v_hat.sqrt() + EPS) * lr;
                        let _ = p.tensor.g_sub_(&update);
                    }
                }
            }
        });
    }

    /// Optimizer state as named tensors (for a safetensors file).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .first
            .iter()
            .map(|(n, t)| (format!("first/{n}"), cpu_contiguous(t)))
            .chain(
                self.second
                    .iter()
                    .map(|(n, t)| (format!("second/{n}"), cpu_contiguous(t))),
            )
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Restores state written by [`Self::state_tensors`].
    pub fn restore(&mut self, tensors: Vec<(String, Tensor)>, steps_taken: i64) -> Result<()> {
        let devices: HashMap<&str, tch::Device> = self
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.tensor.device()))
            .collect();
        self.first.clear();
        self.second.clear();
        for (key, tensor) in tensors {
            let (slot, name) = key.split_once('/').unwrap_or(("", &key));
            let Some(device) = devices.get(name) else {
                bail!("optimizer state for unknown parameter {name}");
            };
            let tensor = tensor.to_device(*device);
            match slot {
                "first" => self.first.insert(name.to_string(), tensor),
                "second" => self.second.insert(name.to_string(), tensor),
                _ => bail!("unknown optimizer state entry {key}"),
            };
        }
        self.steps_taken = steps_taken;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn one_param(value: &[f32]) -> (nn::VarStore, Tensor) {
        let vs = nn::VarStore::new(Device::Cpu);
        let t = vs.root().var_copy(
            "w",
            &Tensor::from_slice(value).reshape([1, value.len() as i64]),
        );
        (vs, t)
    }

    fn section(kind: OptimizerKind, wd: f64) -> OptimSection {
        OptimSection {
            optimizer: kind,
            momentum: 0.9,
            weight_decay: wd,
            ..Default::default()
        }
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn sgd_momentum_by_hand() {
        // loss = sum(w) → grad 1. wd 0.1, w = 2: d = 1 + 0.2 = 1.2; buf = 1.2; w = 2 − 0.1·1.2 = 1.88.
        let (vs, w) = one_param(&[2.0]);
        let mut opt = Optimizer::new(&vs, &section(OptimizerKind::Sgd, 0.1), 1.0);
        w.sum(Kind::Float).backward();
        opt.step(0.1);
        assert!((values(&w)[0] - 1.88).abs() < 1e-6);
        // Step 2: d = 1 + 0.188 = 1.188; buf = 0.9·1.2 + 1.188 = 2.268; w = 1.88 − 0.2268.
        opt.zero_grad();
        w.sum(Kind::Float).backward();
        opt.step(0.1);
        assert!(
            (values(&w)[0] - (1.88 - 0.2268)).abs() < 1e-5,
            "{:?}",
            values(&w)
        );
    }

    #[test]
    fn adamw_first_step_moves_by_lr_and_decays_decoupled() {
        // First AdamW step: m̂ = g, v̂ = g² → update = lr·g/|g| = lr (±eps); decay w·(1 − lr·wd) first.
        let (vs, w) = one_param(&[1.0, -3.0]);
        let mut opt = Optimizer::new(&vs, &section(OptimizerKind::AdamW, 0.5), 1.0);
        (&w * &Tensor::from_slice(&[2.0f32, -4.0]).reshape([1, 2]))
            .sum(Kind::Float)
            .backward();
        opt.step(0.1);
        let v = values(&w);
        assert!((v[0] - (1.0 * 0.95 - 0.1)).abs() < 1e-5, "{v:?}");
        assert!((v[1] - (-3.0 * 0.95 + 0.1)).abs() < 1e-5, "{v:?}");
    }

    #[test]
    fn lars_scales_the_update_by_the_trust_ratio() {
        // w = (3, 4): |w| = 5; grad = (1, 1)·2 → |d| = 2√2 (wd 0). trust = η·5 / 2√2.
        let (vs, w) = one_param(&[3.0, 4.0]);
        let mut s = section(OptimizerKind::Lars, 0.0);
        s.lars_eta = 0.01;
        let mut opt = Optimizer::new(&vs, &s, 1.0);
        (&w * 2.0).sum(Kind::Float).backward();
        opt.step(1.0);
        let trust = 0.01 * 5.0 / (2.0 * 2f64.sqrt());
        let v = values(&w);
        assert!(
            (f64::from(v[0]) - (3.0 - 2.0 * trust)).abs() < 1e-5,
            "{v:?}"
        );
    }

    #[test]
    fn state_round_trip() {
        let (vs, w) = one_param(&[1.0]);
        let mut opt = Optimizer::new(&vs, &section(OptimizerKind::AdamW, 0.0), 1.0);
        w.sum(Kind::Float).backward();
        opt.step(0.1);
        let state = opt.state_tensors();
        assert_eq!(state.len(), 2);
        let mut fresh = Optimizer::new(&vs, &section(OptimizerKind::AdamW, 0.0), 1.0);
        fresh.restore(state, opt.steps_taken).unwrap();
        assert_eq!(fresh.state_tensors().len(), 2);
        assert!(fresh
            .restore(vec![("first/nope".into(), Tensor::from(1.0f32))], 1)
            .is_err());
    }
}
