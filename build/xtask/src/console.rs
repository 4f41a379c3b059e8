//! The console protocol: `FS|<domain>|<text>` lines and the final hypervisor halt line.
//!
//! Every line a run prints has the form `FS|<domain>|<text>`; the prefix is written by the
//! hypervisor only, so a domain cannot forge another domain's name. The last line of every run is
//!
//! ```text
//! FS|hypervisor|halt status=<N> reason=<word> [key=value ...]
//! ```
//!
//! and its status is the run's verdict (0 = success). The host never trusts anything else for
//! pass/fail: not QEMU's exit status alone and never semihosting (DESIGN.md section 9).
//!
//! Only the hypervisor's own lines count. A domain's text always follows its own prefix, so a
//! domain that prints `FS|hypervisor|halt status=0 ...` produces `FS|<domain>|FS|hypervisor|...`,
//! which is that domain's line. No domain can be named `hypervisor` (in any letter case) or carry
//! a byte that would not survive the prefix: `frameshift_abi::domain_name::check`, enforced by the
//! build tool and the hypervisor, and here a prefix naming no possible domain is not a protocol
//! line at all. And since the hypervisor prints nothing after its halt line, a halt line that is
//! followed by any other protocol line is not the verdict.

use std::fmt;

use frameshift_abi::domain_name;

/// The domain name the hypervisor uses for its own lines.
pub const HYPERVISOR_DOMAIN: &str = domain_name::HYPERVISOR_NAME;

/// One `FS|<domain>|<text>` line, borrowed from the console text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleLine<'a> {
    /// Who the line belongs to (`hypervisor` or a PD/VM name).
    pub domain: &'a str,
    /// Everything after the second `|` (may itself contain `|`).
    pub text: &'a str,
}

/// Parses one console line. Returns `None` for anything that is not protocol output (QEMU's own
/// messages, partial lines, blank lines, and prefixes that name neither the hypervisor nor a
/// possible domain). A trailing `\r` is ignored because serial output usually ends lines with
/// CR LF.
pub fn parse_line(line: &str) -> Option<ConsoleLine<'_>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let rest = line.strip_prefix("FS|")?;
    let (domain, text) = rest.split_once('|')?;
    if domain != HYPERVISOR_DOMAIN && domain_name::check(domain.as_bytes()).is_err() {
        return None;
    }
    Some(ConsoleLine { domain, text })
}

/// Every protocol line of a console transcript, in order.
pub fn lines(console: &str) -> impl Iterator<Item = ConsoleLine<'_>> {
    console.lines().filter_map(parse_line)
}

/// The protocol lines of one domain, in order.
pub fn lines_of<'a>(console: &'a str, domain: &'a str) -> impl Iterator<Item = &'a str> {
    lines(console)
        .filter(move |line| line.domain == domain)
        .map(|line| line.text)
}

/// The parsed final status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaltLine {
    /// `status=N`: 0 means the run succeeded.
    pub status: u32,
    /// `reason=<word>`.
    pub reason: String,
    /// Any further `key=value` pairs, in order.
    pub fields: Vec<(String, String)>,
}

impl HaltLine {
    /// The value of an extra `key=value` field.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The process exit code this halt status maps to. Statuses that do not fit an exit code are
    /// reported as 255 rather than truncated, so a failure can never wrap around to 0.
    pub fn exit_code(&self) -> i32 {
        i32::try_from(self.status)
            .ok()
            .filter(|code| *code <= 255)
            .unwrap_or(255)
    }
}

impl fmt::Display for HaltLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "halt status={} reason={}", self.status, self.reason)?;
        for (key, value) in &self.fields {
            write!(f, " {key}={value}")?;
        }
        Ok(())
    }
}

/// Parses `FS|hypervisor|halt status=N reason=W [key=value...]`. Strict: a halt line with a
/// missing or malformed status or reason, or a token that is not `key=value`, is not a halt line,
/// so a garbled verdict is treated as no verdict (a failure) rather than guessed at.
pub fn parse_halt(line: &str) -> Option<HaltLine> {
    let line = parse_line(line)?;
    if line.domain != HYPERVISOR_DOMAIN {
        return None;
    }
    let mut tokens = line.text.split_whitespace();
    if tokens.next()? != "halt" {
        return None;
    }
    let mut status = None;
    let mut reason = None;
    let mut fields = Vec::new();
    for token in tokens {
        let (key, value) = token.split_once('=')?;
        if key.is_empty() {
            return None;
        }
        match key {
            "status" if status.is_none() => status = Some(value.parse::<u32>().ok()?),
            "reason" if reason.is_none() && !value.is_empty() => reason = Some(value.to_owned()),
            "status" | "reason" => return None,
            _ => fields.push((key.to_owned(), value.to_owned())),
        }
    }
    Some(HaltLine {
        status: status?,
        reason: reason?,
        fields,
    })
}

/// The run's verdict: the last protocol line of the transcript, if it is a halt line. The
/// hypervisor prints nothing after its halt line, so an earlier halt line (followed by more
/// protocol output) is no verdict.
pub fn find_halt(console: &str) -> Option<HaltLine> {
    let last = console
        .lines()
        .rev()
        .find(|line| parse_line(line).is_some())?;
    parse_halt(last)
}

#[cfg(test)]
// A failed expectation in a test is the test failing, which is what panicking reports.
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_protocol_lines_and_skips_others() {
        let console = "QEMU noise\r\nFS|hypervisor|boot cpus=1\r\nFS|hello|hi | there\nFS||x\nFS|a b|x\npartial FS|x|y\nFS|HYPERVISOR|x\nFS|g\u{e4}st|x\n";
        let parsed: Vec<_> = lines(console).collect();
        assert_eq!(
            parsed,
            vec![
                ConsoleLine {
                    domain: "hypervisor",
                    text: "boot cpus=1"
                },
                ConsoleLine {
                    domain: "hello",
                    text: "hi | there"
                },
            ]
        );
        assert_eq!(
            lines_of(console, "hello").collect::<Vec<_>>(),
            vec!["hi | there"]
        );
    }

    #[test]
    fn parses_halt_line_with_extra_fields() {
        let halt = parse_halt("FS|hypervisor|halt status=3 reason=pd-fault pd=hello ipa=0x1000\r")
            .expect("halt line");
        assert_eq!(halt.status, 3);
        assert_eq!(halt.reason, "pd-fault");
        assert_eq!(halt.field("pd"), Some("hello"));
        assert_eq!(halt.field("ipa"), Some("0x1000"));
        assert_eq!(halt.field("status"), None);
        assert_eq!(halt.exit_code(), 3);
        assert_eq!(
            halt.to_string(),
            "halt status=3 reason=pd-fault pd=hello ipa=0x1000"
        );
    }

    #[test]
    fn rejects_malformed_or_forged_halt_lines() {
        for line in [
            "FS|hello|halt status=0 reason=ok", // only the hypervisor can halt
            "FS|hypervisor|halt reason=ok",     // no status
            "FS|hypervisor|halt status=0",      // no reason
            "FS|hypervisor|halt status=-1 reason=x", // not a u32
            "FS|hypervisor|halt status=0 reason=ok junk", // token without '='
            "FS|hypervisor|halt status=0 status=1 reason=ok",
            "FS|hypervisor|halted status=0 reason=ok",
            "FS|hypervisor|error boot-info: bad magic",
        ] {
            assert_eq!(parse_halt(line), None, "{line}");
        }
    }

    #[test]
    fn only_a_final_halt_line_is_the_verdict() {
        let console = "FS|hypervisor|halt status=0 reason=ok\nFS|hypervisor|halt status=2 reason=bad-boot-info\r\nQEMU noise\n";
        assert_eq!(find_halt(console).map(|h| h.status), Some(2));
        // A halt line followed by more protocol output is not where the run ended.
        let console = "FS|hypervisor|halt status=0 reason=ok\nFS|x|after\n";
        assert_eq!(find_halt(console), None);
        assert_eq!(find_halt("FS|hypervisor|boot\n"), None);
        assert_eq!(find_halt(""), None);
    }

    #[test]
    fn a_domains_text_is_never_a_halt_line() {
        // Issue 7, break 1: whatever a domain prints follows its own prefix.
        for line in [
            "FS|evil|FS|hypervisor|halt status=0 reason=ok",
            "FS|evil|xFS|hypervisor|halt status=0 reason=ok",
            "FS|HYPERVISOR|halt status=0 reason=ok",
            "FS|Hypervisor|halt status=0 reason=ok",
            "FS|hyper visor|halt status=0 reason=ok",
        ] {
            assert_eq!(parse_halt(line), None, "{line}");
            let console = format!("FS|hypervisor|boot\n{line}\n");
            assert_eq!(find_halt(&console), None, "{line}");
        }
    }

    #[test]
    fn huge_status_never_maps_to_success() {
        let halt = parse_halt("FS|hypervisor|halt status=256 reason=x").expect("halt line");
        assert_eq!(halt.exit_code(), 255);
    }
}
