//! Which upstream URLs may be used at all: https only, and only on allow-listed hosts.
//!
//! A mirror never widens this: it is trusted only because what it serves is checked against
//! the pins, and the pins are only ever taken from allowed upstreams.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("`{url}` is not a valid URL: {message}")]
    Invalid { url: String, message: String },
    #[error(
        "`{url}` is not written as it is read: a URL parser reads it as `{canonical}` \
         (backslashes, tabs, encoded dots, letter case, a default port are rewritten); write the \
         URL exactly as `{canonical}` (without a port) so that what is checked is what is used"
    )]
    NotCanonical { url: String, canonical: String },
    #[error("`{url}` does not use https: only https upstreams are allowed (a mirror may be local)")]
    NotHttps { url: String },
    #[error(
        "`{url}`: host `{host}` is not on the allow-list ({allowed}); URLs name no port, and if \
         this host is official, allow it with --allow-host HOST or in [policy] allowed_hosts of \
         the config file (and list it in the lockfile's [policy] allowed_hosts)"
    )]
    HostNotAllowed {
        url: String,
        host: String,
        allowed: String,
    },
}

/// The official upstream hosts a lockfile may name without the user's say-so.
pub const BUILT_IN_HOSTS: &[&str] = &[
    "cdn.kernel.org",
    "deb.debian.org",
    "files.pythonhosted.org",
    "github.com",
    "go.dev",
    "static.crates.io",
];

/// Where an allowed host came from.
pub const FROM_BUILT_IN: &str = "built-in";
pub const FROM_CONFIG: &str = "config";
pub const FROM_FLAG: &str = "--allow-host";

#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Allowed host → where it came from.
    allowed: BTreeMap<String, String>,
}

/// Hosts a lockfile's `[policy]` names that nothing but the lockfile allows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "[policy] allowed_hosts names {} that only the lockfile allows; a lockfile cannot widen the \
     allow-list: review each host, then allow it with --allow-host HOST or in [policy] \
     allowed_hosts of the config file",
    hosts.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ")
)]
pub struct WidenedByLockfile {
    pub hosts: Vec<String>,
}

impl HostPolicy {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(hosts: I) -> Self {
        let mut p = Self::default();
        p.extend_from(hosts, FROM_BUILT_IN);
        p
    }

    pub fn extend<I: IntoIterator<Item = S>, S: AsRef<str>>(&mut self, hosts: I) {
        self.extend_from(hosts, FROM_CONFIG);
    }

    /// Allows `hosts`, recording where they came from (the first source that named a host wins).
    pub fn extend_from<I: IntoIterator<Item = S>, S: AsRef<str>>(&mut self, hosts: I, from: &str) {
        for h in hosts {
            self.allowed
                .entry(h.as_ref().to_ascii_lowercase())
                .or_insert_with(|| from.to_owned());
        }
    }

    /// The policy a lockfile is used under: the hosts its `[policy]` names, each of which must
    /// also be built in, in the config or given with `--allow-host`, plus the config's and the
    /// flags' own.
    pub fn for_lockfile(
        lockfile_hosts: &[String],
        config_hosts: &[String],
        flag_hosts: &[String],
    ) -> Result<Self, WidenedByLockfile> {
        let mut approved = Self::new(BUILT_IN_HOSTS);
        approved.extend_from(config_hosts, FROM_CONFIG);
        approved.extend_from(flag_hosts, FROM_FLAG);
        let widened: Vec<String> = lockfile_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .filter(|h| !approved.allowed.contains_key(h))
            .collect();
        if !widened.is_empty() {
            return Err(WidenedByLockfile { hosts: widened });
        }
        let mut policy = Self::default();
        for h in lockfile_hosts {
            let h = h.to_ascii_lowercase();
            let from = approved.allowed[&h].clone();
            policy.allowed.insert(h, from);
        }
        policy.extend_from(config_hosts, FROM_CONFIG);
        policy.extend_from(flag_hosts, FROM_FLAG);
        Ok(policy)
    }

    /// The policy where no lockfile names hosts: the built-in hosts, the config's and the flags'.
    pub fn for_user(config_hosts: &[String], flag_hosts: &[String]) -> Self {
        let mut p = Self::new(BUILT_IN_HOSTS);
        p.extend_from(config_hosts, FROM_CONFIG);
        p.extend_from(flag_hosts, FROM_FLAG);
        p
    }

    /// Every allowed host and where it came from, sorted by host.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.allowed.iter().map(|(h, f)| (h.as_str(), f.as_str()))
    }

    /// One line for people: `github.com (built-in), example.org (--allow-host)`.
    pub fn describe(&self) -> String {
        self.hosts()
            .map(|(h, f)| format!("{h} ({f})"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Accepts `url` only if it is written exactly as a URL parser reads it (so that the text
    /// that is checked is the text that mirrors are matched against and that is downloaded), is
    /// https, carries no credentials and no port, and its host is allowed exactly (no subdomain
    /// or look-alike matching).
    pub fn check(&self, url: &str) -> Result<(), PolicyError> {
        let parsed = url::Url::parse(url).map_err(|e| PolicyError::Invalid {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        if parsed.as_str() != url {
            return Err(PolicyError::NotCanonical {
                url: url.to_owned(),
                canonical: parsed.as_str().to_owned(),
            });
        }
        if parsed.scheme() != "https" {
            return Err(PolicyError::NotHttps {
                url: url.to_owned(),
            });
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(PolicyError::Invalid {
                url: url.to_owned(),
                message: "credentials in a URL are refused".into(),
            });
        }
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        if parsed.port().is_some() || !self.allowed.contains_key(&host) {
            return Err(PolicyError::HostNotAllowed {
                url: url.to_owned(),
                host: match parsed.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                },
                allowed: self.allowed.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HostPolicy {
        HostPolicy::new(["github.com", "cdn.kernel.org"])
    }

    #[test]
    fn allows_https_on_listed_hosts() {
        assert_eq!(
            policy().check("https://github.com/kata-containers/kata-containers"),
            Ok(())
        );
    }

    #[test]
    fn refuses_everything_else() {
        let p = policy();
        assert!(matches!(
            p.check("http://github.com/x/y"),
            Err(PolicyError::NotHttps { .. })
        ));
        assert!(matches!(
            p.check("git://github.com/x/y"),
            Err(PolicyError::NotHttps { .. })
        ));
        for bad in [
            "https://githuh.com/x/y",
            "https://github.com.evil.example/x",
            "https://evil-github.com/x",
            "https://api.github.com/x",
            "https://github.com:8443/x",
        ] {
            assert!(
                matches!(p.check(bad), Err(PolicyError::HostNotAllowed { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            p.check("https://user:pw@github.com/x"),
            Err(PolicyError::Invalid { .. })
        ));
        assert!(matches!(
            p.check("not a url"),
            Err(PolicyError::Invalid { .. })
        ));
    }

    #[test]
    fn a_lockfile_cannot_widen_the_allow_list() {
        let lock = |hosts: &[&str]| hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        let p =
            HostPolicy::for_lockfile(&lock(&["github.com", "deb.debian.org"]), &[], &[]).unwrap();
        assert_eq!(
            p.describe(),
            "deb.debian.org (built-in), github.com (built-in)"
        );
        assert!(
            p.check("https://cdn.kernel.org/x").is_err(),
            "only what the lockfile names"
        );
        let err =
            HostPolicy::for_lockfile(&lock(&["github.com", "evil.example"]), &[], &[]).unwrap_err();
        assert_eq!(err.hosts, ["evil.example"]);
        assert!(err.to_string().contains("--allow-host"), "{err}");
        let p = HostPolicy::for_lockfile(
            &lock(&["github.com", "evil.example", "mirror.example"]),
            &lock(&["mirror.example"]),
            &lock(&["evil.example"]),
        )
        .unwrap();
        assert_eq!(
            p.describe(),
            "evil.example (--allow-host), github.com (built-in), mirror.example (config)"
        );
        assert_eq!(p.check("https://evil.example/x"), Ok(()));
    }

    #[test]
    fn a_url_is_judged_as_it_is_written() {
        let p = policy();
        // Each is read by a URL parser as a github.com URL, but used as written elsewhere.
        for bad in [
            "https://github.com\\kata-containers/kata-containers",
            "https://evil.example\\@github.com/x",
            "https://github.com/x/%2e%2e/y",
            "https://git\thub.com/x",
            "https://ｇithub.com/x",
            "https://GitHub.com/x/y",
            "https://github.com:443/x/y",
            "https://github.com",
        ] {
            assert!(
                matches!(p.check(bad), Err(PolicyError::NotCanonical { .. })),
                "{bad:?}: {:?}",
                p.check(bad)
            );
        }
        assert_eq!(p.check("https://github.com/"), Ok(()));
        assert_eq!(
            p.check("https://deb.debian.org/debian-security/x/linux-source-6.12_6.12.117-1%7edeb12u1_all.deb")
                .map_err(|e| matches!(e, PolicyError::HostNotAllowed { .. })),
            Err(true),
            "an encoded tilde is kept as written"
        );
    }
}
