//! The report as one self-contained HTML page (`--report DIR`): no scripts, no fetched styles,
//! readable offline and in a CI artifact viewer.

use std::fmt::Write as _;
use std::path::Path;

use super::{Report, Verdict};
use crate::diff::Detail;
use crate::diff::explain::section_size;

pub const PAGE: &str = "index.html";

const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#1b1b1b}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5em 0} th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #e4e4e4;vertical-align:top}
td:first-child code{word-break:normal;white-space:nowrap}
th{background:#f4f4f4} code,.mono{font-family:ui-monospace,monospace;font-size:.9em;word-break:break-all}
.ok{color:#0a6b2d;font-weight:600} .bad{color:#b00020;font-weight:600} .warn{color:#8a5a00;font-weight:600}
.banner{padding:.8em 1em;border-radius:6px;margin:1em 0;font-size:1.1em}
.banner.ok{background:#e6f4ea} .banner.bad{background:#fdecea}
.detail{margin:.4em 0 .4em 1em;padding:.4em .6em;background:#fafafa;border-left:3px solid #ddd}
pre{white-space:pre-wrap;word-break:break-word}
.minus{color:#b00020} .plus{color:#0a6b2d} .muted{color:#666}
";

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn class(v: Verdict) -> &'static str {
    match v {
        Verdict::Reproducible | Verdict::Matches => "ok",
        Verdict::CouldNotRebuild => "warn",
        _ => "bad",
    }
}

fn short(d: &Option<crate::digest::Sha256Digest>) -> String {
    d.map(|d| d.to_hex()[..16].to_owned())
        .unwrap_or_else(|| "—".into())
}

/// The page's HTML.
pub fn render(r: &Report) -> String {
    let mut h = String::new();
    let title = format!("kata-repro {}: Kata {} {}", r.kind, r.release, r.arch);
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", esc(&title));
    let _ = writeln!(
        h,
        "<p class=\"muted\">lockfile <code>{}</code> (sha256 <code>{}</code>), source commit <code>{}</code>; \
         components {}. Compared: <code>{}</code> and <code>{}</code>.</p>",
        esc(&r.lockfile),
        esc(&r.lockfile_sha256),
        esc(&r.source_commit),
        esc(&r.components.join(", ")),
        esc(&r.first),
        esc(&r.second)
    );
    let (ok_word, bad_word) = if r.kind == "audit" {
        ("every artifact matches", "not every artifact matches")
    } else {
        (
            "every artifact is reproducible",
            "not every artifact is reproducible",
        )
    };
    let ok = r.ok();
    let counts: Vec<String> = [
        Verdict::Reproducible,
        Verdict::NotReproducible,
        Verdict::Matches,
        Verdict::Differs,
        Verdict::CouldNotRebuild,
    ]
    .into_iter()
    .filter(|v| r.count(*v) > 0)
    .map(|v| format!("{} {}", r.count(v), v.label()))
    .collect();
    let _ = writeln!(
        h,
        "<div class=\"banner {}\" id=\"verdict\">{}: {}</div>",
        if ok { "ok" } else { "bad" },
        if ok { ok_word } else { bad_word },
        esc(&counts.join(", "))
    );
    if !r.timings.is_empty() {
        let t: Vec<String> = r
            .timings
            .iter()
            .map(|(label, s)| format!("{} {s:.1} s", esc(label)))
            .collect();
        let _ = writeln!(h, "<p class=\"muted\">{}</p>", t.join(" · "));
    }
    if let Some(f) = &r.failure {
        let _ = writeln!(h, "<h2>Failure</h2><pre class=\"detail\">{}</pre>", esc(f));
    }
    if !r.preflight.is_empty() {
        h.push_str("<h2 id=\"preflight\">Checks before building</h2><table><tr><th>check</th><th>result</th><th>detail</th></tr>");
        for (what, passed, detail) in &r.preflight {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                esc(what),
                if *passed { "ok" } else { "bad" },
                if *passed { "ok" } else { "FAILED" },
                esc(detail)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2 id=\"artifacts\">Artifacts</h2><table><tr><th>artifact</th><th>verdict</th><th>sha256 (first)</th><th>sha256 (second)</th><th>why</th></tr>");
    for (n, a) in r.artifacts.iter().enumerate() {
        let path = if a.verdict.ok() {
            format!("<code>{}</code>", esc(&a.path))
        } else {
            format!("<a href=\"#a{n}\"><code>{}</code></a>", esc(&a.path))
        };
        let why: Vec<String> = a
            .blame
            .iter()
            .map(|b| format!("<b>{}</b>", esc(b.variation.name())))
            .chain(a.notes.iter().take(1).map(|n| esc(n)))
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{path}</td><td class=\"{}\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
            class(a.verdict),
            a.verdict.label(),
            short(&a.sha256_first),
            short(&a.sha256_second),
            why.join("; ")
        );
    }
    h.push_str("</table>");
    if !r.variations.is_empty() {
        h.push_str("<h2 id=\"variations\">Variations</h2><table><tr><th>variation</th><th>applied</th><th>first build</th><th>second build</th></tr>");
        for v in &r.variations {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                v.variation.name(),
                if v.applied { "ok" } else { "warn" },
                if v.applied { "applied" } else { "not applied" },
                esc(&v.first),
                esc(&v.second)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2 id=\"inputs\">Inputs</h2><table><tr><th>input</th><th>pinned</th></tr>");
    for (k, v) in &r.first_inputs {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"mono\">{}</td></tr>",
            esc(k),
            esc(v)
        );
    }
    h.push_str("</table>");
    if !r.inputs.is_empty() {
        h.push_str("<p>Where the two builds' inputs and environment differ:</p><table><tr><th>what</th><th>first</th><th>second</th></tr>");
        for d in &r.inputs {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
                esc(&d.what),
                esc(&d.a),
                esc(&d.b)
            );
        }
        h.push_str("</table>");
    }
    let differing: Vec<(usize, &super::ArtifactVerdict)> = r
        .artifacts
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.verdict.ok())
        .collect();
    if !differing.is_empty() {
        h.push_str("<h2 id=\"differences\">Differences</h2>");
    }
    for (n, a) in differing {
        let _ = writeln!(
            h,
            "<section id=\"a{n}\"><h3><code>{}</code> <span class=\"{}\">{}</span></h3>",
            esc(&a.path),
            class(a.verdict),
            a.verdict.label()
        );
        for b in &a.blame {
            let _ = writeln!(
                h,
                "<p>Variation <b><code>{}</code></b>: {}</p>",
                b.variation.name(),
                esc(&b.evidence)
            );
        }
        for note in &a.notes {
            let _ = writeln!(h, "<p>{}</p>", esc(note));
        }
        for (m, d) in a.details.iter().enumerate() {
            let _ = writeln!(
                h,
                "<div class=\"detail\" id=\"a{n}-d{m}\">{}</div>",
                detail(d)
            );
        }
        if let Some(page) = &a.diffoscope_html {
            let _ = writeln!(
                h,
                "<p><a href=\"{}\">diffoscope's report of the two files</a></p>",
                esc(page)
            );
        }
        h.push_str("</section>");
    }
    let _ = writeln!(
        h,
        "<p class=\"muted\">Written by kata-repro {}.</p></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    h
}

fn detail(d: &Detail) -> String {
    match d {
        Detail::ElfSection {
            section,
            size_a,
            size_b,
            only_a,
            only_b,
        } => {
            let mut out = format!(
                "ELF section <code>{}</code> differs ({} → {})",
                esc(section),
                section_size(*size_a),
                section_size(*size_b)
            );
            for s in only_a {
                let _ = writeln!(out, "<br><span class=\"minus mono\">− {}</span>", esc(s));
            }
            for s in only_b {
                let _ = writeln!(out, "<br><span class=\"plus mono\">+ {}</span>", esc(s));
            }
            out
        }
        Detail::Member {
            archive,
            member,
            change,
        } => format!(
            "{} member <code>{}</code>: {}",
            esc(archive),
            esc(member),
            esc(&change.to_string())
        ),
        Detail::Within {
            archive,
            member,
            change,
            details,
        } => {
            let mut out = format!(
                "{} member <code>{}</code>: {}<ul>",
                esc(archive),
                esc(member),
                esc(&change.to_string())
            );
            for d in details {
                let _ = write!(out, "<li>{}</li>", detail(d));
            }
            out.push_str("</ul>");
            out
        }
        Detail::MoreMembers {
            archive,
            more,
            counts,
        } => format!(
            "{}: {more} more members differ ({})",
            esc(archive),
            esc(counts)
        ),
        Detail::Partition { partition, note } => {
            format!("{}: {}", esc(partition), esc(note))
        }
        Detail::Line { line, a, b } => format!(
            "line {line} differs<br><span class=\"minus mono\">− {}</span><br><span class=\"plus mono\">+ {}</span>",
            esc(a),
            esc(b)
        ),
        Detail::Mode { a, b } => format!("mode {} → {}", esc(a), esc(b)),
        Detail::Diffoscope { output } => format!("<pre>{}</pre>", esc(output)),
        Detail::Unavailable { reason } => esc(reason),
    }
}

/// Writes the page into `dir` (made if missing), atomically.
pub fn write(r: &Report, dir: &Path) -> Result<std::path::PathBuf, crate::manifest::ManifestError> {
    std::fs::create_dir_all(dir).map_err(|source| crate::manifest::ManifestError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let page = dir.join(PAGE);
    crate::files::write_atomically(&page, render(r).as_bytes()).map_err(|source| {
        crate::manifest::ManifestError::Write {
            path: page.clone(),
            source,
        }
    })?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
