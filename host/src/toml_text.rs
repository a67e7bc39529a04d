//! TOML that cshost prints for people to keep or paste: migrated and installed
//! configs, plugin approval snippets. Keys and values go through the `toml`
//! serializer, because Rust's `{:?}` escaping is not TOML's (`\u{1b}` is not a
//! TOML escape, and a quote in a plugin's name must not end its table header).

/// A value as TOML writes it inline: a quoted string, an array, an inline
/// table (struct fields keep their order).
pub fn value<T: serde::Serialize + ?Sized>(v: &T) -> String {
    let mut out = String::new();
    v.serialize(toml::ser::ValueSerializer::new(&mut out))
        .expect("strings, lists and maps always serialise to TOML");
    out
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
pub fn key(k: &str) -> String {
    let mut t = toml::Table::new();
    t.insert(k.into(), toml::Value::Boolean(true));
    let line = toml::to_string(&t).expect("a one-key table serialises");
    line.trim_end()
        .strip_suffix(" = true")
        .expect("the serializer writes `KEY = true`")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: [&str; 9] = [
        "plain",
        "with \"quotes\"",
        "back\\slash\\",
        "new\nline\r\n",
        "tab\tand\u{1b}escape\u{7f}",
        "unicode: grüße 🙂 \u{202e}rtl",
        "'single' and '''triple'''",
        "\"\"\" three quotes",
        "",
    ];

    #[test]
    fn hostile_values_and_keys_round_trip() {
        for s in HOSTILE {
            let doc = format!("{} = {}\n", key(s), value(s));
            let t: toml::Table = toml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!(t.len(), 1, "{doc}");
            assert_eq!(t[s].as_str(), Some(s), "{doc}");
            let header = format!("[plugins.{}]\nx = {}\n", key(s), value(&[s, s]));
            let t: toml::Table =
                toml::from_str(&header).unwrap_or_else(|e| panic!("{header}: {e}"));
            assert_eq!(t["plugins"][s]["x"][1].as_str(), Some(s), "{header}");
        }
    }

    #[test]
    fn struct_fields_keep_their_order_inline() {
        #[derive(serde::Serialize)]
        struct G<'a> {
            volumes: &'a [&'a str],
            exec: std::collections::BTreeMap<&'a str, Vec<&'a str>>,
        }
        let g = G {
            volumes: &["v\"1"],
            exec: [("svc", vec!["prog"])].into(),
        };
        assert_eq!(
            value(&g),
            r#"{ volumes = ['v"1'], exec = { svc = ["prog"] } }"#
        );
    }
}
