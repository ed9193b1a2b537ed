//! `sbom-templates/kata.toml`: who supplies the release and how its components are described.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::SbomError;

/// The templates shipped with kata-repro.
const BUILTIN: &str = include_str!("../../sbom-templates/kata.toml");
pub const FILE: &str = "kata.toml";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    #[serde(default)]
    pub supplier: Option<Supplier>,
    #[serde(default)]
    pub authors: Vec<Author>,
    pub release: Describe,
    #[serde(default)]
    pub components: BTreeMap<String, Describe>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supplier {
    pub name: String,
    #[serde(default)]
    pub url: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Author {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Describe {
    #[serde(default)]
    pub name: Option<String>,
    /// A CycloneDX component type.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub licenses: Vec<String>,
    #[serde(default)]
    pub website: Option<String>,
}

impl Templates {
    /// The built-in templates, or `dir/kata.toml`.
    pub fn load(dir: Option<&Path>) -> Result<Self, SbomError> {
        match dir {
            None => Self::parse(BUILTIN, Path::new("sbom-templates/kata.toml")),
            Some(dir) => {
                let path = dir.join(FILE);
                let text = std::fs::read_to_string(&path).map_err(|e| SbomError::Template {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                Self::parse(&text, &path)
            }
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, SbomError> {
        let t: Templates = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            SbomError::Template {
                path: PathBuf::from(format!("{}:{line}", path.display())),
                message: e.message().to_owned(),
            }
        })?;
        for (name, d) in std::iter::once(("release", &t.release))
            .chain(t.components.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if let Some(kind) = &d.kind
                && !COMPONENT_TYPES.contains(&kind.as_str())
            {
                return Err(SbomError::Template {
                    path: path.to_owned(),
                    message: format!(
                        "{name}: type `{kind}` is not a CycloneDX component type (one of {})",
                        COMPONENT_TYPES.join(", ")
                    ),
                });
            }
        }
        Ok(t)
    }

    pub fn component(&self, name: &str) -> Describe {
        self.components.get(name).cloned().unwrap_or_default()
    }
}

/// CycloneDX 1.5's component types.
pub const COMPONENT_TYPES: &[&str] = &[
    "application",
    "framework",
    "library",
    "container",
    "platform",
    "operating-system",
    "device",
    "device-driver",
    "firmware",
    "file",
    "machine-learning-model",
    "data",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_templates_load() {
        let t = Templates::load(None).unwrap();
        assert_eq!(t.release.name.as_deref(), Some("kata-containers"));
        assert_eq!(t.component("agent").name.as_deref(), Some("kata-agent"));
        assert_eq!(t.component("nothing"), Describe::default());
    }

    #[test]
    fn mistakes_name_the_line() {
        let e = Templates::parse("[release]\nnmae = \"x\"\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml:2") && e.contains("nmae"), "{e}");
        let e = Templates::parse("[release]\ntype = \"program\"\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a CycloneDX component type"), "{e}");
    }
}
