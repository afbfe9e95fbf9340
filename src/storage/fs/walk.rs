//! Recursive directory walk used by `list` and `sweep_temp`.

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

/// Collects the regular files below `root/start` (`start` is `""` or ends with `/`).
///
/// Skips directories whose names start with `.` (no key can live there), directories for
/// which `descend(rel_dir_with_slash)` is false, symlinks (an object is a plain file we
/// wrote; following links could leave the root) and names that are not UTF-8 (not keys).
/// Entries that vanish during the walk are skipped: concurrent deletes are normal.
pub(super) async fn walk_files(
    root: &Path,
    start: &str,
    descend: impl Fn(&str) -> bool,
) -> io::Result<Vec<FoundFile>> {
    let mut found = Vec::new();
    let mut pending = vec![start.to_owned()];
    while let Some(rel_dir) = pending.pop() {
        let mut entries = match tokio::fs::read_dir(root.join(&rel_dir)).await {
            Ok(entries) => entries,
            Err(err) if is_missing(&err) => continue,
            Err(err) => return Err(err),
        };
        while let Some(entry) = entries.next_entry().await? {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let file_type = match entry.file_type().await {
                Ok(file_type) => file_type,
                Err(err) if is_missing(&err) => continue,
                Err(err) => return Err(err),
            };
            let rel = format!("{rel_dir}{name}");
            if file_type.is_dir() {
                let rel_dir = format!("{rel}/");
                if !name.starts_with('.') && descend(&rel_dir) {
                    pending.push(rel_dir);
                }
            } else if file_type.is_file() {
                found.push(FoundFile {
                    rel,
                    path: entry.path(),
                    name,
                });
            }
        }
    }
    Ok(found)
}

/// Whether an I/O error means "no such object": the path, or one of its parents, is gone
/// or is a file where a directory was expected.
pub(super) fn is_missing(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}
