//! The Debian source of a private apt configuration: copied from the system's own sources, so no
//! archive host is named in this tree, and the fetch goes wherever the system's apt already goes
//! (a mirror, a proxy, a snapshot).
//!
//! apt reads sources in two formats: one-line entries (`deb [options] URI suite components`) in
//! `sources.list` and `sources.list.d/*.list`, and deb822 stanzas (`Types:`, `URIs:`, `Suites:`,
//! `Components:` ...) in `sources.list.d/*.sources`. Both are read here; the entries kept are the
//! enabled binary (`deb`) entries of the wanted release's suites (`bookworm`, `bookworm-updates`,
//! `bookworm-security`, ...) with the `main` component, and they are written back as one deb822
//! file, `main` only, with any `Architectures` restriction dropped (the private configuration
//! asks for arm64).

use std::fs;
use std::path::Path;

/// One apt source: a set of URIs serving a set of suites.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// `deb`, `deb-src`.
    pub types: Vec<String>,
    /// The archive roots.
    pub uris: Vec<String>,
    /// The suites (`bookworm`, `bookworm-security`, ...).
    pub suites: Vec<String>,
    /// The components (`main`, `contrib`, ...).
    pub components: Vec<String>,
    /// The keyring that signs the archive, if the entry names one.
    pub signed_by: Option<String>,
    /// `Enabled: no` turns a stanza off.
    pub enabled: bool,
}

/// Parses deb822 `.sources` text: stanzas separated by blank lines, `Field: value` lines, and
/// continuation lines that start with white space (a multi-line `Signed-By` key block is kept
/// out: only a keyring path is carried over).
pub fn parse_deb822(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push('\n');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let get = |name: &str| {
            fields
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value.as_str())
        };
        let words = |name: &str| -> Vec<String> {
            get(name)
                .map(|value| value.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        if get("types").is_none() || get("uris").is_none() {
            continue;
        }
        let signed_by = get("signed-by")
            .filter(|value| !value.contains('\n') && !value.is_empty())
            .map(str::to_owned);
        sources.push(Source {
            types: words("types"),
            uris: words("uris"),
            suites: words("suites"),
            components: words("components"),
            signed_by,
            enabled: !get("enabled").is_some_and(|value| value.eq_ignore_ascii_case("no")),
        });
    }
    sources
}

/// Parses one-line `.list` text: `deb [option=value ...] URI suite component...`.
pub fn parse_one_line(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some((kind, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        if kind != "deb" && kind != "deb-src" {
            continue;
        }
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(options) = rest.strip_prefix('[') {
            let Some((options, after)) = options.split_once(']') else {
                continue;
            };
            for option in options.split_whitespace() {
                if let Some(path) = option.strip_prefix("signed-by=") {
                    signed_by = Some(path.to_owned());
                }
            }
            rest = after.trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        sources.push(Source {
            types: vec![kind.to_owned()],
            uris: vec![uri.to_owned()],
            suites: vec![suite.to_owned()],
            components: words.map(str::to_owned).collect(),
            signed_by,
            enabled: true,
        });
    }
    sources
}

/// The enabled `deb` sources of `release`'s suites (`release` itself or `release-<name>`) that
/// have `main`, narrowed to those suites and to `main`.
pub fn release_sources(sources: &[Source], release: &str) -> Vec<Source> {
    let suffixed = format!("{release}-");
    sources
        .iter()
        .filter(|source| source.enabled && source.types.iter().any(|kind| kind == "deb"))
        .filter(|source| {
            source
                .components
                .iter()
                .any(|component| component == "main")
        })
        .filter_map(|source| {
            let suites: Vec<String> = source
                .suites
                .iter()
                .filter(|suite| *suite == release || suite.starts_with(&suffixed))
                .cloned()
                .collect();
            (!suites.is_empty()).then(|| Source {
                types: vec!["deb".to_owned()],
                suites,
                components: vec!["main".to_owned()],
                ..source.clone()
            })
        })
        .collect()
}

/// The deb822 text of `sources`.
pub fn render(sources: &[Source]) -> String {
    let mut text = String::new();
    for source in sources {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("Types: {}\n", source.types.join(" ")));
        text.push_str(&format!("URIs: {}\n", source.uris.join(" ")));
        text.push_str(&format!("Suites: {}\n", source.suites.join(" ")));
        text.push_str(&format!("Components: {}\n", source.components.join(" ")));
        if let Some(keyring) = &source.signed_by {
            text.push_str(&format!("Signed-By: {keyring}\n"));
        }
    }
    text
}

/// Every source the system's apt reads from `etc_apt` (normally `/etc/apt`): `sources.list`,
/// then `sources.list.d/*.list` and `*.sources` in name order (apt ignores other names, such as
/// `*.disabled`). Unreadable files are skipped: they are not sources apt uses either.
pub fn system_sources(etc_apt: &Path) -> Vec<Source> {
    let mut sources = fs::read_to_string(etc_apt.join("sources.list"))
        .map(|text| parse_one_line(&text))
        .unwrap_or_default();
    let mut parts: Vec<_> = fs::read_dir(etc_apt.join("sources.list.d"))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .collect()
        })
        .unwrap_or_default();
    parts.sort();
    for part in parts {
        let Ok(text) = fs::read_to_string(&part) else {
            continue;
        };
        match part.extension().and_then(|extension| extension.to_str()) {
            Some("list") => sources.extend(parse_one_line(&text)),
            Some("sources") => sources.extend(parse_deb822(&text)),
            _ => {}
        }
    }
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://vendor.example/apt
Suites: nodistro
Components: main
Architectures: amd64

Types: deb
URIs: http://off.example/debian
Suites: bookworm
Components: main
Enabled: no
";

    #[test]
    fn deb822_stanzas_parse_with_their_fields() {
        let sources = parse_deb822(DEB822);
        assert_eq!(sources.len(), 4);
        assert_eq!(sources[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(sources[1].types, ["deb", "deb-src"]);
        assert_eq!(
            sources[0].signed_by.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
        assert!(sources[0].enabled && !sources[3].enabled);
    }

    #[test]
    fn one_line_entries_parse_with_their_options() {
        let text = "\
# comment
deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main non-free
deb-src http://mirror.example/debian bookworm main
deb http://vendor.example/apt cloud-sdk-bookworm main
garbage line
";
        let sources = parse_one_line(text);
        assert_eq!(sources.len(), 3);
        assert_eq!(sources[0].uris, ["http://mirror.example/debian"]);
        assert_eq!(sources[0].components, ["main", "non-free"]);
        assert_eq!(sources[0].signed_by.as_deref(), Some("/k.gpg"));
        assert_eq!(sources[1].types, ["deb-src"]);
    }

    #[test]
    fn only_the_releases_enabled_binary_main_suites_are_kept() {
        let mut sources = parse_deb822(DEB822);
        sources.extend(parse_one_line(
            "deb http://vendor.example/apt cloud-sdk-bookworm main\n\
             deb http://mirror.example/debian trixie main\n",
        ));
        let kept = release_sources(&sources, "bookworm");
        let text = render(&kept);
        assert_eq!(
            text,
            "\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"
        );
        assert!(release_sources(&sources, "bullseye").is_empty());
    }

    #[test]
    fn system_sources_reads_both_formats_and_skips_other_names() {
        let dir = std::env::temp_dir().join(format!("frameshift-sources-{}", std::process::id()));
        let parts = dir.join("sources.list.d");
        fs::create_dir_all(&parts).unwrap_or_default();
        fs::write(
            dir.join("sources.list"),
            "deb http://a.example/debian bookworm main\n",
        )
        .unwrap_or_default();
        fs::write(parts.join("b.sources"), DEB822).unwrap_or_default();
        fs::write(
            parts.join("c.list.disabled"),
            "deb http://c.example/debian bookworm main\n",
        )
        .unwrap_or_default();
        let uris: Vec<String> = system_sources(&dir)
            .into_iter()
            .flat_map(|source| source.uris)
            .collect();
        fs::remove_dir_all(&dir).unwrap_or_default();
        assert_eq!(
            uris,
            [
                "http://a.example/debian",
                "http://mirror.example/debian",
                "http://mirror.example/debian-security",
                "https://vendor.example/apt",
                "http://off.example/debian",
            ]
        );
    }
}
