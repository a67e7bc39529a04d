//! Pings to a monitoring service, so a backup that did not run is noticed
//! as well as one that failed: healthchecks.io (and compatible servers)
//! get `start`, success and `fail` with the text in the body; an Uptime Kuma
//! push monitor gets `status=up|down`. A ping never fails or holds up the
//! run: it has a short timeout, and a failure is reported as exit 10, like a
//! mail that could not be sent.

use std::time::Duration;

use crate::config::{PingConfig, PingKind};

/// Healthchecks.io keeps at most 100 kB of a ping body; the end of a long
/// error text is its most useful part.
const BODY_LIMIT: usize = 10_000;

#[derive(Debug, thiserror::Error)]
#[error(
    "monitoring ping to {host} failed: {detail}; check [notify.healthchecks] url (the backup itself is not affected)"
)]
pub struct PingError {
    /// Only the host: the rest of the URL is the check's secret.
    host: String,
    detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping<'a> {
    Start,
    Success(&'a str),
    Failure(&'a str),
}

/// One HTTP request of a ping: method, URL, query pairs and body.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub post: bool,
    pub url: String,
    pub query: Vec<(&'static str, String)>,
    pub body: String,
}

fn tail(text: &str) -> String {
    let mut start = text.len().saturating_sub(BODY_LIMIT);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// The request for `ping`, or `None` when the kind has no such ping
/// (Uptime Kuma has no start signal).
pub fn request(cfg: &PingConfig, ping: Ping<'_>, seconds: f64) -> Option<Request> {
    let base = cfg.url.trim_end_matches('/');
    match cfg.kind {
        PingKind::Healthchecks => Some(match ping {
            Ping::Start => Request {
                post: false,
                url: format!("{base}/start"),
                query: vec![],
                body: String::new(),
            },
            Ping::Success(text) => Request {
                post: true,
                url: base.to_string(),
                query: vec![],
                body: tail(text),
            },
            Ping::Failure(text) => Request {
                post: true,
                url: format!("{base}/fail"),
                query: vec![],
                body: tail(text),
            },
        }),
        PingKind::UptimeKuma => {
            let (status, msg) = match ping {
                Ping::Start => return None,
                Ping::Success(t) => ("up", t),
                Ping::Failure(t) => ("down", t),
            };
            // Kuma shows the message in a list: its first line is enough.
            let msg: String = msg
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            Some(Request {
                post: false,
                url: cfg.url.clone(),
                query: vec![
                    ("status", status.to_string()),
                    ("msg", msg),
                    ("ping", format!("{:.0}", seconds * 1000.0)),
                ],
                body: String::new(),
            })
        }
    }
}

fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(url)
        .to_string()
}

/// Send one ping.
///
/// # Errors
/// When the server cannot be reached in time or answers with an error.
pub fn send(cfg: &PingConfig, ping: Ping<'_>, seconds: f64) -> Result<(), PingError> {
    let Some(req) = request(cfg, ping, seconds) else {
        return Ok(());
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(cfg.timeout_seconds)))
        .user_agent(concat!("cshost/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let result = if req.post {
        agent.post(&req.url).send(req.body.as_bytes()).map(drop)
    } else {
        let mut get = agent.get(&req.url);
        for (k, v) in &req.query {
            get = get.query(*k, v);
        }
        get.call().map(drop)
    };
    result.map_err(|e| PingError {
        host: host_of(&cfg.url),
        detail: match e {
            // The error text of a failed request names the whole URL.
            ureq::Error::StatusCode(code) => format!("the server answered HTTP {code}"),
            ureq::Error::Timeout(_) => format!("no answer within {} s", cfg.timeout_seconds),
            other => other.to_string().replace(&cfg.url, "<url>"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: PingKind, url: &str) -> PingConfig {
        PingConfig {
            url: url.into(),
            kind,
            timeout_seconds: 10,
        }
    }

    #[test]
    fn each_kind_gets_the_requests_it_expects() {
        let hc = cfg(PingKind::Healthchecks, "https://hc-ping.com/abc/");
        let kuma = cfg(PingKind::UptimeKuma, "https://kuma.example/api/push/tok");
        let r = |c: &PingConfig, p| request(c, p, 1.5).map(|r| (r.post, r.url, r.query, r.body));
        assert_eq!(
            r(&hc, Ping::Start),
            Some((
                false,
                "https://hc-ping.com/abc/start".into(),
                vec![],
                String::new()
            ))
        );
        assert_eq!(
            r(&hc, Ping::Success("ok")),
            Some((true, "https://hc-ping.com/abc".into(), vec![], "ok".into()))
        );
        assert_eq!(
            r(&hc, Ping::Failure("exit 8\nbox down")),
            Some((
                true,
                "https://hc-ping.com/abc/fail".into(),
                vec![],
                "exit 8\nbox down".into()
            ))
        );
        assert_eq!(r(&kuma, Ping::Start), None);
        assert_eq!(
            r(&kuma, Ping::Failure("exit 8\nbox down")),
            Some((
                false,
                "https://kuma.example/api/push/tok".into(),
                vec![
                    ("status", "down".into()),
                    ("msg", "exit 8".into()),
                    ("ping", "1500".into())
                ],
                String::new()
            ))
        );
    }

    #[test]
    fn a_long_text_keeps_its_end_and_the_error_names_only_the_host() {
        let long = format!("{}END", "é".repeat(BODY_LIMIT));
        let body = request(
            &cfg(PingKind::Healthchecks, "http://h/x"),
            Ping::Failure(&long),
            0.0,
        )
        .unwrap()
        .body;
        assert!(body.len() <= BODY_LIMIT && body.ends_with("END"));
        assert_eq!(host_of("https://hc-ping.com/secret-uuid"), "hc-ping.com");
    }
}
