//! SBOMs, provenance and signatures of fixture builds, checked with independent tools: the
//! CycloneDX 1.5 JSON schema through `cyclonedx-python-lib`'s strict validator, and OpenSSL for
//! the ed25519 signatures.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use common::project::{AGENT_RS, HELLO_GO, Project};
use common::{
    assert_code, cyclonedx_validate, ed25519_key, ed25519_key_pair, exited, items, json,
    kata_repro, one_item, string, text,
};

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn boms(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".cdx.json"))
        .collect();
    v.sort();
    v
}

fn components(bom: &serde_json::Value) -> Vec<&serde_json::Value> {
    items(&bom["components"]).collect()
}

/// Each element of the JSON array `v` as its two strings at the JSON pointers `a` and `b`.
fn string_pairs(v: &serde_json::Value, a: &str, b: &str) -> Vec<(String, String)> {
    let at = |x: &serde_json::Value, pointer: &str| {
        x.pointer(pointer).unwrap().as_str().unwrap().to_owned()
    };
    items(v).map(|x| (at(x, a), at(x, b))).collect()
}

#[test]
fn sboms_and_provenance_validate_and_are_identical_across_builds() {
    let p = Project::new(&[("hello", HELLO_GO), ("agent", AGENT_RS)]);
    let first = p.build_with_umask("store-a", "out-a", &["--json"], Some("022"));
    assert_code(&first, 0);
    let second = p.build_with_umask(
        "store-b/deeper",
        "out-b",
        &["--json", "--no-cache"],
        Some("077"),
    );
    assert_code(&second, 0);
    let (a, b) = (p.path("out-a"), p.path("out-b"));
    let records = [
        "agent.cdx.json",
        "hello.cdx.json",
        "kata.cdx.json",
        "provenance.intoto.json",
    ];
    for f in records {
        assert_eq!(
            String::from_utf8_lossy(&std::fs::read(a.join(f)).unwrap()),
            String::from_utf8_lossy(&std::fs::read(b.join(f)).unwrap()),
            "{f} differs between two builds"
        );
    }
    let v = json(&first);
    assert_eq!(v["records"].as_array().unwrap().len(), 4, "{v}");
    // SBOMs and provenance describe the build; they are not artifacts of it.
    let manifest = read_json(&a.join("manifest.json"));
    assert_eq!(manifest["artifacts"].as_array().unwrap().len(), 2);

    // The official schema, through an independent validator.
    let files = boms(&a);
    assert_eq!(files.len(), 3);
    let checked = exited(&cyclonedx_validate(&files), 0);
    assert_eq!(checked.matches(": valid").count(), 3, "{checked}");
    // … which does catch a broken BOM: a component without a name, of a type that does not exist.
    let mut broken = read_json(&a.join("agent.cdx.json"));
    broken["components"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    broken["components"][1]["type"] = "program".into();
    let broken_path = p.path("broken.cdx.json");
    std::fs::write(&broken_path, serde_json::to_vec_pretty(&broken).unwrap()).unwrap();
    let refused = exited(&cyclonedx_validate(&[broken_path]), 1);
    assert!(refused.contains("INVALID"), "{refused}");

    let arch = std::env::consts::ARCH;
    let agent = read_json(&a.join("agent.cdx.json"));
    assert_eq!(agent["specVersion"], "1.5");
    assert_eq!(agent["bomFormat"], "CycloneDX");
    // Deterministic metadata: the source commit's time, a serial derived from the manifest.
    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(&p.fixture.lockfile).unwrap()).unwrap();
    let epoch = lock["source"]["commit_time"].as_integer().unwrap();
    let stamp = agent["metadata"]["timestamp"].as_str().unwrap();
    let date = Command::new("date")
        .args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    assert_eq!(stamp, String::from_utf8_lossy(&date.stdout).trim());
    let serial = agent["serialNumber"].as_str().unwrap();
    assert!(
        serial.starts_with("urn:uuid:") && &serial[23..24] == "5",
        "a UUIDv5: {serial}"
    );
    let kata = read_json(&a.join("kata.cdx.json"));
    assert_ne!(
        kata["serialNumber"], agent["serialNumber"],
        "each BOM has its own serial"
    );

    // The subject is the component, with its artifact and the artifact's sha256.
    let subject = &agent["metadata"]["component"];
    assert_eq!(subject["bom-ref"], "kata:agent");
    let file = &subject["components"][0];
    assert_eq!(file["type"], "file");
    assert_eq!(file["name"], format!("{arch}/agent/agent"));
    let artifact = items(&manifest["artifacts"])
        .find(|x| x["path"] == format!("{arch}/agent/agent"))
        .unwrap();
    assert_eq!(file["hashes"][0]["alg"], "SHA-256");
    assert_eq!(file["hashes"][0]["content"], artifact["sha256"]);

    // Rust: the path crate and its git dependency, with repository and commit; the graph.
    let crates = components(&agent);
    let names: Vec<&str> = crates.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["agent", "dep"], "{names:?}");
    let dep = crates[1];
    let purl = dep["purl"].as_str().unwrap();
    assert!(
        purl.starts_with("pkg:cargo/dep@0.1.0?vcs_url=git%2B")
            && purl.contains(&p.fixture.dep_commit),
        "{purl}"
    );
    assert_eq!(dep["externalReferences"][0]["type"], "vcs");
    let path_crate = crates[0]["purl"].as_str().unwrap();
    assert!(path_crate.ends_with("#src/agent"), "{path_crate}");
    let deps = agent["dependencies"].as_array().unwrap();
    let of = |r: &str| deps.iter().find(|d| d["ref"] == r).unwrap()["dependsOn"].clone();
    assert_eq!(of("kata:agent"), serde_json::json!([path_crate]));
    assert_eq!(of(path_crate), serde_json::json!([purl]));

    // Go: the module with its h1: as goModuleH1, never as a SHA-256.
    let hello = read_json(&a.join("hello.cdx.json"));
    let greet = components(&hello)
        .into_iter()
        .find(|c| c["name"] == "example.org/greet")
        .expect("the vendored module");
    assert_eq!(greet["purl"], "pkg:golang/example.org/greet@v1.0.0");
    assert!(
        greet.get("hashes").is_none(),
        "an h1: is not a SHA-256: {greet}"
    );
    let props = greet["properties"].as_array().unwrap();
    let h1 = props.iter().find(|x| x["name"] == "goModuleH1").unwrap()["value"]
        .as_str()
        .unwrap();
    let sum_line = props
        .iter()
        .find(|x| x["name"] == "kata-repro:go.sum")
        .unwrap()["value"]
        .as_str()
        .unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sum_line.strip_prefix("h1:").unwrap())
        .unwrap();
    assert_eq!(h1, hex::encode(raw));

    // The release BOM holds both components and their dependencies once each.
    let refs: Vec<&str> = components(&kata)
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    assert!(
        refs.contains(&"kata:agent") && refs.contains(&"kata:hello"),
        "{refs:?}"
    );
    assert!(refs.contains(&purl));
    let mut sorted = refs.clone();
    sorted.sort();
    assert_eq!(refs, sorted, "components are sorted");

    // Provenance: every artifact a subject, the source and the dependencies resolved.
    let prov = read_json(&a.join("provenance.intoto.json"));
    assert_eq!(prov["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(prov["predicateType"], "https://slsa.dev/provenance/v1");
    let subjects = string_pairs(&prov["subject"], "/name", "/digest/sha256");
    let artifacts = string_pairs(&manifest["artifacts"], "/path", "/sha256");
    assert_eq!(subjects, artifacts);
    let def = &prov["predicate"]["buildDefinition"];
    assert_eq!(def["externalParameters"]["arch"], arch);
    assert_eq!(
        def["externalParameters"]["components"],
        serde_json::json!(["agent", "hello"])
    );
    let resolved = def["resolvedDependencies"].as_array().unwrap();
    let digest_of = |key: &str| -> Vec<&serde_json::Value> {
        resolved
            .iter()
            .filter(|d| d["digest"].get(key).is_some())
            .collect()
    };
    let commit = lock["source"]["commit"].as_str().unwrap();
    assert!(
        digest_of("gitCommit")
            .iter()
            .any(|d| d["digest"]["gitCommit"] == commit)
    );
    assert!(
        digest_of("gitCommit")
            .iter()
            .any(|d| d["digest"]["gitCommit"] == p.fixture.dep_commit.as_str())
    );
    assert!(
        digest_of("goModuleH1")
            .iter()
            .any(|d| d["digest"]["goModuleH1"] == h1)
    );
    assert!(
        resolved.iter().any(|d| d["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("toolchain:go"))),
        "the Go toolchain: {resolved:?}"
    );
    assert_eq!(
        prov["predicate"]["runDetails"]["builder"]["version"]["kata-repro"],
        env!("CARGO_PKG_VERSION")
    );
}

/// `kata-repro <command> --key KEY DIR`.
fn with_key(command: &[&str], key: &Path, dir: &Path) -> Output {
    kata_repro()
        .args(command)
        .arg("--key")
        .arg(key)
        .arg(dir)
        .output()
        .unwrap()
}

fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
    out
}

#[test]
fn signatures_verify_and_catch_a_tampered_manifest_and_a_wrong_subject() {
    let p = Project::new(&[("hello", HELLO_GO)]);
    assert_code(&p.build("store", "out", &[]), 0);
    let out = p.path("out");
    let key = p.path("key.pem");
    let public = p.path("key.pub.pem");
    ed25519_key_pair(&key, &public);

    let signed = with_key(&["sign"], &key, &out);
    assert_code(&signed, 0);
    let ok = exited(&with_key(&["verify-signature"], &public, &out), 0);
    assert!(ok.contains("0 failed"), "{ok}");

    // OpenSSL agrees: each signature is ed25519 over DSSE's pre-authentication encoding.
    for envelope in ["manifest.dsse.json", "provenance.dsse.json"] {
        let env = read_json(&out.join(envelope));
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
        let ty = env["payloadType"].as_str().unwrap();
        let mut pae = format!("DSSEv1 {} {ty} {} ", ty.len(), payload.len()).into_bytes();
        pae.extend_from_slice(&payload);
        let (msg, sig) = (p.path("pae.bin"), p.path("sig.bin"));
        std::fs::write(&msg, &pae).unwrap();
        std::fs::write(
            &sig,
            b64.decode(env["signatures"][0]["sig"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        let verified = openssl(&[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            public.to_str().unwrap(),
            "-rawin",
            "-in",
            msg.to_str().unwrap(),
            "-sigfile",
            sig.to_str().unwrap(),
        ]);
        assert!(
            text(&verified).contains("Signature Verified Successfully"),
            "{}",
            text(&verified)
        );
        // The key id is the sha256 of the public key's DER.
        let der = openssl(&[
            "pkey",
            "-pubin",
            "-in",
            public.to_str().unwrap(),
            "-outform",
            "DER",
        ]);
        assert_eq!(
            env["signatures"][0]["keyid"],
            common::sha256_hex(&der.stdout)
        );
    }
    let payload = b64_payload(&out.join("manifest.dsse.json"));
    let signed_digest: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        signed_digest["sha256"],
        common::sha256_hex(&std::fs::read(out.join("manifest.json")).unwrap())
    );

    // A manifest changed after signing fails, exit 1, naming it.
    let manifest = out.join("manifest.json");
    let original = std::fs::read(&manifest).unwrap();
    let tampered =
        String::from_utf8(original.clone())
            .unwrap()
            .replacen("\"release\"", "\"release\" ", 1);
    std::fs::write(&manifest, tampered).unwrap();
    let bad = with_key(&["--json", "verify-signature"], &public, &out);
    assert_code(&bad, 1);
    let v = json(&bad);
    let failed = one_item(&v["checks"], |c| c["ok"] == false);
    assert_eq!(failed["what"], "manifest.json");
    assert!(
        string(&failed["detail"]).contains("changed after it was signed"),
        "{v}"
    );
    std::fs::write(&manifest, &original).unwrap();

    // An artifact whose bytes are not the provenance's subject digest is reported by name.
    let arch = std::env::consts::ARCH;
    let hello = out.join(format!("{arch}/hello/hello"));
    let bytes = std::fs::read(&hello).unwrap();
    let mut changed = bytes.clone();
    changed[100] ^= 1;
    std::fs::write(&hello, &changed).unwrap();
    let bad = exited(&with_key(&["verify-signature"], &public, &out), 1);
    assert!(
        bad.contains(&format!("FAIL subject {arch}/hello/hello"))
            && bad.contains("the file hashes to"),
        "{bad}"
    );
    std::fs::write(&hello, &bytes).unwrap();

    // A provenance envelope whose payload was replaced fails; so does another key.
    let env_path = out.join("provenance.dsse.json");
    let original_env = std::fs::read(&env_path).unwrap();
    let mut env = read_json(&env_path);
    let mut statement: serde_json::Value = serde_json::from_slice(&b64_payload(&env_path)).unwrap();
    statement["subject"][0]["digest"]["sha256"] = common::sha256_hex(&changed).into();
    env["payload"] = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&statement).unwrap())
        .into();
    std::fs::write(&env_path, serde_json::to_vec(&env).unwrap()).unwrap();
    let bad = exited(&with_key(&["verify-signature"], &public, &out), 1);
    assert!(bad.contains("no signature by key"), "{bad}");
    std::fs::write(&env_path, original_env).unwrap();
    let other = p.path("other.pem");
    ed25519_key(&other);
    let bad = with_key(&["verify-signature"], &other, &out);
    assert_code(&bad, 1);

    // Bad input: a key that is not ed25519 PEM, a directory that was never signed.
    let junk = p.path("junk.pem");
    std::fs::write(&junk, "not a key\n").unwrap();
    let bad = exited(&with_key(&["sign"], &junk, &out), 2);
    assert!(bad.contains("openssl genpkey -algorithm ed25519"), "{bad}");
    let unsigned = p.path("unsigned");
    std::fs::create_dir_all(&unsigned).unwrap();
    let bad = with_key(&["verify-signature"], &public, &unsigned);
    assert_code(&bad, 2);
}

fn b64_payload(envelope: &Path) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(read_json(envelope)["payload"].as_str().unwrap())
        .unwrap()
}

#[test]
fn the_sbom_command_describes_the_dependency_set_without_building() {
    let p = Project::new(&[("hello", HELLO_GO), ("agent", AGENT_RS)]);
    let run = |out: &str, extra: &[&str]| {
        p.command("sbom", "store")
            .arg("--out")
            .arg(p.path(out))
            .args(extra)
            .output()
            .unwrap()
    };
    let made = exited(&run("sbom", &[]), 0);
    assert!(made.contains("3 SBOMs (CycloneDX 1.5)"), "{made}");
    // Nothing was built: the store holds no action results.
    let actions = p.path("store/actions");
    assert!(!actions.exists() || std::fs::read_dir(&actions).unwrap().next().is_none());
    let files = boms(&p.path("sbom"));
    assert_eq!(files.len(), 3);
    assert_code(&cyclonedx_validate(&files), 0);

    // The same dependency set as a build's, without artifacts.
    assert_code(&p.build("store", "out", &[]), 0);
    for f in ["agent.cdx.json", "hello.cdx.json"] {
        let plain = read_json(&p.path("sbom").join(f));
        let built = read_json(&p.path("out").join(f));
        assert_eq!(plain["components"], built["components"], "{f}");
        assert_eq!(plain["dependencies"], built["dependencies"], "{f}");
        assert!(plain["metadata"]["component"].get("components").is_none());
    }
    // Again: the same bytes.
    let again = run("sbom-again", &[]);
    assert_code(&again, 0);
    for f in ["agent.cdx.json", "hello.cdx.json", "kata.cdx.json"] {
        assert_eq!(
            std::fs::read(p.path("sbom").join(f)).unwrap(),
            std::fs::read(p.path("sbom-again").join(f)).unwrap()
        );
    }

    // Bad input: an unknown component, a build's directory as --out, broken templates.
    let bad = exited(&run("sbom2", &["--component", "nope"]), 2);
    assert!(bad.contains("no recipe for component `nope`"), "{bad}");
    let bad = run("out", &[]);
    assert_code(&bad, 2);
    let templates = p.path("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("kata.toml"),
        "[release]\nname = \"x\"\nlicence = [\"MIT\"]\n",
    )
    .unwrap();
    let bad = exited(
        &run("sbom3", &["--sbom-templates", templates.to_str().unwrap()]),
        2,
    );
    assert!(
        bad.contains("kata.toml:3") && bad.contains("licence"),
        "{bad}"
    );
    assert!(!p.path("sbom3").exists());
    // Templates are merged in.
    std::fs::write(
        templates.join("kata.toml"),
        "[supplier]\nname = \"Example Releases\"\n[release]\nname = \"example-kata\"\n\
         [components.hello]\nname = \"hello-bin\"\nlicenses = [\"MIT\"]\n",
    )
    .unwrap();
    assert_code(
        &run("sbom4", &["--sbom-templates", templates.to_str().unwrap()]),
        0,
    );
    let hello = read_json(&p.path("sbom4/hello.cdx.json"));
    assert_eq!(hello["metadata"]["supplier"]["name"], "Example Releases");
    assert_eq!(hello["metadata"]["component"]["name"], "hello-bin");
    assert_eq!(
        hello["metadata"]["component"]["licenses"][0]["license"]["id"],
        "MIT"
    );
    assert_eq!(
        read_json(&p.path("sbom4/kata.cdx.json"))["metadata"]["component"]["name"],
        "example-kata"
    );
}
