//! The Go modules a Go component is built from: its go.mod, and `vendor/modules.txt` where the
//! release commits one.
//!
//! With a vendor tree, the modules are those modules.txt vendors packages of (what `go build
//! -mod=vendor` can compile); without one, every module go.mod requires (since Go 1.17 go.mod
//! lists the whole build list). The graph is what these files say: the main module requires
//! each of them, directly (`## explicit`, or no `// indirect`) or indirectly. Go's `h1:` hash
//! from go.sum is not a SHA-256 of anything one downloads, so it is never given as one: it is
//! the property `goModuleH1` (hex, as in-toto's DigestSet writes it) beside go.sum's own text.

use std::path::Path;

use base64::Engine;
use gomod_parser::{GoMod, Replacement};

use super::{DependencySet, Ecosystem, Package, SbomError, Vcs, purl, vcs_url};
use crate::lock::Lockfile;
use crate::verify::gomod::gosum::{GoSum, SumKind};
use crate::verify::gomod::vendor::parse_modules_txt;

/// A Go module path as a purl: the last element is the name, the rest the namespace.
pub fn golang_purl(
    module: &str,
    version: &str,
    subpath: Option<&str>,
    qualifiers: &[(&str, &str)],
) -> Result<String, String> {
    let (namespace, name) = module.rsplit_once('/').unwrap_or(("", module));
    purl(
        "golang",
        Some(namespace),
        name,
        version,
        qualifiers,
        subpath,
    )
}

/// go.sum's `h1:<base64>` as in-toto's `goModuleH1` digest: the same bytes, in hex.
pub fn h1_hex(h1: &str) -> Option<String> {
    let b64 = h1.strip_prefix("h1:")?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .filter(|b| b.len() == 32)
        .map(hex::encode)
}

struct Required {
    path: String,
    version: String,
    direct: bool,
    /// What go.mod replaced with this module, if anything.
    replaces: Option<String>,
}

pub fn collect(
    component: &str,
    checkout: &Path,
    workdir: &str,
    lock: &Lockfile,
) -> Result<DependencySet, SbomError> {
    let dir = checkout.join(workdir);
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map(|t| (path.clone(), t))
            .map_err(|e| SbomError::Input {
                path,
                message: e.to_string(),
            })
    };
    let (gomod_path, gomod_text) = read("go.mod")?;
    let gomod: GoMod = gomod_text
        .parse()
        .map_err(|message: String| SbomError::Input {
            path: gomod_path.clone(),
            message,
        })?;
    let sum_path = dir.join("go.sum");
    let sum = GoSum::load(&sum_path).map_err(|e| SbomError::Input {
        path: sum_path.clone(),
        message: e.to_string(),
    })?;

    let mut set = DependencySet::new(component);
    let modules_txt = dir.join("vendor/modules.txt");
    let required: Vec<Required> = if modules_txt.is_file() {
        set.method.push(format!(
            "{workdir}/vendor/modules.txt (modules with vendored packages)"
        ));
        let (_, text) = read("vendor/modules.txt")?;
        let modules = parse_modules_txt(&text, &modules_txt).map_err(|e| SbomError::Input {
            path: modules_txt.clone(),
            message: e.to_string(),
        })?;
        modules
            .iter()
            .filter(|m| !m.packages.is_empty())
            .filter_map(|m| {
                let (path, version) = m.source()?;
                Some(Required {
                    path: path.to_owned(),
                    version: version.to_owned(),
                    direct: m.explicit
                        && gomod
                            .require
                            .iter()
                            .any(|r| r.module.module_path == m.path && !r.indirect),
                    replaces: m
                        .replacement
                        .as_ref()
                        .map(|_| format!("{}@{}", m.path, m.version.as_deref().unwrap_or(""))),
                })
            })
            .collect()
    } else {
        set.method
            .push(format!("{workdir}/go.mod (require, with replace applied)"));
        gomod
            .require
            .iter()
            .filter_map(|r| {
                let replaced = gomod.replace.iter().find(|rep| {
                    rep.module_path == r.module.module_path
                        && rep.version.as_ref().is_none_or(|v| *v == r.module.version)
                });
                let (path, version, replaces) = match replaced.map(|rep| &rep.replacement) {
                    Some(Replacement::Module(m)) => (
                        m.module_path.clone(),
                        m.version.clone(),
                        Some(format!("{}@{}", r.module.module_path, r.module.version)),
                    ),
                    Some(Replacement::FilePath(_)) => return None,
                    None => (r.module.module_path.clone(), r.module.version.clone(), None),
                };
                Some(Required {
                    path,
                    version,
                    direct: !r.indirect,
                    replaces,
                })
            })
            .collect()
    };

    let bad = |message: String| SbomError::Input {
        path: gomod_path.clone(),
        message,
    };
    // The main module: the component's own Go code, in the Kata repository.
    let main_purl = golang_purl(
        &gomod.module,
        &lock.source.tag,
        None,
        &[(
            "vcs_url",
            &vcs_url(&lock.source.url, &lock.source.commit.to_string()),
        )],
    )
    .map_err(bad)?;
    let mut main = Package::new(
        Ecosystem::Golang,
        main_purl.clone(),
        &gomod.module,
        &lock.source.tag,
    );
    main.vcs = Some(Vcs {
        url: lock.source.url.clone(),
        commit: lock.source.commit.to_string(),
        path: Some(workdir.to_owned()),
    });
    main.properties
        .insert("kata-repro:go:main-module".into(), "true".into());

    for r in &required {
        let purl = golang_purl(&r.path, &r.version, None, &[]).map_err(bad)?;
        let mut p = Package::new(Ecosystem::Golang, purl.clone(), &r.path, &r.version);
        match sum.find(&r.path, &r.version, SumKind::Zip) {
            Some(entry) => {
                if let Some(hex) = h1_hex(&entry.hash) {
                    p.properties.insert("goModuleH1".into(), hex);
                }
                p.properties
                    .insert("kata-repro:go.sum".into(), entry.hash.clone());
            }
            None => {
                return Err(SbomError::Input {
                    path: sum_path.clone(),
                    message: format!(
                        "no h1: line for {} {} (go.mod requires it)",
                        r.path, r.version
                    ),
                });
            }
        }
        p.properties.insert(
            "kata-repro:go:requirement".into(),
            if r.direct { "direct" } else { "indirect" }.into(),
        );
        if let Some(orig) = &r.replaces {
            p.properties
                .insert("kata-repro:go:replaces".into(), orig.clone());
        }
        p.download_url = Some(format!(
            "https://proxy.golang.org/{}/@v/{}.zip",
            crate::verify::gomod::gosum::escape_path(&r.path),
            crate::verify::gomod::gosum::escape_path(&r.version)
        ));
        main.depends_on.insert(purl);
        set.packages.push(p);
    }
    set.packages.push(main);
    set.packages.sort_by(|a, b| a.purl.cmp(&b.purl));
    set.packages.dedup_by(|a, b| a.purl == b.purl);
    set.direct.insert(main_purl);
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h1_becomes_in_totos_hex() {
        // in-toto's own example: the dirhash of an empty tree.
        assert_eq!(
            h1_hex("h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(h1_hex("sha256:abc").is_none());
    }

    #[test]
    fn module_paths_split_into_namespace_and_name() {
        assert_eq!(
            golang_purl("github.com/blang/semver/v4", "v4.0.0", None, &[]).unwrap(),
            "pkg:golang/github.com/blang/semver/v4@v4.0.0"
        );
        assert_eq!(
            golang_purl("code.cloudfoundry.org/bytefmt", "v0.0.0-2021", None, &[]).unwrap(),
            "pkg:golang/code.cloudfoundry.org/bytefmt@v0.0.0-2021"
        );
    }
}

#[cfg(test)]
mod fixture_tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::sbom::Ecosystem;

    fn fixture_root(release: &str) -> PathBuf {
        std::env::var_os("KATA_REPRO_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
            .join("kata")
            .join(release)
    }

    fn lockfile(name: &str) -> Lockfile {
        Lockfile::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("lockfiles")
                .join(name),
        )
        .unwrap()
        .value
    }

    #[test]
    fn the_3_30_0_runtime_lists_the_modules_it_vendors_packages_of() {
        let root = fixture_root("3.30.0");
        let text = std::fs::read_to_string(root.join("src/runtime/vendor/modules.txt")).unwrap();
        let modules = parse_modules_txt(&text, Path::new("modules.txt")).unwrap();
        let with_packages = modules.iter().filter(|m| !m.packages.is_empty()).count();
        let set = collect(
            "runtime",
            &root,
            "src/runtime",
            &lockfile("kata-3.30.0.toml"),
        )
        .unwrap();
        // Every vendored module, plus the main module.
        assert_eq!(set.count(Ecosystem::Golang), with_packages + 1);
        let main = set
            .packages
            .iter()
            .find(|p| p.properties.contains_key("kata-repro:go:main-module"))
            .unwrap();
        assert_eq!(
            main.name,
            "github.com/kata-containers/kata-containers/src/runtime"
        );
        assert_eq!(main.depends_on.len(), with_packages);
        assert!(set.direct.contains(&main.purl));
        // Every module carries its h1: (as go.sum has it, and in hex), and no SHA-256.
        for p in set.packages.iter().filter(|p| p.purl != main.purl) {
            assert!(p.sha256.is_none());
            let h1 = &p.properties["kata-repro:go.sum"];
            assert_eq!(
                p.properties["goModuleH1"],
                h1_hex(h1).unwrap(),
                "{}",
                p.name
            );
        }
        let toml = set
            .packages
            .iter()
            .find(|p| p.name == "github.com/BurntSushi/toml")
            .unwrap();
        assert_eq!(toml.properties["kata-repro:go:requirement"], "direct");
        assert_eq!(
            toml.purl,
            format!("pkg:golang/github.com/BurntSushi/toml@{}", toml.version)
        );
    }

    #[test]
    fn the_4_1_0_runtime_without_vendor_lists_what_go_mod_requires() {
        let root = fixture_root("4.1.0");
        assert!(!root.join("src/runtime/vendor/modules.txt").exists());
        let gomod: GoMod = std::fs::read_to_string(root.join("src/runtime/go.mod"))
            .unwrap()
            .parse()
            .unwrap();
        let set = collect(
            "runtime",
            &root,
            "src/runtime",
            &lockfile("kata-4.1.0.toml"),
        )
        .unwrap();
        assert_eq!(set.count(Ecosystem::Golang), gomod.require.len() + 1);
        let indirect = set
            .packages
            .iter()
            .filter(|p| {
                p.properties
                    .get("kata-repro:go:requirement")
                    .is_some_and(|r| r == "indirect")
            })
            .count();
        assert_eq!(
            indirect,
            gomod.require.iter().filter(|r| r.indirect).count()
        );
    }

    #[test]
    fn a_module_go_sum_lacks_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let rt = dir.path().join("src/runtime");
        std::fs::create_dir_all(&rt).unwrap();
        std::fs::write(
            rt.join("go.mod"),
            "module example.org/rt\n\ngo 1.25\n\nrequire example.org/x v1.0.0\n",
        )
        .unwrap();
        std::fs::write(
            rt.join("go.sum"),
            "example.org/other v1.0.0 h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        )
        .unwrap();
        let e = collect(
            "runtime",
            dir.path(),
            "src/runtime",
            &lockfile("kata-3.30.0.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("go.sum") && e.contains("example.org/x v1.0.0"),
            "{e}"
        );
    }
}
