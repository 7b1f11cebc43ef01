//! The 17 classes of the "Brain Tumor MRI Images 17 Classes" dataset, in the
//! byte order torchvision's `ImageFolder` gives them (class index = position),
//! and the tumour family / MRI sequence each name encodes.

use unicode_normalization::UnicodeNormalization;

/// Folder names of the real dataset, NFC-normalised, sorted by bytes
/// ("NORMAL" sorts before "Neurocitoma" because 'O' < 'e').
pub const CLASS_NAMES: [&str; 17] = [
    "Glioma (Astrocitoma, Ganglioglioma, Glioblastoma, Oligodendroglioma, Ependimoma) T1",
    "Glioma (Astrocitoma, Ganglioglioma, Glioblastoma, Oligodendroglioma, Ependimoma) T1C+",
    "Glioma (Astrocitoma, Ganglioglioma, Glioblastoma, Oligodendroglioma, Ependimoma) T2",
    "Meningioma (de Baixo Grau, Atípico, Anaplásico, Transicional) T1",
    "Meningioma (de Baixo Grau, Atípico, Anaplásico, Transicional) T1C+",
    "Meningioma (de Baixo Grau, Atípico, Anaplásico, Transicional) T2",
    "NORMAL T1",
    "NORMAL T2",
    "Neurocitoma (Central - Intraventricular, Extraventricular) T1",
    "Neurocitoma (Central - Intraventricular, Extraventricular) T1C+",
    "Neurocitoma (Central - Intraventricular, Extraventricular) T2",
    "Outros Tipos de Lesões (Abscessos, Cistos, Encefalopatias Diversas) T1",
    "Outros Tipos de Lesões (Abscessos, Cistos, Encefalopatias Diversas) T1C+",
    "Outros Tipos de Lesões (Abscessos, Cistos, Encefalopatias Diversas) T2",
    "Schwannoma (Acustico, Vestibular - Trigeminal) T1",
    "Schwannoma (Acustico, Vestibular - Trigeminal) T1C+",
    "Schwannoma (Acustico, Vestibular - Trigeminal) T2",
];

/// Tumour family: the level at which the device flags a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Glioma,
    Meningioma,
    Neurocitoma,
    Normal,
    Outros,
    Schwannoma,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Glioma,
        Family::Meningioma,
        Family::Neurocitoma,
        Family::Normal,
        Family::Outros,
        Family::Schwannoma,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Family::Glioma => "Glioma",
            Family::Meningioma => "Meningioma",
            Family::Neurocitoma => "Neurocitoma",
            Family::Normal => "Normal",
            Family::Outros => "Outros",
            Family::Schwannoma => "Schwannoma",
        }
    }

    pub fn is_tumour(self) -> bool {
        self != Family::Normal
    }
}

/// MRI sequence (contrast) of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sequence {
    T1,
    /// Contrast-enhanced T1 ("T1C+").
    T1C,
    T2,
}

impl Sequence {
    pub fn label(self) -> &'static str {
        match self {
            Sequence::T1 => "T1",
            Sequence::T1C => "T1C+",
            Sequence::T2 => "T2",
        }
    }
}

/// Family and sequence parsed from a class folder name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassInfo {
    pub family: Family,
    pub sequence: Sequence,
}

impl ClassInfo {
    /// Parses a folder name of the real layout (any Unicode normalisation form).
    /// Returns `None` for a name that is not one of the 17 families × sequences.
    pub fn parse(name: &str) -> Option<ClassInfo> {
        let name = nfc(name);
        let sequence = if name.ends_with(" T1C+") {
            Sequence::T1C
        } else if name.ends_with(" T1") {
            Sequence::T1
        } else if name.ends_with(" T2") {
            Sequence::T2
        } else {
            return None;
        };
        let family = if name.starts_with("Glioma") {
            Family::Glioma
        } else if name.starts_with("Meningioma") {
            Family::Meningioma
        } else if name.starts_with("NORMAL") {
            Family::Normal
        } else if name.starts_with("Neurocitoma") {
            Family::Neurocitoma
        } else if name.starts_with("Outros") {
            Family::Outros
        } else if name.starts_with("Schwannoma") {
            Family::Schwannoma
        } else {
            return None;
        };
        Some(ClassInfo { family, sequence })
    }
}

/// NFC form of a name: folder names may arrive decomposed (NFD) from some filesystems.
pub fn nfc(name: &str) -> String {
    name.nfc().collect()
}

/// Index of a class name (any normalisation form) in [`CLASS_NAMES`].
pub fn class_index(name: &str) -> Option<usize> {
    let name = nfc(name);
    CLASS_NAMES.iter().position(|c| *c == name)
}

/// The first place where `names` departs from [`CLASS_NAMES`] (logit index
/// order is part of the contract: a model whose class list is permuted names
/// the wrong tumour), or `None` when it is exactly the contract's list.
pub fn class_list_mismatch(names: &[String]) -> Option<String> {
    if names.len() != CLASS_NAMES.len() {
        return Some(format!(
            "{} classes where the contract has {}",
            names.len(),
            CLASS_NAMES.len()
        ));
    }
    names
        .iter()
        .zip(CLASS_NAMES)
        .position(|(name, contract)| name != contract)
        .and_then(|i| {
            let name = names.get(i)?;
            Some(format!(
                "logit {i} is {name:?} where the contract has {:?}",
                CLASS_NAMES.get(i)?
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicode_normalization::UnicodeNormalization;

    #[test]
    fn names_are_sorted_by_bytes_and_nfc() {
        let mut sorted = CLASS_NAMES.to_vec();
        sorted.sort();
        assert_eq!(sorted, CLASS_NAMES.to_vec());
        for name in CLASS_NAMES {
            assert_eq!(nfc(name), name);
        }
        assert!(CLASS_NAMES[6] == "NORMAL T1" && CLASS_NAMES[8].starts_with("Neurocitoma"));
    }

    #[test]
    fn every_class_parses_and_families_cover_the_dataset() {
        let infos: Vec<ClassInfo> = CLASS_NAMES
            .iter()
            .map(|n| ClassInfo::parse(n).unwrap())
            .collect();
        assert_eq!(infos[1].family, Family::Glioma);
        assert_eq!(infos[1].sequence, Sequence::T1C);
        assert_eq!(infos[7].family, Family::Normal);
        assert_eq!(infos[7].sequence, Sequence::T2);
        // NORMAL has no T1C+ folder; every other family has all three.
        for family in Family::ALL {
            let n = infos.iter().filter(|i| i.family == family).count();
            assert_eq!(n, if family == Family::Normal { 2 } else { 3 });
        }
    }

    #[test]
    fn only_the_contract_list_in_its_order_matches() {
        let exact: Vec<String> = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
        assert_eq!(class_list_mismatch(&exact), None);
        let mut swapped = exact.clone();
        swapped.swap(0, 3);
        let why = class_list_mismatch(&swapped).unwrap();
        assert!(why.starts_with("logit 0 is \"Meningioma"), "{why}");
        let mut short = exact.clone();
        short.pop();
        assert_eq!(
            class_list_mismatch(&short).unwrap(),
            "16 classes where the contract has 17"
        );
        // A decomposed (NFD) name is not byte-identical: refused too, since
        // the manifest is written by our own host in NFC.
        let mut nfd = exact;
        nfd[3] = CLASS_NAMES[3].nfd().collect();
        assert!(class_list_mismatch(&nfd).unwrap().starts_with("logit 3"));
    }

    #[test]
    fn decomposed_names_find_their_class() {
        let nfd: String = CLASS_NAMES[11].nfd().collect();
        assert_ne!(nfd, CLASS_NAMES[11]);
        assert_eq!(class_index(&nfd), Some(11));
        assert_eq!(class_index("Pituitary T1"), None);
        assert_eq!(ClassInfo::parse("Glioma T3"), None);
    }
}
