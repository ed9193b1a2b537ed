//! Action keys, shaped like the Remote Execution API's `Action` and `Command` messages so that a
//! step could be sent to a remote executor later: a command (argv, sorted environment, output
//! paths, working directory) and an input root, each named by digest.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::{InputDigest, Sha256Digest};

/// REAPI `Command`.
#[derive(Debug, Clone, Serialize)]
pub struct CommandSpec<'a> {
    pub arguments: &'a [String],
    pub environment_variables: Vec<EnvVar<'a>>,
    pub output_paths: Vec<&'a str>,
    pub working_directory: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvVar<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// REAPI `Action`: the command and the input root, by digest. `do_not_cache` is never set:
/// whether a result is reused is the caller's decision (`--no-cache`).
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    pub command_digest: Sha256Digest,
    pub input_root_digest: Sha256Digest,
    pub platform: BTreeMap<String, String>,
}

impl Action {
    pub fn new(
        argv: &[String],
        env: &BTreeMap<String, String>,
        outputs: &[&str],
        cwd: &str,
        inputs: &[InputDigest],
        previous: Option<Sha256Digest>,
        platform: BTreeMap<String, String>,
    ) -> Self {
        let command = CommandSpec {
            arguments: argv,
            environment_variables: env
                .iter()
                .map(|(name, value)| EnvVar { name, value })
                .collect(),
            output_paths: outputs.to_vec(),
            working_directory: cwd,
        };
        let command_digest = canonical_digest(&command);
        // The input root: every named input, plus the state the previous step left behind.
        let mut root: Vec<InputDigest> = inputs.to_vec();
        if let Some(p) = previous {
            root.push(InputDigest {
                name: "previous-step".into(),
                digest: format!("sha256:{p}"),
            });
        }
        root.sort();
        Self {
            command_digest,
            input_root_digest: canonical_digest(&root),
            platform,
        }
    }

    /// The action key.
    pub fn digest(&self) -> Sha256Digest {
        canonical_digest(self)
    }
}

/// sha256 of a value's compact JSON (maps are ordered, so the bytes are canonical).
pub fn canonical_digest(value: &impl Serialize) -> Sha256Digest {
    Sha256Digest::of(&serde_json::to_vec(value).expect("serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(env_value: &str, input: &str, previous: Option<Sha256Digest>) -> Sha256Digest {
        let mut env = BTreeMap::new();
        env.insert("TZ".to_owned(), env_value.to_owned());
        let inputs = [InputDigest {
            name: "source".into(),
            digest: input.into(),
        }];
        Action::new(
            &["go".into(), "build".into()],
            &env,
            &["bin"],
            "/w",
            &inputs,
            previous,
            BTreeMap::new(),
        )
        .digest()
    }

    #[test]
    fn key_depends_on_command_inputs_and_previous_step() {
        let base = key("UTC", "gitTree:1", None);
        assert_eq!(base, key("UTC", "gitTree:1", None));
        assert_ne!(base, key("UTC+1", "gitTree:1", None));
        assert_ne!(base, key("UTC", "gitTree:2", None));
        assert_ne!(base, key("UTC", "gitTree:1", Some(base)));
    }
}
