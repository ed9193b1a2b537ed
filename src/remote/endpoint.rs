//! Where a remote is: `grpc://HOST:PORT`, and the instance name requests carry.

use std::fmt;
use std::str::FromStr;

use super::RemoteError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `HOST:PORT`.
    pub authority: String,
    /// The REAPI instance name; empty for the server's default instance.
    pub instance: String,
}

impl Endpoint {
    pub fn with_instance(mut self, instance: &str) -> Self {
        self.instance = instance.to_owned();
        self
    }

    /// A ByteStream resource name under this instance: `[INSTANCE/]TAIL`.
    pub(super) fn resource(&self, tail: &str) -> String {
        if self.instance.is_empty() {
            tail.to_owned()
        } else {
            format!("{}/{tail}", self.instance)
        }
    }

    /// The URL the gRPC transport dials: plaintext HTTP/2.
    pub(super) fn http_url(&self) -> String {
        format!("http://{}", self.authority)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "grpc://{}", self.authority)
    }
}

impl FromStr for Endpoint {
    type Err = RemoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| RemoteError::BadUrl {
            url: s.to_owned(),
            why: why.to_owned(),
        };
        let url = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        match url.scheme() {
            "grpc" => {}
            "grpcs" => return Err(bad("TLS (grpcs://) is not supported yet")),
            other => return Err(bad(&format!("the scheme is {other}://, not grpc://"))),
        }
        let host = url.host_str().ok_or_else(|| bad("it names no host"))?;
        let port = url.port().ok_or_else(|| bad("it names no port"))?;
        if !url.path().trim_matches('/').is_empty() || url.query().is_some() {
            return Err(bad(
                "it has a path or query; give the instance name on its own",
            ));
        }
        Ok(Self {
            authority: format!("{host}:{port}"),
            instance: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_grpc_host_port_is_a_remote() {
        let e: Endpoint = "grpc://127.0.0.1:50051".parse().unwrap();
        assert_eq!(e.http_url(), "http://127.0.0.1:50051");
        assert_eq!(e.resource("blobs/x/1"), "blobs/x/1");
        assert_eq!(
            e.with_instance("main").resource("blobs/x/1"),
            "main/blobs/x/1"
        );
        for (bad, why) in [
            ("http://h:1", "scheme is http"),
            ("grpc://h", "no port"),
            ("grpcs://h:1", "TLS"),
            ("grpc://h:1/main", "instance name"),
            ("h:1", "scheme is h"),
        ] {
            let msg = bad.parse::<Endpoint>().unwrap_err().to_string();
            assert!(msg.contains(why) && msg.contains(bad), "{bad}: {msg}");
        }
    }
}
