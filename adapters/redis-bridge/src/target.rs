//! Where Redis is and how to trust it: a URL (`redis://` or `rediss://` for TLS, optionally with
//! an ACL user and password) and, for TLS, an optional CA certificate. The URL may hold a
//! password, so it is never printed: `Debug` and [`RedisTarget::redacted`] hide it.
//!
//! With Redis Sentinel the URL names the sentinels and the monitored master instead:
//! `redis+sentinel://[user:password@]host:port,host:port,host:port/<master-name>`
//! (`rediss+sentinel://` for TLS to the data nodes; the sentinels themselves are reached in
//! plain text). Every (re)connection asks the sentinels where the master is now
//! ([`RedisTarget::resolve`]) and checks the answer with `ROLE`, so a component survives a
//! promotion by reconnecting: see [`crate::link::Link`].

use std::time::Duration;

use redis::{Client, ErrorKind, RedisError, RedisResult, TlsCertificates, cmd};

use ground::backoff::Backoff;

/// A Redis server to connect to.
#[derive(Clone)]
pub struct RedisTarget {
    url: String,
    ca_pem: Option<Vec<u8>>,
}

/// The parts of a `redis+sentinel://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SentinelUrl<'a> {
    tls: bool,
    userinfo: Option<&'a str>,
    sentinels: Vec<&'a str>,
    master: &'a str,
}

/// How long one sentinel or master probe may take before the next is tried.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

fn parse_sentinel(url: &str) -> Option<SentinelUrl<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let tls = match scheme {
        "redis+sentinel" => false,
        "rediss+sentinel" => true,
        _ => return None,
    };
    let (authority, master) = rest.split_once('/')?;
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let sentinels: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    let master = master.trim_end_matches('/');
    (!sentinels.is_empty() && !master.is_empty()).then_some(SentinelUrl {
        tls,
        userinfo,
        sentinels,
        master,
    })
}

fn no_master(what: String) -> RedisError {
    RedisError::from((ErrorKind::Io, "sentinel", what))
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
        self.url.starts_with("rediss://") || self.url.starts_with("rediss+sentinel://")
    }

    /// Is the master found through Redis Sentinel?
    pub fn is_sentinel(&self) -> bool {
        parse_sentinel(&self.url).is_some()
    }

    /// Checks the URL's shape (a bad `redis+sentinel://` URL is refused at start, not at the
    /// first reconnection).
    pub fn validate(&self) -> Result<(), String> {
        if self.url.contains("+sentinel://") && !self.is_sentinel() {
            return Err(format!(
                "{}: expected redis+sentinel://[user:password@]host:port,host:port/<master-name>",
                self.redacted()
            ));
        }
        Ok(())
    }

    /// A client for the current master: the URL's server, or the one the sentinels name now
    /// (asked in turn until one answers, then checked to be a master with `ROLE`).
    pub async fn resolve(&self) -> RedisResult<Client> {
        let Some(s) = parse_sentinel(&self.url) else { return self.client() };
        let mut last = no_master(format!("no sentinel answered for {}", s.master));
        for host in &s.sentinels {
            let ask = async {
                let sentinel = Client::open(format!("redis://{host}/"))?;
                let mut con = sentinel.get_multiplexed_async_connection().await?;
                let addr: Option<(String, u16)> = cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(s.master)
                    .query_async(&mut con)
                    .await?;
                let (ip, port) = addr.ok_or_else(|| no_master(format!("{} unknown", s.master)))?;
                let client = self.direct(&s, &ip, port)?;
                let mut master = client.get_multiplexed_async_connection().await?;
                let role: redis::Value = cmd("ROLE").query_async(&mut master).await?;
                if role_is_master(&role) {
                    Ok(client)
                } else {
                    Err(no_master(format!("{ip}:{port} is not a master (yet)")))
                }
            };
            match tokio::time::timeout(PROBE_TIMEOUT, ask).await {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => last = e,
                Err(_) => last = no_master(format!("sentinel {host} timed out")),
            }
        }
        Err(last)
    }

    /// [`RedisTarget::resolve`] for threads without a runtime (the replication stage).
    pub fn resolve_blocking(&self) -> RedisResult<Client> {
        let Some(s) = parse_sentinel(&self.url) else { return self.client() };
        let mut last = no_master(format!("no sentinel answered for {}", s.master));
        for host in &s.sentinels {
            let ask = || -> RedisResult<Client> {
                let sentinel = Client::open(format!("redis://{host}/"))?;
                let mut con = sentinel.get_connection_with_timeout(PROBE_TIMEOUT)?;
                con.set_read_timeout(Some(PROBE_TIMEOUT))?;
                let addr: Option<(String, u16)> =
                    cmd("SENTINEL").arg("get-master-addr-by-name").arg(s.master).query(&mut con)?;
                let (ip, port) = addr.ok_or_else(|| no_master(format!("{} unknown", s.master)))?;
                let client = self.direct(&s, &ip, port)?;
                let mut master = client.get_connection_with_timeout(PROBE_TIMEOUT)?;
                master.set_read_timeout(Some(PROBE_TIMEOUT))?;
                let role: redis::Value = cmd("ROLE").query(&mut master)?;
                if role_is_master(&role) {
                    Ok(client)
                } else {
                    Err(no_master(format!("{ip}:{port} is not a master (yet)")))
                }
            };
            match ask() {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A client for the master at `ip:port`, with the URL's credentials and TLS settings.
    fn direct(&self, s: &SentinelUrl<'_>, ip: &str, port: u16) -> RedisResult<Client> {
        let scheme = if s.tls { "rediss" } else { "redis" };
        let user = s.userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        RedisTarget { url: format!("{scheme}://{user}{ip}:{port}/"), ca_pem: self.ca_pem.clone() }
            .client()
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

/// `ROLE`'s first element is `master` on a master.
fn role_is_master(role: &redis::Value) -> bool {
    match role {
        redis::Value::Array(parts) => parts
            .first()
            .is_some_and(|r| redis::from_redis_value_ref::<String>(r).is_ok_and(|r| r == "master")),
        _ => false,
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
        let ha = RedisTarget::new("redis+sentinel://app:s3cret@h1:26379,h2:26380/main");
        assert_eq!(ha.redacted(), "redis+sentinel://app:***@h1:26379,h2:26380/main");
        assert!(ha.is_sentinel() && !ha.is_tls() && ha.validate().is_ok());
    }

    #[test]
    fn sentinel_urls_parse_or_are_refused() {
        let s = parse_sentinel("rediss+sentinel://u:p@a:1,b:2,c:3/mymaster").unwrap();
        assert_eq!(
            s,
            SentinelUrl {
                tls: true,
                userinfo: Some("u:p"),
                sentinels: vec!["a:1", "b:2", "c:3"],
                master: "mymaster"
            }
        );
        for bad in ["redis+sentinel://a:1/", "redis+sentinel:///m", "redis+sentinel://a:1"] {
            assert!(parse_sentinel(bad).is_none(), "{bad}");
            assert!(RedisTarget::new(bad).validate().is_err(), "{bad}");
        }
        assert!(parse_sentinel("redis://a:1/m").is_none());
    }
}
