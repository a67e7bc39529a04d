//! `exec`: a granted program in a granted service, with its stdin fed from a
//! snapshot's artifact and its stdout captured (capped), discarded, or
//! streamed natively into a new artifact (compressed and hashed as it goes).
//! Secret `mailcow.conf` values reach the program through its environment,
//! never its argv.

use tokio::io::AsyncReadExt;

use super::bindings::types::Error;
use super::bindings::wit_host::{
    ArtifactSummary, EnvValue, ExecRequest, ExecResult, StdinSource, StdoutSink,
};
use super::grants::HostCall;
use super::state::{HostState, failed};
use crate::repo::artifact::ArtifactSink;
use crate::repo::capture;
use crate::services::ExecSpec;

/// Captured stdout is capped so a plugin cannot make the host buffer a dump.
const CAPTURE_LIMIT: usize = 1 << 20;
const STDERR_TAIL: usize = 16 << 10;

impl HostState {
    pub(super) async fn run_exec(&mut self, req: ExecRequest) -> Result<ExecResult, Error> {
        let mut secret_keys = Vec::new();
        for (_, v) in &req.env {
            if let EnvValue::ConfSecret(key) = v {
                secret_keys.push(key.as_str());
            }
        }
        self.check(&HostCall::Exec {
            service: &req.service,
            program: &req.program,
            secret_keys,
            stdin_artifact: matches!(req.stdin, StdinSource::Artifact(_)),
            stdout_artifact: matches!(req.stdout, StdoutSink::Artifact(_)),
        })?;
        let stdin_blob = match &req.stdin {
            StdinSource::None => None,
            StdinSource::Artifact(name) => Some(self.find_artifact(name)?),
        };
        let mut env = Vec::with_capacity(req.env.len());
        for (name, value) in &req.env {
            let value = match value {
                EnvValue::Plain(v) => v.clone(),
                EnvValue::ConfSecret(key) => self
                    .env
                    .conf
                    .get(key)
                    .ok_or_else(|| {
                        failed(format!(
                            "`{}` does not set {key}",
                            self.env.conf.path.display()
                        ))
                    })?
                    .to_string(),
            };
            env.push((name.clone(), value));
        }
        let spec = ExecSpec {
            service: req.service.clone(),
            program: req.program.clone(),
            args: req.args.clone(),
            env,
            stdin: stdin_blob.is_some(),
        };
        let mut running = self.env.services.spawn(&spec).await.map_err(failed)?;
        let stdin_task = match (stdin_blob, running.stdin.take()) {
            (Some(blob), Some(stdin)) => Some(tokio::spawn(feed_stdin(blob, stdin))),
            _ => None,
        };
        let mut stderr = running.stderr;
        let stderr_task = tokio::spawn(async move {
            let mut tail = Vec::new();
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            String::from_utf8_lossy(&tail[tail.len().saturating_sub(STDERR_TAIL)..]).into_owned()
        });
        let mut stdout = Vec::new();
        let mut artifact = None;
        let mut buf = vec![0u8; 256 << 10];
        let io = |e: std::io::Error| {
            failed(format!(
                "reading the output of `{}` in `{}`: {e}",
                req.program, req.service
            ))
        };
        match &req.stdout {
            StdoutSink::Capture | StdoutSink::Discard => loop {
                let n = running.stdout.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                if matches!(req.stdout, StdoutSink::Capture) {
                    if stdout.len() + n > CAPTURE_LIMIT {
                        return Err(failed(format!(
                            "`{}` printed more than {CAPTURE_LIMIT} bytes; stream it into an artifact instead",
                            req.program
                        )));
                    }
                    stdout.extend_from_slice(&buf[..n]);
                }
            },
            StdoutSink::Artifact(name) => {
                capture::checked_relative(name).map_err(failed)?;
                let repo = self.repo()?;
                let checked = crate::repo::names::artifact_name(name).map_err(failed)?;
                let mut sink = ArtifactSink::new(&repo, checked).map_err(failed)?;
                loop {
                    let n = running.stdout.read(&mut buf).await.map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    sink.write(&buf[..n])
                        .map_err(|e| failed(format!("writing artifact `{name}`: {e}")))?;
                }
                let (record, stored, tail) = sink.finish().map_err(failed)?;
                artifact = Some(ArtifactSummary {
                    name: name.clone(),
                    blob: record.blob.to_string(),
                    stored_size: record.size,
                    raw_size: record.raw_size,
                    tail,
                });
                if let Some(source) = &self.source {
                    keep_safety_dump(source, &repo, &record.blob, name)?;
                }
                let mut rec = self.record.lock().expect("record lock");
                if stored.new {
                    rec.counts.new_blobs += 1;
                    rec.counts.new_bytes += stored.size;
                }
                rec.counts.bytes += stored.size;
                rec.artifacts.push(record);
            }
        }
        let exit_code = running.exit.await.map_err(io)?;
        let stderr = stderr_task.await.unwrap_or_default();
        if let Some(task) = stdin_task {
            // A program that exits early closes its stdin; its exit code says why.
            if let Ok(Err(e)) = task.await
                && exit_code == 0
            {
                return Err(failed(format!("feeding `{}` its input: {e}", req.program)));
            }
        }
        Ok(ExecResult {
            exit_code,
            stdout,
            stderr,
            artifact,
        })
    }

    /// The blob of an artifact: one of the snapshot's, or one written earlier in this call.
    fn find_artifact(&self, name: &str) -> Result<Box<dyn std::io::Read + Send>, Error> {
        let repo = self.repo()?;
        let own = self
            .record
            .lock()
            .expect("record lock")
            .artifacts
            .iter()
            .find(|a| a.name.as_str() == name)
            .map(|a| a.blob.clone());
        let from_snapshot = self.source.as_ref().and_then(|s| {
            s.record()
                .artifacts
                .iter()
                .find(|a| a.name.as_str() == name)
                .map(|a| a.blob.clone())
        });
        let blob = own
            .or(from_snapshot)
            .ok_or_else(|| failed(format!("no artifact `{name}` in this snapshot")))?;
        // Artifacts are zstd streams: decompressed (and unsealed) as they are fed.
        repo.open_decoded(&blob, crate::repo::manifest::Compression::Zstd)
            .map_err(|e| failed(format!("artifact `{name}` (blob {blob}): {e}")))
    }
}

/// A dump taken during a restore holds the live data from before it (the
/// mysql plugin's safety dump). The repository's copy is unreferenced and a
/// later prune deletes it, so a copy goes beside the restore journal, which
/// names it until the restore commits: a crash after the import still leaves
/// the way back.
fn keep_safety_dump(
    source: &super::state::RestoreSource,
    repo: &crate::repo::LocalRepo,
    blob: &crate::repo::names::BlobId,
    name: &str,
) -> Result<(), Error> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    let mut txn = source.txn.lock().expect("restore transaction lock");
    let path = txn.keep_path(name);
    let tmp = path.with_extension("part");
    let copy = || -> std::io::Result<()> {
        let _ = fs_err::remove_file(&tmp);
        let mut out = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // Unsealed, still zstd: the rollback reads it without the key.
        let mut src = repo.open_decoded(blob, crate::repo::manifest::Compression::None)?;
        std::io::copy(&mut src, &mut out)?;
        out.sync_all()?;
        fs_err::rename(&tmp, &path)
    };
    copy().map_err(|e| failed(format!("keeping the safety dump beside the journal: {e}")))?;
    txn.record(crate::txn::Step::SafetyDump { path })
        .map_err(failed)
}

/// Stream a stored zstd artifact, decompressed, into a program's stdin.
async fn feed_stdin(
    mut decoder: Box<dyn std::io::Read + Send>,
    mut stdin: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = tokio::task::block_in_place(|| decoder.read(&mut buf))?;
        if n == 0 {
            break;
        }
        stdin.write_all(&buf[..n]).await?;
    }
    stdin.shutdown().await
}
