//! Tracker URLs: `udp://` and `http://` parsed into host, port and path, resolved to an
//! address when an announce needs one.

use std::net::SocketAddr;

use super::error::ClientError;

/// A parsed tracker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerUrl {
    /// `udp://host:port[/path?query]`; the path and query become BEP 41 URL data.
    Udp {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
        /// Path and query, e.g. `/announce?fabric=f1` (may be empty).
        path: String,
    },
    /// `http://host[:port]/path[?query]`.
    Http {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port (80 by default).
        port: u16,
        /// Path and query.
        path: String,
    },
}

impl TrackerUrl {
    /// Parses `udp://` and `http://` URLs (https is not supported: fleet trackers are
    /// on the control network, and the payload is signed end to end anyway).
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::BadUrl { url: url.into() };
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or_else(bad)?;
            (h, p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = port
            .map(|p| p.parse::<u16>().map_err(|_| bad()))
            .transpose()?;
        match scheme.to_ascii_lowercase().as_str() {
            "udp" => Ok(Self::Udp {
                host: host.into(),
                port: port.ok_or_else(bad)?,
                path: path.into(),
            }),
            "http" => Ok(Self::Http {
                host: host.into(),
                port: port.unwrap_or(80),
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.into()
                },
            }),
            _ => Err(bad()),
        }
    }
}

pub(super) async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ClientError> {
    let resolve_err = |source| ClientError::Resolve {
        host: host.into(),
        source,
    };
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(resolve_err)?;
    addrs.next().ok_or_else(|| {
        resolve_err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address",
        ))
    })
}

/// Adds `name=value` to a path's query unless the path already has `name=`.
pub(super) fn with_param(path: &str, name: &str, value: &str) -> String {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    if query
        .split('&')
        .any(|kv| kv.split('=').next() == Some(name))
    {
        return path.into();
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{name}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_ports_paths_and_ipv6() {
        assert_eq!(
            TrackerUrl::parse("udp://tracker.example:6969/announce?fabric=f1").unwrap(),
            TrackerUrl::Udp {
                host: "tracker.example".into(),
                port: 6969,
                path: "/announce?fabric=f1".into()
            }
        );
        assert_eq!(
            TrackerUrl::parse("http://[::1]:8080/announce").unwrap(),
            TrackerUrl::Http {
                host: "::1".into(),
                port: 8080,
                path: "/announce".into()
            }
        );
        assert_eq!(
            TrackerUrl::parse("http://t").unwrap(),
            TrackerUrl::Http {
                host: "t".into(),
                port: 80,
                path: "/".into()
            }
        );
        for bad in [
            "udp://t/announce",
            "https://t/a",
            "t:1",
            "udp://:1",
            "http://t:x/",
        ] {
            assert!(TrackerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fabric_is_added_once() {
        assert_eq!(
            with_param("/announce", "fabric", "f1"),
            "/announce?fabric=f1"
        );
        assert_eq!(with_param("/a?x=1", "fabric", "f1"), "/a?x=1&fabric=f1");
        assert_eq!(with_param("/a?fabric=f2", "fabric", "f1"), "/a?fabric=f2");
    }
}
