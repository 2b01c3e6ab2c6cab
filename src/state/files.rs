//! The one way the state folder writes files: readable by their owner only (they hold
//! addresses, run ids and paths), and replaced atomically and durably.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Opens `path` for writing, readable by its owner only, creating its folder. A file that
/// was already there is made owner-only too: `create` alone keeps the old mode.
pub fn open_private(path: &Path, options: &mut OpenOptions) -> std::io::Result<File> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    restrict(&file)?;
    Ok(file)
}

/// A new or emptied file, owner-only.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    open_private(path, OpenOptions::new().write(true).create(true).truncate(true))
}

/// Makes an open file owner-only.
pub fn restrict(file: &File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// Replaces `path` with `bytes`: written beside it, flushed to disk, renamed over it, and the
/// folder flushed, so a crash leaves the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let mut file = create_private(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, path)?;
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    #[cfg(unix)]
    fn files_are_owner_only_even_when_they_were_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/report.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"old").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        assert!(!dir.path().join("a/report.json.partial").exists());

        let rejects = dir.path().join("rejects.parquet");
        std::fs::write(&rejects, b"old").unwrap();
        std::fs::set_permissions(&rejects, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(create_private(&rejects).unwrap());
        assert_eq!(mode(&rejects), 0o600);
        assert_eq!(std::fs::metadata(&rejects).unwrap().len(), 0);
    }
}
