//! How the device's triage does on a labelled test set, counted the way
//! the dangerous error is counted: a tumour slice *cleared* (NO TUMOR
//! FLAGGED) is a miss; REVIEW sends the slice to a person and is not. Pure
//! counting over (truth, model's class, flag); files and the model are the
//! CLI's (`tumorxai-device evaluate`).
//!
//! - sensitivity (any tumour vs normal) = tumour slices not cleared /
//!   tumour slices;
//! - specificity = normal slices cleared / normal slices (a REVIEW of a
//!   normal slice costs a reading, not safety);
//! - both with Wilson score 95 % intervals (Wilson, JASA 22 (1927) 209–212;
//!   Brown, Cai & DasGupta, Stat. Sci. 16 (2001) 101–133, who recommend it
//!   over the normal approximation for proportions near 0 or 1).

use serde::Serialize;
use tumorxai_shared::{ClassInfo, Family, CLASS_NAMES};

use crate::triage::Flag;

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// A proportion with its Wilson score 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proportion {
    pub count: u64,
    pub of: u64,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// `count` of `of` with its Wilson score interval; `of` = 0 gives the
/// uninformative [0, 1].
pub fn wilson(count: u64, of: u64) -> Proportion {
    if of == 0 {
        return Proportion {
            count,
            of,
            value: f64::NAN,
            low: 0.0,
            high: 1.0,
        };
    }
    let n = of as f64;
    let p = count.min(of) as f64 / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Proportion {
        count,
        of,
        value: p,
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    }
}

/// Counts for one true class.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassCounts {
    pub class: String,
    pub slices: u64,
    /// The model's top class is the true one.
    pub top1: u64,
    pub tumour_likely: u64,
    /// TUMOR LIKELY with the true family.
    pub right_family: u64,
    pub no_tumour: u64,
    pub review: u64,
    /// Inputs the device refused (undecodable): neither cleared nor flagged.
    pub refused: u64,
}

/// The running tally over a test set.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    classes: Vec<ClassCounts>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            classes: CLASS_NAMES
                .iter()
                .map(|name| ClassCounts {
                    class: (*name).to_string(),
                    ..ClassCounts::default()
                })
                .collect(),
        }
    }
}

/// What became of one slice.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    Triaged { top_class: usize, flag: &'a Flag },
    Refused,
}

fn is_tumour(class: usize) -> bool {
    CLASS_NAMES
        .get(class)
        .and_then(|name| ClassInfo::parse(name))
        .is_some_and(|info| info.family != Family::Normal)
}

fn family_label(class: usize) -> Option<&'static str> {
    Some(ClassInfo::parse(CLASS_NAMES.get(class)?)?.family.label())
}

impl Tally {
    /// Records one slice of true class `truth` (an index into
    /// [`CLASS_NAMES`]); an unknown index is ignored.
    pub fn record(&mut self, truth: usize, outcome: &Outcome) {
        let family = family_label(truth);
        let Some(counts) = self.classes.get_mut(truth) else {
            return;
        };
        counts.slices += 1;
        match outcome {
            Outcome::Refused => counts.refused += 1,
            Outcome::Triaged { top_class, flag } => {
                if *top_class == truth {
                    counts.top1 += 1;
                }
                match flag {
                    Flag::TumourLikely(flagged) => {
                        counts.tumour_likely += 1;
                        if family == Some(flagged.as_str()) {
                            counts.right_family += 1;
                        }
                    }
                    Flag::NoTumour => counts.no_tumour += 1,
                    Flag::Review => counts.review += 1,
                }
            }
        }
    }

    pub fn classes(&self) -> &[ClassCounts] {
        &self.classes
    }

    /// The summary of everything recorded.
    pub fn report(&self) -> Report {
        let sum = |tumour: bool, field: fn(&ClassCounts) -> u64| -> u64 {
            self.classes
                .iter()
                .enumerate()
                .filter(|(i, _)| is_tumour(*i) == tumour)
                .map(|(_, c)| field(c))
                .sum()
        };
        let tumour_slices = sum(true, |c| c.slices);
        let tumour_cleared = sum(true, |c| c.no_tumour);
        let normal_slices = sum(false, |c| c.slices);
        let normal_cleared = sum(false, |c| c.no_tumour);
        let slices = tumour_slices + normal_slices;
        Report {
            slices,
            top1: wilson(sum(true, |c| c.top1) + sum(false, |c| c.top1), slices),
            tumour_slices,
            tumour_cleared,
            tumour_review: sum(true, |c| c.review),
            tumour_right_family: wilson(sum(true, |c| c.right_family), tumour_slices),
            sensitivity: wilson(tumour_slices.saturating_sub(tumour_cleared), tumour_slices),
            normal_slices,
            specificity: wilson(normal_cleared, normal_slices),
            review: wilson(sum(true, |c| c.review) + sum(false, |c| c.review), slices),
            refused: sum(true, |c| c.refused) + sum(false, |c| c.refused),
        }
    }
}

/// The test set's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub slices: u64,
    pub top1: Proportion,
    pub tumour_slices: u64,
    /// Tumour slices flagged NO TUMOR FLAGGED: the misses.
    pub tumour_cleared: u64,
    pub tumour_review: u64,
    /// Tumour slices flagged TUMOR LIKELY with their true family.
    pub tumour_right_family: Proportion,
    /// Tumour slices not cleared (TUMOR LIKELY or REVIEW).
    pub sensitivity: Proportion,
    pub normal_slices: u64,
    /// Normal slices cleared.
    pub specificity: Proportion,
    /// All slices sent to REVIEW.
    pub review: Proportion,
    pub refused: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn wilson_intervals_match_hand_computed_values() {
        // Wilson's formula evaluated with Python's math module (z =
        // 1.959963984540054), rounded to 5 decimals; 8/10 and 0/10 are also
        // the textbook values [0.4902, 0.9433] and [0, 0.2775].
        let cases = [
            (8, 10, 0.49016, 0.94332),
            (0, 10, 0.0, 0.27753),
            (10, 10, 0.72247, 1.0),
            (336, 360, 0.90272, 0.95479),
        ];
        for (count, of, low, high) in cases {
            let p = wilson(count, of);
            assert!(
                close(p.low, low) && close(p.high, high),
                "{count}/{of}: {p:?}"
            );
        }
        let none = wilson(0, 0);
        assert_eq!((none.low, none.high), (0.0, 1.0));
    }

    #[test]
    fn a_cleared_tumour_is_a_miss_a_review_is_not() {
        let glioma_t1 = 0;
        let normal_t1 = CLASS_NAMES
            .iter()
            .position(|n| n.starts_with("NORMAL") && n.ends_with(" T1"))
            .unwrap();
        let likely = Flag::TumourLikely("Glioma".into());
        let wrong_family = Flag::TumourLikely("Meningioma".into());
        let mut tally = Tally::default();
        for (truth, top_class, flag) in [
            (glioma_t1, glioma_t1, &likely),
            (glioma_t1, 1, &wrong_family),
            (glioma_t1, normal_t1, &Flag::NoTumour),
            (glioma_t1, normal_t1, &Flag::Review),
            (normal_t1, normal_t1, &Flag::NoTumour),
            (normal_t1, normal_t1, &Flag::Review),
        ] {
            tally.record(truth, &Outcome::Triaged { top_class, flag });
        }
        tally.record(glioma_t1, &Outcome::Refused);
        tally.record(99, &Outcome::Refused);
        let report = tally.report();
        assert_eq!(report.slices, 7);
        assert_eq!(report.tumour_slices, 5);
        assert_eq!(report.tumour_cleared, 1);
        assert_eq!(report.tumour_review, 1);
        // Not cleared: likely, wrong family, review, refused = 4 of 5.
        assert_eq!((report.sensitivity.count, report.sensitivity.of), (4, 5));
        assert_eq!(
            (
                report.tumour_right_family.count,
                report.tumour_right_family.of
            ),
            (1, 5)
        );
        assert_eq!((report.specificity.count, report.specificity.of), (1, 2));
        assert_eq!((report.top1.count, report.top1.of), (3, 7));
        assert_eq!((report.review.count, report.review.of), (2, 7));
        assert_eq!(report.refused, 1);
        assert_eq!(tally.classes()[glioma_t1].slices, 5);
    }
}
