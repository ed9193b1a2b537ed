//! `cargo xtask bench verify`: kata-repro's verification against the tools that do the same
//! today, on the same bytes, in one run.
//!
//! The limit is the machine's: `openssl dgst -sha256` (SHA-NI) over the same files, two
//! processes at a time. Each hashing path is measured against it:
//! - Rust: a generated Cargo.lock whose crates are in the store. `kata-repro verify cargo`
//!   re-hashes them all (`sha256sum` over them is shown too), and `kata-repro store verify`
//!   re-hashes the same objects.
//! - Kernel: one kernel-sized tarball alone in a store, re-hashed by `store verify`, as every
//!   use of the kernel re-hashes it. One stream: its limit is one core's.
//! - Go: a generated module cache (made by `go mod download` from a `file://` proxy).
//!   `go mod verify` and `kata-repro verify go` check the same zips and extracted trees.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};

pub struct Options {
    pub dir: PathBuf,
    pub crates_mib: usize,
    pub go_mib: usize,
    pub runs: usize,
    pub go: PathBuf,
    pub kernel_mib: usize,
}

/// Deterministic incompressible bytes.
pub fn fill(buf: &mut [u8], seed: u64) {
    let mut s = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    for chunk in buf.chunks_mut(8) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let b = s.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Deterministic Go-like source text, compressible as real module contents are.
fn source_text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "func",
        "return",
        "if",
        "err",
        "!=",
        "nil",
        "{",
        "}",
        "for",
        "range",
        "ctx",
        "context.Context",
        "string",
        "int",
        "struct",
        "type",
        "var",
        ":=",
        "package",
        "import",
        "fmt.Errorf",
        "\"%w\"",
        "append",
        "len",
        "make",
        "map",
        "chan",
        "select",
        "case",
        "default",
        "go",
        "defer",
    ];
    let mut s = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let w = WORDS[(s % WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        if s.is_multiple_of(11) {
            out.extend_from_slice(format!(" ident{}", s % 9973).as_bytes());
        }
        out.push(if s.is_multiple_of(7) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// Wall time and peak RSS (KiB) of a command, best of `runs` after one warm-up.
fn measure(runs: usize, make: impl FnMut() -> Command) -> Result<(f64, u64)> {
    measure_exiting(runs, &[0], make)
}

/// As [`measure`], for a command whose exit code is one of `codes` when it works (a scan that
/// finds something exits 1).
pub fn measure_exiting(
    runs: usize,
    codes: &[i32],
    mut make: impl FnMut() -> Command,
) -> Result<(f64, u64)> {
    let mut best = f64::MAX;
    let mut rss = 0;
    for i in 0..=runs {
        let cmd = make();
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let mut timed = Command::new("/usr/bin/time");
        timed.args(["-f", "%M"]).arg(&program).args(&args);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => timed.env(k, v),
                None => timed.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            timed.current_dir(d);
        }
        let start = Instant::now();
        let out = timed.output()?;
        let secs = start.elapsed().as_secs_f64();
        ensure!(
            out.status.code().is_some_and(|c| codes.contains(&c)),
            "{:?} failed: {}",
            program,
            String::from_utf8_lossy(&out.stderr)
        );
        if i > 0 {
            best = best.min(secs);
            let stderr = String::from_utf8_lossy(&out.stderr);
            rss = rss.max(
                stderr
                    .lines()
                    .last()
                    .and_then(|l| l.trim().parse().ok())
                    .unwrap_or(0),
            );
        }
    }
    Ok((best, rss))
}

/// Bytes per second one core hashes with openssl's SHA-NI code on 1 MiB blocks in memory
/// (`openssl speed`): the compute-only ceiling, with no file read at all.
pub fn sha_ni_per_core() -> Result<f64> {
    let out = Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "1",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kilo = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("sha256"))
        .and_then(|rest| rest.trim().strip_suffix('k'))
        .and_then(|n| n.parse::<f64>().ok())
        .context("openssl speed printed no sha256 line")?;
    Ok(kilo * 1000.0)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Cargo.lock of `n` registry crates and the store holding their archives.
fn cargo_corpus(dir: &Path, mib: usize) -> Result<(PathBuf, PathBuf, Vec<PathBuf>)> {
    let store = dir.join("store");
    let objects = store.join("objects/sha256");
    std::fs::create_dir_all(&objects)?;
    let mut lock = String::from("version = 4\n");
    let mut files = Vec::new();
    let sizes = [256 * 1024, 512 * 1024, 1024 * 1024, 2 * 1024 * 1024];
    let (mut total, mut i) = (0usize, 0usize);
    while total < mib * 1024 * 1024 {
        let size = sizes[i % sizes.len()];
        let mut data = vec![0u8; size];
        fill(&mut data, i as u64 + 1);
        let sum = sha256_hex(&data);
        let path = objects.join(&sum);
        std::fs::write(&path, &data)?;
        lock.push_str(&format!(
            "\n[[package]]\nname = \"bench-crate-{i}\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{sum}\"\n"
        ));
        files.push(path);
        total += size;
        i += 1;
    }
    let lock_path = dir.join("Cargo.lock");
    std::fs::write(&lock_path, lock)?;
    Ok((lock_path, store, files))
}

/// A module cache of generated modules, and the main module whose go.sum pins them.
fn go_corpus(dir: &Path, mib: usize, go: &Path) -> Result<(PathBuf, PathBuf)> {
    let proxy = dir.join("proxy");
    let per_module = 5 * 1024 * 1024;
    // Source files of about 8 KiB, as real modules hold.
    let files_per_module = 640;
    let modules = (mib * 1024 * 1024).div_ceil(per_module);
    let mut requires = String::new();
    let mut imports = String::new();
    for m in 0..modules {
        let path = format!("bench.example/m{m:03}");
        let version = "v1.0.0";
        let v = proxy.join(&path).join("@v");
        std::fs::create_dir_all(&v)?;
        std::fs::write(v.join("list"), format!("{version}\n"))?;
        std::fs::write(
            v.join(format!("{version}.info")),
            format!("{{\"Version\":\"{version}\",\"Time\":\"2026-01-01T00:00:00Z\"}}"),
        )?;
        let gomod = format!("module {path}\n\ngo 1.21\n");
        std::fs::write(v.join(format!("{version}.mod")), &gomod)?;
        let mut zip = zip::ZipWriter::new(std::fs::File::create(v.join(format!("{version}.zip")))?);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let prefix = format!("{path}@{version}");
        zip.start_file(format!("{prefix}/go.mod"), opts)?;
        zip.write_all(gomod.as_bytes())?;
        zip.start_file(format!("{prefix}/m.go"), opts)?;
        zip.write_all(format!("package m{m:03}\n").as_bytes())?;
        for f in 0..files_per_module {
            let data = source_text(per_module / files_per_module, (m * 1000 + f) as u64 + 7);
            zip.start_file(format!("{prefix}/src/d{}/file{f:03}.go.txt", f / 64), opts)?;
            zip.write_all(&data)?;
        }
        zip.finish()?;
        requires.push_str(&format!("\t{path} {version}\n"));
        imports.push_str(&format!("\t_ \"{path}\"\n"));
    }
    let main = dir.join("main");
    std::fs::create_dir_all(&main)?;
    std::fs::write(
        main.join("go.mod"),
        format!("module bench.example/main\n\ngo 1.21\n\nrequire (\n{requires})\n"),
    )?;
    std::fs::write(
        main.join("main.go"),
        format!("package main\n\nimport (\n{imports})\n\nfunc main() {{}}\n"),
    )?;
    let out = go_command(go, dir, &main).args(["mod", "tidy"]).output()?;
    ensure!(
        out.status.success(),
        "go mod tidy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((main, dir.join("modcache")))
}

fn go_command(go: &Path, dir: &Path, main: &Path) -> Command {
    let mut cmd = Command::new(go);
    cmd.current_dir(main)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir)
        .env("GOPROXY", format!("file://{}", dir.join("proxy").display()))
        .env("GOSUMDB", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOMODCACHE", dir.join("modcache"))
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"));
    cmd
}

pub fn verify(bin: &Path, o: &Options) -> Result<()> {
    std::fs::create_dir_all(&o.dir)?;
    let cargo_dir = o.dir.join("cargo");
    let go_dir = o.dir.join("go");
    let kernel_dir = o.dir.join("kernel");
    for d in [&cargo_dir, &go_dir, &kernel_dir] {
        if d.exists() {
            make_writable(d);
            std::fs::remove_dir_all(d)?;
        }
        std::fs::create_dir_all(d)?;
    }
    eprintln!(
        "generating {} MiB of crates and {} MiB of Go modules in {}",
        o.crates_mib,
        o.go_mib,
        o.dir.display()
    );
    let (lock, store, files) = cargo_corpus(&cargo_dir, o.crates_mib)?;
    let bytes: u64 = files
        .iter()
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let list = cargo_dir.join("files.txt");
    std::fs::write(
        &list,
        files
            .iter()
            .map(|f| format!("{}\n", f.display()))
            .collect::<String>(),
    )?;
    let (main, modcache) =
        go_corpus(&go_dir, o.go_mib, &o.go).context("building the Go module cache")?;
    let go_zip_bytes: u64 = walk_size(&modcache.join("cache/download"));
    // What both tools hash: the content of every zip and every extracted tree.
    let go_bytes = 2 * (o.go_mib.div_ceil(5) * 5 * 1024 * 1024) as u64;

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    // The limit: openssl's SHA-NI code over the same files, two processes at a time (each
    // reading and hashing its files in order, as fast as the machine's two cores go).
    let openssl = |list: &Path, parallel: usize| {
        let list = list.to_owned();
        move || {
            let mut c = Command::new("sh");
            c.args([
                "-c",
                &format!(
                    "xargs -a {} -n 64 -P {parallel} openssl dgst -sha256 > /dev/null",
                    list.display()
                ),
            ]);
            c
        }
    };
    let (sha256sum, _) = measure(o.runs, || {
        let mut c = Command::new("sh");
        c.args([
            "-c",
            &format!(
                "xargs -a {} -n 64 -P 2 sha256sum > /dev/null",
                list.display()
            ),
        ]);
        c
    })?;
    let (crates_one, _) = measure(o.runs, openssl(&list, 1))?;
    let (crates_limit, _) = measure(o.runs, openssl(&list, 2))?;
    let (ours, ours_rss) = measure(o.runs, || {
        let mut c = Command::new(bin);
        c.args(["verify", "cargo", "--offline", "--lock"])
            .arg(&lock)
            .arg("--store")
            .arg(&store);
        c.stdout(std::process::Stdio::null());
        c
    })?;
    let (store_verify, store_rss) = measure(o.runs, || {
        let mut c = Command::new(bin);
        c.args(["store", "verify", "--store"]).arg(&store);
        c.stdout(std::process::Stdio::null());
        c
    })?;

    // A kernel-sized tarball, alone in a store: one stream, so its limit is one core's.
    let kernel_store = o.dir.join("kernel/store");
    let kernel_bytes = (o.kernel_mib * 1024 * 1024) as u64;
    let kernel_list = o.dir.join("kernel/files.txt");
    {
        let objects = kernel_store.join("objects/sha256");
        std::fs::create_dir_all(&objects)?;
        let mut data = vec![0u8; kernel_bytes as usize];
        fill(&mut data, 0x6b65726e);
        let path = objects.join(sha256_hex(&data));
        std::fs::write(&path, &data)?;
        std::fs::write(&kernel_list, format!("{}\n", path.display()))?;
    }
    let (kernel_limit, _) = measure(o.runs, openssl(&kernel_list, 2))?;
    let (kernel, kernel_rss) = measure(o.runs, || {
        let mut c = Command::new(bin);
        c.args(["store", "verify", "--store"]).arg(&kernel_store);
        c.stdout(std::process::Stdio::null());
        c
    })?;

    // Go: every zip, and every file of every extracted tree, as both tools read them.
    let go_list = go_dir.join("files.txt");
    let go_files = go_files(&modcache);
    let go_file_bytes: u64 = go_files
        .iter()
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    std::fs::write(
        &go_list,
        go_files
            .iter()
            .map(|f| format!("{}\n", f.display()))
            .collect::<String>(),
    )?;
    let (go_limit, _) = measure(o.runs, openssl(&go_list, 2))?;
    let (gomv, gomv_rss) = measure(o.runs, || {
        let mut c = go_command(&o.go, &go_dir, &main);
        c.args(["mod", "verify"]);
        c
    })?;
    let (ours_go, ours_go_rss) = measure(o.runs, || {
        let mut c = Command::new(bin);
        c.args(["verify", "go", "--sum"])
            .arg(main.join("go.sum"))
            .arg("--modcache")
            .arg(&modcache);
        c.stdout(std::process::Stdio::null());
        c
    })?;

    println!(
        "verify benchmark, best of {} runs after a warm-up (page cache warm), {} cores",
        o.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "crates: {} archives, {:.0} MiB; kernel: one {:.0} MiB tarball; Go: {} modules of {:.0} MiB of source text, {:.0} MiB deflated, each checked as zip and as extracted tree ({} files, {:.0} MiB on disk)",
        files.len(),
        mib(bytes),
        mib(kernel_bytes),
        o.go_mib.div_ceil(5),
        mib(go_bytes / 2),
        mib(go_zip_bytes),
        go_files.len(),
        mib(go_file_bytes),
    );
    println!(
        "the limit: `openssl dgst -sha256` (SHA-NI) over the same files, two processes at a time"
    );
    println!();
    println!(
        "{:<26} {:>10} {:>22} {:>9} {:>8} {:>9}",
        "bench", "kata-repro", "peer", "limit", "ratio", "max RSS"
    );
    let row = |name: &str, secs: f64, peer: Option<(&str, f64)>, limit: f64, rss: u64| {
        let peer = peer.map_or(String::from("-"), |(n, p)| format!("{n} {p:.2} s"));
        println!(
            "{name:<26} {:>8.2} s {peer:>22} {limit:>7.2} s {:>7.0}% {:>5} MiB",
            secs,
            100.0 * limit / secs,
            rss / 1024
        );
    };
    row(
        "verify cargo",
        ours,
        Some(("sha256sum", sha256sum)),
        crates_limit,
        ours_rss,
    );
    row("store verify", store_verify, None, crates_limit, store_rss);
    row(
        "store verify (kernel)",
        kernel,
        None,
        kernel_limit,
        kernel_rss,
    );
    row(
        "verify go",
        ours_go,
        Some(("go mod verify", gomv)),
        go_limit,
        ours_go_rss,
    );
    println!();
    println!(
        "openssl, one process: {crates_one:.2} s over the crates ({:.0} MiB/s); two: {crates_limit:.2} s ({:.0} MiB/s); go mod verify max RSS {} MiB",
        mib(bytes) / crates_one,
        mib(bytes) / crates_limit,
        gomv_rss / 1024
    );
    let per_core = sha_ni_per_core()?;
    println!(
        "compute only (`openssl speed`, {:.0} MiB/s per core, no file read): the crates in {:.2} s on two cores, the kernel tarball in {:.2} s on one",
        per_core / (1024.0 * 1024.0),
        bytes as f64 / (2.0 * per_core),
        kernel_bytes as f64 / per_core
    );
    let goal = |name: &str, ratio: f64, goal: f64, unit: &str| {
        let met = if ratio >= goal { "met" } else { "NOT met" };
        println!("{name}: {ratio:.2}{unit} (goal >= {goal}{unit}): {met}");
    };
    goal(
        "verify cargo vs the limit",
        100.0 * crates_limit / ours,
        90.0,
        "%",
    );
    goal(
        "store verify vs the limit",
        100.0 * crates_limit / store_verify,
        90.0,
        "%",
    );
    goal(
        "store verify (one kernel tarball) vs the limit",
        100.0 * kernel_limit / kernel,
        90.0,
        "%",
    );
    goal(
        "verify go vs the limit",
        100.0 * go_limit / ours_go,
        90.0,
        "%",
    );
    goal("verify go vs go mod verify", gomv / ours_go, 10.0, "x");
    make_writable(&go_dir);
    Ok(())
}

/// The zips and the files of the extracted trees of a module cache.
fn go_files(modcache: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![modcache.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() {
                let in_download = p
                    .strip_prefix(modcache)
                    .is_ok_and(|r| r.starts_with("cache"));
                if !in_download || p.extension().is_some_and(|x| x == "zip") {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

fn walk_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "zip") {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

/// Go leaves its module cache read-only.
fn make_writable(dir: &Path) {
    let _ = Command::new("chmod").args(["-R", "u+w"]).arg(dir).status();
}
