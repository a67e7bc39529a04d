//! Mail about a run, to an SMTP relay. Rendering is pure; sending uses lettre.
//! Nothing secret goes into a mail: it carries ids, sizes, host names and the
//! error text, which never holds secrets either.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use crate::config::{EmailConfig, SmtpSecurity};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notification mail: invalid address {address:?}: {detail}; check [notify.email]")]
    Address { address: String, detail: String },
    #[error("notification mail: cannot read the password file `{path}`: {detail}")]
    Password { path: String, detail: String },
    #[error(
        "notification mail via {relay} failed: {detail}; check [notify.email] relay and security"
    )]
    Send { relay: String, detail: String },
}

/// What a mail reports.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub command: String,
    pub ok: bool,
    pub hostname: String,
    pub snapshot: Option<String>,
    pub size: u64,
    pub new_bytes: u64,
    /// Names that vanished while the backup read them (a server at work).
    pub vanished: u64,
    pub seconds: f64,
    /// (used, total, free) on the Storage Box, and its snapshot count.
    pub storage: Option<(u64, u64, u64, usize)>,
    pub location: Option<String>,
    pub error: Option<String>,
    pub log_tail: Vec<String>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Subject, plain text and HTML of a mail.
pub fn render(o: &Outcome) -> (String, String, String) {
    use crate::units::human_bytes as hb;
    let subject = if o.ok {
        format!("cshost {} OK - {}", o.command, o.hostname)
    } else {
        format!("cshost {} FAILED - {}", o.command, o.hostname)
    };
    let mut rows: Vec<(String, String)> = vec![("Host".into(), o.hostname.clone())];
    if let Some(id) = &o.snapshot {
        rows.push(("Snapshot".into(), id.clone()));
        rows.push(("Size".into(), hb(o.size)));
        rows.push(("New".into(), hb(o.new_bytes)));
        if o.vanished > 0 {
            rows.push((
                "Vanished while read".into(),
                format!("{} (moved or expunged by the running server)", o.vanished),
            ));
        }
    }
    rows.push(("Duration".into(), format!("{:.1} s", o.seconds)));
    if let Some(loc) = &o.location {
        rows.push(("Location".into(), loc.clone()));
    }
    if let Some((used, total, free, count)) = o.storage {
        let pct = (used * 100).checked_div(total).unwrap_or(0);
        rows.push((
            "Storage".into(),
            format!(
                "{} used of {} ({pct}%), {} free",
                hb(used),
                hb(total),
                hb(free)
            ),
        ));
        rows.push(("Snapshots".into(), count.to_string()));
    }
    let mut plain = String::new();
    plain.push_str(if o.ok {
        "The run succeeded.\n\n"
    } else {
        "The run FAILED.\n\n"
    });
    for (k, v) in &rows {
        plain.push_str(&format!("{k:<10} {v}\n"));
    }
    let mut html = format!(
        "<html><body style=\"font-family:sans-serif\"><h2 style=\"color:{}\">{}</h2><table>",
        if o.ok { "#2e7d32" } else { "#c62828" },
        esc(&subject)
    );
    for (k, v) in &rows {
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            esc(k),
            esc(v)
        ));
    }
    html.push_str("</table>");
    if let Some(e) = &o.error {
        plain.push_str(&format!("\nError:\n{e}\n"));
        html.push_str(&format!("<h3>Error</h3><pre>{}</pre>", esc(e)));
    }
    if !o.ok && !o.log_tail.is_empty() {
        plain.push_str("\nLast log lines:\n");
        plain.push_str(&o.log_tail.join("\n"));
        plain.push('\n');
        html.push_str(&format!(
            "<h3>Last log lines</h3><pre>{}</pre>",
            esc(&o.log_tail.join("\n"))
        ));
    }
    html.push_str("</body></html>");
    (subject, plain, html)
}

fn mailbox(s: &str) -> Result<Mailbox, NotifyError> {
    s.parse()
        .map_err(|e: lettre::address::AddressError| NotifyError::Address {
            address: s.into(),
            detail: e.to_string(),
        })
}

/// Send a mail about `o` (blocking; call from a blocking context).
///
/// # Errors
/// When the message cannot be built or the relay refuses it.
pub fn send(cfg: &EmailConfig, o: &Outcome) -> Result<(), NotifyError> {
    let (subject, plain, html) = render(o);
    let from = cfg
        .from
        .clone()
        .unwrap_or_else(|| format!("cshost@{}", o.hostname));
    let msg = Message::builder()
        .from(mailbox(&from)?)
        .to(mailbox(&cfg.to)?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .multipart(MultiPart::alternative_plain_html(plain, html))
        .map_err(|e| NotifyError::Send {
            relay: cfg.relay.clone(),
            detail: e.to_string(),
        })?;
    let (host, port) = match cfg.relay.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(25)),
        None => (cfg.relay.clone(), 25),
    };
    let send_err = |e: String| NotifyError::Send {
        relay: cfg.relay.clone(),
        detail: e,
    };
    let tls = || TlsParameters::new(host.clone()).map_err(|e| send_err(e.to_string()));
    let mut b = SmtpTransport::builder_dangerous(&host)
        .port(port)
        .timeout(Some(Duration::from_secs(30)));
    b = match cfg.security {
        SmtpSecurity::None => b.tls(Tls::None),
        SmtpSecurity::Starttls => b.tls(Tls::Required(tls()?)),
        SmtpSecurity::Tls => b.tls(Tls::Wrapper(tls()?)),
    };
    if let (Some(user), Some(file)) = (&cfg.username, &cfg.password_file) {
        let password = fs_err::read_to_string(file).map_err(|e| NotifyError::Password {
            path: file.display().to_string(),
            detail: e.to_string(),
        })?;
        b = b.credentials(Credentials::new(user.clone(), password.trim().to_string()));
    }
    b.build()
        .send(&msg)
        .map(|_| ())
        .map_err(|e| send_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_mails_carry_the_error_and_log_tail_escaped() {
        let o = Outcome {
            command: "backup".into(),
            ok: false,
            hostname: "mail.example.org".into(),
            seconds: 2.0,
            error: Some("mysql: <dump> failed".into()),
            log_tail: vec!["line 1".into(), "line 2".into()],
            ..Default::default()
        };
        let (subject, plain, html) = render(&o);
        assert_eq!(subject, "cshost backup FAILED - mail.example.org");
        assert!(plain.contains("mysql: <dump> failed") && plain.contains("line 2"));
        assert!(html.contains("mysql: &lt;dump&gt; failed") && !html.contains("<dump>"));
    }

    #[test]
    fn success_mails_carry_the_figures() {
        let o = Outcome {
            command: "backup".into(),
            ok: true,
            hostname: "mail".into(),
            snapshot: Some("20261126T030000Z-abcdef".into()),
            size: 3 << 30,
            new_bytes: 5 << 20,
            seconds: 61.0,
            storage: Some((100 << 30, 1 << 40, 924 << 30, 30)),
            location: Some("u1@box:23/mailcow-backups".into()),
            ..Default::default()
        };
        let (subject, plain, _) = render(&o);
        assert_eq!(subject, "cshost backup OK - mail");
        for needle in [
            "20261126T030000Z-abcdef",
            "3.0 GiB",
            "5.0 MiB",
            "61.0 s",
            "100.0 GiB used of 1.0 TiB (9%)",
            "Snapshots  30",
        ] {
            assert!(plain.contains(needle), "{needle} in {plain}");
        }
    }
}
