//! The `[ssl]` section of a training configuration: which self-supervised
//! method, its heads, temperatures and target momentum. Each method also
//! brings its paper's defaults for the other sections ([`Method::defaults`]),
//! applied under the user's file and `--set` overrides.

use serde::{Deserialize, Serialize};

/// A self-supervised pre-training method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// SimCLR (Chen et al. 2020): two views, MLP projector, NT-Xent.
    Simclr,
    /// BYOL (Grill et al. 2020): online projector + predictor, EMA target.
    Byol,
    /// DINO (Caron et al. 2021): multi-crop self-distillation, centred teacher.
    Dino,
    /// MoCo v3 (Chen, Xie, He 2021): momentum key encoder, symmetric InfoNCE.
    Mocov3,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::Simclr, Method::Byol, Method::Dino, Method::Mocov3];

    pub fn name(self) -> &'static str {
        match self {
            Method::Simclr => "simclr",
            Method::Byol => "byol",
            Method::Dino => "dino",
            Method::Mocov3 => "mocov3",
        }
    }

    /// The method's published recipe as `section.key=value` overrides, at a
    /// batch of 256 (learning rates follow the linear scaling rule
    /// lr = base × B / 256 of each paper; scale `optim.lr` with the batch).
    pub fn defaults(self) -> &'static [&'static str] {
        match self {
            // SimCLR: LARS, lr 0.3 × B/256, wd 1e-6, 10 warm-up epochs, cosine;
            // projector 2048 → 128. τ = 0.2 rather than the paper's 0.1 at
            // batch 4096: smaller batches want a softer temperature (the
            // paper's Table 5 and solo-learn's small-batch recipes).
            Method::Simclr => &[
                "optim.optimizer=\"lars\"",
                "optim.lr=0.3",
                "optim.weight_decay=1e-6",
                "optim.batch_size=256",
                "optim.warmup_epochs=10",
                "ssl.hidden_dim=2048",
                "ssl.out_dim=128",
                "ssl.temperature=0.2",
            ],
            // BYOL: LARS, lr 0.2 × B/256, wd 1.5e-6, 10 warm-up epochs;
            // projector and predictor 4096 → 256; τ from 0.99 to 1 (cosine),
            // the paper's value for shorter schedules.
            Method::Byol => &[
                "optim.optimizer=\"lars\"",
                "optim.lr=0.2",
                "optim.weight_decay=1.5e-6",
                "optim.batch_size=256",
                "optim.warmup_epochs=10",
                "ssl.hidden_dim=4096",
                "ssl.out_dim=256",
                "ssl.momentum=0.99",
            ],
            // DINO (facebookresearch/dino `main_dino.py` defaults): AdamW,
            // lr 5e-4 at batch 256 (scaled by batch / 256 inside DINO, the
            // reference's linear scaling rule), weight decay 0.04 → 0.4
            // (cosine), 10 warm-up epochs; head 2048 hidden, 256 bottleneck,
            // weight-normalised last layer. 1,024 prototypes instead of
            // 65,536: the reference's ImageNet has 1.28 M images, lightly's
            // CIFAR-10 example (50,000 images) uses 2,048, our pools hold
            // hundreds to thousands of slices. Teacher momentum 0.996 → 1 (the
            // reference), lowered on short runs (`ssl.teacher_turnover`).
            // Temperatures, freeze and clipping: [`SslSection::default`].
            // Views: the global crops keep 90–100 % of the slice and there
            // is no intensity jitter or solarisation (the reference: crops
            // of 40–100 %, colour jitter, solarisation). Measured on brain
            // slices (README, *DINO at small scale*): with the reference's
            // views the teacher flattens to uniform — ours and lightly's
            // DINO alike, at 64² and at 224² with multi-crop —; with these
            // both learn, on 136 slices and on 11,428.
            Method::Dino => &[
                "optim.optimizer=\"adamw\"",
                "optim.lr=5e-4",
                "optim.weight_decay=0.04",
                "optim.batch_size=256",
                "optim.warmup_epochs=10",
                "ssl.hidden_dim=2048",
                "ssl.out_dim=1024",
                "ssl.momentum=0.996",
                "ssl.global_crop_min=0.9",
                "ssl.brightness=0.0",
                "ssl.contrast=0.0",
                "ssl.solarize=false",
            ],
            // MoCo v3 (ResNet-50 recipe): LARS, lr 0.6 × B/256, wd 1e-6,
            // 10 warm-up epochs; projector and predictor 2 layers of 4096 →
            // 256 with BatchNorm; key momentum 0.99 → 1. τ = 0.2, the
            // paper's ViT value (its ResNet-50 used 1.0): sharper
            // contrast for a small dataset of similar-looking slices.
            Method::Mocov3 => &[
                "optim.optimizer=\"lars\"",
                "optim.lr=0.6",
                "optim.weight_decay=1e-6",
                "optim.batch_size=256",
                "optim.warmup_epochs=10",
                "ssl.hidden_dim=4096",
                "ssl.out_dim=256",
                "ssl.temperature=0.2",
                "ssl.momentum=0.99",
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SslSection {
    pub method: Method,
    /// Hidden width of the projector / predictor / DINO head MLPs.
    pub hidden_dim: i64,
    /// Output width of the projector (DINO: number of prototypes).
    pub out_dim: i64,
    /// Softmax temperature of the contrastive losses (SimCLR, MoCo v3).
    pub temperature: f64,
    /// Starting momentum τ of the EMA target (ramps to 1 on a cosine).
    pub momentum: f64,
    /// DINO: local crops per image (beside the two global ones).
    pub local_crops: usize,
    /// DINO: local crop side as a fraction of the input side (96 / 224).
    pub local_size_fraction: f64,
    /// DINO: bottleneck width before the weight-normalised last layer.
    pub bottleneck_dim: i64,
    /// DINO: BatchNorm in the head's hidden layers (ResNets need it).
    pub head_batch_norm: bool,
    /// DINO: local crops only from this input side up (DINO's local crops
    /// are 96² of a 224² input; solo-learn's 32² CIFAR recipe has none:
    /// a crop of a few tens of pixels of a 64² slice holds no lesion to
    /// predict the global view from).
    pub local_crops_min_input: i64,
    /// DINO: the teacher temperature after its warm-up. 0.04, the
    /// reference's default; its help calls anything above 0.07 unstable.
    pub teacher_temp: f64,
    /// DINO: the teacher temperature at the start (reference: 0.04).
    pub warmup_teacher_temp: f64,
    /// DINO: warm-up length in epochs, as steps × steps per epoch
    /// (reference default 0; 30 in its ViT recipes with 0.07).
    pub warmup_teacher_epochs: f64,
    pub student_temp: f64,
    pub center_momentum: f64,
    /// DINO: weight decay at the end of the cosine schedule.
    pub weight_decay_end: f64,
    /// DINO: the learning rate at the end of the cosine (reference `min_lr`).
    pub min_lr: f64,
    /// DINO: epochs (as steps × steps per epoch) during which the prototypes
    /// (the last layer) get no gradient (reference `freeze_last_layer` = 1).
    pub freeze_last_layer_epochs: f64,
    /// DINO: per-parameter gradient-norm limit (reference `clip_grad` = 3;
    /// 0 turns it off).
    pub clip_grad: f64,
    /// DINO: the teacher's starting momentum is lowered to 1 − turnover /
    /// steps when that is below `momentum`, so the random initial teacher
    /// keeps at most e^(−turnover/2) of the weights it hands on (0: off;
    /// `dino_schedule::base_momentum` explains the 10).
    pub teacher_turnover: f64,
    /// Views: no solarisation in any view when false. On MRI the sequence
    /// is part of the class (T1, T1C+, T2) and solarising inverts bright
    /// tissue: a T2's bright CSF turns dark, as a T1's.
    pub solarize: bool,
    /// Views: brightness and contrast jitter amplitudes instead of the
    /// method's (which keep the shared ±0.2 / ±0.3).
    pub brightness: Option<f64>,
    pub contrast: Option<f64>,
    /// Views: the smallest area fraction of the full-size (global) crops
    /// instead of the views' 0.4 (DINO's recipe sets 0.9). On the
    /// one-template phantom pool DINO learns with 0.9 and flattens with 0.4
    /// (README, *DINO at small scale*): a crop of 40 % differs from its
    /// image more than the images differ from each other.
    pub global_crop_min: Option<f64>,
    /// Collapse monitor: images embedded per epoch.
    pub monitor_images: usize,
    /// Collapse monitor: neighbours of the kNN accuracy.
    pub knn_k: usize,
}

impl Default for SslSection {
    fn default() -> Self {
        SslSection {
            method: Method::Simclr,
            hidden_dim: 2048,
            out_dim: 128,
            temperature: 0.2,
            momentum: 0.99,
            local_crops: 6,
            local_size_fraction: 96.0 / 224.0,
            bottleneck_dim: 256,
            head_batch_norm: true,
            local_crops_min_input: 96,
            teacher_temp: 0.04,
            warmup_teacher_temp: 0.04,
            warmup_teacher_epochs: 0.0,
            student_temp: 0.1,
            center_momentum: 0.9,
            weight_decay_end: 0.4,
            min_lr: 1e-6,
            freeze_last_layer_epochs: 1.0,
            clip_grad: 3.0,
            teacher_turnover: 10.0,
            solarize: true,
            brightness: None,
            contrast: None,
            global_crop_min: None,
            monitor_images: 512,
            knn_k: 20,
        }
    }
}

impl SslSection {
    /// Reasons the section cannot be trained with.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.hidden_dim < 1 || self.out_dim < 1 || self.bottleneck_dim < 1 {
            problems.push("ssl.hidden_dim, ssl.out_dim and ssl.bottleneck_dim must be ≥ 1".into());
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if ![
            self.temperature,
            self.teacher_temp,
            self.warmup_teacher_temp,
            self.student_temp,
        ]
        .into_iter()
        .all(positive)
        {
            problems.push("ssl temperatures must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.momentum) || !(0.0..=1.0).contains(&self.center_momentum) {
            problems.push("ssl.momentum and ssl.center_momentum must be in [0, 1]".into());
        }
        if !(self.local_size_fraction > 0.0 && self.local_size_fraction <= 1.0) {
            problems.push("ssl.local_size_fraction must be in (0, 1]".into());
        }
        if let Some(m) = self.global_crop_min {
            if !(m > 0.0 && m <= 1.0) {
                problems.push("ssl.global_crop_min must be in (0, 1]".into());
            }
        }
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if ![
            self.weight_decay_end,
            self.warmup_teacher_epochs,
            self.min_lr,
            self.freeze_last_layer_epochs,
            self.clip_grad,
            self.teacher_turnover,
        ]
        .into_iter()
        .all(non_negative)
        {
            problems.push(
                "ssl.weight_decay_end, warmup_teacher_epochs, min_lr, freeze_last_layer_epochs, \
                 clip_grad and teacher_turnover must be ≥ 0"
                    .into(),
            );
        }
        let amplitude = |v: Option<f64>| v.is_none_or(|v| (0.0..=1.0).contains(&v));
        if !amplitude(self.brightness) || !amplitude(self.contrast) {
            problems.push("ssl.brightness and ssl.contrast must be in [0, 1]".into());
        }
        if self.monitor_images < 2 || self.knn_k < 1 {
            problems.push("ssl.monitor_images must be ≥ 2 and ssl.knn_k ≥ 1".into());
        }
        problems
    }
}
