//! Where Redis is and how to trust it: a URL (`redis://` or `rediss://` for TLS, optionally with
//! an ACL user and password) and, for TLS, an optional CA certificate. The URL may hold a
//! password, so it is never printed: `Debug` and [`RedisTarget::redacted`] hide it.

use redis::{Client, RedisResult, TlsCertificates};

use crate::backoff::Backoff;

/// A Redis server to connect to.
#[derive(Clone)]
pub struct RedisTarget {
    url: String,
    ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &self.redacted())
            .field("ca", &self.ca_pem.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl RedisTarget {
    /// `redis://[user:password@]host:port/` or `rediss://…` (TLS, checked against the system's
    /// roots unless [`RedisTarget::with_ca_pem`] names a CA).
    pub fn new(url: &str) -> RedisTarget {
        RedisTarget { url: url.to_owned(), ca_pem: None }
    }

    /// Trust this CA (PEM) for `rediss://` instead of the system's roots.
    pub fn with_ca_pem(mut self, pem: Vec<u8>) -> RedisTarget {
        self.ca_pem = Some(pem);
        self
    }

    /// Is the connection encrypted?
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    /// Does the URL carry a password?
    pub fn has_password(&self) -> bool {
        userinfo(&self.url).is_some_and(|u| u.contains(':'))
    }

    /// The URL with its password replaced by `***`, for logs.
    pub fn redacted(&self) -> String {
        match (self.url.split_once("://"), userinfo(&self.url)) {
            (Some((scheme, _)), Some(user)) => {
                let rest = &self.url[scheme.len() + 3 + user.len()..];
                let name = user.split_once(':').map_or(user, |(name, _)| name);
                let hidden = if user.contains(':') { ":***" } else { "" };
                format!("{scheme}://{name}{hidden}{rest}")
            }
            _ => self.url.clone(),
        }
    }

    /// Calls `connect` until it succeeds, waiting [`Backoff::connect`] between attempts and
    /// logging each failure with the redacted URL, or until `stop` resolves (`None`): a Redis
    /// that starts after us, or restarts, is waited for, and a shutdown still stops us.
    pub async fn retry<T, E, F>(
        &self,
        who: &str,
        mut connect: impl FnMut() -> F,
        mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Option<T>
    where
        E: std::fmt::Display,
        F: std::future::Future<Output = Result<T, E>>,
    {
        let mut backoff = Backoff::connect();
        loop {
            match connect().await {
                Ok(c) => return Some(c),
                Err(e) => tracing::warn!(who, redis = %self.redacted(), error = %e,
                    retry_in = ?backoff.peek(), "Redis unreachable"),
            }
            tokio::select! {
                () = &mut stop => return None,
                () = tokio::time::sleep(backoff.next()) => {}
            }
        }
    }

    /// A client for it (TLS with rustls and the `ring` provider for `rediss://`).
    pub fn client(&self) -> RedisResult<Client> {
        if self.is_tls() {
            // The process-wide rustls provider; a second install (another adapter's) is a no-op.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        match &self.ca_pem {
            Some(ca) if self.is_tls() => Client::build_with_tls(
                self.url.as_str(),
                TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) },
            ),
            _ => Client::open(self.url.as_str()),
        }
    }
}

/// The `user:password` part of a URL, if any.
fn userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    authority.rsplit_once('@').map(|(user, _)| user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_log() {
        let cases = [
            ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/", false),
            ("redis://:s3cret@h:1/0", "redis://:***@h:1/0", true),
            ("rediss://engine:p@ss:w0rd@h:1/", "rediss://engine:***@h:1/", true),
            ("redis://user@h/", "redis://user@h/", false),
        ];
        for (url, shown, has) in cases {
            let t = RedisTarget::new(url);
            assert_eq!(t.redacted(), shown);
            assert_eq!(t.has_password(), has, "{url}");
            assert!(!format!("{t:?}").contains("s3cret") && !format!("{t:?}").contains("w0rd"));
        }
        assert!(RedisTarget::new("rediss://h/").is_tls());
    }
}
