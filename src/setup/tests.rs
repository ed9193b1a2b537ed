use std::path::Path;

use super::*;

/// A recipe for x86_64 whose host section is `host` (TOML put before its other tables).
fn recipe_with(component: &str, host: &str) -> Recipe {
    crate::recipe::test_recipe(component, host, "", "")
}

fn recipe(component: &str, tools: &str, packages: &str) -> Recipe {
    recipe_with(
        component,
        &format!("host_packages = [{packages}]\n\n[host_tools]\n{tools}"),
    )
}

/// A dpkg database where `installed` (name, files) are installed.
fn dpkg(installed: &[(&str, &[&str])]) -> (tempfile::TempDir, Dpkg) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("info")).unwrap();
    let mut status = String::new();
    for (name, files) in installed {
        status.push_str(&format!(
            "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n"
        ));
        std::fs::write(
            dir.path().join(format!("info/{name}.list")),
            files.join("\n") + "\n",
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("status"), status).unwrap();
    let d = Dpkg::load_from(dir.path());
    (dir, d)
}

fn path_with(programs: &[&str]) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for p in programs {
        let f = dir.path().join(p);
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

#[test]
fn every_missing_tool_and_package_is_named_with_one_install_line() {
    let a = recipe(
        "a",
        r#"here-pkg = ["here"]
gone-pkg = ["gone-one", "gone-two"]"#,
        r#""libthere-dev", "libgone-dev""#,
    );
    let b = recipe("b", r#"other-pkg = ["gone-three"]"#, r#""libgone-dev""#);
    let bin = path_with(&["here"]);
    let (_db, dpkg) = dpkg(&[("libthere-dev", &[])]);
    let s = survey(&[&a, &b], "x86_64", &bin.path().to_string_lossy(), &dpkg);
    let missing: Vec<&str> = s.missing_tools().map(|t| t.name.as_str()).collect();
    assert_eq!(missing, ["gone-one", "gone-three", "gone-two"]);
    let gone: Vec<&str> = s.missing_packages().map(|p| p.name.as_str()).collect();
    assert_eq!(gone, ["libgone-dev"]);
    assert_eq!(s.missing_packages().next().unwrap().components, ["a", "b"]);
    assert_eq!(
        s.to_install().into_iter().collect::<Vec<_>>(),
        ["gone-pkg", "libgone-dev", "other-pkg"]
    );
    let message = preflight(&[&a, &b], "x86_64", &bin.path().to_string_lossy(), &dpkg)
        .unwrap_err()
        .to_string();
    for needle in [
        "host tool gone-one (a): not on PATH; Debian package gone-pkg",
        "host tool gone-three (b): not on PATH; Debian package other-pkg",
        "host package libgone-dev (a, b): not installed",
        "apt-get install -y --no-install-recommends gone-pkg libgone-dev other-pkg",
    ] {
        assert!(message.contains(needle), "{needle} not in:\n{message}");
    }
    assert!(!message.contains("here-pkg"), "{message}");
}

#[test]
fn a_complete_host_passes() {
    let a = recipe("a", r#"here-pkg = ["here"]"#, r#""libthere-dev""#);
    let bin = path_with(&["here"]);
    let (_db, dpkg) = dpkg(&[("libthere-dev", &[])]);
    preflight(&[&a], "x86_64", &bin.path().to_string_lossy(), &dpkg).unwrap();
    // A recipe for another architecture needs nothing here.
    let s = survey(&[&a], "aarch64", "", &dpkg);
    assert!(s.tools.is_empty() && s.packages.is_empty());
}

#[test]
fn a_program_installed_off_path_asks_for_path_not_a_package() {
    let sh = Path::new("/usr/bin/sh");
    assert!(sh.exists(), "this test reads /usr/bin/sh");
    let a = recipe("a", r#"dash = ["sh"]"#, "");
    let (_db, dpkg) = dpkg(&[("dash", &["/usr/bin/sh"])]);
    let empty = tempfile::tempdir().unwrap();
    let err = preflight(&[&a], "x86_64", &empty.path().to_string_lossy(), &dpkg).unwrap_err();
    assert!(err.0.to_install().is_empty());
    let message = err.to_string();
    assert!(
        message.contains("host tool sh (a): installed at /usr/bin/sh, which is not on PATH"),
        "{message}"
    );
    assert!(message.contains("add /usr/bin to PATH"), "{message}");
    assert!(!message.contains("apt-get"), "{message}");
}

#[test]
fn bare_tool_names_say_the_recipe_names_no_package() {
    let r = recipe_with("bare", r#"host_tools = ["no-such-tool-x"]"#);
    let message = preflight(&[&r], "x86_64", "", &Dpkg::default())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("no-such-tool-x (bare): not on PATH, and the recipe names no package"),
        "{message}"
    );
    assert!(
        message.contains("under the recipe's [host_tools]"),
        "{message}"
    );
}

#[test]
fn apt_commands_update_then_install() {
    let pkgs: BTreeSet<String> = ["cpio".to_owned(), "bc".to_owned()].into();
    assert_eq!(
        shell_line(&apt_commands(&pkgs, true)),
        "apt-get update && apt-get install -y --no-install-recommends bc cpio"
    );
    assert_eq!(
        shell_line(&apt_commands(&pkgs, false)),
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends bc cpio"
    );
    assert!(apt_commands(&BTreeSet::new(), true).is_empty());
}
