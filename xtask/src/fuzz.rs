//! `cargo xtask fuzz [TARGET...] [--seconds N]`: build the fuzz targets in
//! `fuzz/` and run each in turn for a set time, starting from the seed corpus
//! committed in `fuzz/corpus/<target>/`; report each crash with the file that
//! reproduces it. Not run in CI.
//!
//! How the targets are built on the pinned stable toolchain, without
//! cargo-fuzz and without nightly: cargo-fuzz only adds `-Z` flags for a
//! sanitizer (`-Zsanitizer=address`) or `-Zbuild-std`; libFuzzer's coverage
//! itself comes from LLVM's SanitizerCoverage pass, which stable rustc runs
//! with `-Cpasses=sancov-module` and `-Cllvm-args`. So this sets those flags
//! in RUSTFLAGS for one `cargo build` of the `fuzz/` crate, whose
//! `libfuzzer-sys` dependency compiles libFuzzer (C++) and provides `main`.
//! No AddressSanitizer: it needs `-Zsanitizer`, which stable rustc refuses
//! (RUSTC_BOOTSTRAP=1 would lift that, but makes the stable compiler act as a
//! nightly one, unsupported), and the fuzzed parsers are safe Rust, where
//! out-of-bounds access is already a panic. Debug assertions and overflow
//! checks stay on (the fuzz crate's release profile), so an overflow is a
//! finding too. `--target` keeps the flags off build scripts and proc
//! macros, which are not linked with libFuzzer.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

const DEFAULT_SECONDS: u64 = 60;

/// SanitizerCoverage as libFuzzer wants it (the set cargo-fuzz passes):
/// 8-bit edge counters and the PC table for coverage, comparison tracing so
/// that the fuzzer learns the magic strings (`"format"`, `[repository.local]`),
/// stack depth for `-use_value_profile`.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    -Cllvm-args=-sanitizer-coverage-stack-depth \
    --cfg fuzzing";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let all = targets()?;
    let (mut chosen, seconds) = parse_args(args)?;
    for t in &chosen {
        if !all.contains(t) {
            bail!("no fuzz target `{t}`; the targets are: {}", all.join(", "));
        }
    }
    if chosen.is_empty() {
        chosen = all;
    }
    // Fuzzing takes whole cores for minutes; let builds and tests of others go first.
    let _ = rustix::process::nice(10);
    ensure_cxx()?;
    let bin_dir = build(&chosen)?;
    let mut crashes = Vec::new();
    for t in &chosen {
        let outcome = fuzz_one(&bin_dir, t, seconds)?;
        println!("{t}: {}", outcome.summary);
        if let Some(c) = outcome.crash {
            crashes.push((t.clone(), c, outcome.log));
        }
    }
    if crashes.is_empty() {
        println!("no crash in {} targets, {seconds} s each", chosen.len());
        return Ok(());
    }
    for (t, file, log) in &crashes {
        eprintln!(
            "\n{t} crashed; the input is `{}`.\nReproduce: {} {}\nLog: {}",
            file.display(),
            bin_dir.join(t).display(),
            file.display(),
            log.display()
        );
    }
    bail!("{} of {} fuzz targets crashed", crashes.len(), chosen.len())
}

fn parse_args(args: &[String]) -> Result<(Vec<String>, u64)> {
    let mut targets = Vec::new();
    let mut seconds = DEFAULT_SECONDS;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = match a.as_str() {
            "--seconds" => Some(it.next().context("--seconds needs a number")?.as_str()),
            s => s.strip_prefix("--seconds="),
        };
        match value {
            Some(v) => {
                seconds = v
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .with_context(|| format!("--seconds {v:?} is not a number of seconds"))?;
            }
            None if a.starts_with('-') => {
                bail!("unknown option {a}; usage: cargo xtask fuzz [TARGET...] [--seconds N]")
            }
            None => targets.push(a.clone()),
        }
    }
    Ok((targets, seconds))
}

fn fuzz_dir() -> PathBuf {
    crate::root().join("fuzz")
}

/// `target/fuzz`: the instrumented build must not replace the normal one.
fn work_dir() -> PathBuf {
    crate::target_dir().join("fuzz")
}

/// Every target: one file each in `fuzz/fuzz_targets/`, named as its binary.
fn targets() -> Result<Vec<String>> {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading `{}`", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "rs")
            && let Some(stem) = p.file_stem()
        {
            names.push(stem.to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// libfuzzer-sys compiles libFuzzer with the C++ compiler.
fn ensure_cxx() -> Result<()> {
    let works = |p: &str| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works("c++") && works("ar") {
        return Ok(());
    }
    if !rustix::process::geteuid().is_root() {
        bail!(
            "libFuzzer is C++ and no C++ compiler was found; run as root: apt-get install -y --no-install-recommends g++"
        );
    }
    eprintln!("installing the C++ compiler libFuzzer needs: g++");
    crate::run(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "g++"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .current_dir(crate::root())
        .output()
        .context("running `rustc -vV`")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("`rustc -vV` names no host")
}

/// One `cargo build` of the chosen targets. Returns the binaries' directory.
fn build(targets: &[String]) -> Result<PathBuf> {
    let triple = host_triple()?;
    let mut c = crate::cargo_cmd();
    c.args(["build", "--release", "--manifest-path"])
        .arg(fuzz_dir().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(work_dir())
        .args(["--target", &triple]);
    for t in targets {
        c.args(["--bin", t]);
    }
    c.env("RUSTFLAGS", RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // The targets never run a plugin: none is embedded, and cshost's
        // warning that its binary would lack them does not apply.
        .env_remove("CSHOST_EMBED_DIR")
        .env("CSHOST_PLUGINS_BESIDE_BINARY", "1");
    crate::run(&mut c)?;
    Ok(work_dir().join(triple).join("release"))
}

struct Outcome {
    summary: String,
    crash: Option<PathBuf>,
    log: PathBuf,
}

fn fuzz_one(bin_dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let work = work_dir();
    // New inputs go to the first corpus directory: the committed seeds stay as they are.
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    let logs = work.join("logs");
    for d in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(d).with_context(|| format!("creating `{}`", d.display()))?;
    }
    let log = logs.join(format!("{target}.log"));
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("creating `{}`", log.display()))?;
    let mut c = Command::new(bin_dir.join(target));
    c.arg(&corpus);
    let seeds = fuzz_dir().join("corpus").join(target);
    if seeds.is_dir() {
        c.arg(&seeds);
    }
    let dict = fuzz_dir().join("dicts").join(format!("{target}.dict"));
    if dict.is_file() {
        c.arg(format!("-dict={}", dict.display()));
    }
    c.arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // One input taking 10 s is a hang: the parsers take microseconds.
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    eprintln!("fuzzing {target} for {seconds} s (log: {})", log.display());
    let status = c
        .status()
        .with_context(|| format!("starting {}", bin_dir.join(target).display()))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let stat = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
    };
    let execs = stat("stat::number_of_executed_units:");
    let per_sec = stat("stat::average_exec_per_sec:");
    let cov = text
        .lines()
        .rev()
        .find_map(|l| l.split_once(" cov: ")?.1.split_whitespace().next())
        .unwrap_or("?");
    let crash = text
        .lines()
        .find_map(|l| {
            l.split_once("Test unit written to ")?
                .1
                .split_whitespace()
                .next()
        })
        .map(PathBuf::from);
    let mut summary = format!(
        "{} execs ({} /s), coverage {cov} edges, ",
        execs.map_or("?".into(), |n| n.to_string()),
        per_sec.map_or("?".into(), |n| n.to_string()),
    );
    match (&crash, status.success()) {
        (None, true) => summary.push_str("no crash"),
        (Some(_), _) => {
            // A panic's location and message, or libFuzzer's line for a timeout or leak.
            let lines: Vec<&str> = text.lines().collect();
            let why = match lines.iter().position(|l| l.contains("panicked at")) {
                Some(i) => lines[i..(i + 2).min(lines.len())].join(" "),
                None => lines
                    .iter()
                    .find(|l| l.contains("ERROR: libFuzzer"))
                    .map_or("see the log".into(), |l| l.to_string()),
            };
            summary.push_str(&format!("CRASH: {why}"));
        }
        (None, false) => bail!(
            "{target} stopped with {status} and wrote no reproducer; see `{}`",
            log.display()
        ),
    }
    Ok(Outcome {
        summary,
        crash,
        log,
    })
}
