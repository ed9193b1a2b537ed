//! `kata-repro mirror`: bare mirrors of every git source a lockfile needs, which a fetch with
//! nothing but their mirrors.toml (offline) then reads, and which git itself finds sound.

mod common;

use std::path::Path;

use common::{
    Fixture, TAG, assert_code, exited, git, items, json, kata_repro, run_ok, tamper_loose_object,
};

fn mirror(f: &Fixture, dir: &Path) -> std::process::Output {
    f.lockfile_command("mirror")
        .arg("--json")
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap()
}

/// `cargo fetch` of a crate depending on the fixture's git dependency at its pinned commit, its
/// URL and its submodule's rewritten to the written mirrors (as `vendor` does).
fn cargo_fetches_from(f: &Fixture, dir: &Path) {
    let work = f.root().join("cargo-probe");
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(work.join("src/lib.rs"), "").unwrap();
    std::fs::write(
        work.join("Cargo.toml"),
        format!(
            "[package]\nname = \"probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\ndep = {{ git = \"{}\", rev = \"{}\" }}\n",
            common::DEP_URL,
            f.dep_commit
        ),
    )
    .unwrap();
    let mut gitconfig = String::new();
    for (url, repo) in [
        (common::DEP_URL, "github.com/example/dep-rs.git"),
        (common::CI_URL, "github.com/example/ci.git"),
    ] {
        // Both spellings, as `vendor` writes them: the longest match wins.
        gitconfig.push_str(&format!(
            "[url \"file://{}\"]\n\tinsteadOf = {url}\n\tinsteadOf = {url}.git\n",
            dir.join(repo).display()
        ));
    }
    let home = f.root().join("cargo-probe-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".gitconfig"), gitconfig).unwrap();
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".rustup"));
    run_ok(
        std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .arg("fetch")
            .current_dir(&work)
            .env("HOME", &home)
            .env("CARGO_HOME", home.join("cargo"))
            .env("RUSTUP_HOME", rustup_home)
            .env("CARGO_NET_OFFLINE", "false"),
        "cargo fetch",
    );
    let checkouts = home.join("cargo/git/checkouts");
    let ci_script = walkdir::WalkDir::new(&checkouts)
        .into_iter()
        .filter_map(Result::ok)
        .any(|e| e.file_name() == "ci.sh");
    assert!(
        ci_script,
        "the submodule is checked out under {}",
        checkouts.display()
    );
}

#[test]
fn mirrors_of_every_git_source_are_written_and_a_fetch_reads_them_offline() {
    let f = Fixture::new();
    let dir = f.root().join("carry/mirrors");
    let out = mirror(&f, &dir);
    assert_code(&out, 0);
    let v = json(&out);
    let upstreams: Vec<&str> = items(&v["mirrors"])
        .map(|m| m["upstream"].as_str().unwrap())
        .collect();
    // Kata, its git dependency, and the dependency's submodule.
    assert_eq!(upstreams.len(), 3, "{v}");
    for u in [common::KATA_URL, common::DEP_URL, common::CI_URL] {
        assert!(
            upstreams.iter().any(|x| x.trim_end_matches(".git") == u),
            "{u}: {v}"
        );
    }
    for m in items(&v["mirrors"]) {
        let repo = dir.join(m["path"].as_str().unwrap());
        // git's own check of every object and link.
        run_ok(
            std::process::Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(["fsck", "--full", "--strict"]),
            repo.display(),
        );
    }
    let kata = dir.join("github.com/example/kata-containers.git");
    assert_eq!(
        git(&kata, &["rev-parse", &format!("{TAG}^{{commit}}")]),
        f.kata_commit()
    );

    // cargo itself fetches the pinned git dependency, with its submodule, from the mirrors.
    cargo_fetches_from(&f, &dir);

    // Only the written mirrors, offline, into a new store.
    let store = f.root().join("carried-store");
    let out = kata_repro()
        .arg("--config")
        .arg(dir.join("mirrors.toml"))
        .args([
            "fetch",
            "--json",
            "--offline",
            "--skip",
            "toolchain,kernel",
            "--lockfile",
        ])
        .arg(&f.lockfile)
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(
        store
            .join("git")
            .join(f.kata_commit())
            .join("tree")
            .is_dir()
    );

    // A directory that holds something is refused before anything is read.
    let all = exited(&mirror(&f, &dir), 2);
    assert!(all.contains("is not empty"), "{all}");
}

#[test]
fn a_tampered_source_object_writes_no_mirrors() {
    let f = Fixture::new();
    let blob = git(&f.kata, &["rev-parse", &format!("{TAG}:README.md")]);
    tamper_loose_object(&f.kata, &blob, "blob", b"Kata fixture, with a backdoor\n");
    let carry = f.root().join("carry");
    let t = exited(&mirror(&f, &carry.join("mirrors")), 1);
    assert!(
        t.contains("corrupt or tampered") && t.contains(&blob),
        "{t}"
    );
    // Nothing half-written: no output directory, no staging left beside it.
    assert!(!carry.join("mirrors").exists());
    assert_eq!(std::fs::read_dir(&carry).unwrap().count(), 0);
}
