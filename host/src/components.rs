//! Component keywords (`--components`): which plugins a run needs. Pure.

/// A component to run: the plugin that serves it and the keyword it is run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub plugin: String,
    pub keyword: String,
}

/// Resolve requested keywords against the loaded plugins (name, keywords),
/// keeping the plugins' order. `all` selects every plugin once; aliases such
/// as `mariadb` or `valkey` select the plugin that serves them.
///
/// # Errors
/// For a keyword no plugin serves, listing the valid ones.
pub fn resolve(
    requested: &[String],
    plugins: &[(String, Vec<String>)],
) -> Result<Vec<Selected>, String> {
    let words: Vec<String> = requested
        .iter()
        .flat_map(|r| r.split(','))
        .map(|w| w.trim().to_ascii_lowercase())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return Err("no components given; use `all` or a list such as `vmail,crypt`".into());
    }
    let mut picked: Vec<Option<String>> = vec![None; plugins.len()];
    for word in &words {
        if word == "all" {
            for (slot, (_, keys)) in picked.iter_mut().zip(plugins) {
                slot.get_or_insert_with(|| keys.first().cloned().unwrap_or_default());
            }
            continue;
        }
        let Some(i) = plugins.iter().position(|(_, keys)| keys.contains(word)) else {
            let mut valid: Vec<&str> = plugins
                .iter()
                .flat_map(|(_, k)| k.iter().map(String::as_str))
                .collect();
            valid.push("all");
            return Err(format!(
                "unknown component `{word}`; choose from: {}",
                valid.join(" ")
            ));
        };
        picked[i].get_or_insert_with(|| word.clone());
    }
    Ok(plugins
        .iter()
        .zip(picked)
        .filter_map(|((name, _), kw)| {
            kw.map(|keyword| Selected {
                plugin: name.clone(),
                keyword,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugins() -> Vec<(String, Vec<String>)> {
        [
            ("mysql", vec!["mysql", "mariadb"]),
            ("redis", vec!["redis", "valkey"]),
            ("vmail", vec!["vmail"]),
            ("crypt", vec!["crypt"]),
        ]
        .into_iter()
        .map(|(n, k)| (n.to_string(), k.into_iter().map(String::from).collect()))
        .collect()
    }

    fn names(req: &[&str]) -> Result<Vec<String>, String> {
        let req: Vec<String> = req.iter().map(|s| s.to_string()).collect();
        resolve(&req, &plugins()).map(|v| {
            v.into_iter()
                .map(|s| format!("{}:{}", s.plugin, s.keyword))
                .collect()
        })
    }

    #[test]
    fn table() {
        assert_eq!(
            names(&["all"]).unwrap(),
            ["mysql:mysql", "redis:redis", "vmail:vmail", "crypt:crypt"]
        );
        assert_eq!(
            names(&["crypt,vmail"]).unwrap(),
            ["vmail:vmail", "crypt:crypt"]
        );
        assert_eq!(names(&["MariaDB"]).unwrap(), ["mysql:mariadb"]);
        assert_eq!(names(&["valkey", "redis"]).unwrap(), ["redis:valkey"]);
        assert_eq!(names(&["vmail", "all"]).unwrap().len(), 4);
        assert!(
            names(&["sogo"])
                .unwrap_err()
                .contains("unknown component `sogo`")
        );
        assert!(names(&[""]).is_err());
    }
}
