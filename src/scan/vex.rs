//! A scan as VEX: CycloneDX 1.5 `vulnerabilities`, each naming the SBOM component it affects by
//! its `bom-ref` (the package URL the release SBOM gives it), with an impact analysis:
//!
//! - ignored (`--ignore ID=REASON`): `not_affected`, the reason as the detail;
//! - lock-only: `not_affected`, `code_not_present`: no component compiles the package, so the
//!   vulnerability is attributed to the release itself, which does not contain it;
//! - compiled, or not resolved: `in_triage`.
//!
//! Standalone, the references are BOM-Links (`urn:cdx:<serial>/<version>#<bom-ref>`) into the
//! release SBOM.

use cyclonedx_bom::external_models::normalized_string::NormalizedString;
use cyclonedx_bom::external_models::uri::{Purl, Uri};
use cyclonedx_bom::models::advisory::{Advisories, Advisory};
use cyclonedx_bom::models::bom::{Bom, SpecVersion, UrnUuid};
use cyclonedx_bom::models::component::{Classification, Component};
use cyclonedx_bom::models::metadata::Metadata;
use cyclonedx_bom::models::vulnerability::{Vulnerabilities, Vulnerability};
use cyclonedx_bom::models::vulnerability_analysis::{
    ImpactAnalysisJustification, ImpactAnalysisState, VulnerabilityAnalysis,
};
use cyclonedx_bom::models::vulnerability_rating::{
    ScoreMethod, Severity as CdxSeverity, VulnerabilityRating, VulnerabilityRatings,
};
use cyclonedx_bom::models::vulnerability_reference::{
    VulnerabilityReference, VulnerabilityReferences,
};
use cyclonedx_bom::models::vulnerability_source::VulnerabilitySource;
use cyclonedx_bom::models::vulnerability_target::{
    Status, Version, VersionRange, Versions, VulnerabilityTarget, VulnerabilityTargets,
};

use super::{Ecosystem, Finding, Reach, ReachScope, Report, Severity};

/// The release SBOM a standalone VEX document links into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomLink {
    /// `urn:uuid:…`
    pub serial: String,
    pub version: u32,
}

impl SbomLink {
    /// The BOM-Link of `bom_ref` in this SBOM.
    pub fn to(&self, bom_ref: &str) -> String {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let uuid = self.serial.trim_start_matches("urn:uuid:");
        let fragment = utf8_percent_encode(bom_ref, NON_ALPHANUMERIC);
        format!("urn:cdx:{uuid}/{}#{fragment}", self.version)
    }
}

/// What the VEX entries refer to: the release's own `bom-ref`, and the SBOM they link into
/// (`None` when they are embedded in that SBOM).
pub struct Target<'a> {
    pub release_ref: &'a str,
    pub link: Option<&'a SbomLink>,
}

impl Target<'_> {
    fn reference(&self, bom_ref: &str) -> String {
        match self.link {
            Some(l) => l.to(bom_ref),
            None => bom_ref.to_owned(),
        }
    }
}

/// A package's URL as the SBOM writes it for a registry crate or a Go module.
pub fn package_url(f: &Finding) -> Option<String> {
    match (f.ecosystem, f.package.as_str()) {
        (Ecosystem::Go, "stdlib" | "toolchain") => None,
        (Ecosystem::Cargo, name) => Some(format!("pkg:cargo/{name}@{}", f.version)),
        (Ecosystem::Go, module) => {
            crate::sbom::gomod::golang_purl(module, &f.version, None, &[]).ok()
        }
        (Ecosystem::Deb, _) => None,
    }
}

/// One vulnerability per finding.
pub fn vulnerabilities(report: &Report, target: &Target<'_>) -> Vulnerabilities {
    Vulnerabilities(
        report
            .findings
            .iter()
            .filter(|f| f.category.is_vulnerability() || f.ignored.is_some())
            .map(|f| vulnerability(f, target, report.reach.as_ref()))
            .collect(),
    )
}

fn vulnerability(f: &Finding, target: &Target<'_>, scope: Option<&ReachScope>) -> Vulnerability {
    let purl = f.purl.clone().or_else(|| package_url(f));
    let in_release = f.reach != Reach::LockOnly;
    let affected_ref = match (&purl, in_release) {
        (Some(p), true) => target.reference(p),
        _ => target.reference(target.release_ref),
    };
    // Not compiled is only `not_affected` when the scan resolved all the release compiles.
    let partial = scope.filter(|s| !s.is_complete());
    let (state, justification, detail) = match (&f.ignored, f.reach) {
        (Some(reason), _) => (ImpactAnalysisState::NotAffected, None, reason.clone()),
        (None, Reach::LockOnly) if let Some(scope) = partial => (
            ImpactAnalysisState::InTriage,
            None,
            format!(
                "{} {} is pinned at {} and not compiled by what the scan resolved; {} \
                 not resolved",
                f.package,
                f.version,
                f.pinned_at,
                scope.not_resolved.join("; ")
            ),
        ),
        (None, Reach::LockOnly) => (
            ImpactAnalysisState::NotAffected,
            Some(ImpactAnalysisJustification::CodeNotPresent),
            format!(
                "{} {} is pinned at {} but no component of the release compiles it",
                f.package, f.version, f.pinned_at
            ),
        ),
        (None, reach) => (
            ImpactAnalysisState::InTriage,
            None,
            format!(
                "{} {} ({}, pinned at {}) {}; whether affected code is reachable is not analysed",
                f.package,
                f.version,
                reach.as_str(),
                f.pinned_at,
                match &f.undecided {
                    Some(why) => format!("may be affected: the database cannot say ({why})"),
                    None => "is affected by version".into(),
                }
            ),
        ),
    };
    let source = source(f);
    Vulnerability {
        // One per finding: the same advisory can apply to one package pinned in two places.
        bom_ref: Some(format!(
            "{}:{}:{}@{}:{}",
            f.ecosystem.as_str(),
            f.id,
            f.package,
            f.version,
            f.pinned_at
        )),
        id: Some(NormalizedString::new(&f.id)),
        vulnerability_source: Some(source.clone()),
        vulnerability_references: references(f),
        vulnerability_ratings: rating(f, source),
        cwes: None,
        description: (!f.title.is_empty()).then(|| f.title.clone()),
        detail: None,
        recommendation: (!f.fixed.is_empty())
            .then(|| format!("upgrade {} to {}", f.package, f.fixed.join(" or "))),
        workaround: None,
        proof_of_concept: None,
        advisories: Some(Advisories(vec![Advisory {
            title: None,
            url: Uri::new(&f.url),
        }])),
        created: None,
        published: None,
        updated: None,
        rejected: None,
        vulnerability_credits: None,
        tools: None,
        vulnerability_analysis: Some(VulnerabilityAnalysis {
            state: Some(state),
            justification,
            responses: None,
            detail: Some(detail),
            first_issued: None,
            last_updated: None,
        }),
        vulnerability_targets: Some(VulnerabilityTargets(vec![VulnerabilityTarget {
            bom_ref: affected_ref,
            versions: Some(Versions(vec![Version {
                version_range: VersionRange::Version(NormalizedString::new(&f.version)),
                status: status(f, in_release, partial.is_some()),
            }])),
        }])),
        properties: None,
    }
}

/// The version's status, as the analysis says: unaffected when ignored or not compiled by a
/// release resolved whole; unknown when the database cannot decide, or when not compiled by
/// what a partial resolution covered; affected otherwise.
fn status(f: &Finding, in_release: bool, partial: bool) -> Status {
    match (&f.ignored, f.reach) {
        (Some(_), _) => Status::Unaffected,
        (None, Reach::LockOnly) if partial => Status::Unknown,
        (None, _) if !in_release => Status::Unaffected,
        (None, _) if f.undecided.is_some() => Status::Unknown,
        (None, _) => Status::Affected,
    }
}

fn source(f: &Finding) -> VulnerabilitySource {
    let (name, url) = match f.ecosystem {
        Ecosystem::Cargo => ("RustSec", "https://rustsec.org/"),
        Ecosystem::Go => ("Go Vulnerability Database", "https://pkg.go.dev/vuln/"),
        Ecosystem::Deb => (
            "Debian Security Tracker",
            "https://security-tracker.debian.org/",
        ),
    };
    VulnerabilitySource {
        name: Some(NormalizedString::new(name)),
        url: Some(Uri::new(url)),
    }
}

fn references(f: &Finding) -> Option<VulnerabilityReferences> {
    let refs: Vec<VulnerabilityReference> = f
        .aliases
        .iter()
        .map(|a| {
            let (name, url) = if a.starts_with("CVE-") {
                ("NVD", format!("https://nvd.nist.gov/vuln/detail/{a}"))
            } else if a.starts_with("GHSA-") {
                (
                    "GitHub Advisories",
                    format!("https://github.com/advisories/{a}"),
                )
            } else {
                ("OSV", format!("https://osv.dev/vulnerability/{a}"))
            };
            VulnerabilityReference {
                id: NormalizedString::new(a),
                vulnerability_source: VulnerabilitySource {
                    name: Some(NormalizedString::new(name)),
                    url: Some(Uri::new(&url)),
                },
            }
        })
        .collect();
    (!refs.is_empty()).then_some(VulnerabilityReferences(refs))
}

fn rating(f: &Finding, source: VulnerabilitySource) -> Option<VulnerabilityRatings> {
    let severity = f.severity?;
    let method = f.cvss.as_deref().and_then(|v| {
        if v.starts_with("CVSS:3.1/") {
            Some(ScoreMethod::CVSSv31)
        } else if v.starts_with("CVSS:3.0/") {
            Some(ScoreMethod::CVSSv3)
        } else if v.starts_with("CVSS:4.0/") {
            Some(ScoreMethod::CVSSv4)
        } else {
            None
        }
    });
    Some(VulnerabilityRatings(vec![VulnerabilityRating {
        vulnerability_source: Some(source),
        score: None,
        severity: Some(match severity {
            Severity::None => CdxSeverity::None,
            Severity::Low => CdxSeverity::Low,
            Severity::Medium => CdxSeverity::Medium,
            Severity::High => CdxSeverity::High,
            Severity::Critical => CdxSeverity::Critical,
        }),
        vector: method
            .is_some()
            .then(|| NormalizedString::new(f.cvss.as_deref().unwrap_or(""))),
        score_method: method,
        justification: None,
    }]))
}

/// A standalone VEX document: the release as its subject, the vulnerabilities linking into
/// the release SBOM. Its serial number is derived from `seed` (the same scan, the same bytes).
pub fn document(
    report: &Report,
    release: &str,
    release_ref: &str,
    link: &SbomLink,
    seed: &str,
) -> Bom {
    let target = Target {
        release_ref,
        link: Some(link),
    };
    let uuid = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("kata-repro:vex:{seed}").as_bytes(),
    );
    let mut subject = Component::new(
        Classification::Application,
        "kata-containers",
        release,
        Some(link.to(release_ref)),
    );
    subject.purl = format!("pkg:github/kata-containers/kata-containers@{release}")
        .parse::<Purl>()
        .ok();
    Bom {
        version: 1,
        serial_number: UrnUuid::new(format!("urn:uuid:{uuid}")).ok(),
        metadata: Some(Metadata {
            component: Some(subject),
            ..Metadata::default()
        }),
        components: None,
        services: None,
        external_references: None,
        dependencies: None,
        compositions: None,
        properties: None,
        vulnerabilities: Some(vulnerabilities(report, &target)),
        signature: None,
        annotations: None,
        formulation: None,
        spec_version: SpecVersion::V1_5,
    }
}
