//! Pure split logic: near-duplicate groups, stratified group assignment to
//! train / val / test, and nested label-fraction subsets. Works on labels and
//! hashes only, so it is tested without files.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::phash::hamming;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Train,
    Val,
    Test,
}

/// Label fractions (percent of each class's training images) with nested subsets.
pub const LABEL_PERCENTS: [u8; 5] = [1, 10, 25, 50, 100];

/// Groups items whose perceptual hashes are within `threshold` bits
/// (transitively). Returns a group id per item; ids are the smallest member index.
pub fn duplicate_groups(hashes: &[u64], threshold: u32) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..hashes.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..hashes.len() {
        for j in i + 1..hashes.len() {
            if hamming(hashes[i], hashes[j]) <= threshold {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                let (lo, hi) = (a.min(b), a.max(b));
                parent[hi] = lo;
            }
        }
    }
    (0..hashes.len()).map(|i| find(&mut parent, i)).collect()
}

/// Assigns every item a side. Groups move as a whole; each group belongs to
/// the class most of its members have (ties: lowest class index). Within a
/// class, groups are shuffled (seeded), taken largest first, and each goes to
/// the side furthest below its target count, so classes without duplicates
/// hit their targets exactly: test = round(n × test_fraction),
/// val = round(n × val_fraction), train = the rest.
pub fn assign_sides(
    labels: &[usize],
    groups: &[usize],
    val_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> Vec<Side> {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut members: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &g) in groups.iter().enumerate() {
        members.entry(g).or_default().push(i);
    }
    let mut groups_of_class: Vec<Vec<Vec<usize>>> = vec![Vec::new(); classes];
    for (_, items) in members {
        let mut votes = vec![0usize; classes];
        for &i in &items {
            votes[labels[i]] += 1;
        }
        let best = votes
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)));
        if let Some((class, _)) = best {
            groups_of_class[class].push(items);
        }
    }
    let mut sides = vec![Side::Train; labels.len()];
    for (class, mut class_groups) in groups_of_class.into_iter().enumerate() {
        let n: usize = class_groups.iter().map(Vec::len).sum();
        let test_target = (n as f64 * test_fraction).round() as i64;
        let val_target = (n as f64 * val_fraction).round() as i64;
        let targets = [
            (Side::Test, test_target),
            (Side::Val, val_target),
            (Side::Train, n as i64 - test_target - val_target),
        ];
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (class as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        class_groups.shuffle(&mut rng);
        class_groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
        let mut filled = [0i64; 3];
        for group in class_groups {
            // Furthest below target wins; ties go test, then val, then train.
            let (slot, _) = targets
                .iter()
                .enumerate()
                .max_by(|a, b| {
                    let da = a.1 .1 - filled[a.0];
                    let db = b.1 .1 - filled[b.0];
                    da.cmp(&db).then(b.0.cmp(&a.0))
                })
                .unwrap_or((2, &targets[2]));
            filled[slot] += group.len() as i64;
            for i in group {
                sides[i] = targets[slot].0;
            }
        }
    }
    sides
}

/// Sides for a split that extends an earlier one (`previous[i]`: the side the
/// earlier split gave item `i`, `None` for a new item). Earlier items keep
/// their side. A new item goes to train, unless its near-duplicate group
/// holds an earlier val or test item: then it is left out (`None`), because
/// joining that side would change the held-out sets and joining train would
/// leak a near copy of a held-out slice into training.
pub fn extend_sides(previous: &[Option<Side>], groups: &[usize]) -> Vec<Option<Side>> {
    let held_out_groups: std::collections::BTreeSet<usize> = previous
        .iter()
        .zip(groups)
        .filter(|(side, _)| matches!(side, Some(Side::Val | Side::Test)))
        .map(|(_, &group)| group)
        .collect();
    previous
        .iter()
        .zip(groups)
        .map(|(side, group)| match side {
            Some(side) => Some(*side),
            None if held_out_groups.contains(group) => None,
            None => Some(Side::Train),
        })
        .collect()
}

/// For each training item, the smallest label percent whose subset holds it
/// (`None` for val/test). Per class the training items are put in a seeded
/// random order and the p% subset is its first max(1, round(p/100 × n))
/// items, so subsets are stratified and nested (1% ⊂ 10% ⊂ … ⊂ 100%).
///
/// `earlier[i]`: the label percent an extended split gave item `i` before.
/// Such items go first, by that percent (the shuffle only orders items of
/// one tier), so every earlier p% subset stays inside the new, larger one
/// and label-efficiency results stay comparable. All `None`: a fresh split.
pub fn label_percents(
    labels: &[usize],
    sides: &[Side],
    earlier: &[Option<u8>],
    seed: u64,
) -> Vec<Option<u8>> {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut out = vec![None; labels.len()];
    for class in 0..classes {
        let mut train: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] == class && sides[i] == Side::Train)
            .collect();
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x51_7CC1_B727_220A) ^ class as u64);
        train.shuffle(&mut rng);
        // Stable: within a tier the shuffled order stands. New items last.
        train.sort_by_key(|&i| earlier.get(i).copied().flatten().unwrap_or(u8::MAX));
        let n = train.len();
        for (rank, &i) in train.iter().enumerate() {
            out[i] = LABEL_PERCENTS
                .iter()
                .copied()
                .find(|&p| rank < subset_size(n, p));
        }
    }
    out
}

/// Size of the p% subset of a class with `n` training images.
pub fn subset_size(n: usize, percent: u8) -> usize {
    if n == 0 {
        return 0;
    }
    ((n as f64 * f64::from(percent) / 100.0).round() as usize).clamp(1, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_transitive() {
        // 0 ~ 1 (1 bit), 1 ~ 2 (1 bit), 0 !~ 2 directly at threshold 1, 3 far away.
        let hashes = [0b000, 0b001, 0b011, u64::MAX];
        assert_eq!(duplicate_groups(&hashes, 1), vec![0, 0, 0, 3]);
        assert_eq!(duplicate_groups(&hashes, 0), vec![0, 1, 2, 3]);
    }

    #[test]
    fn singletons_hit_exact_targets() {
        let labels: Vec<usize> = (0..100).map(|i| i % 2).collect();
        let groups: Vec<usize> = (0..100).collect();
        let sides = assign_sides(&labels, &groups, 0.15, 0.15, 7);
        for class in 0..2 {
            let count = |s| {
                (0..100)
                    .filter(|&i| labels[i] == class && sides[i] == s)
                    .count()
            };
            // 50 per class: test round(7.5) = 8, val 8, train 34.
            assert_eq!(
                (count(Side::Train), count(Side::Val), count(Side::Test)),
                (34, 8, 8)
            );
        }
    }

    #[test]
    fn groups_stay_together() {
        let labels = vec![0; 20];
        let groups: Vec<usize> = (0..20).map(|i| if i < 5 { 0 } else { i }).collect();
        let sides = assign_sides(&labels, &groups, 0.2, 0.2, 1);
        assert!(sides[..5].iter().all(|s| *s == sides[0]));
    }

    #[test]
    fn extension_keeps_old_sides_and_leaves_out_copies_of_held_out_slices() {
        use Side::*;
        // Items 0-3 are from the earlier split; 4-7 are new. Groups:
        // {0, 4} (earlier test), {1, 5} (earlier train), {2, 6} (earlier val),
        // {3} alone, {7} alone.
        let previous = [
            Some(Test),
            Some(Train),
            Some(Val),
            Some(Train),
            None,
            None,
            None,
            None,
        ];
        let groups = [0, 1, 2, 3, 0, 1, 2, 7];
        assert_eq!(
            extend_sides(&previous, &groups),
            vec![
                Some(Test),
                Some(Train),
                Some(Val),
                Some(Train),
                None,
                Some(Train),
                None,
                Some(Train)
            ]
        );
    }

    #[test]
    fn an_extension_keeps_the_earlier_subsets_inside_the_new_ones() {
        // 100 earlier training items of one class: 1 at 1 %, 9 more at 10 %,
        // 15 more at 25 %, 25 more at 50 %, 50 at 100 % (the sizes of a fresh
        // split of 100); then 100 new ones.
        let tiers = [(1u8, 1usize), (10, 9), (25, 15), (50, 25), (100, 50)];
        let mut earlier: Vec<Option<u8>> = tiers
            .iter()
            .flat_map(|&(p, n)| std::iter::repeat_n(Some(p), n))
            .collect();
        earlier.extend(std::iter::repeat_n(None, 100));
        let labels = vec![0; 200];
        let sides = vec![Side::Train; 200];
        let now = label_percents(&labels, &sides, &earlier, 9);
        for q in LABEL_PERCENTS {
            let before: Vec<usize> = (0..200)
                .filter(|&i| earlier[i].is_some_and(|p| p <= q))
                .collect();
            let after: Vec<usize> = (0..200)
                .filter(|&i| now[i].is_some_and(|p| p <= q))
                .collect();
            // New sizes by hand: round(q/100 × 200) = 2, 20, 50, 100, 200.
            assert_eq!(after.len(), subset_size(200, q));
            assert!(before.iter().all(|i| after.contains(i)), "{q} %");
        }
    }

    #[test]
    fn subsets_are_nested_and_never_empty() {
        assert_eq!(subset_size(0, 10), 0);
        assert_eq!(subset_size(7, 1), 1);
        assert_eq!(subset_size(200, 25), 50);
        assert_eq!(subset_size(200, 100), 200);
        let labels = vec![0; 50];
        let sides = vec![Side::Train; 50];
        let p = label_percents(&labels, &sides, &[], 3);
        let count = |q: u8| p.iter().filter(|x| x.is_some_and(|v| v <= q)).count();
        assert_eq!(
            [count(1), count(10), count(25), count(50), count(100)],
            [1, 5, 13, 25, 50]
        );
    }
}
