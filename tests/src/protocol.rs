//! The console protocol, checked strictly: every line is `FS|<domain>|<text>` for a domain of
//! the system (or `hypervisor`), and the last line is the hypervisor's halt line.

use frameshift_xtask::console::{self, HaltLine};

/// The hypervisor's console domain.
pub const HYPERVISOR: &str = "hypervisor";

/// The transcript's lines without line-ending noise (`\r` from the terminal, a trailing empty
/// line).
pub fn transcript_lines(console: &str) -> Vec<&str> {
    console
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.is_empty())
        .collect()
}

/// Checks that every line is `FS|<domain>|...` with `<domain>` in `domains` or the hypervisor,
/// and that the last line is a halt line; returns that halt line.
pub fn check(console: &str, domains: &[&str]) -> Result<HaltLine, String> {
    let lines = transcript_lines(console);
    for line in &lines {
        let Some(parsed) = console::parse_line(line) else {
            return Err(format!("line without the FS|<domain>| prefix: {line:?}"));
        };
        if parsed.domain != HYPERVISOR && !domains.contains(&parsed.domain) {
            return Err(format!(
                "line from unknown domain {:?}: {line:?}",
                parsed.domain
            ));
        }
    }
    let Some(last) = lines.last() else {
        return Err("empty console".to_owned());
    };
    console::parse_halt(last).ok_or_else(|| format!("last line is not a halt line: {last:?}"))
}

/// The texts `domain` printed, in order.
pub fn texts<'a>(console: &'a str, domain: &str) -> Vec<&'a str> {
    transcript_lines(console)
        .into_iter()
        .filter_map(console::parse_line)
        .filter(|line| line.domain == domain)
        .map(|line| line.text)
        .collect()
}

/// Index of the first transcript line equal to `FS|<domain>|<text>` exactly, if any.
pub fn position(console: &str, domain: &str, text: &str) -> Option<usize> {
    let wanted = format!("FS|{domain}|{text}");
    transcript_lines(console)
        .iter()
        .position(|line| *line == wanted)
}

/// Index of the first line of `domain` whose text starts with `prefix`, if any.
pub fn position_starting(console: &str, domain: &str, prefix: &str) -> Option<usize> {
    let wanted = format!("FS|{domain}|{prefix}");
    transcript_lines(console)
        .iter()
        .position(|line| line.starts_with(&wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "FS|hypervisor|boot\r\nFS|hello|hello from hello\r\nFS|hypervisor|halt status=0 reason=idle\r\n";

    #[test]
    fn accepts_a_well_formed_transcript() {
        let halt = check(GOOD, &["hello"]);
        assert_eq!(halt.map(|halt| halt.status), Ok(0));
        assert_eq!(texts(GOOD, "hello"), ["hello from hello"]);
        assert_eq!(position(GOOD, "hello", "hello from hello"), Some(1));
        assert_eq!(position_starting(GOOD, HYPERVISOR, "halt "), Some(2));
    }

    #[test]
    fn refuses_unprefixed_unknown_or_unterminated_transcripts() {
        assert!(check("garbage\nFS|hypervisor|halt status=0 reason=idle\n", &[]).is_err());
        assert!(check(
            "FS|mallory|hi\nFS|hypervisor|halt status=0 reason=idle\n",
            &["hello"]
        )
        .is_err());
        assert!(check("FS|hello|hi\n", &["hello"]).is_err());
        assert!(check("", &["hello"]).is_err());
    }
}
