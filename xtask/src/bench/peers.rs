//! The peers cshost is measured against, as command lines over the same ssh
//! endpoint: the raw `tar | ssh box dd` pipe (the wire's limit), `rsync -a
//! --link-dest` into dated directories, and restic over sftp. Each backs up
//! the same volume directories cshost's file components cover.

use std::path::{Path, PathBuf};
use std::process::Command;

use cshost_testkit::servers::require;
use cshost_testkit::sshbox::Endpoint;

use super::measure::sh_quote;

/// Not a secret: the bench's throwaway restic repository. It reaches restic
/// through the environment, never argv, as a real one would.
const RESTIC_PASSWORD: &str = "bench-not-a-real-secret";

/// Whether `program` is there, installing `package` with apt when it is
/// missing and we are root. Prints why a peer is left out otherwise.
pub(crate) fn available(program: &str, package: &str) -> bool {
    if require(program, package).is_ok() {
        return true;
    }
    if !rustix::process::geteuid().is_root() {
        println!("note: `{program}` is missing; as root: apt-get install {package}; left out");
        return false;
    }
    println!("installing {package} for the comparison");
    let _ = Command::new("apt-get")
        .args(["update", "-qq"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !ok || require(program, package).is_err() {
        println!("note: installing {package} failed; {program} is left out");
        return false;
    }
    true
}

pub(crate) struct Peers {
    /// ssh and its options for the box, without the host.
    pub(crate) ssh: Vec<String>,
    pub(crate) user: String,
    /// The directory holding the volumes, and the volume directories in it
    /// that are backed up.
    pub(crate) volumes: PathBuf,
    pub(crate) names: Vec<String>,
    pub(crate) restic_cache: PathBuf,
}

impl Peers {
    pub(crate) fn new(
        box_link: &Endpoint,
        volumes: &Path,
        names: &[String],
        restic_cache: &Path,
    ) -> Self {
        Self {
            ssh: box_link.ssh_argv(),
            user: box_link.user.clone(),
            volumes: volumes.to_path_buf(),
            names: names.to_vec(),
            restic_cache: restic_cache.to_path_buf(),
        }
    }

    fn ssh_line(&self) -> String {
        self.ssh
            .iter()
            .map(|w| sh_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn sources(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.names.iter().map(|n| self.volumes.join(n))
    }

    /// `tar` of the volumes into one file on the box. The box's restricted
    /// shell offers `dd` (a real Storage Box does too), which writes what
    /// arrives and nothing more.
    pub(crate) fn raw_full(&self, remote_file: &str) -> Command {
        let names: Vec<String> = self.names.iter().map(|n| sh_quote(n)).collect();
        let line = format!(
            "set -o pipefail; tar -C {} -cf - {} | {} 127.0.0.1 {}",
            sh_quote(&self.volumes.display().to_string()),
            names.join(" "),
            self.ssh_line(),
            sh_quote(&format!("dd of={remote_file} bs=1M status=none"))
        );
        let mut c = Command::new("bash");
        c.args(["-c", &line]);
        c
    }

    /// `rsync -a` of the volumes into `dest/` on the box; with `link_dest`
    /// (relative to `dest`), unchanged files become hard links to it.
    pub(crate) fn rsync_backup(&self, dest: &str, link_dest: Option<&str>) -> Command {
        let mut c = Command::new("rsync");
        c.args(["-a", "-e", &self.ssh_line()]);
        if let Some(l) = link_dest {
            c.arg(format!("--link-dest={l}"));
        }
        c.args(self.sources())
            .arg(format!("{}@127.0.0.1:{dest}/", self.user));
        c
    }

    /// `rsync -a` of `remote` on the box into the local `target`.
    pub(crate) fn rsync_fetch(&self, remote: &str, target: &Path) -> Command {
        let mut c = Command::new("rsync");
        c.args(["-a", "-e", &self.ssh_line()])
            .arg(format!("{}@127.0.0.1:{remote}", self.user))
            .arg(target);
        c
    }

    /// restic on the repository `repo` (relative to the box's home), over
    /// sftp through the same ssh as the others; the box's forced command
    /// lets the sftp subsystem through.
    pub(crate) fn restic(&self, repo: &str) -> Command {
        let mut c = Command::new("restic");
        c.args(["-q", "-r", &format!("sftp:{}@127.0.0.1:{repo}", self.user)])
            .arg("-o")
            .arg(format!(
                "sftp.command={} 127.0.0.1 -s sftp",
                self.ssh_line()
            ))
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
            .env("RESTIC_CACHE_DIR", &self.restic_cache);
        c
    }

    pub(crate) fn restic_backup(&self, repo: &str) -> Command {
        let mut c = self.restic(repo);
        c.args(["backup", "--host", "bench"]).args(self.sources());
        c
    }

    /// The absolute path restic recorded for `rel` under the volumes.
    pub(crate) fn restic_path(&self, rel: &str) -> PathBuf {
        self.volumes.join(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers() -> Peers {
        Peers {
            ssh: vec![
                "ssh".into(),
                "-p".into(),
                "2222".into(),
                "-i".into(),
                "/k ey".into(),
            ],
            user: "u1".into(),
            volumes: "/v".into(),
            names: vec!["p_vmail-vol-1".into(), "p_crypt-vol-1".into()],
            restic_cache: "/c".into(),
        }
    }

    fn argv(c: &Command) -> Vec<String> {
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn every_peer_goes_through_the_same_ssh() {
        let p = peers();
        let ssh = "ssh -p 2222 -i '/k ey'";
        let raw = argv(&p.raw_full("raw/full.tar"));
        assert_eq!(
            raw[2],
            format!(
                "set -o pipefail; tar -C /v -cf - p_vmail-vol-1 p_crypt-vol-1 | {ssh} 127.0.0.1 'dd of=raw/full.tar bs=1M status=none'"
            )
        );
        assert_eq!(
            argv(&p.rsync_backup("rsync/day2", Some("../day1"))),
            [
                "rsync",
                "-a",
                "-e",
                ssh,
                "--link-dest=../day1",
                "/v/p_vmail-vol-1",
                "/v/p_crypt-vol-1",
                "u1@127.0.0.1:rsync/day2/"
            ]
        );
        let restic = p.restic_backup("restic");
        assert_eq!(
            argv(&restic)[..6],
            [
                "restic",
                "-q",
                "-r",
                "sftp:u1@127.0.0.1:restic",
                "-o",
                &format!("sftp.command={ssh} 127.0.0.1 -s sftp")
            ]
        );
        // the password is in the environment, not on the command line
        assert!(!argv(&restic).iter().any(|a| a.contains(RESTIC_PASSWORD)));
        assert!(
            restic
                .get_envs()
                .any(|(k, v)| k == "RESTIC_PASSWORD" && v.is_some())
        );
    }
}
