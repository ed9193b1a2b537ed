use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return cli::usage_error(e),
    };
    let json = args.json;
    match cli::run(args) {
        Ok(code) => code,
        Err(failure) => failure.report(json),
    }
}
