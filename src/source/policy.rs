//! Which upstream URLs may be used at all: https only, and only on allow-listed hosts.
//!
//! A mirror never widens this: it is trusted only because what it serves is checked against
//! the pins, and the pins are only ever taken from allowed upstreams.

use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("`{url}` is not a valid URL: {message}")]
    Invalid { url: String, message: String },
    #[error("`{url}` does not use https: only https upstreams are allowed (a mirror may be local)")]
    NotHttps { url: String },
    #[error(
        "`{url}`: host `{host}` is not on the allow-list ({allowed}); if this host is official, \
         add it to [policy] allowed_hosts in the lockfile or the config"
    )]
    HostNotAllowed {
        url: String,
        host: String,
        allowed: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    allowed: BTreeSet<String>,
}

impl HostPolicy {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(hosts: I) -> Self {
        Self {
            allowed: hosts
                .into_iter()
                .map(|h| h.as_ref().to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn extend<I: IntoIterator<Item = S>, S: AsRef<str>>(&mut self, hosts: I) {
        self.allowed
            .extend(hosts.into_iter().map(|h| h.as_ref().to_ascii_lowercase()));
    }

    /// Accepts `url` only if it is https, carries no credentials, and its host is allowed
    /// exactly (no subdomain or look-alike matching).
    pub fn check(&self, url: &str) -> Result<(), PolicyError> {
        let parsed = url::Url::parse(url).map_err(|e| PolicyError::Invalid {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
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
        if parsed.port().is_some() || !self.allowed.contains(&host) {
            return Err(PolicyError::HostNotAllowed {
                url: url.to_owned(),
                host: match parsed.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                },
                allowed: self.allowed.iter().cloned().collect::<Vec<_>>().join(", "),
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
        assert_eq!(policy().check("https://GitHub.com/x/y"), Ok(()));
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
}
