//! RFC 1035 master files ("zone files") to and from the ledger's [`RecordSet`]s.
//!
//! Reads `$ORIGIN`, `$TTL`, `;` comments, parentheses spanning lines, `@`, relative and
//! absolute names, blank owners (the previous owner), optional TTL and `IN` class in either
//! order, and quoted TXT strings with `\"`, `\\` and `\DDD` escapes. Types: SOA, NS, A, AAAA,
//! CNAME, TXT, MX, SRV, CAA. Names come out lower-case without the final dot; the zone is then
//! checked with the ledger's [`validate_zone`]. Every error names its line.
//!
//! Limits: [`MAX_ZONE_FILE_SIZE_BYTES`]; `$INCLUDE` and `$GENERATE` are refused; classes
//! other than IN are refused.

use cairn_ledger::dns::{validate_zone, RData, RecordError, RecordSet};
use std::{collections::BTreeMap, net::Ipv6Addr, str::FromStr};

/// Largest master file accepted.
pub const MAX_ZONE_FILE_SIZE_BYTES: usize = 4 * 1024 * 1024;
/// TTL used when neither the record nor `$TTL` gives one.
pub const DEFAULT_TTL_SECS: u32 = 3600;

/// Why a master file could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ZoneFileError {
    /// A syntax or value error at a line.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The records parse but the zone breaks a rule.
    #[error(transparent)]
    Invalid(#[from] RecordError),
    /// The file is larger than [`MAX_ZONE_FILE_SIZE_BYTES`].
    #[error("zone file is {0} bytes; at most {MAX_ZONE_FILE_SIZE_BYTES}")]
    TooLarge(usize),
}

/// One token with the line it started on; `quoted` tokens keep spaces.
#[derive(Debug)]
struct Token {
    text: String,
    quoted: bool,
}

/// Splits the file into logical entries (parentheses joined), each a list of tokens, with
/// the line it started on and whether it began with whitespace (blank owner).
fn entries(text: &str) -> Result<Vec<(usize, bool, Vec<Token>)>, ZoneFileError> {
    let mut out = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut start_line = 0;
    let mut blank_owner = false;
    let mut depth = 0usize;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if depth == 0 {
            start_line = n;
            blank_owner = line.starts_with([' ', '\t']);
        }
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                ';' => break,
                '(' => depth += 1,
                ')' => {
                    depth = depth.checked_sub(1).ok_or_else(|| ZoneFileError::Syntax {
                        line: n,
                        reason: "')' without '('".into(),
                    })?;
                }
                '"' => {
                    let mut s = String::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => s.push(unescape(&mut chars, n)?),
                            c => s.push(c),
                        }
                    }
                    if !closed {
                        return Err(ZoneFileError::Syntax {
                            line: n,
                            reason: "unterminated quoted string".into(),
                        });
                    }
                    current.push(Token {
                        text: s,
                        quoted: true,
                    });
                }
                c if c.is_whitespace() => {}
                c => {
                    let mut s = String::from(c);
                    while let Some(&d) = chars.peek() {
                        if d.is_whitespace() || matches!(d, ';' | '(' | ')' | '"') {
                            break;
                        }
                        s.push(d);
                        chars.next();
                    }
                    current.push(Token {
                        text: s,
                        quoted: false,
                    });
                }
            }
        }
        if depth == 0 && !current.is_empty() {
            out.push((start_line, blank_owner, std::mem::take(&mut current)));
        }
    }
    if depth != 0 {
        return Err(ZoneFileError::Syntax {
            line: start_line,
            reason: "'(' is never closed".into(),
        });
    }
    Ok(out)
}

fn unescape(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    line: usize,
) -> Result<char, ZoneFileError> {
    let first = chars.next().ok_or_else(|| ZoneFileError::Syntax {
        line,
        reason: "a '\\' ends the line".into(),
    })?;
    if !first.is_ascii_digit() {
        return Ok(first);
    }
    let mut digits = String::from(first);
    for _ in 0..2 {
        match chars.next() {
            Some(d) if d.is_ascii_digit() => digits.push(d),
            _ => {
                return Err(ZoneFileError::Syntax {
                    line,
                    reason: "\\DDD needs three digits".into(),
                })
            }
        }
    }
    let v: u32 = digits.parse().unwrap_or(256);
    if v > 255 {
        return Err(ZoneFileError::Syntax {
            line,
            reason: format!("\\{digits} is not a byte"),
        });
    }
    Ok(char::from(v as u8))
}

fn absolute(name: &str, origin: &str, line: usize) -> Result<String, ZoneFileError> {
    let lower = name.to_ascii_lowercase();
    if lower == "@" {
        return Ok(origin.to_string());
    }
    if let Some(abs) = lower.strip_suffix('.') {
        if abs.is_empty() {
            return Err(ZoneFileError::Syntax {
                line,
                reason: "the root name is not a valid owner or target here".into(),
            });
        }
        return Ok(abs.to_string());
    }
    if origin.is_empty() {
        return Err(ZoneFileError::Syntax {
            line,
            reason: format!("relative name {name:?} before any $ORIGIN"),
        });
    }
    Ok(format!("{lower}.{origin}"))
}

/// Parses a TTL: seconds, or units like `1h30m` (s, m, h, d, w).
fn ttl(text: &str) -> Option<u32> {
    if let Ok(v) = text.parse::<u32>() {
        return Some(v);
    }
    let mut total: u64 = 0;
    let mut num: u64 = 0;
    let mut any = false;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            num = num.checked_mul(10)?.checked_add(u64::from(d))?;
            any = true;
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        if !any {
            return None;
        }
        total = total.checked_add(num.checked_mul(unit)?)?;
        num = 0;
        any = false;
    }
    if any {
        return None;
    }
    u32::try_from(total).ok()
}

const TYPES: [&str; 9] = ["SOA", "NS", "A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA"];

/// Reads a master file for zone `origin` (lower-case, no final dot, or empty to take it from
/// `$ORIGIN`); returns the zone's origin and its record sets, validated.
pub fn parse(text: &str, origin: &str) -> Result<(String, Vec<RecordSet>), ZoneFileError> {
    if text.len() > MAX_ZONE_FILE_SIZE_BYTES {
        return Err(ZoneFileError::TooLarge(text.len()));
    }
    let mut origin = origin.trim_end_matches('.').to_ascii_lowercase();
    let mut zone_origin = (!origin.is_empty()).then(|| origin.clone());
    let mut default_ttl: Option<u32> = None;
    let mut owner: Option<String> = None;
    // (name, type) -> (ttl, records) in file order.
    let mut sets: BTreeMap<(String, &'static str), (u32, Vec<RData>)> = BTreeMap::new();
    let mut order: Vec<(String, &'static str)> = Vec::new();
    for (line, blank_owner, tokens) in entries(text)? {
        let syntax = |reason: String| ZoneFileError::Syntax { line, reason };
        let first = &tokens[0].text;
        if let Some(directive) = first.strip_prefix('$') {
            match directive.to_ascii_uppercase().as_str() {
                "ORIGIN" => {
                    let o = tokens
                        .get(1)
                        .ok_or_else(|| syntax("$ORIGIN needs a name".into()))?;
                    origin = absolute(&o.text, &origin, line)?;
                    zone_origin.get_or_insert_with(|| origin.clone());
                }
                "TTL" => {
                    let t = tokens
                        .get(1)
                        .ok_or_else(|| syntax("$TTL needs a value".into()))?;
                    default_ttl =
                        Some(ttl(&t.text).ok_or_else(|| syntax(format!("bad TTL {:?}", t.text)))?);
                }
                other => return Err(syntax(format!("${other} is not supported"))),
            }
            continue;
        }
        let mut rest: &[Token] = &tokens;
        let name = if blank_owner {
            owner
                .clone()
                .ok_or_else(|| syntax("a record with a blank owner before any named one".into()))?
        } else {
            let n = absolute(&rest[0].text, &origin, line)?;
            rest = &rest[1..];
            n
        };
        owner = Some(name.clone());
        let mut record_ttl = None;
        let mut rtype = None;
        while let Some(t) = rest.first() {
            if t.quoted {
                return Err(syntax(format!(
                    "expected TTL, class or type, found the string {:?}",
                    t.text
                )));
            }
            let upper = t.text.to_ascii_uppercase();
            if upper == "IN" {
                rest = &rest[1..];
            } else if let Some(v) = ttl(&t.text).filter(|_| record_ttl.is_none()) {
                record_ttl = Some(v);
                rest = &rest[1..];
            } else if let Some(ty) = TYPES.iter().find(|ty| **ty == upper) {
                rtype = Some(*ty);
                rest = &rest[1..];
                break;
            } else if matches!(upper.as_str(), "CH" | "HS" | "CS") {
                return Err(syntax(format!("class {upper} is not supported; use IN")));
            } else {
                return Err(syntax(format!(
                    "unknown or unsupported record type {:?}",
                    t.text
                )));
            }
        }
        let rtype = rtype.ok_or_else(|| syntax("missing record type".into()))?;
        let rdata = rdata(rtype, rest, &origin, line)?;
        let ttl_secs = record_ttl.or(default_ttl).unwrap_or(DEFAULT_TTL_SECS);
        let key = (name, rtype);
        match sets.get_mut(&key) {
            Some((t, records)) => {
                // RFC 2181 5.2: one TTL per set; the lowest wins.
                *t = (*t).min(ttl_secs);
                records.push(rdata);
            }
            None => {
                order.push(key.clone());
                sets.insert(key, (ttl_secs, vec![rdata]));
            }
        }
    }
    let zone = zone_origin.ok_or_else(|| ZoneFileError::Syntax {
        line: 1,
        reason: "no zone origin: give one or start the file with $ORIGIN".into(),
    })?;
    let out: Vec<RecordSet> = order
        .into_iter()
        .map(|key| {
            let (ttl_secs, records) = sets.remove(&key).expect("every key in order is in sets");
            RecordSet {
                name: key.0,
                ttl_secs,
                records,
            }
        })
        .collect();
    validate_zone(&zone, &out)?;
    Ok((zone, out))
}

fn rdata(rtype: &str, fields: &[Token], origin: &str, line: usize) -> Result<RData, ZoneFileError> {
    let syntax = |reason: String| ZoneFileError::Syntax { line, reason };
    let want = |n: usize| -> Result<(), ZoneFileError> {
        if fields.len() == n {
            Ok(())
        } else {
            Err(syntax(format!(
                "{rtype} takes {n} fields, found {}",
                fields.len()
            )))
        }
    };
    let num = |i: usize| -> Result<u32, ZoneFileError> {
        fields[i].text.parse().map_err(|_| {
            syntax(format!(
                "{rtype} field {} must be a number: {:?}",
                i + 1,
                fields[i].text
            ))
        })
    };
    let num16 = |i: usize| -> Result<u16, ZoneFileError> {
        u16::try_from(num(i)?).map_err(|_| syntax(format!("{rtype} field {} exceeds 65535", i + 1)))
    };
    let host = |i: usize| absolute(&fields[i].text, origin, line);
    Ok(match rtype {
        "A" => {
            want(1)?;
            let a = std::net::Ipv4Addr::from_str(&fields[0].text)
                .map_err(|_| syntax(format!("bad IPv4 address {:?}", fields[0].text)))?;
            RData::A(a.octets())
        }
        "AAAA" => {
            want(1)?;
            let a = Ipv6Addr::from_str(&fields[0].text)
                .map_err(|_| syntax(format!("bad IPv6 address {:?}", fields[0].text)))?;
            RData::Aaaa(a.octets())
        }
        "NS" => {
            want(1)?;
            RData::Ns(host(0)?)
        }
        "CNAME" => {
            want(1)?;
            RData::Cname(host(0)?)
        }
        "MX" => {
            want(2)?;
            RData::Mx {
                preference: num16(0)?,
                exchange: host(1)?,
            }
        }
        "SRV" => {
            want(4)?;
            RData::Srv {
                priority: num16(0)?,
                weight: num16(1)?,
                port: num16(2)?,
                target: host(3)?,
            }
        }
        "TXT" => {
            if fields.is_empty() {
                return Err(syntax("TXT needs at least one string".into()));
            }
            RData::Txt(fields.iter().map(|t| t.text.clone()).collect())
        }
        "CAA" => {
            want(3)?;
            let flags = u8::try_from(num(0)?).map_err(|_| syntax("CAA flags exceed 255".into()))?;
            RData::Caa {
                flags,
                tag: fields[1].text.to_ascii_lowercase(),
                value: fields[2].text.clone(),
            }
        }
        "SOA" => {
            want(7)?;
            RData::Soa {
                mname: host(0)?,
                rname: host(1)?,
                refresh: num(3)?,
                retry: num(4)?,
                expire: num(5)?,
                minimum: num(6)?,
            }
        }
        other => return Err(syntax(format!("unsupported type {other}"))),
    })
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:03}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a zone as a master file with absolute names; `parse` reads it back to the same sets.
/// `serial` goes into the SOA (the zone's version on the ledger).
pub fn write(origin: &str, sets: &[RecordSet], serial: u32) -> String {
    let mut out = format!("$ORIGIN {origin}.\n");
    for set in sets {
        for r in &set.records {
            let data = match r {
                RData::Soa {
                    mname,
                    rname,
                    refresh,
                    retry,
                    expire,
                    minimum,
                } => format!("{mname}. {rname}. {serial} {refresh} {retry} {expire} {minimum}"),
                RData::Ns(h) | RData::Cname(h) => format!("{h}."),
                RData::A(a) => std::net::Ipv4Addr::from(*a).to_string(),
                RData::Aaaa(a) => Ipv6Addr::from(*a).to_string(),
                RData::Txt(strings) => strings
                    .iter()
                    .map(|s| quote(s))
                    .collect::<Vec<_>>()
                    .join(" "),
                RData::Mx {
                    preference,
                    exchange,
                } => format!("{preference} {exchange}."),
                RData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                } => format!("{priority} {weight} {port} {target}."),
                RData::Caa { flags, tag, value } => format!("{flags} {tag} {}", quote(value)),
            };
            out.push_str(&format!(
                "{}. {} IN {} {data}\n",
                set.name,
                set.ttl_secs,
                r.type_name()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = r#"
$ORIGIN example.test.
$TTL 1h
@   IN SOA ns1 hostmaster (
        2026112401 ; serial (replaced by the ledger's version on export)
        3600 600 86400 60 )
    IN NS  ns1
    IN NS  ns2.example.test.
ns1 300 IN A 192.0.2.1
ns2     IN 300 A 192.0.2.2
www     CNAME web
web     A 192.0.2.10
        A 192.0.2.11
        AAAA 2001:db8::10
@       MX 10 mail
        TXT "v=spf1 -all" "second \"quoted\" string"
_sip._tcp SRV 10 60 5060 sip
@       CAA 0 issue "ca.example"
*.wild  A 192.0.2.99
"#;

    #[test]
    fn reads_a_typical_zone() {
        let (origin, sets) = parse(ZONE, "").unwrap();
        assert_eq!(origin, "example.test");
        let find = |n: &str, t: &str| {
            sets.iter()
                .find(|s| s.name == n && s.records[0].type_name() == t)
                .unwrap_or_else(|| panic!("{n} {t} missing"))
        };
        assert_eq!(find("example.test", "NS").records.len(), 2);
        assert_eq!(find("ns1.example.test", "A").ttl_secs, 300);
        assert_eq!(find("ns2.example.test", "A").ttl_secs, 300);
        assert_eq!(find("web.example.test", "A").ttl_secs, 3600);
        assert_eq!(find("web.example.test", "A").records.len(), 2);
        assert_eq!(
            find("www.example.test", "CNAME").records,
            vec![RData::Cname("web.example.test".into())]
        );
        assert_eq!(
            find("example.test", "TXT").records,
            vec![RData::Txt(vec![
                "v=spf1 -all".into(),
                "second \"quoted\" string".into()
            ])]
        );
        assert!(matches!(
            find("_sip._tcp.example.test", "SRV").records[0],
            RData::Srv { port: 5060, .. }
        ));
        assert_eq!(find("*.wild.example.test", "A").records.len(), 1);
        assert!(matches!(
            find("example.test", "SOA").records[0],
            RData::Soa { minimum: 60, .. }
        ));
    }

    #[test]
    fn write_then_parse_gives_the_same_sets() {
        let (origin, sets) = parse(ZONE, "").unwrap();
        let text = write(&origin, &sets, 7);
        assert!(
            text.contains(" 7 3600 600 86400 60"),
            "serial follows the version: {text}"
        );
        let (again_origin, again) = parse(&text, "").unwrap();
        assert_eq!(again_origin, origin);
        assert_eq!(again, sets);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "$ORIGIN a.test.\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nx A 300.1.1.1\n",
                4,
                "IPv4",
            ),
            ("$ORIGIN a.test.\nx IN BOGUS 1\n", 2, "record type"),
            ("$ORIGIN a.test.\nx CH A 1.2.3.4\n", 2, "class"),
            ("$ORIGIN a.test.\nx TXT \"open\n", 2, "unterminated"),
            (
                "$ORIGIN a.test.\n@ SOA ( ns1 h 1 2 3 4 5\n",
                2,
                "never closed",
            ),
            ("$INCLUDE other\n", 1, "not supported"),
            ("x A 1.2.3.4\n", 1, "before any $ORIGIN"),
            ("$ORIGIN a.test.\n  A 1.2.3.4\n", 2, "blank owner"),
            ("$ORIGIN a.test.\nx MX 70000 m\n", 2, "65535"),
            ("$ORIGIN a.test.\nx TXT \"a\\9\"\n", 2, "three digits"),
            ("$ORIGIN a.test.\nx \"A\" 1.2.3.4\n", 2, "found the string"),
        ];
        for (text, line, needle) in cases {
            match parse(text, "") {
                Err(ZoneFileError::Syntax { line: l, reason }) => {
                    assert_eq!(l, line, "{text:?}: {reason}");
                    assert!(reason.contains(needle), "{text:?}: {reason}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn zone_rules_apply_after_parsing() {
        let no_ns = "$ORIGIN a.test.\n@ SOA ns1 h 1 2 3 4 5\n";
        assert!(matches!(parse(no_ns, ""), Err(ZoneFileError::Invalid(_))));
        let cname_clash =
            "$ORIGIN a.test.\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nx CNAME y\nx A 1.2.3.4\n";
        assert!(matches!(
            parse(cname_clash, ""),
            Err(ZoneFileError::Invalid(_))
        ));
        assert!(matches!(
            parse(&"x".repeat(MAX_ZONE_FILE_SIZE_BYTES + 1), "a.test"),
            Err(ZoneFileError::TooLarge(_))
        ));
    }

    #[test]
    fn ttl_units() {
        assert_eq!(ttl("3600"), Some(3600));
        assert_eq!(ttl("1h30m"), Some(5400));
        assert_eq!(ttl("1w"), Some(604_800));
        assert_eq!(ttl("h"), None);
        assert_eq!(ttl("10x"), None);
        assert_eq!(ttl("1h5"), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "[ -~\n\t();\"\\\\$]{0,400}") {
            let _ = parse(&text, "a.test");
        }
    }
}
