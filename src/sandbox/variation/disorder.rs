//! The `fileordering` variation's mount.

use std::path::{Path, PathBuf};

/// A tree shown through disorderfs at a mount point of its own, with directory entries
/// shuffled; unmounted and removed when dropped.
#[derive(Debug)]
pub struct DisorderMount {
    at: PathBuf,
}

impl DisorderMount {
    pub fn new(disorderfs: &Path, tree: &Path, at: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(at)?;
        let out = std::process::Command::new(disorderfs)
            .args(["--multi-user=yes", "--shuffle-dirents=yes", "--quiet"])
            .arg(tree)
            .arg(at)
            .stdin(std::process::Stdio::null())
            .output()?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(at);
            return Err(std::io::Error::other(format!(
                "disorderfs {} {} failed ({}): {}",
                tree.display(),
                at.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Self { at: at.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.at
    }
}

impl Drop for DisorderMount {
    fn drop(&mut self) {
        let detached = std::ffi::CString::new(self.at.as_os_str().as_encoded_bytes())
            .map(|c| unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0)
            .unwrap_or(false);
        if !detached {
            let _ = std::process::Command::new("fusermount")
                .arg("-u")
                .arg(&self.at)
                .status();
        }
        let _ = std::fs::remove_dir(&self.at);
    }
}
