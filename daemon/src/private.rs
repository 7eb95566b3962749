//! Files and folders only the daemon's user may read: keys, backups. Written whole under a
//! fresh temporary name, fsynced and renamed, so a reader never sees half of one.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` with mode 0600, atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    // A fresh file, never one found at that name (a link planted there is not followed).
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        store::blob::sync_dir(dir).map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// Creates `dir` (and its parents) with mode 0700 for the last component.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn files_and_folders_are_for_the_daemons_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_dir(&sub).unwrap();
        let file = sub.join("key");
        write_file(&file, b"secret").unwrap();
        write_file(&file, b"secret 2").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"secret 2");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&sub), 0o700);
    }
}
