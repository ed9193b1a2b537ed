//! The parts of Kata's `versions.yaml` that kata-repro pins.

use serde_norway::Value;

#[derive(Debug, thiserror::Error)]
pub enum VersionsError {
    #[error("versions.yaml is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("versions.yaml has no string at `{0}`; is this a Kata Containers tree?")]
    Missing(String),
}

/// What kata-repro reads from versions.yaml.
#[derive(Debug, Clone, PartialEq)]
pub struct KataVersions {
    pub go_version: String,
    /// The kernel version without its leading `v`, e.g. "6.18.35".
    pub kernel_version: String,
    /// The directory URL the kernel tarball is downloaded from.
    pub kernel_url_base: String,
    /// `(arch, distro, release)` of the guest rootfs, sorted by arch.
    pub rootfs: Vec<(String, String, String)>,
}

impl KataVersions {
    pub fn parse(text: &str) -> Result<Self, VersionsError> {
        let doc: Value = serde_norway::from_str(text)?;
        let kernel_version = string_at(&doc, &["assets", "kernel", "version"])?;
        let kernel_version = kernel_version
            .strip_prefix('v')
            .unwrap_or(&kernel_version)
            .to_owned();
        let mut rootfs = Vec::new();
        if let Some(Value::Mapping(arches)) = get(&doc, &["assets", "image", "architecture"]) {
            for (arch, entry) in arches {
                let (Some(arch), Some(name), Some(release)) = (
                    arch.as_str(),
                    entry.get("name").and_then(Value::as_str),
                    entry.get("version").and_then(Value::as_str),
                ) else {
                    continue;
                };
                rootfs.push((arch.to_owned(), name.to_owned(), release.to_owned()));
            }
        }
        rootfs.sort();
        Ok(Self {
            go_version: string_at(&doc, &["languages", "golang", "version"])?,
            kernel_version,
            kernel_url_base: string_at(&doc, &["assets", "kernel", "url"])?,
            rootfs,
        })
    }

    /// The kernel tarball URL, as Kata's build-kernel.sh forms it.
    pub fn kernel_url(&self) -> String {
        format!(
            "{}/linux-{}.tar.xz",
            self.kernel_url_base.trim_end_matches('/'),
            self.kernel_version
        )
    }
}

fn get<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, key| v.get(*key))
}

fn string_at(doc: &Value, path: &[&str]) -> Result<String, VersionsError> {
    match get(doc, path) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(VersionsError::Missing(path.join("."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(release: &str) -> String {
        crate::kata_fixture(release, "versions.yaml")
    }

    #[test]
    fn reads_kata_4_1_0() {
        let v = KataVersions::parse(&fixture("4.1.0")).unwrap();
        assert_eq!(v.go_version, "1.25.13");
        assert_eq!(v.kernel_version, "6.18.35");
        assert_eq!(
            v.kernel_url(),
            "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.18.35.tar.xz"
        );
        assert!(
            v.rootfs
                .contains(&("x86_64".into(), "ubuntu".into(), "noble".into()))
        );
    }

    #[test]
    fn reads_kata_3_30_0() {
        let v = KataVersions::parse(&fixture("3.30.0")).unwrap();
        assert_eq!(v.go_version, "1.25.9");
        assert_eq!(v.kernel_version, "6.18.15");
    }

    #[test]
    fn missing_key_is_named() {
        let err = KataVersions::parse("assets: {}\n").unwrap_err();
        assert!(err.to_string().contains("assets.kernel.version"), "{err}");
    }
}
