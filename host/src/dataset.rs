//! ImageFolder datasets in the real set's layout: one folder per class, class
//! names NFC-normalised and sorted by bytes (as torchvision does), images in
//! any supported format; anything else is skipped and reported.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tumorxai_shared::classes::nfc;

/// One image of the dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub path: PathBuf,
    /// Path relative to the dataset root, '/'-separated, class folder first (NFC).
    pub relative: String,
    pub class: usize,
}

#[derive(Debug, Clone)]
pub struct ImageFolder {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub items: Vec<Item>,
    /// Files inside class folders that are not images (skipped).
    pub skipped: Vec<PathBuf>,
}

const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "tif", "tiff", "dcm", "dicom"];

/// An image or DICOM file: by extension, or — scanners export DICOM files
/// without one (`IM000001`) — by the Part 10 "DICM" marker at offset 128.
fn is_image(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) => IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()),
        None => has_dicom_marker(path),
    }
}

fn has_dicom_marker(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| tumorxai_shared::dicom::is_dicom(&head))
}

/// Every image file under `dir` (recursively, hidden entries skipped),
/// sorted by path: for commands that take "a folder of scans" in any layout.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries =
            std::fs::read_dir(&folder).with_context(|| format!("reading {}", folder.display()))?;
        for entry in entries {
            let path = entry?.path();
            if is_hidden(&path) {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if is_image(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

impl ImageFolder {
    /// Scans `root`: each non-hidden sub-folder is a class; files in it (and
    /// below it) with an image extension are items, sorted by relative path.
    pub fn scan(root: &Path) -> Result<ImageFolder> {
        let entries = std::fs::read_dir(root)
            .with_context(|| format!("reading dataset folder {}", root.display()))?;
        let mut class_dirs: Vec<(String, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            if path.is_dir() && !is_hidden(&path) {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("folder name is not UTF-8: {}", path.display()))?;
                class_dirs.push((nfc(name), path));
            }
        }
        class_dirs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if class_dirs.is_empty() {
            bail!(
                "{} has no class folders (expected one sub-folder per class)",
                root.display()
            );
        }
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        for (class, (name, dir)) in class_dirs.iter().enumerate() {
            let mut files = Vec::new();
            collect_files(dir, &mut files)?;
            for path in files {
                if is_hidden(&path) {
                    continue;
                }
                if !is_image(&path) {
                    skipped.push(path);
                    continue;
                }
                let inner = path.strip_prefix(dir).unwrap_or(&path);
                let inner: Vec<String> = inner
                    .components()
                    .map(|c| nfc(&c.as_os_str().to_string_lossy()))
                    .collect();
                items.push(Item {
                    relative: format!("{name}/{}", inner.join("/")),
                    path,
                    class,
                });
            }
        }
        items.sort_by(|a, b| {
            a.class
                .cmp(&b.class)
                .then_with(|| a.relative.cmp(&b.relative))
        });
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes: class_dirs.into_iter().map(|(n, _)| n).collect(),
            items,
            skipped,
        })
    }

    pub fn items_of(&self, class: usize) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.class == class)
    }

    pub fn count_of(&self, class: usize) -> usize {
        self.items_of(class).count()
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            if !is_hidden(&path) {
                collect_files(&path, out)?;
            }
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_sort_by_bytes_after_nfc_and_junk_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        // "Outros ... Lesões" written decomposed (NFD), as some filesystems store it.
        let nfd_name = "Outros Tipos de Leso\u{0303}es T1";
        for name in ["Neurocitoma T1", "NORMAL T1", nfd_name] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("NORMAL T1/b.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("NORMAL T1/a.PNG"), b"x").unwrap();
        std::fs::write(dir.path().join("NORMAL T1/notes.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("NORMAL T1/.DS_Store"), b"x").unwrap();
        std::fs::write(dir.path().join(format!("{nfd_name}/c.jpeg")), b"x").unwrap();
        std::fs::write(dir.path().join("synth.json"), b"{}").unwrap();
        let ds = ImageFolder::scan(dir.path()).unwrap();
        assert_eq!(
            ds.classes,
            vec!["NORMAL T1", "Neurocitoma T1", "Outros Tipos de Lesões T1"]
        );
        let rel: Vec<&str> = ds.items.iter().map(|i| i.relative.as_str()).collect();
        assert_eq!(
            rel,
            vec![
                "NORMAL T1/a.PNG",
                "NORMAL T1/b.jpg",
                "Outros Tipos de Lesões T1/c.jpeg"
            ]
        );
        assert_eq!(ds.items[2].class, 2);
        assert_eq!(ds.skipped.len(), 1);
        assert_eq!(ds.count_of(1), 0);
    }

    #[test]
    fn dicom_files_count_by_extension_or_by_their_marker() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("NORMAL T2")).unwrap();
        let mut part10 = vec![0u8; 128];
        part10.extend_from_slice(b"DICM");
        part10.extend_from_slice(&[0; 16]);
        // Scanner exports: no extension, recognised by "DICM" at offset 128.
        std::fs::write(dir.path().join("NORMAL T2/IM000001"), &part10).unwrap();
        std::fs::write(dir.path().join("NORMAL T2/slice.dcm"), &part10).unwrap();
        // No extension and no marker: not a slice.
        std::fs::write(dir.path().join("NORMAL T2/README"), b"notes").unwrap();
        let ds = ImageFolder::scan(dir.path()).unwrap();
        let rel: Vec<&str> = ds.items.iter().map(|i| i.relative.as_str()).collect();
        assert_eq!(rel, vec!["NORMAL T2/IM000001", "NORMAL T2/slice.dcm"]);
        assert_eq!(ds.skipped.len(), 1);
    }

    #[test]
    fn a_folder_without_classes_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ImageFolder::scan(dir.path()).is_err());
        assert!(ImageFolder::scan(&dir.path().join("missing")).is_err());
    }
}
