//! Files that other programs read while the agent writes them (the status file, rewritten at
//! each renew; the simulated server's kubeconfig, read by a script as soon as it exists): a
//! reader sees the old whole file or the new one, never a part, because the new text is
//! written beside it and renamed over it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents`: written to `PATH.tmp-PID` (on the same filesystem, so that
/// the rename is atomic), created with `mode` (less the umask), then renamed over `path`. On
/// an error the temporary is removed. One writer per path in a process: two would share the
/// temporary's name.
pub fn write(path: &Path, contents: impl AsRef<[u8]>, mode: u32) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    // One left by an earlier process with this pid would keep its own mode: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| file.write_all(contents.as_ref()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    fn names(dir: &std::path::Path) -> Vec<OsString> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    }

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary_behind() {
        let dir = std::env::temp_dir().join(format!("leasehold-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("file");
        std::fs::write(&path, "old and longer").unwrap();
        super::write(&path, "new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(names(&dir), ["file"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_behind() {
        let dir = std::env::temp_dir().join(format!("leasehold-atomic-dir-{}", std::process::id()));
        // A non-empty directory where the file should go: the rename over it fails.
        let path = dir.join("taken");
        std::fs::create_dir_all(path.join("inside")).unwrap();
        assert!(super::write(&path, "text", 0o666).is_err());
        assert_eq!(names(&dir), ["taken"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
