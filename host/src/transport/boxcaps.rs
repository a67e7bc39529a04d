//! What a box offers beyond the confirmed commands. Probed once and cached per
//! box; when the box refuses a command the cache claims (the box changed, or
//! the cache is from another box on the same address), the cache is dropped,
//! the box probed again and the operation retried on the path without it.

use std::process::Output;

use super::boxcmd::{BoxCommand, Caps, PROBED};
use super::storagebox::{BoxRepo, TransportError};

/// Does a probe's outcome say the box lacks the program? A shell answers 127
/// ("not found") or 126 ("not allowed"); a Storage Box's restricted shell
/// prints "Command not found" with an exit code of its own. A program that is
/// there complains about its missing operands instead, or reads the empty
/// stdin and succeeds. Pure.
pub(super) fn absent(out: &Output) -> bool {
    if matches!(out.status.code(), Some(126 | 127)) {
        return true;
    }
    if out.status.success() {
        return false;
    }
    [&out.stderr, &out.stdout].iter().any(|s| {
        let s = String::from_utf8_lossy(s).to_ascii_lowercase();
        s.contains("not found") || s.contains("not allowed")
    })
}

impl BoxRepo {
    fn caps_file(&self) -> std::path::PathBuf {
        self.cache
            .join(format!("caps-{}-{}.toml", self.cfg.host, self.cfg.port))
    }

    /// The cached capabilities, or a fresh probe when there are none.
    ///
    /// # Errors
    /// When the box cannot be reached.
    pub(super) async fn load_or_probe_caps(&self) -> Result<Caps, TransportError> {
        if let Some(c) = fs_err::read_to_string(self.caps_file())
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
        {
            return Ok(c);
        }
        self.probe_caps().await
    }

    /// The box refused `program` although the cache said it offers it: probe
    /// again and record the truth. Returns whether the box offers it now.
    ///
    /// # Errors
    /// When the box cannot be reached.
    pub(super) async fn reprobe(&self, program: &str) -> Result<bool, TransportError> {
        tracing::warn!(
            "{} refused `{program}` although it offered it before; probing its commands again",
            self.target()
        );
        let _ = fs_err::remove_file(self.caps_file());
        let caps = self.probe_caps().await?;
        let has = caps.has(program);
        *self.caps.lock().expect("caps lock") = caps;
        Ok(has)
    }

    async fn probe_caps(&self) -> Result<Caps, TransportError> {
        let mut caps = Caps::default();
        for p in PROBED {
            // Without arguments a real command complains about usage; a
            // restricted shell says it does not know it.
            let out = self
                .run(&BoxCommand {
                    program: p,
                    args: vec![],
                })
                .await?;
            let there = !absent(&out);
            match p {
                "mv" => caps.mv = there,
                "ln" => caps.ln = there,
                "chmod" => caps.chmod = there,
                _ => caps.sha256sum = there,
            }
        }
        tracing::info!(
            "{} offers: mv={} ln={} chmod={} sha256sum={}",
            self.target(),
            caps.mv,
            caps.ln,
            caps.chmod,
            caps.sha256sum
        );
        let file = self.caps_file();
        let text = toml::to_string(&caps).expect("caps serialise");
        crate::repo::atomic::write_atomic(&file, text.as_bytes(), 0o600).map_err(|e| {
            TransportError::Local {
                path: file.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        Ok(caps)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{ExitStatus, Output};

    fn out(code: i32, stdout: &str, stderr: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(code << 8),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn what_says_a_program_is_absent() {
        for (o, gone) in [
            (out(127, "", ""), true),
            (out(126, "", "box-shell: `;` is not allowed"), true),
            (out(127, "", "bash: mv: command not found"), true),
            (
                out(
                    8,
                    "Command not found. Use 'help' to get a list of available commands.",
                    "",
                ),
                true,
            ),
            (
                out(1, "", "mv: missing file operand\nTry 'mv --help'"),
                false,
            ),
            (out(1, "", "chmod: missing operand"), false),
            (out(0, "e3b0c44298fc1c149afbf4c8996fb924  -", ""), false),
        ] {
            assert_eq!(super::absent(&o), gone, "{o:?}");
        }
    }
}
