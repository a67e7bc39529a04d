//! `cargo xtask <command>`: build the plugins and the host, run the tests, the
//! demo, the benchmark and the fuzz targets. See README.md.

mod bench;
mod demo;
mod fuzz;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let release = args.iter().any(|a| a == "--release");
    match args.first().map(String::as_str) {
        Some("plugins") => plugins().map(|_| ()),
        Some("build") => build(release).map(|_| ()),
        Some("test") => test(&args[1..]),
        Some("demo") => demo::run(),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  plugins          build the plugins for wasm32-wasip2\n  build [--release]  plugins, then cshost with the plugins embedded\n  test             build everything and run every test\n  demo             back up generated sample mailcow data into a local repository\n  bench [--gb=X | --quick] [--scaling]  cshost against tar|ssh, rsync and restic on one generated mail store (~1.5 GB)\n  fuzz [TARGET...] [--seconds N]  run the fuzz targets in fuzz/, 60 s each (not in CI)"
            );
            bail!("no command given")
        }
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub(crate) fn cargo_cmd() -> Command {
    cargo()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Build every plugin (and the sandbox test guest) in one cargo invocation.
/// Returns the directory holding the `.wasm` files.
pub fn plugins() -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "--release", "--target", "wasm32-wasip2"]);
    for p in builtin_plugins()? {
        c.args(["-p", &format!("cshost-plugin-{p}")]);
    }
    c.args(["-p", "cshost-test-hostile", "-p", "cshost-example-sogo"]);
    // Guests for the WIT version tests: one built for the frozen 0.1.0, one
    // for a version no host supports.
    c.args(["-p", "cshost-test-v01", "-p", "cshost-test-v09"]);
    run(&mut c)?;
    Ok(target_dir().join("wasm32-wasip2").join("release"))
}

/// The built-in plugins, from the list `host/build.rs` also reads.
fn builtin_plugins() -> Result<Vec<String>> {
    let list = root().join("plugins").join("builtin.txt");
    let text =
        std::fs::read_to_string(&list).with_context(|| format!("reading `{}`", list.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Build the plugins, then cshost with them embedded. Returns the binary path.
pub fn build(release: bool) -> Result<PathBuf> {
    let wasm = plugins()?;
    let mut c = cargo();
    c.args(["build", "-p", "cshost"])
        .env("CSHOST_EMBED_DIR", &wasm);
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    Ok(target_dir()
        .join(if release { "release" } else { "debug" })
        .join("cshost"))
}

fn test(extra: &[String]) -> Result<()> {
    ensure_packages()?;
    let wasm = plugins()?;
    // The Storage Box emulation's restricted shell; `cargo test` builds
    // binaries only as test harnesses, so build it as a program first.
    run(cargo().args(["build", "-p", "cshost-testkit", "--bin", "box-shell"]))?;
    let mut c = cargo();
    c.args(["test", "--workspace"])
        .args(extra)
        .env("CSHOST_EMBED_DIR", &wasm)
        .env("CSHOST_TEST_WASM_DIR", &wasm)
        .env(
            "CSHOST_TEST_BOX_SHELL",
            target_dir().join("debug").join("box-shell"),
        );
    run(&mut c)
}

/// Debian packages the tests and the demo use, as (a program it installs,
/// the package): real MariaDB, Redis and sshd servers and their clients,
/// debootstrap and compose for the Docker end-to-end test's images and
/// project. Installed when missing and running as root; otherwise the exact
/// command is printed. This is the only list: CI relies on it too.
const PACKAGES: [(&str, &str); 13] = [
    ("mariadbd", "mariadb-server"),
    ("mariadb", "mariadb-client"),
    ("mariabackup", "mariadb-backup"),
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("zstd", "zstd"),
    ("jq", "jq"),
    ("sshd", "openssh-server"),
    ("rsync", "rsync"),
    ("systemd-analyze", "systemd"),
    ("flock", "util-linux"),
    ("debootstrap", "debootstrap"),
    ("docker-compose", "docker-compose"),
];

pub fn ensure_packages() -> Result<()> {
    let mut missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(p, pkg)| cshost_testkit::servers::require(p, pkg).is_err())
        .map(|(_, pkg)| *pkg)
        .collect();
    // The notification tests' SMTP server is a Python module, not a program.
    if !std::path::Path::new("/usr/lib/python3/dist-packages/aiosmtpd").is_dir() {
        missing.push("python3-aiosmtpd");
    }
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !rustix::process::geteuid().is_root() {
        bail!("missing Debian packages; run as root: {cmd}");
    }
    eprintln!("installing missing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get")
        .args(["update", "-qq"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
