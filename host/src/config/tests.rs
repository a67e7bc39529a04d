//! Table tests for the config: every example parses, bad values are refused
//! with the key named.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text)
}

#[test]
fn the_example_config_parses() {
    let text = include_str!("../../../config.example.toml");
    let c = parse(text).unwrap();
    assert_eq!(c.backup.components, vec!["all".to_string()]);
    assert!(c.native.services.contains_key("mysql-mailcow"));
}

#[test]
fn the_minimal_config_parses() {
    let c = parse(include_str!("../../../config.minimal.toml")).unwrap();
    assert_eq!(c.mailcow.runtime, RuntimeKind::Native);
    assert!(
        c.repository
            .local
            .unwrap()
            .path
            .starts_with("/tmp/cshost-try")
    );
}

#[test]
fn storage_box_addresses_that_ssh_could_misread_are_refused() {
    let config = |host: &str, user: &str, port: &str| {
        format!(
            "[mailcow]\n[repository.local]\npath = \"/r\"\n[repository.storagebox]\n\
             host = {}\nuser = {}\nport = {port}\nidentity = \"/k\"\nknown-hosts = \"/h\"\n",
            crate::toml_text::value(host),
            crate::toml_text::value(user),
        )
    };
    let good = "u1.your-storagebox.de";
    assert!(parse(&config(good, "u1", "23")).is_ok());
    assert!(parse(&config("192.0.2.1", "u1-sub2", "22")).is_ok());
    for (host, user, port, needle) in [
        (good, "u1", "0", "port = 0"),
        ("", "u1", "23", "host = \"\" is empty"),
        (good, "", "23", "user = \"\" is empty"),
        (
            "-oProxyCommand=sh",
            "u1",
            "23",
            "host = \"-oProxyCommand=sh\" starts with `-`",
        ),
        (good, "-lroot", "23", "user = \"-lroot\" starts with `-`"),
        ("box .de", "u1", "23", "host = \"box .de\" contains a space"),
        (
            good,
            "u1\tx",
            "23",
            "user = \"u1\\tx\" contains a space or a control",
        ),
        (
            "box\n-oX",
            "u1",
            "23",
            "host = \"box\\n-oX\" contains a space or a control",
        ),
        (good, "u1\u{7}", "23", "control character"),
        ("root@box", "u1", "23", "host = \"root@box\" contains `@`"),
        (good, "u1@evil", "23", "user = \"u1@evil\" contains `@`"),
        (good, "u1:x", "23", "contains `:`"),
    ] {
        let err = parse(&config(host, user, port)).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("test.toml") && err.contains("e.g.")
                || (needle == "port = 0" && err.contains(needle) && err.contains("port = 23")),
            "{needle}: {err}"
        );
    }
}

#[test]
fn bad_configs_are_refused_with_the_key_named() {
    let minimal = "[mailcow]\n[repository.local]\npath = \"/r\"\n";
    assert!(parse(minimal).is_ok());
    for (text, needle) in [
        (
            "[mailcow]\ndri = \"/x\"\n[repository.local]\npath = \"/r\"\n",
            "dri",
        ),
        (
            "[mailcow]\n[repository.local]\npath = \"/r\"\n[backup]\nthreads = 0\n",
            "threads",
        ),
        ("[mailcow]\n[repository]\n", "no repository"),
        (
            "[mailcow]\nruntime = \"kubernetes\"\n[repository.local]\npath = \"/r\"\n",
            "kubernetes",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(needle) && err.contains("test.toml"), "{err}");
    }
}

#[test]
fn native_services_list_the_volumes_they_mount_by_short_name() {
    let config = |volumes: &str| {
        format!(
            "[mailcow]\n[repository.local]\npath = \"/r\"\n[native.services.php-fpm-mailcow]\nvolumes = {volumes}\n"
        )
    };
    let c = parse(&config("[\"rspamd-vol-1\"]")).unwrap();
    assert_eq!(
        c.native.services["php-fpm-mailcow"].volumes,
        ["rspamd-vol-1"]
    );
    for bad in ["[\"../rspamd\"]", "[\"rspamd-vol-1/_data\"]", "[\"\"]"] {
        let e = parse(&config(bad)).unwrap_err().to_string();
        assert!(
            e.contains("[native.services.php-fpm-mailcow] volumes") && e.contains("rspamd-vol-1"),
            "{bad}: {e}"
        );
    }
    let e = parse(&config("\"rspamd-vol-1\"")).unwrap_err().to_string();
    assert!(e.contains("volumes"), "{e}");
}

#[test]
fn encryption_names_a_key_file_per_repository() {
    let config = |local: &str, remote: &str| {
        format!(
            "[mailcow]\n[repository.local]\npath = \"/r\"\n{local}\n[repository.storagebox]\n\
             host = \"u1.your-storagebox.de\"\nuser = \"u1\"\nidentity = \"/k\"\nknown-hosts = \"/h\"\n{remote}\n"
        )
    };
    let keys = |c: &Config| -> Vec<(String, Vec<&str>)> {
        c.key_files()
            .into_iter()
            .map(|(p, names)| (p.display().to_string(), names))
            .collect()
    };
    let default = crate::repo::seal::DEFAULT_KEY_FILE.to_string();
    for (local, remote, want) in [
        ("", "", vec![]),
        ("encryption = \"none\"", "", vec![]),
        (
            "encryption = \"key-file\"",
            "encryption = \"key-file\"\nkey-file = \"/etc/cshost/repo.key\"",
            vec![(default.clone(), vec!["local", "storagebox"])],
        ),
    ] {
        let c = parse(&config(local, remote)).unwrap_or_else(|e| panic!("{local} {remote}: {e}"));
        assert_eq!(keys(&c), want, "{local} | {remote}");
    }
    for (local, remote, needle) in [
        (
            "encryption = \"age\"",
            "",
            "unknown variant `age`, expected `none` or `key-file`",
        ),
        (
            "",
            "key-file = \"/etc/cshost/repo.key\"",
            "[repository.storagebox] key-file is set, but encryption is \"none\"; add encryption = \"key-file\"",
        ),
        (
            "encryption = \"key-file\"\nkey-file = \"repo.key\"",
            "",
            "[repository.local] key-file = \"repo.key\" must be an absolute path",
        ),
        ("encryption = \"key-file\"\nkeyfile = \"/k\"", "", "keyfile"),
        // The box receives the local repository's blobs as they are.
        (
            "",
            "encryption = \"key-file\"",
            "must use the same encryption and key-file",
        ),
        (
            "encryption = \"key-file\"\nkey-file = \"/root/local.key\"",
            "encryption = \"key-file\"",
            "must use the same encryption and key-file",
        ),
    ] {
        let err = parse(&config(local, remote)).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("test.toml"),
            "{local} | {remote}: {err}"
        );
    }
}

/// `[repository.local]` is optional once a Storage Box is configured;
/// with neither there is nothing to back up into.
#[test]
fn a_storage_box_alone_is_a_repository_and_neither_is_refused() {
    let local = "[repository.local]\npath = \"/r\"\n";
    let remote = "[repository.storagebox]\nhost = \"u1.your-storagebox.de\"\nuser = \"u1\"\n\
                  identity = \"/k\"\nknown-hosts = \"/h\"\n";
    let sealed = "encryption = \"key-file\"\n";
    let default = crate::repo::seal::DEFAULT_KEY_FILE;
    for (tables, box_only, keys) in [
        (vec![local], false, vec![]),
        (vec![local, remote], false, vec![]),
        (vec![remote], true, vec![]),
        (
            vec![remote, sealed],
            true,
            vec![(default, vec!["storagebox"])],
        ),
        (
            vec![local, sealed, remote, sealed],
            false,
            vec![(default, vec!["local", "storagebox"])],
        ),
    ] {
        let text = format!("[mailcow]\n{}", tables.concat());
        let c = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(c.box_only(), box_only, "{text}");
        let got: Vec<(String, Vec<&str>)> = c
            .key_files()
            .into_iter()
            .map(|(p, names)| (p.display().to_string(), names))
            .collect();
        let want: Vec<(String, Vec<&str>)> =
            keys.into_iter().map(|(p, n)| (p.to_string(), n)).collect();
        assert_eq!(got, want, "{text}");
    }
    for text in [
        "[mailcow]\n[repository]\n",
        "[mailcow]\n[repository]\n[backup]\n",
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.contains("no repository is configured")
                && err.contains("[repository.local]")
                && err.contains("[repository.storagebox]"),
            "{err}"
        );
    }
    // The box's table is as strict alone as beside a local repository.
    let err = parse(&format!("[mailcow]\n{remote}pth = \"x\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pth"), "{err}");
}
