//! DINO (Caron et al. 2021): self-distillation without labels. A student
//! (backbone → head with a weight-normalised last layer) matches, on every
//! crop, the teacher's sharpened and centred distribution of the *other*
//! global crops. Multi-crop: 2 global + N local crops, the teacher sees only
//! the global ones. Teacher temperature warms up linearly (0.04 → 0.07),
//! student temperature 0.1, the centre follows the teacher's batch mean with
//! momentum 0.9, the teacher is an EMA of the student (0.996 → 1, cosine),
//! and AdamW's weight decay follows a cosine from 0.04 to 0.4.

use std::collections::HashMap;

use anyhow::{bail, Result};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::ema::Target;
use super::heads::{at_least_f32, dino_head, DinoHead};
use super::monitor::TeacherDistribution;
use super::views::{multi_crop, ViewRecipe};
use super::{Objective, Progress, SslSection};
use crate::model::ResNet;
use crate::train::config::{parse_device, TrainConfig};
use crate::train::schedule::{cosine_ramp, linear_ramp};

pub struct Dino {
    head: DinoHead,
    target: Target<DinoHead>,
    center: Tensor,
    ssl: SslSection,
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
            distribution: (0.0, 0.0, 0),
        })
    }

    fn teacher_temperature(&self, at: Progress) -> f64 {
        let warmup = (self.ssl.warmup_teacher_epochs * at.steps_per_epoch as f64).round() as usize;
        linear_ramp(
            at.step,
            warmup,
            self.ssl.warmup_teacher_temp,
            self.ssl.teacher_temp,
        )
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
        multi_crop(
            input_size,
            self.ssl.local_crops,
            self.ssl.local_size_fraction,
        )
    }

    fn loss(&mut self, backbone: &ResNet, views: &[Tensor], at: Progress) -> Tensor {
        let Some(globals) = views.get(..2) else {
            return Tensor::from(f32::NAN);
        };
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

    fn after_step(&mut self, at: Progress) {
        self.target.follow(at);
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
