//! The paired comparison behind the claim: each SSL method against the
//! supervised arm of the same protocol (fine-tuning against training from
//! scratch, a linear probe against the probe on random-init features), seed
//! by seed on the same labelled subset. Per seed the macro-F1 difference;
//! over seeds its mean, whether every seed is ahead, and whether the two
//! arms' seed ranges are apart. Written as `paired.md` beside the table.

use std::collections::BTreeMap;

use serde::Serialize;

use super::run::CellResult;
use super::{Arm, Protocol};

/// One SSL arm against its baseline at one protocol and label fraction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pair {
    pub arm: Arm,
    pub protocol: Protocol,
    pub label_percent: u8,
    /// (seed, arm's macro-F1, baseline's macro-F1), seeds both arms have.
    pub per_seed: Vec<(u64, f64, f64)>,
    /// Mean over seeds of arm − baseline.
    pub mean_gain: f64,
    pub smallest_gain: f64,
    /// The arm's lowest seed is above the baseline's highest.
    pub ranges_apart: bool,
}

/// Every SSL arm × protocol × label fraction that has a baseline run with
/// at least one common seed, in table order, on the split's test side
/// (`test` None) or a cross-source test set by name.
pub fn pairs(results: &[CellResult], test: Option<&str>) -> Vec<Pair> {
    let mut f1: BTreeMap<(Arm, Protocol, u8), BTreeMap<u64, f64>> = BTreeMap::new();
    for r in results {
        if let Some(scores) = r.scores(test) {
            f1.entry((r.cell.arm, r.cell.protocol, r.cell.label_percent))
                .or_default()
                .insert(r.cell.seed, scores.macro_f1);
        }
    }
    let mut out = Vec::new();
    for (&(arm, protocol, label_percent), seeds) in &f1 {
        if arm == Arm::Supervised {
            continue;
        }
        let Some(base) = f1.get(&(Arm::Supervised, protocol, label_percent)) else {
            continue;
        };
        let per_seed: Vec<(u64, f64, f64)> = seeds
            .iter()
            .filter_map(|(&seed, &a)| Some((seed, a, *base.get(&seed)?)))
            .collect();
        if per_seed.is_empty() {
            continue;
        }
        let gains: Vec<f64> = per_seed.iter().map(|&(_, a, b)| a - b).collect();
        let lowest_arm = per_seed.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let highest_base = per_seed
            .iter()
            .map(|p| p.2)
            .fold(f64::NEG_INFINITY, f64::max);
        out.push(Pair {
            arm,
            protocol,
            label_percent,
            mean_gain: gains.iter().sum::<f64>() / gains.len() as f64,
            smallest_gain: gains.iter().copied().fold(f64::INFINITY, f64::min),
            ranges_apart: lowest_arm > highest_base,
            per_seed,
        });
    }
    out
}

fn percent_list(values: impl Iterator<Item = f64>) -> String {
    values
        .map(|v| format!("{:.1}", 100.0 * v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `paired.md`: one heading and explanation, then a table per test set
/// (`sections`: what it was scored on, its pairs).
pub fn markdown(sections: &[(&str, &[Pair])]) -> String {
    let mut md = String::from(
        "# Paired comparison\n\nMacro-F1 in %, per seed (same seed, same labelled subset): each SSL method against training from scratch (fine-tune) or against the linear probe on random-init features (linear). Gain = method − baseline. With a shared pre-training (`pretrain_seed`) the seeds vary the fine-tuning alone, not the pre-training.\n",
    );
    for (on, pairs) in sections {
        md.push_str(&format!("\n## On {on}\n\n{}", table(pairs)));
    }
    md
}

fn table(pairs: &[Pair]) -> String {
    let mut md = String::from(
        "| Method | Protocol | Labels | Seeds | Method F1 per seed | Baseline F1 per seed | Gain per seed | Mean gain | Smallest gain | Seed ranges apart |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in pairs {
        md.push_str(&format!(
            "| {} | {} | {} % | {} | {} | {} | {} | {:+.1} | {:+.1} | {} |\n",
            p.arm.title(),
            p.protocol.name(),
            p.label_percent,
            p.per_seed
                .iter()
                .map(|s| s.0.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            percent_list(p.per_seed.iter().map(|s| s.1)),
            percent_list(p.per_seed.iter().map(|s| s.2)),
            p.per_seed
                .iter()
                .map(|s| format!("{:+.1}", 100.0 * (s.1 - s.2)))
                .collect::<Vec<_>>()
                .join(", "),
            100.0 * p.mean_gain,
            100.0 * p.smallest_gain,
            if p.ranges_apart { "yes" } else { "no" },
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(arm: Arm, protocol: Protocol, percent: u8, seed: u64, f1: f64) -> CellResult {
        CellResult::for_test(arm, protocol, percent, seed, f1)
    }

    #[test]
    fn gains_are_paired_by_seed_against_the_same_protocol() {
        let results = vec![
            result(Arm::Simclr, Protocol::Finetune, 1, 0, 0.30),
            result(Arm::Simclr, Protocol::Finetune, 1, 1, 0.26),
            result(Arm::Simclr, Protocol::Finetune, 1, 2, 0.40),
            result(Arm::Supervised, Protocol::Finetune, 1, 0, 0.20),
            result(Arm::Supervised, Protocol::Finetune, 1, 1, 0.25),
            result(Arm::Supervised, Protocol::Finetune, 1, 2, 0.21),
            // Another protocol's baseline must not be used.
            result(Arm::Supervised, Protocol::Linear, 1, 0, 0.90),
            // A seed without a baseline is left out of the pair.
            result(Arm::Dino, Protocol::Linear, 1, 0, 0.15),
            result(Arm::Dino, Protocol::Linear, 1, 7, 0.99),
        ];
        let p = pairs(&results, None);
        assert_eq!(p.len(), 2);
        // In the arms' order: SimCLR before DINO.
        let simclr = &p[0];
        assert_eq!(
            (simclr.arm, simclr.protocol),
            (Arm::Simclr, Protocol::Finetune)
        );
        assert_eq!(simclr.per_seed.len(), 3);
        // Gains 0.10, 0.01, 0.19: mean 0.10, smallest 0.01.
        assert!((simclr.mean_gain - 0.10).abs() < 1e-12);
        assert!((simclr.smallest_gain - 0.01).abs() < 1e-12);
        // Lowest SimCLR seed 0.26 > highest scratch seed 0.25.
        assert!(simclr.ranges_apart);
        let dino = &p[1];
        assert_eq!(dino.per_seed, vec![(0, 0.15, 0.90)]);
        assert!((dino.mean_gain + 0.75).abs() < 1e-12);
        assert!(!dino.ranges_apart);
        let md = markdown(&[("t", &p)]);
        assert!(md.contains("| SimCLR | finetune | 1 % | 0, 1, 2 | 30.0, 26.0, 40.0 | 20.0, 25.0, 21.0 | +10.0, +1.0, +19.0 | +10.0 | +1.0 | yes |"), "{md}");
        assert!(
            md.contains("| DINO | linear | 1 % | 0 | 15.0 | 90.0 | -75.0 | -75.0 | -75.0 | no |"),
            "{md}"
        );
    }

    #[test]
    fn overlapping_seed_ranges_are_not_apart_even_when_every_seed_gains() {
        // Each seed gains 0.02, but seed 1's method (0.30) is below seed 0's
        // baseline (0.40): the spread between seeds exceeds the gain.
        let results = vec![
            result(Arm::Byol, Protocol::Finetune, 10, 0, 0.42),
            result(Arm::Byol, Protocol::Finetune, 10, 1, 0.30),
            result(Arm::Supervised, Protocol::Finetune, 10, 0, 0.40),
            result(Arm::Supervised, Protocol::Finetune, 10, 1, 0.28),
        ];
        let p = pairs(&results, None);
        assert_eq!(p.len(), 1);
        assert!((p[0].smallest_gain - 0.02).abs() < 1e-12);
        assert!(!p[0].ranges_apart);
    }
}
