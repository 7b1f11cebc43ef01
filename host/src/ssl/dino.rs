//! DINO (Caron et al. 2021): self-distillation without labels. A student
//! (backbone → head with a weight-normalised last layer) matches, on every
//! crop, the teacher's sharpened and centred distribution of the *other*
//! global crops. Multi-crop: 2 global + N local crops (none below
//! `ssl.local_crops_min_input`), the teacher sees only the global ones.
//! Student temperature 0.1, the centre follows the teacher's batch mean with
//! momentum 0.9, the teacher is an EMA of the student (cosine to 1), and
//! AdamW's weight decay follows a cosine from 0.04 to 0.4. The reference's
//! safeguards, in steps ([`super::dino_schedule`]): learning-rate warm-up
//! at lr × batch / 256, teacher-temperature warm-up, prototypes frozen for
//! the first epoch, per-parameter gradient clipping at 3.

use std::collections::HashMap;

use anyhow::{bail, Result};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::dino_schedule::{
    base_momentum, clip_gradients, epochs_to_steps, lr_at, momentum_at, teacher_temp_at,
};
use super::ema::Target;
use super::heads::{at_least_f32, dino_head, DinoHead};
use super::monitor::TeacherDistribution;
use super::views::{multi_crop, ViewRecipe};
use super::{Objective, Progress, SslSection};
use crate::model::ResNet;
use crate::train::config::{parse_device, OptimSection, TrainConfig};
use crate::train::schedule::cosine_ramp;

pub struct Dino {
    head: DinoHead,
    target: Target<DinoHead>,
    center: Tensor,
    ssl: SslSection,
    /// The learning rate, batch and warm-up of DINO's own lr schedule.
    optim: OptimSection,
    /// Every trainable online variable (backbone and head): what is clipped.
    student: Vec<Tensor>,
    /// Sums of the teacher's entropy and KL(teacher‖student) since the
    /// monitor last took them, and the number of terms.
    distribution: (f64, f64, usize),
}

fn head(vs: &nn::Path, embedding: i64, ssl: &SslSection) -> DinoHead {
    dino_head(
        &(vs / "head"),
        embedding,
        ssl.hidden_dim,
        ssl.bottleneck_dim,
        ssl.out_dim,
        ssl.head_batch_norm,
    )
}

impl Dino {
    pub fn new(online: &nn::VarStore, config: &TrainConfig) -> Result<Dino> {
        let ssl = config.ssl.clone();
        let embedding = config.model.resnet().embedding_dim();
        let device: Device = parse_device(&config.run.device)?;
        let student_head = head(&online.root(), embedding, &ssl);
        let target = Target::new(online, config.model.resnet(), ssl.momentum, device, |vs| {
            head(vs, embedding, &ssl)
        })?;
        Ok(Dino {
            head: student_head,
            target,
            center: Tensor::zeros([1, ssl.out_dim], (Kind::Float, device)),
            ssl,
            optim: config.optim.clone(),
            student: online.trainable_variables(),
            distribution: (0.0, 0.0, 0),
        })
    }

    fn teacher_temperature(&self, at: Progress) -> f64 {
        teacher_temp_at(
            at.step,
            epochs_to_steps(self.ssl.warmup_teacher_epochs, at.steps_per_epoch),
            self.ssl.warmup_teacher_temp,
            self.ssl.teacher_temp,
        )
    }

    /// The teacher's EMA momentum at this step (cosine to 1 from a base
    /// that shrinks on short runs).
    pub fn teacher_momentum(&self, at: Progress) -> f64 {
        let base = base_momentum(self.ssl.momentum, self.ssl.teacher_turnover, at.total_steps);
        momentum_at(at.step, at.total_steps, base)
    }

    /// Whether the prototypes are still frozen at this step.
    fn prototypes_frozen(&self, at: Progress) -> bool {
        at.step < epochs_to_steps(self.ssl.freeze_last_layer_epochs, at.steps_per_epoch)
    }
}

/// Cross-entropy between the teacher's softmax((t − centre)/τ_t) and the
/// student's log-softmax(s/τ_s), over every (teacher view, student view)
/// pair except a view with itself, averaged over pairs and batch.
pub fn dino_loss(
    teacher: &[Tensor],
    student: &[Tensor],
    center: &Tensor,
    teacher_temp: f64,
    student_temp: f64,
) -> Tensor {
    // In f32 even inside bf16 autocast: softmaxes over sharp logits.
    tch::autocast(false, || {
        let targets: Vec<Tensor> = teacher
            .iter()
            .map(|t| {
                ((at_least_f32(t) - center) / teacher_temp)
                    .softmax(-1, None::<Kind>)
                    .detach()
            })
            .collect();
        let logs: Vec<Tensor> = student
            .iter()
            .map(|s| (at_least_f32(s) / student_temp).log_softmax(-1, None::<Kind>))
            .collect();
        let mut total: Option<Tensor> = None;
        let mut terms = 0usize;
        for (ti, t) in targets.iter().enumerate() {
            for (si, s) in logs.iter().enumerate() {
                if ti == si {
                    continue;
                }
                let kind = s.kind();
                let term = -(t * s)
                    .sum_dim_intlist(&[-1i64][..], false, kind)
                    .mean(kind);
                total = Some(match total {
                    Some(acc) => acc + term,
                    None => term,
                });
                terms += 1;
            }
        }
        match total {
            Some(sum) => sum / terms as f64,
            None => Tensor::from(f32::NAN),
        }
    })
}

/// The teacher's mean entropy H(p) and mean KL(p‖q) to the student on the
/// *other* global view, p = softmax((t − centre)/τ_t), q = softmax(s/τ_s),
/// summed over the global views (DINO §5.3's diagnostics).
pub fn teacher_diagnostics(
    teacher: &[Tensor],
    student_globals: &[Tensor],
    center: &Tensor,
    teacher_temp: f64,
    student_temp: f64,
) -> (f64, f64, usize) {
    tch::no_grad(|| {
        let mut sums = (0.0, 0.0, 0);
        for (ti, t) in teacher.iter().enumerate() {
            let Some(s) = student_globals.get(1 - ti.min(1)) else {
                continue;
            };
            let log_p = ((at_least_f32(t) - center) / teacher_temp).log_softmax(-1, Kind::Float);
            let p = log_p.exp();
            let log_q = (at_least_f32(&s.detach()) / student_temp).log_softmax(-1, Kind::Float);
            let entropy = -(&p * &log_p).sum_dim_intlist(&[-1i64][..], false, Kind::Double);
            let kl = (&p * (&log_p - log_q)).sum_dim_intlist(&[-1i64][..], false, Kind::Double);
            sums.0 += entropy.mean(Kind::Double).double_value(&[]);
            sums.1 += kl.mean(Kind::Double).double_value(&[]);
            sums.2 += 1;
        }
        sums
    })
}

/// centre ← m·centre + (1 − m)·mean of the teacher outputs (all views).
pub fn update_center(center: &Tensor, teacher: &[Tensor], momentum: f64) -> Tensor {
    tch::no_grad(|| {
        let batch = at_least_f32(&Tensor::cat(teacher, 0));
        let batch = batch.mean_dim(&[0i64][..], true, batch.kind());
        center * momentum + batch * (1.0 - momentum)
    })
}

impl Objective for Dino {
    fn views(&self, input_size: i64) -> ViewRecipe {
        let locals = if input_size < self.ssl.local_crops_min_input {
            0
        } else {
            self.ssl.local_crops
        };
        multi_crop(input_size, locals, self.ssl.local_size_fraction)
    }

    fn loss(&mut self, backbone: &ResNet, views: &[Tensor], at: Progress) -> Tensor {
        let Some(globals) = views.get(..2) else {
            return Tensor::from(f32::NAN);
        };
        // Before the forward pass, so that a frozen last layer records no
        // gradient at all (the optimizer then skips it, decay included).
        self.head.freeze_prototypes(self.prototypes_frozen(at));
        let student: Vec<Tensor> = views
            .iter()
            .map(|v| self.head.forward_t(&backbone.embed(v, true), true))
            .collect();
        let teacher: Vec<Tensor> = globals.iter().map(|v| self.target.forward(v)).collect();
        let teacher_temp = self.teacher_temperature(at);
        let loss = dino_loss(
            &teacher,
            &student,
            &self.center,
            teacher_temp,
            self.ssl.student_temp,
        );
        let (entropy, kl, terms) = teacher_diagnostics(
            &teacher,
            student.get(..2).unwrap_or_default(),
            &self.center,
            teacher_temp,
            self.ssl.student_temp,
        );
        self.distribution.0 += entropy;
        self.distribution.1 += kl;
        self.distribution.2 += terms;
        self.center = update_center(&self.center, &teacher, self.ssl.center_momentum);
        loss
    }

    fn learning_rate(&self, at: Progress) -> Option<f64> {
        Some(lr_at(
            at.step,
            at.total_steps,
            epochs_to_steps(self.optim.warmup_epochs, at.steps_per_epoch),
            self.optim.lr,
            self.optim.batch_size,
            self.ssl.min_lr,
        ))
    }

    fn before_step(&mut self, _at: Progress) {
        clip_gradients(&self.student, self.ssl.clip_grad);
    }

    fn after_step(&mut self, at: Progress) {
        self.target.follow_with(self.teacher_momentum(at));
    }

    fn monitor_backbone(&self) -> Option<&ResNet> {
        Some(self.target.backbone_module())
    }

    fn take_distribution(&mut self) -> Option<TeacherDistribution> {
        let (entropy, kl, terms) = std::mem::replace(&mut self.distribution, (0.0, 0.0, 0));
        (terms > 0).then(|| TeacherDistribution {
            entropy: entropy / terms as f64,
            kl_teacher_student: kl / terms as f64,
            prototypes: usize::try_from(self.ssl.out_dim).unwrap_or(0),
        })
    }

    /// DINO's evaluations use the teacher (`--checkpoint_key teacher`).
    fn evaluation_backbone(&self) -> Option<Vec<(String, Tensor)>> {
        Some(self.target.backbone())
    }

    fn weight_decay(&self, base: f64, at: Progress) -> f64 {
        cosine_ramp(at.step, at.total_steps, base, self.ssl.weight_decay_end)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = self.target.state();
        state.push(("center".to_string(), self.center.to_device(Device::Cpu)));
        state
    }

    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.target.restore(state)?;
        match state.get("center") {
            Some(center) if center.size() == self.center.size() => {
                self.center = center.to_device(self.center.device());
                Ok(())
            }
            _ => bail!(
                "the checkpoint has no DINO centre of {:?}",
                self.center.size()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::resnet;
    use crate::ssl::Method;

    fn tiny(size: u32) -> TrainConfig {
        let overrides: Vec<String> = [
            "model.width=0.25".to_string(),
            format!("model.input_size={size}"),
            "optim.batch_size=32".to_string(),
            "ssl.hidden_dim=32".to_string(),
            "ssl.bottleneck_dim=16".to_string(),
            "ssl.out_dim=64".to_string(),
            "run.device=\"cpu\"".to_string(),
        ]
        .into();
        TrainConfig::load_layered(Method::Dino.defaults(), None, &overrides).unwrap()
    }

    fn at(step: usize) -> Progress {
        Progress {
            step,
            total_steps: 1100,
            steps_per_epoch: 11,
        }
    }

    #[test]
    fn prototypes_get_no_gradient_during_the_first_epoch() {
        let config = tiny(32);
        let vs = nn::VarStore::new(Device::Cpu);
        let backbone = resnet(&vs.root(), config.model.resnet(), None);
        let mut dino = Dino::new(&vs, &config).unwrap();
        let views: Vec<Tensor> = (0..2)
            .map(|_| Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu)))
            .collect();
        // Reference: freeze_last_layer = 1 epoch; here 11 steps per epoch,
        // so steps 0–10 are frozen and step 11 is the first to learn.
        for (step, frozen) in [(0, true), (10, true), (11, false)] {
            for p in &dino.student {
                let mut p = p.shallow_clone();
                p.zero_grad();
            }
            dino.loss(&backbone, &views, at(step)).backward();
            dino.before_step(at(step));
            let grad = dino.head.prototypes_grad();
            assert_eq!(!grad.defined(), frozen, "step {step}");
        }
        let grad = dino.head.prototypes_grad();
        assert!(grad.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn defaults_follow_the_reference_and_the_input() {
        let config = tiny(64);
        let vs = nn::VarStore::new(Device::Cpu);
        let _backbone = resnet(&vs.root(), config.model.resnet(), None);
        let dino = Dino::new(&vs, &config).unwrap();
        // main_dino.py: teacher_temp 0.04, clip_grad 3, freeze 1 epoch,
        // min_lr 1e-6; lr 5e-4 × 32 / 256 = 6.25e-5 at the peak (step 109
        // of a 10-epoch warm-up of 11 steps, by hand).
        assert_eq!(dino.teacher_temperature(at(0)), 0.04);
        assert_eq!(dino.teacher_temperature(at(900)), 0.04);
        assert_eq!(config.ssl.clip_grad, 3.0);
        assert_eq!(config.ssl.freeze_last_layer_epochs, 1.0);
        assert_eq!(dino.learning_rate(at(0)), Some(0.0));
        let peak = dino.learning_rate(at(109)).unwrap();
        assert!((peak - 6.25e-5).abs() < 1e-15, "{peak}");
        // Teacher momentum at step 0 of 1,100: 1 − 10/1100 (by hand), not 0.996.
        let m0 = dino.teacher_momentum(at(0));
        assert!((m0 - (1.0 - 10.0 / 1100.0)).abs() < 1e-12, "{m0}");
        // No local crops at 64² (they start at 96²); 6 at 224².
        assert!(dino.views(64).extra.len() == 1);
        assert_eq!(dino.views(224).extra.len(), 1 + config.ssl.local_crops);
        assert!(config.ssl.out_dim < 65_536);
        // The views for brain slices (README, DINO at small scale): global
        // crops of 90–100 %, no intensity jitter, no solarisation; the
        // local crops keep the reference's 5–40 %.
        let views = dino.views(224).adjusted(&config.ssl);
        for global in [&views.first, &views.extra[0].augment] {
            assert_eq!(global.crop_scale, (0.9, 1.0));
        }
        assert_eq!(views.extra[1].augment.crop_scale, (0.05, 0.4));
        for view in std::iter::once(&views.first).chain(views.extra.iter().map(|v| &v.augment)) {
            assert_eq!(
                (view.brightness, view.contrast, view.solarize_p),
                (0.0, 0.0, 0.0)
            );
        }
    }
}
