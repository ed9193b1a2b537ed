//! What a command prints on stdout goes through here: every result is an [`Output`], rendered
//! as text for a terminal or as one JSON document with `--json`. Adding an output format is a
//! variant of [`Format`] and its arm in [`Format::emit`] (and in [`Format::fail`] for errors);
//! no command changes. Progress never comes here: it goes to stderr (see `progress`).

use std::process::ExitCode;

use super::Failure;

/// Writes a line into a text rendering: `outln!(out, "{x}")`, as `println!` would print it.
macro_rules! outln {
    ($out:expr) => {
        $out.push('\n')
    };
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
pub(crate) use outln;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    pub fn new(json: bool) -> Self {
        if json { Format::Json } else { Format::Text }
    }

    pub fn is_json(self) -> bool {
        self == Format::Json
    }

    /// Prints `output` and gives its exit code. A JSON document always says `ok` and
    /// `exit_code`.
    pub fn emit(self, output: Output<'_>) -> ExitCode {
        match self {
            Format::Json => {
                let mut v = output.json;
                if let Some(map) = v.as_object_mut() {
                    map.insert("ok".into(), (output.code == 0).into());
                    map.insert("exit_code".into(), output.code.into());
                }
                println!("{}", pretty(&v));
            }
            Format::Text => {
                let mut text = String::new();
                (output.text)(&mut text);
                print!("{text}");
            }
        }
        ExitCode::from(output.code)
    }

    /// Prints a command that did not succeed: the error on stderr and, as JSON, on stdout.
    pub fn fail(self, failure: Failure) -> ExitCode {
        // Errors carry their causes in their own messages.
        let message = format!("{}", failure.error);
        if self.is_json() {
            let v = serde_json::json!({
                "ok": false,
                "exit_code": failure.code,
                "error": message,
            });
            println!("{}", pretty(&v));
        }
        eprintln!("error: {message}");
        ExitCode::from(failure.code)
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).expect("JSON values serialise")
}

/// A command's result: its exit code, its JSON document, and how it reads as text.
pub struct Output<'a> {
    /// 0 ok, 1 a check failed.
    pub code: u8,
    pub json: serde_json::Value,
    pub text: &'a dyn Fn(&mut String),
}

impl<'a> Output<'a> {
    /// A result that succeeded.
    pub fn ok(json: serde_json::Value, text: &'a dyn Fn(&mut String)) -> Self {
        Self {
            code: 0,
            json,
            text,
        }
    }

    /// A result whose check passed (exit 0) or failed (exit 1).
    pub fn checked(passed: bool, json: serde_json::Value, text: &'a dyn Fn(&mut String)) -> Self {
        Self {
            code: if passed { 0 } else { 1 },
            json,
            text,
        }
    }
}

/// Rows (the header first) as a table indented by two spaces, each column as wide as its
/// widest cell, columns separated by `sep`.
pub fn table<const N: usize>(out: &mut String, rows: &[[String; N]], sep: &str) {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        outln!(out, "  {}", cells.join(sep).trim_end());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_is_written_line_by_line() {
        let text = |out: &mut String| {
            outln!(out, "a {}", 1);
            outln!(out);
            outln!(out, "b");
        };
        let mut s = String::new();
        text(&mut s);
        assert_eq!(s, "a 1\n\nb\n");
    }
}
