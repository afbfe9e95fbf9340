//! Depth-first walk of the files under a store root, used by `keys` and `sweep_incomplete`.

use std::fs::ReadDir;
use std::io;
use std::path::{Path, PathBuf};

/// A regular file under the store root.
pub(super) struct FoundFile {
    /// Path relative to the root, `/`-separated (a key, if the name follows the key rules).
    pub rel: String,
    pub path: PathBuf,
    /// The file name alone, so callers can test for temp files cheaply.
    pub name: String,
}

/// The regular files below `root/start` (`start` is `""` or ends with `/`), depth first.
///
/// Blocking: run it off the async runtime. It holds one open directory per level, never a
/// listing, so walking a store of millions of objects costs the same memory as walking
/// ten. Files of one directory come out together, before the next sibling directory's.
///
/// Skips directories whose names start with `.` (no key can live there), directories for
/// which `descend(rel_dir_with_slash)` is false, symlinks (an object is a plain file we
/// wrote; following links could leave the root) and names that are not UTF-8 (not keys).
/// Entries that vanish during the walk are skipped: concurrent deletes are normal.
pub(super) struct Walk<F> {
    root: PathBuf,
    descend: F,
    /// The directory to open next (the start, then each subdirectory as it is found).
    pending: Option<String>,
    /// The open directories from the start down, each with its relative path.
    open: Vec<(String, ReadDir)>,
}

impl<F: Fn(&str) -> bool> Walk<F> {
    pub fn new(root: &Path, start: &str, descend: F) -> Self {
        Walk {
            root: root.to_owned(),
            descend,
            pending: Some(start.to_owned()),
            open: Vec::new(),
        }
    }
}

impl<F: Fn(&str) -> bool> Iterator for Walk<F> {
    type Item = io::Result<FoundFile>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(rel_dir) = self.pending.take() {
                match std::fs::read_dir(self.root.join(&rel_dir)) {
                    Ok(entries) => self.open.push((rel_dir, entries)),
                    Err(err) if is_missing(&err) => {}
                    Err(err) => return Some(Err(err)),
                }
            }
            let (rel_dir, entries) = self.open.last_mut()?;
            let entry = match entries.next() {
                None => {
                    self.open.pop();
                    continue;
                }
                Some(Ok(entry)) => entry,
                Some(Err(err)) if is_missing(&err) => continue,
                Some(Err(err)) => return Some(Err(err)),
            };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(err) if is_missing(&err) => continue,
                Err(err) => return Some(Err(err)),
            };
            let rel = format!("{rel_dir}{name}");
            if file_type.is_dir() {
                let rel_dir = format!("{rel}/");
                if !name.starts_with('.') && (self.descend)(&rel_dir) {
                    self.pending = Some(rel_dir);
                }
            } else if file_type.is_file() {
                let path = entry.path();
                return Some(Ok(FoundFile { rel, path, name }));
            }
        }
    }
}

/// Whether an I/O error means "no such object": the path, or one of its parents, is gone
/// or is a file where a directory was expected.
pub(super) fn is_missing(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}
