//! Dependency sets, artifacts and templates into CycloneDX JSON, deterministically.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cyclonedx_bom::external_models::date_time::DateTime;
use cyclonedx_bom::external_models::normalized_string::NormalizedString;
use cyclonedx_bom::external_models::uri::{Purl, Uri};
use cyclonedx_bom::models::bom::{Bom, UrnUuid};
use cyclonedx_bom::models::component::{Classification, Component, Components, Cpe};
use cyclonedx_bom::models::dependency::{Dependencies, Dependency};
use cyclonedx_bom::models::external_reference::{
    ExternalReference, ExternalReferenceType, ExternalReferences,
};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::license::{License, LicenseChoice, Licenses};
use cyclonedx_bom::models::metadata::Metadata;
use cyclonedx_bom::models::organization::{OrganizationalContact, OrganizationalEntity};
use cyclonedx_bom::models::property::{Properties, Property};
use cyclonedx_bom::models::tool::Tools;
use cyclonedx_bom::validation::Validate;

use super::templates::{Describe, Templates};
use super::{DependencySet, Ecosystem, Package, RELEASE_BOM, SPEC, SbomError, component_bom_file};
use crate::digest::Sha256Digest;
use crate::manifest::Artifact;

/// What every BOM of one build (or one dependency set) shares.
pub struct BomContext<'a> {
    pub release: &'a str,
    pub arch: &'a str,
    pub source_url: &'a str,
    pub source_tag: &'a str,
    pub source_commit: &'a str,
    /// `metadata.timestamp`.
    pub source_date_epoch: i64,
    /// What serial numbers derive from: the manifest's sha256 for a build, the lockfile's for
    /// `kata-repro sbom`.
    pub seed: Sha256Digest,
    pub lockfile_name: &'a str,
    pub lockfile_sha256: Sha256Digest,
    pub templates: &'a Templates,
    /// kata-repro's version, named in `metadata.tools`.
    pub generator_version: &'a str,
    /// The advisories the release SBOM embeds, when a database is configured.
    pub advisories: Option<&'a crate::scan::embed::Embedded>,
}

/// One component: its dependency set and (after a build) its artifacts.
pub struct Subject {
    pub component: String,
    /// The recipe's description, used where the templates have none.
    pub description: String,
    /// Kata components this one contains (the rootfs holds the agent).
    pub needs: Vec<String>,
    pub artifacts: Vec<Artifact>,
    pub deps: DependencySet,
}

/// Writes `<component>.cdx.json` for each subject and `kata.cdx.json` into `dir`, each checked
/// against the specification and written atomically. Returns the file names.
pub fn write(
    ctx: &BomContext<'_>,
    subjects: &[Subject],
    dir: &Path,
) -> Result<Vec<String>, SbomError> {
    let mut written = Vec::new();
    let by_name: BTreeMap<&str, &Subject> =
        subjects.iter().map(|s| (s.component.as_str(), s)).collect();
    for s in subjects {
        let file = component_bom_file(&s.component);
        let bom = component_bom(ctx, s, &by_name, &file);
        emit(bom, &dir.join(&file), &file)?;
        written.push(file);
    }
    let bom = release_bom(ctx, subjects);
    emit(bom, &dir.join(RELEASE_BOM), RELEASE_BOM)?;
    written.push(RELEASE_BOM.to_owned());
    Ok(written)
}

/// JSON of `bom`, checked against the specification first.
pub fn to_json(bom: Bom, file: &str) -> Result<Vec<u8>, SbomError> {
    let result = bom.validate_version(SPEC);
    if !result.passed() {
        return Err(SbomError::Invalid {
            file: file.to_owned(),
            message: format!("{:?}", result.errors().collect::<Vec<_>>()),
        });
    }
    let mut out = Vec::new();
    bom.output_as_json(&mut out, SPEC)
        .map_err(|e| SbomError::Invalid {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
    out.push(b'\n');
    Ok(out)
}

fn emit(bom: Bom, path: &Path, file: &str) -> Result<(), SbomError> {
    let bytes = to_json(bom, file)?;
    crate::files::write_atomically(path, &bytes).map_err(|source| SbomError::Write {
        path: path.to_owned(),
        source,
    })
}

fn kata_ref(component: &str) -> String {
    format!("kata:{component}")
}

fn artifact_ref(path: &str) -> String {
    format!("artifact:{path}")
}

fn timestamp(epoch: i64) -> DateTime {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let text = t
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 formats every time");
    DateTime::try_from(text).expect("RFC 3339 is ISO 8601")
}

fn serial(ctx: &BomContext<'_>, file: &str) -> UrnUuid {
    serial_of(&ctx.seed, file)
}

/// The serial number of the SBOM `file` written with `seed` (a build's manifest digest, or for
/// `kata-repro sbom` the lockfile's sha256).
pub fn serial_of(seed: &Sha256Digest, file: &str) -> UrnUuid {
    let name = format!("kata-repro:sbom:{seed}:{file}");
    let uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes());
    UrnUuid::new(format!("urn:uuid:{uuid}")).expect("a UUID is a URN UUID")
}

/// The release's `bom-ref` in the release SBOM.
pub fn release_ref(release: &str) -> String {
    format!("kata-containers@{release}")
}

fn sha256_hashes(digest: &Sha256Digest) -> Hashes {
    Hashes(vec![Hash {
        alg: HashAlgorithm::SHA_256,
        content: HashValue(digest.to_hex()),
    }])
}

fn properties(pairs: impl IntoIterator<Item = (String, String)>) -> Option<Properties> {
    let v: Vec<Property> = pairs
        .into_iter()
        .map(|(k, v)| Property::new(k, &v))
        .collect();
    (!v.is_empty()).then_some(Properties(v))
}

/// A licence string as CycloneDX wants it: an SPDX expression where it is one, a single SPDX
/// identifier as an id, anything else as a name.
fn license_choice(license: &str) -> LicenseChoice {
    let strict = spdx::ParseMode {
        allow_deprecated: true,
        ..spdx::ParseMode::STRICT
    };
    if spdx::license_id(license).is_some_and(|id| id.name == license) {
        LicenseChoice::License(License::license_id(license))
    } else if spdx::Expression::parse_mode(license, strict).is_ok() {
        LicenseChoice::expression(license)
    } else {
        LicenseChoice::License(License::named_license(license))
    }
}

fn licenses(list: &[String]) -> Option<Licenses> {
    // CycloneDX allows one expression, or any number of licences, not both.
    let choices: Vec<LicenseChoice> = list.iter().map(|l| license_choice(l)).collect();
    if choices.is_empty() {
        None
    } else if choices.len() > 1 && choices.iter().any(|c| !c.is_license()) {
        Some(Licenses(vec![LicenseChoice::expression(
            &list
                .iter()
                .map(|l| format!("({l})"))
                .collect::<Vec<_>>()
                .join(" AND "),
        )]))
    } else {
        Some(Licenses(choices))
    }
}

fn package_component(p: &Package) -> Component {
    let classification = match p.ecosystem {
        Ecosystem::Kernel => Classification::OperatingSystem,
        _ => Classification::Library,
    };
    let mut c = Component::new(classification, &p.name, &p.version, Some(p.purl.clone()));
    c.purl = p.purl.parse::<Purl>().ok();
    c.description = p.description.as_deref().map(NormalizedString::new);
    c.licenses = p.license.as_ref().and_then(|l| match p.ecosystem {
        // Debian's short names (`GPL-2+`, `Expat`) are not SPDX, even where they look it.
        Ecosystem::Deb => Some(Licenses(vec![LicenseChoice::License(
            License::named_license(l),
        )])),
        _ => licenses(std::slice::from_ref(l)),
    });
    c.hashes = p.sha256.as_ref().map(sha256_hashes);
    c.cpe = p.cpe.as_deref().map(Cpe::new);
    let mut refs = Vec::new();
    if let Some(vcs) = &p.vcs {
        let mut r = ExternalReference::new(ExternalReferenceType::Vcs, Uri::new(&vcs.url));
        r.comment = Some(match &vcs.path {
            Some(path) if !path.is_empty() => format!("commit {}, directory {path}", vcs.commit),
            _ => format!("commit {}", vcs.commit),
        });
        refs.push(r);
    }
    if let Some(url) = &p.download_url {
        let mut r = ExternalReference::new(ExternalReferenceType::Distribution, Uri::new(url));
        r.hashes = p.sha256.as_ref().map(sha256_hashes);
        refs.push(r);
    }
    c.external_references = (!refs.is_empty()).then_some(ExternalReferences(refs));
    let mut props: BTreeMap<String, String> = p.properties.clone();
    if let Some(vcs) = &p.vcs {
        props.insert("kata-repro:vcs-commit".into(), vcs.commit.clone());
    }
    c.properties = properties(props);
    c
}

fn classification(kind: Option<&str>, default: Classification) -> Classification {
    kind.map(Classification::new_unchecked).unwrap_or(default)
}

/// A Kata component, with its artifacts nested in it.
fn kata_component(ctx: &BomContext<'_>, s: &Subject) -> Component {
    let d: Describe = ctx.templates.component(&s.component);
    let name = d
        .name
        .clone()
        .unwrap_or_else(|| format!("kata-{}", s.component));
    let mut c = Component::new(
        classification(d.kind.as_deref(), Classification::Application),
        &name,
        ctx.release,
        Some(kata_ref(&s.component)),
    );
    c.description = Some(NormalizedString::new(
        d.description.as_deref().unwrap_or(&s.description),
    ));
    c.licenses = licenses(&d.licenses);
    c.purl = super::purl(
        "generic",
        Some("kata-containers"),
        &name,
        ctx.release,
        &[
            ("arch", ctx.arch),
            (
                "vcs_url",
                &super::vcs_url(ctx.source_url, ctx.source_commit),
            ),
        ],
        None,
    )
    .ok()
    .and_then(|p| p.parse().ok());
    c.supplier = supplier(ctx.templates);
    c.external_references = Some(ExternalReferences(vec![{
        let mut r = ExternalReference::new(ExternalReferenceType::Vcs, Uri::new(ctx.source_url));
        r.comment = Some(format!(
            "tag {}, commit {}",
            ctx.source_tag, ctx.source_commit
        ));
        r
    }]));
    c.properties = properties([
        ("kata-repro:component".to_owned(), s.component.clone()),
        ("kata-repro:arch".to_owned(), ctx.arch.to_owned()),
    ]);
    let files: Vec<Component> = s
        .artifacts
        .iter()
        .map(|a| {
            let mut f = Component::new(
                Classification::File,
                &a.path,
                ctx.release,
                Some(artifact_ref(&a.path)),
            );
            f.version = None;
            f.hashes = Some(sha256_hashes(&a.sha256));
            f.properties = properties([
                ("kata-repro:size".to_owned(), a.size.to_string()),
                ("kata-repro:mode".to_owned(), a.mode.clone()),
            ]);
            f
        })
        .collect();
    c.components = (!files.is_empty()).then_some(Components(files));
    c
}

fn supplier(t: &Templates) -> Option<OrganizationalEntity> {
    t.supplier.as_ref().map(|s| OrganizationalEntity {
        bom_ref: None,
        name: Some(NormalizedString::new(&s.name)),
        url: (!s.url.is_empty()).then(|| s.url.iter().map(|u| Uri::new(u)).collect()),
        contact: None,
    })
}

fn metadata(ctx: &BomContext<'_>, subject: Component) -> Metadata {
    let mut tool = Component::new(
        Classification::Application,
        "kata-repro",
        ctx.generator_version,
        Some("tool:kata-repro".into()),
    );
    tool.description = Some(NormalizedString::new(
        "Reproducible builds of Kata Containers",
    ));
    Metadata {
        timestamp: Some(timestamp(ctx.source_date_epoch)),
        tools: Some(Tools::Object {
            services: None,
            components: Some(Components(vec![tool])),
        }),
        authors: (!ctx.templates.authors.is_empty()).then(|| {
            ctx.templates
                .authors
                .iter()
                .map(|a| OrganizationalContact {
                    bom_ref: None,
                    name: Some(NormalizedString::new(&a.name)),
                    email: a.email.as_deref().map(NormalizedString::new),
                    phone: None,
                })
                .collect()
        }),
        component: Some(subject),
        manufacture: None,
        supplier: supplier(ctx.templates),
        licenses: None,
        properties: properties([
            ("kata-repro:release".to_owned(), ctx.release.to_owned()),
            ("kata-repro:arch".to_owned(), ctx.arch.to_owned()),
            (
                "kata-repro:source-commit".to_owned(),
                ctx.source_commit.to_owned(),
            ),
            (
                "kata-repro:lockfile".to_owned(),
                ctx.lockfile_name.to_owned(),
            ),
            (
                "kata-repro:lockfile-sha256".to_owned(),
                ctx.lockfile_sha256.to_hex(),
            ),
            (
                "kata-repro:source-date-epoch".to_owned(),
                ctx.source_date_epoch.to_string(),
            ),
        ]),
        lifecycles: None,
    }
}

/// The packages of `s`, with what only the build knows added: the final kernel `.config`.
fn subject_packages(s: &Subject) -> Vec<Package> {
    let config = s.artifacts.iter().find(|a| {
        a.path
            .rsplit('/')
            .next()
            .is_some_and(|f| f.starts_with("config-"))
    });
    s.deps
        .packages
        .iter()
        .cloned()
        .map(|mut p| {
            if p.ecosystem == Ecosystem::Kernel
                && let Some(a) = config
            {
                p.properties
                    .insert("kata-repro:kernel:config-sha256".into(), a.sha256.to_hex());
                p.properties
                    .insert("kata-repro:kernel:config-file".into(), a.path.clone());
            }
            p
        })
        .collect()
}

fn dependency(r: String, deps: impl IntoIterator<Item = String>) -> Dependency {
    let set: BTreeSet<String> = deps.into_iter().collect();
    Dependency {
        dependency_ref: r,
        dependencies: set.into_iter().collect(),
    }
}

/// What a Kata component is built from: its direct dependencies and the components it holds.
fn component_dependency(s: &Subject) -> Dependency {
    dependency(
        kata_ref(&s.component),
        s.deps
            .direct
            .iter()
            .cloned()
            .chain(s.needs.iter().map(|n| kata_ref(n))),
    )
}

fn component_bom(
    ctx: &BomContext<'_>,
    s: &Subject,
    all: &BTreeMap<&str, &Subject>,
    file: &str,
) -> Bom {
    let packages = subject_packages(s);
    let mut components: Vec<Component> = packages.iter().map(package_component).collect();
    let mut dependencies = vec![component_dependency(s)];
    for n in &s.needs {
        if let Some(needed) = all.get(n.as_str()) {
            components.push(kata_component(ctx, needed));
            dependencies.push(dependency(kata_ref(n), []));
        }
    }
    dependencies.extend(
        packages
            .iter()
            .map(|p| dependency(p.purl.clone(), p.depends_on.iter().cloned())),
    );
    finish(ctx, file, kata_component(ctx, s), components, dependencies)
}

fn release_bom(ctx: &BomContext<'_>, subjects: &[Subject]) -> Bom {
    let d = &ctx.templates.release;
    let name = d.name.clone().unwrap_or_else(|| "kata-containers".into());
    let release_ref = release_ref(ctx.release);
    let mut root = Component::new(
        Classification::Application,
        &name,
        ctx.release,
        Some(release_ref.clone()),
    );
    root.description = d.description.as_deref().map(NormalizedString::new);
    root.licenses = licenses(&d.licenses);
    root.supplier = supplier(ctx.templates);
    root.purl = format!(
        "pkg:github/kata-containers/kata-containers@{}",
        ctx.source_tag
    )
    .parse()
    .ok();
    let mut refs = vec![{
        let mut r = ExternalReference::new(ExternalReferenceType::Vcs, Uri::new(ctx.source_url));
        r.comment = Some(format!(
            "tag {}, commit {}",
            ctx.source_tag, ctx.source_commit
        ));
        r
    }];
    if let Some(w) = &d.website {
        refs.push(ExternalReference::new(
            ExternalReferenceType::Website,
            Uri::new(w),
        ));
    }
    root.external_references = Some(ExternalReferences(refs));

    let mut packages: BTreeMap<String, Package> = BTreeMap::new();
    for s in subjects {
        for p in subject_packages(s) {
            match packages.get_mut(&p.purl) {
                Some(existing) => existing.depends_on.extend(p.depends_on),
                None => {
                    packages.insert(p.purl.clone(), p);
                }
            }
        }
    }
    let mut components: Vec<Component> = subjects.iter().map(|s| kata_component(ctx, s)).collect();
    components.extend(packages.values().map(package_component));
    let mut dependencies = vec![dependency(
        release_ref,
        subjects.iter().map(|s| kata_ref(&s.component)),
    )];
    dependencies.extend(subjects.iter().map(component_dependency));
    dependencies.extend(
        packages
            .values()
            .map(|p| dependency(p.purl.clone(), p.depends_on.iter().cloned())),
    );
    let mut bom = finish(ctx, RELEASE_BOM, root, components, dependencies);
    if let Some(a) = ctx.advisories {
        bom.vulnerabilities = Some(a.vulnerabilities.clone());
        bom.properties = properties(
            a.databases
                .iter()
                .map(|(name, commit)| (format!("kata-repro:advisories:{name}"), commit.clone())),
        );
    }
    bom
}

/// Sorts components and dependencies by reference and assembles the BOM.
fn finish(
    ctx: &BomContext<'_>,
    file: &str,
    subject: Component,
    mut components: Vec<Component>,
    mut dependencies: Vec<Dependency>,
) -> Bom {
    components.sort_by(|a, b| a.bom_ref.cmp(&b.bom_ref));
    components.dedup_by(|a, b| a.bom_ref == b.bom_ref);
    dependencies.sort_by(|a, b| a.dependency_ref.cmp(&b.dependency_ref));
    dependencies.dedup_by(|a, b| a.dependency_ref == b.dependency_ref);
    Bom {
        version: 1,
        serial_number: Some(serial(ctx, file)),
        metadata: Some(metadata(ctx, subject)),
        components: Some(Components(components)),
        services: None,
        external_references: None,
        dependencies: Some(Dependencies(dependencies)),
        compositions: None,
        properties: None,
        vulnerabilities: None,
        signature: None,
        annotations: None,
        formulation: None,
        spec_version: SPEC,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::{Package, packages};

    fn ctx(templates: &Templates) -> BomContext<'_> {
        BomContext {
            release: "3.30.0",
            arch: "x86_64",
            source_url: "https://github.com/kata-containers/kata-containers",
            source_tag: "3.30.0",
            source_commit: "86e5975ad6a20f091ed686e492672c70496d0400",
            source_date_epoch: 1777749389,
            seed: Sha256Digest::of(b"manifest"),
            lockfile_name: "kata-3.30.0.toml",
            lockfile_sha256: Sha256Digest::of(b"lock"),
            templates,
            generator_version: "0.1.0",
            advisories: None,
        }
    }

    fn kernel_subject() -> Subject {
        let kernel = crate::lock::Kernel {
            version: "6.18.15".into(),
            kata_config_version: "192".into(),
            url: "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.18.15.tar.xz".into(),
            sha256: Some(Sha256Digest::of(b"tarball")),
            member: None,
        };
        Subject {
            component: "kernel".into(),
            description: "the guest kernel".into(),
            needs: vec![],
            artifacts: vec![Artifact {
                path: "x86_64/kernel/config-6.18.15-192".into(),
                size: 3,
                mode: "0644".into(),
                sha256: Sha256Digest::of(b"cfg"),
            }],
            deps: packages::kernel("kernel", &kernel),
        }
    }

    #[test]
    fn a_kernel_bom_names_the_tarball_the_cpe_and_the_final_config() {
        let templates = Templates::load(None).unwrap();
        let ctx = ctx(&templates);
        let s = kernel_subject();
        let by_name = BTreeMap::from([("kernel", &s)]);
        let json = to_json(
            component_bom(&ctx, &s, &by_name, "kernel.cdx.json"),
            "kernel.cdx.json",
        )
        .unwrap();
        let again = to_json(
            component_bom(&ctx, &s, &by_name, "kernel.cdx.json"),
            "kernel.cdx.json",
        )
        .unwrap();
        assert_eq!(json, again, "the same input gives the same bytes");
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["specVersion"], "1.5");
        assert_eq!(v["metadata"]["timestamp"], "2026-05-02T19:16:29Z");
        let linux = &v["components"][0];
        assert_eq!(linux["purl"], "pkg:generic/linux@6.18.15");
        assert_eq!(
            linux["cpe"],
            "cpe:2.3:o:linux:linux_kernel:6.18.15:*:*:*:*:*:*:*"
        );
        assert_eq!(
            linux["hashes"][0]["content"],
            Sha256Digest::of(b"tarball").to_hex()
        );
        assert_eq!(linux["externalReferences"][0]["type"], "distribution");
        let props: BTreeMap<String, String> = linux["properties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            props["kata-repro:kernel:config-sha256"],
            Sha256Digest::of(b"cfg").to_hex()
        );
        assert_eq!(props["kata-repro:kernel:kata-config-version"], "192");
        assert_eq!(v["metadata"]["component"]["type"], "operating-system");
        let serial = v["serialNumber"].as_str().unwrap();
        let other_seed = BomContext {
            seed: Sha256Digest::of(b"another manifest"),
            ..ctx
        };
        let other = to_json(
            component_bom(&other_seed, &s, &by_name, "kernel.cdx.json"),
            "x",
        )
        .unwrap();
        let other: serde_json::Value = serde_json::from_slice(&other).unwrap();
        assert_ne!(
            other["serialNumber"].as_str().unwrap(),
            serial,
            "the serial follows the manifest"
        );
    }

    #[test]
    fn licences_become_ids_expressions_or_names() {
        assert!(matches!(license_choice("MIT"), LicenseChoice::License(_)));
        assert!(matches!(
            license_choice("MIT OR Apache-2.0"),
            LicenseChoice::Expression(_)
        ));
        assert!(matches!(
            license_choice("GPL-2.0-only WITH Linux-syscall-note"),
            LicenseChoice::Expression(_)
        ));
        let named = license_choice("Some Custom Licence");
        assert!(named.is_license());
        // Two licences, one an expression: joined into one expression, as CycloneDX requires.
        let l = licenses(&["MIT".into(), "Apache-2.0 OR MIT".into()]).unwrap();
        assert_eq!(l.0.len(), 1);
        assert!(!l.0[0].is_license());
    }

    #[test]
    fn an_invalid_bom_is_refused_before_it_is_written() {
        let templates = Templates::load(None).unwrap();
        let ctx = ctx(&templates);
        let mut s = kernel_subject();
        let mut bad = Package::new(Ecosystem::Deb, "not a purl".into(), "x", "1");
        bad.download_url = Some("::not a url::".into());
        s.deps.packages.push(bad);
        let by_name = BTreeMap::from([("kernel", &s)]);
        let e = to_json(
            component_bom(&ctx, &s, &by_name, "kernel.cdx.json"),
            "kernel.cdx.json",
        )
        .unwrap_err();
        assert!(matches!(e, SbomError::Invalid { .. }), "{e}");
    }
}
