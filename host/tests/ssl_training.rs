//! Self-supervised pre-training on generated phantoms: every method's loss
//! falls over 20 steps on a fixed batch, the EMA targets differ from and
//! lag the online network, an interrupted run resumes to identical weights, and the CLI
//! pre-trains on a plain folder and hands the backbone to `linear-eval`.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use indicatif::ProgressBar;
use tch::{nn, Tensor};
use tumorxai_host::data::loader::{BatchPlan, Prefetch};
use tumorxai_host::model::resnet;
use tumorxai_host::ssl::pretrain::{backbone_weights, load_data, pretrain};
use tumorxai_host::ssl::{objective, Method, Progress};
use tumorxai_host::train::checkpoint;
use tumorxai_host::train::config::TrainConfig;
use tumorxai_host::train::fit::Outcome;
use tumorxai_host::train::optim::Optimizer;

use crate::common::{ok, s, tumorxai, SERIAL};
use crate::training::{dataset_overrides, phantom_set, tensors};

/// A tiny configuration of `method`: its heads, views and schedules, with
/// AdamW at 2·10⁻³ for all four. The recipes' own optimizers at batch 16
/// move too little in 20 steps to tell learning from noise (LARS at the
/// linear-scaling rate takes steps of 2·10⁻⁵ of the weight norm; DINO at
/// 5·10⁻⁴ stays on its uniform-teacher plateau for hundreds of steps).
fn tiny(dir: &Path, method: Method, out: &str, epochs: usize) -> TrainConfig {
    tiny_at(dir, method, out, epochs, 32)
}

fn tiny_at(dir: &Path, method: Method, out: &str, epochs: usize, size: u32) -> TrainConfig {
    let epochs = format!("optim.epochs={epochs}");
    let size = format!("model.input_size={size}");
    let overrides = dataset_overrides(
        dir,
        out,
        &[
            "model.width=0.25",
            &size,
            "optim.batch_size=16",
            "optim.warmup_epochs=1",
            &epochs,
            "optim.optimizer=\"adamw\"",
            "optim.lr=0.002",
            "optim.weight_decay=1e-4",
            "ssl.hidden_dim=128",
            "ssl.out_dim=64",
            "ssl.local_crops=2",
            "ssl.warmup_teacher_epochs=2",
            // DINO's teacher keeps 0.996 on these 20-step runs (the lag
            // is what they check; a run-length base would be 0.9).
            "ssl.teacher_turnover=0",
            "ssl.monitor_images=32",
            &format!("ssl.method={:?}", method.name()),
        ],
    );
    TrainConfig::load_layered(method.defaults(), None, &overrides).unwrap()
}

fn distance(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).norm().double_value(&[])
}

#[test]
fn every_method_fits_a_fixed_batch_and_every_target_lags() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    phantom_set(tmp.path(), 3, 21);
    for method in Method::ALL {
        let c = tiny_at(tmp.path(), method, method.name(), 1, 64);
        let data = load_data(&c, &ProgressBar::hidden()).unwrap();
        tch::manual_seed(c.run.seed as i64);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let backbone = resnet(&vs.root(), c.model.resnet(), None);
        let init: Vec<(String, Tensor)> = [
            "conv1.weight",
            "layer2.0.conv1.weight",
            "layer4.1.conv2.weight",
        ]
        .iter()
        .map(|n| (n.to_string(), vs.variables()[*n].copy()))
        .collect();
        let mut objective = objective(&vs, &c).unwrap();
        let mut optimizer = Optimizer::new(&vs, &c.optim, 1.0);
        // One batch of the method's own views, fixed for all 20 steps: a
        // method that learns must fit it (the per-step noise of fresh
        // augmentations hides 20 steps of progress on real batches).
        let recipe = objective.views(64);
        let plan = BatchPlan {
            batch_size: 16,
            seed: 1,
            epoch: 0,
            shuffle: true,
            drop_last: true,
            augment: Some(recipe.first),
            extra_views: recipe.extra.clone(),
            start_step: 0,
        };
        let batch = Prefetch::spawn(&data.images, &data.spec, plan)
            .next()
            .unwrap()
            .unwrap();
        let mut views = vec![batch.inputs.shallow_clone()];
        views.extend(batch.extra_views.iter().map(Tensor::shallow_clone));
        // DINO makes no local crops below 96² (ssl.local_crops_min_input).
        assert_eq!(views.len(), 2);
        let mut losses = Vec::new();
        for step in 0..20 {
            let at = Progress {
                step,
                total_steps: 20,
                steps_per_epoch: 1,
            };
            let loss = objective.loss(&backbone, &views, at);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step(0.002);
            objective.after_step(at);
            losses.push(loss.double_value(&[]));
        }
        eprintln!("{method:?}: {losses:.3?}");
        let early = losses[..3].iter().sum::<f64>() / 3.0;
        let late = losses[17..].iter().sum::<f64>() / 3.0;
        assert!(
            late < early,
            "{method:?}: loss did not fall over 20 steps: {losses:.3?}"
        );

        let state: std::collections::HashMap<String, Tensor> =
            objective.state().into_iter().collect();
        if method == Method::Simclr {
            assert!(state.is_empty(), "SimCLR has no target");
            continue;
        }
        // The target started as the initial network and follows the online
        // one with τ → 1: it has moved, less far than the online weights,
        // and differs from them.
        for (name, start) in &init {
            let online = &vs.variables()[name];
            let target = &state[&format!("target.{name}")];
            let moved_online = distance(online, start);
            let moved_target = distance(target, start);
            assert!(
                moved_target > 0.0,
                "{method:?} {name}: the target never moved"
            );
            assert!(
                moved_target < 0.5 * moved_online,
                "{method:?} {name}: the target ({moved_target:.3e}) must lag the online network ({moved_online:.3e})"
            );
        }
    }
}

#[test]
fn an_interrupted_dino_run_resumes_to_identical_weights() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    phantom_set(tmp.path(), 4, 5);
    let stop = AtomicBool::new(false);
    let straight = tiny(tmp.path(), Method::Dino, "straight", 2);
    let data = load_data(&straight, &ProgressBar::hidden()).unwrap();
    assert!(matches!(
        pretrain(&straight, false, &data, &stop, None, true).unwrap(),
        Outcome::Finished(_)
    ));
    // DINO carries the most state: teacher, centre, AdamW moments, wd schedule.
    let interrupted = tiny(tmp.path(), Method::Dino, "interrupted", 2);
    let first = pretrain(&interrupted, false, &data, &stop, Some(1), true).unwrap();
    assert!(matches!(first, Outcome::Interrupted(ref s) if s.step_in_epoch == 1));
    let second = pretrain(&interrupted, true, &data, &stop, Some(2), true).unwrap();
    assert!(matches!(second, Outcome::Interrupted(ref s) if s.epoch == 1 && s.step_in_epoch == 1));
    assert!(matches!(
        pretrain(&interrupted, true, &data, &stop, None, true).unwrap(),
        Outcome::Finished(_)
    ));
    let a = tensors(&backbone_weights(&straight.run.out));
    let b = tensors(&backbone_weights(&interrupted.run.out));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
    let ta = checkpoint::load_extra(&straight.run.out).unwrap();
    let tb = checkpoint::load_extra(&interrupted.run.out).unwrap();
    assert!(
        ta["center"].equal(&tb["center"]),
        "the DINO centre resumes too"
    );
    // DINO hands on its teacher (the reference evaluates the teacher): the
    // backbone file is the target network's backbone, without the head.
    for (name, tensor) in &a {
        assert!(!name.starts_with("head"), "{name}");
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        assert!(
            tensor.equal(&ta[&format!("target.{name}")]),
            "{name} is not the teacher's"
        );
    }
    // A resume with another method is refused.
    let other = tiny(tmp.path(), Method::Byol, "interrupted", 2);
    let err = pretrain(&other, true, &data, &stop, None, true)
        .err()
        .unwrap();
    assert!(err.to_string().contains("another model, method"), "{err}");
}

/// A tiny pre-training through the CLI: ResNet-18 ×0.25 at 32², batch 8,
/// heads of 64 hidden and 32 output units, on the CPU.
const TINY_CLI: [&str; 12] = [
    "--set",
    "model.width=0.25",
    "--set",
    "model.input_size=32",
    "--set",
    "optim.batch_size=8",
    "--set",
    "ssl.hidden_dim=64",
    "--set",
    "ssl.out_dim=32",
    "--device",
    "cpu",
];

#[test]
fn cli_pretrains_on_a_plain_folder_and_feeds_linear_eval() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        phantom_set(tmp.path(), 3, 9);
    }
    let data = tmp.path().join("data");
    let out = tmp.path().join("simclr");
    let tiny = TINY_CLI;
    // No split: every image under the folder, labels (folders) ignored.
    let mut args = vec![
        "pretrain",
        "--method",
        "simclr",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--epochs",
        "1",
    ];
    args.extend(tiny);
    let stdout = ok(&args);
    assert!(stdout.contains("linear-eval --backbone"), "{stdout}");
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        config.contains("optimizer = \"lars\""),
        "the method's recipe: {config}"
    );
    assert!(
        config.contains("batch_size = 8"),
        "the flags beat the recipe: {config}"
    );

    let backbone = backbone_weights(&out);
    let names: Vec<String> = tensors(&backbone).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"layer4.1.conv2.weight".to_string()));
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("projector") || n.starts_with("predictor")),
        "the backbone file holds no heads: {names:?}"
    );
    let split = tmp.path().join("split.json");
    let report = ok(&[
        "linear-eval",
        "--backbone",
        s(&backbone),
        "--data",
        s(&data),
        "--split",
        s(&split),
        "--out",
        s(&tmp.path().join("probe")),
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--set",
        "model.width=0.25",
        "--set",
        "model.input_size=32",
    ]);
    assert!(report.contains("accuracy"), "{report}");

    // Labels mean nothing to pre-training; a second run into the same folder
    // needs --resume.
    let mut again = args.clone();
    again.extend(["--label-percent", "10"]);
    let refused = tumorxai(&again);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("ignores labels"));
    let refused = tumorxai(&args);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));
}

#[test]
fn the_monitor_says_not_learning_when_the_teacher_stays_uniform() {
    // A deliberately broken DINO: teacher temperature 1 throughout, so the
    // centred teacher never sharpens and stays at ln K.
    let tmp = tempfile::tempdir().unwrap();
    {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        phantom_set(tmp.path(), 2, 13);
    }
    let data = tmp.path().join("data");
    let out = tmp.path().join("dino");
    let mut args = vec![
        "pretrain",
        "--method",
        "dino",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--epochs",
        "3",
        "--set",
        "ssl.teacher_temp=1.0",
        "--set",
        "ssl.warmup_teacher_temp=1.0",
    ];
    args.extend(TINY_CLI);
    let run = tumorxai(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    // ln 32 = 3.466 (hand-computed): each epoch reports the teacher.
    assert!(stderr.contains("(ln K 3.466)"), "{stderr}");
    assert!(stderr.contains("warning: NOT LEARNING"), "{stderr}");
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("history.json")).unwrap()).unwrap();
    let entropies: Vec<f64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["teacher_entropy"].as_f64().unwrap())
        .collect();
    assert_eq!(entropies.len(), 3);
    assert!(
        entropies.iter().all(|&h| h > 0.98 * 32f64.ln()),
        "{entropies:?}"
    );
}
