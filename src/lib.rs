//! kata-repro: pins, fetches, verifies and records every input of a Kata Containers release.

pub mod builder;
pub mod check;
pub mod diff;
pub mod digest;
pub mod files;
pub mod host;
pub mod inputs;
pub mod job;
pub mod lock;
pub mod lockdiff;
pub mod manifest;
pub mod outdated;
pub mod provenance;
pub mod recipe;
pub mod release;
#[cfg(feature = "remote")]
pub mod remote;
pub mod sandbox;
pub mod sbom;
pub mod scan;
pub mod setup;
pub mod source;
pub mod verify;

/// Real files from Kata releases, for tests: `$KATA_REPRO_FIXTURES/kata/<release>/<path>`,
/// by default `../shared/fixtures` beside the workspace.
#[cfg(test)]
pub(crate) fn kata_fixture(release: &str, path: &str) -> String {
    let root = std::env::var_os("KATA_REPRO_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
        });
    let file = root.join("kata").join(release).join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "fixture {}: {e}; set KATA_REPRO_FIXTURES to the fixtures directory",
            file.display()
        )
    })
}
