//! Kubernetes names: checking the names a job refers to, and building names and label values the
//! operator writes. Pure; never panics, whatever the input.
//!
//! The rules are the ones the Kubernetes API server applies:
//!
//! * object names of Secrets, ConfigMaps and custom resources are DNS subdomains (RFC 1123): at
//!   most 253 characters, lower-case letters, digits, `-` and `.`, every dot-separated part
//!   starting and ending with a letter or digit;
//! * namespaces are DNS labels: the same without dots, at most 63 characters;
//! * keys of a ConfigMap's or Secret's `data`: at most 253 characters of letters, digits, `-`,
//!   `_` and `.`, not `.` and not starting with `..`;
//! * label values: at most 63 characters of letters, digits, `-`, `_` and `.`, starting and ending
//!   with a letter or digit (or empty).
//!
//! The CRD carries the same rules as OpenAPI patterns ([`DNS_SUBDOMAIN_PATTERN`],
//! [`DATA_KEY_PATTERN`]), so the API server rejects what [`check_object_name`] and
//! [`check_data_key`] reject.

use sha2::{Digest, Sha256};

/// Longest object name (DNS subdomain).
pub const MAX_OBJECT_NAME_LEN: usize = 253;
/// Longest namespace name (DNS label).
pub const MAX_DNS_LABEL_LEN: usize = 63;
/// Longest key of a ConfigMap's or Secret's `data`.
pub const MAX_DATA_KEY_LEN: usize = 253;
/// Longest label value.
pub const MAX_LABEL_VALUE_LEN: usize = 63;

/// RFC 1123 subdomain, anchored (the API server's schema patterns are not anchored implicitly).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Key of a ConfigMap's or Secret's `data`: `[-._a-zA-Z0-9]+` except `.`, `..` and anything
/// starting with `..` (an optional single leading dot, then a character that is not a dot).
pub const DATA_KEY_PATTERN: &str = r"^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$";

/// Hex digits of the SHA-256 prefix that keeps shortened names and label values distinct.
const HASH_LEN: usize = 10;

/// Longest suffix [`derived_name`] keeps; longer ones are cut (and the name hashed).
const MAX_SUFFIX_LEN: usize = 63;

const SUBDOMAIN_RULE: &str = "a DNS subdomain (RFC 1123): at most 253 characters, lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit";
const DNS_LABEL_RULE: &str = "a DNS label (RFC 1123): at most 63 characters, lower-case letters, digits and '-', starting and ending with a letter or digit";
const DATA_KEY_RULE: &str = "at most 253 characters of letters, digits, '-', '_' and '.', not '.' and not starting with '..'";

/// Longest part of a value quoted in a message.
const MAX_QUOTED_CHARS: usize = 80;

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One dot-free part of a DNS name: non-empty, `[-a-z0-9]`, alphanumeric at both ends.
fn is_label_part(part: &str) -> bool {
    let b = part.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first)
                && is_lower_alnum(last)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// Whether `s` is a valid Kubernetes object name (RFC 1123 DNS subdomain, at most 253
/// characters), as Secrets, ConfigMaps and SkillTrainingJobs require.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_OBJECT_NAME_LEN && s.split('.').all(is_label_part)
}

/// Whether `s` is a valid RFC 1123 DNS label (at most 63 characters, no dots), as namespace
/// names require.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= MAX_DNS_LABEL_LEN && is_label_part(s)
}

/// Whether `s` is a valid key of a ConfigMap's or Secret's `data`.
pub fn is_data_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_DATA_KEY_LEN
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && !s.starts_with("..")
        && s != "."
}

/// Whether `s` is a valid label value (possibly empty).
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (None, _) | (_, None) => true,
        (Some(&first), Some(&last)) => {
            b.len() <= MAX_LABEL_VALUE_LEN
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
    }
}

/// `value` quoted for a message, cut if long.
fn quoted(value: &str) -> String {
    format!("{:?}", crate::text::truncate_chars(value, MAX_QUOTED_CHARS))
}

/// The first character of `s` (with its 1-based position) for which `allowed` is false.
fn first_disallowed(s: &str, allowed: impl Fn(char) -> bool) -> Option<(usize, char)> {
    s.chars()
        .enumerate()
        .find(|&(_, c)| !allowed(c))
        .map(|(i, c)| (i + 1, c))
}

/// What is wrong with `s` as a DNS name (subdomain if `dots`, label otherwise), if anything.
fn dns_problem(s: &str, dots: bool, max_len: usize) -> Option<String> {
    if s.is_empty() {
        return Some("it is empty".to_string());
    }
    if s.len() > max_len {
        return Some(format!(
            "it is {} characters long, more than {max_len}",
            s.chars().count()
        ));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if let Some((pos, c)) = first_disallowed(s, |c| allowed(c) || (dots && c == '.')) {
        let hint = if c.is_ascii_uppercase() {
            " (upper-case letters are not allowed)"
        } else {
            ""
        };
        return Some(format!("character {pos} is {c:?}{hint}"));
    }
    let parts: Vec<&str> = if dots {
        s.split('.').collect()
    } else {
        vec![s]
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Some("it starts or ends with '.' or has two dots in a row".to_string());
    }
    if let Some(p) = parts.iter().find(|p| !is_label_part(p)) {
        return Some(if dots {
            format!(
                "part {} does not start and end with a letter or digit",
                quoted(p)
            )
        } else {
            "it does not start and end with a letter or digit".to_string()
        });
    }
    None
}

/// Checks that `value`, found at `field_path`, is a valid Kubernetes object name (a DNS
/// subdomain). The error names the field, quotes the value and says what is wrong, e.g.
/// `spec.connection.credentialsSecretRef.name: "a?b" is not a valid Kubernetes object name:
/// character 2 is '?'; …`.
pub fn check_object_name(field_path: &str, value: &str) -> Result<(), String> {
    match dns_problem(value, true, MAX_OBJECT_NAME_LEN) {
        None => Ok(()),
        Some(problem) => Err(format!(
            "{field_path}: {} is not a valid Kubernetes object name: {problem}; use {SUBDOMAIN_RULE}",
            quoted(value)
        )),
    }
}

/// Checks that `value`, found at `field_path`, is a valid namespace name (a DNS label).
pub fn check_namespace(field_path: &str, value: &str) -> Result<(), String> {
    match dns_problem(value, false, MAX_DNS_LABEL_LEN) {
        None => Ok(()),
        Some(problem) => Err(format!(
            "{field_path}: {} is not a valid namespace name: {problem}; use {DNS_LABEL_RULE}",
            quoted(value)
        )),
    }
}

/// Checks that `value`, found at `field_path`, is a valid key of a ConfigMap's or Secret's
/// `data`.
pub fn check_data_key(field_path: &str, value: &str) -> Result<(), String> {
    if is_data_key(value) {
        return Ok(());
    }
    let problem = if value.is_empty() {
        "it is empty".to_string()
    } else if value.len() > MAX_DATA_KEY_LEN {
        format!(
            "it is {} characters long, more than {MAX_DATA_KEY_LEN}",
            value.chars().count()
        )
    } else if let Some((pos, c)) = first_disallowed(value, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
    }) {
        format!("character {pos} is {c:?}")
    } else {
        "it is '.' or starts with '..'".to_string()
    };
    Err(format!(
        "{field_path}: {} is not a valid ConfigMap or Secret key: {problem}; use {DATA_KEY_RULE}",
        quoted(value)
    ))
}

/// First [`HASH_LEN`] hex digits of the SHA-256 of `parts`, each length-prefixed so that
/// different splits of the same bytes hash differently.
fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let mut hex = hex::encode(h.finalize());
    hex.truncate(HASH_LEN);
    hex
}

/// `s` cut to at most `max` bytes (all ASCII by then) without a trailing separator.
fn cut_ascii(s: &str, max: usize, separators: &[char]) -> String {
    let cut = crate::text::clip_bytes(s, max);
    cut.trim_end_matches(separators).to_string()
}

/// A label value for the object named `name`, for selecting what the operator made for it.
///
/// A valid object name of at most 63 characters is returned unchanged. A longer one (object
/// names go up to 253) is cut to its first characters and ends with `-` and 10 hex digits of the
/// SHA-256 of the whole name, so two long names that share a prefix still get different values.
/// Any other input (not a valid name) is made valid the same way: characters a label value cannot
/// hold become `-` and the hash of the original is appended. The result is always a valid label
/// value of at most 63 characters and never empty for non-empty input.
///
/// A label value is for selecting, not for identity: a short name can be chosen to equal the cut
/// form of a long one. Ownership is decided by owner references.
pub fn label_value(name: &str) -> String {
    if is_label_value(name) {
        return name.to_string();
    }
    let sanitized: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let sanitized = sanitized.trim_start_matches(['-', '_', '.']);
    let separators = ['-', '_', '.'];
    let prefix = cut_ascii(sanitized, MAX_LABEL_VALUE_LEN - 1 - HASH_LEN, &separators);
    let hash = short_hash(&[name]);
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

/// `s` made into a DNS subdomain as far as possible: ASCII letters lower-cased, other characters
/// outside `[-a-z0-9.]` replaced by `-`, and every dot-separated part trimmed of `-` at its ends
/// (empty parts dropped). The result is a valid subdomain of any length, or empty.
fn sanitize_subdomain(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    mapped
        .split('.')
        .map(|p| p.trim_matches('-'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// The name of an object the operator makes for a job: `<base>-<suffix>`, e.g.
/// `derived_name("faq", "audit-3")` is `faq-audit-3`.
///
/// When that is not a valid object name (too long: job names go up to 253 characters, as do the
/// names built from them; or characters a name cannot hold), the result is
/// `<cut base>-<hash>-<suffix>`: the base is cut (and made valid), and 10 hex digits of the
/// SHA-256 of the original base and suffix keep different inputs apart. A suffix longer than 63
/// characters is cut too. The result is always a valid DNS subdomain of at most 253 characters;
/// the same inputs always give the same name, so a retried create finds the object made before.
/// An empty suffix gives the base alone (or its shortened form).
pub fn derived_name(base: &str, suffix: &str) -> String {
    let joined = if suffix.is_empty() {
        base.to_string()
    } else {
        format!("{base}-{suffix}")
    };
    if is_dns_subdomain(&joined) {
        return joined;
    }
    let hash = short_hash(&[base, suffix]);
    let separators = ['-', '.'];
    let suffix = cut_ascii(&sanitize_subdomain(suffix), MAX_SUFFIX_LEN, &separators);
    let fixed = hash.len()
        + if suffix.is_empty() {
            0
        } else {
            suffix.len() + 1
        };
    let room = MAX_OBJECT_NAME_LEN - fixed - 1;
    let base = cut_ascii(&sanitize_subdomain(base), room, &separators);
    [base.as_str(), hash.as_str(), suffix.as_str()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One dot-free part of a DNS name: 1-63 characters.
    fn part() -> impl Strategy<Value = String> {
        "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
    }

    /// Valid object names whose length is drawn from `len` (1 to 253), with and without dots.
    fn name_of_len(len: impl Strategy<Value = usize>) -> impl Strategy<Value = String> {
        (proptest::collection::vec(part(), 1..8), len).prop_map(|(parts, len)| {
            let mut s = parts.join(".");
            s.truncate(len);
            // Cutting may leave a trailing '-' or '.'; remove it and pad with a letter, which
            // keeps the last part valid (parts of a subdomain may be longer than 63).
            let trimmed = s.trim_end_matches(['-', '.']).len();
            s.truncate(trimmed);
            while s.len() < len {
                s.push('a');
            }
            s
        })
    }

    /// Valid object names of every length from 1 to 253, a third of them exactly 253 long.
    fn object_name() -> impl Strategy<Value = String> {
        name_of_len(prop_oneof![1 => Just(253usize), 1 => 1usize..=253, 1 => 54usize..=80])
    }

    /// Suffixes the operator uses: `audit-<n>`, `report`, `artifacts-<hash>`.
    fn suffix() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "audit-[0-9]{1,10}",
            "[a-z]{1,12}",
            "artifacts-[0-9a-f]{10}",
        ]
    }

    #[test]
    fn dns_subdomains() {
        let max = "a".repeat(253);
        for ok in [
            "a",
            "0",
            "cxone-credentials",
            "a.b",
            "a-b.c-d.e",
            "x1.y2",
            max.as_str(),
        ] {
            assert!(is_dns_subdomain(ok), "{ok:?} should be valid");
        }
        let too_long = "a".repeat(254);
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "../../ns/secrets/stolen",
            "cxone-credentials?watch=true",
            "a/b",
            "a b",
            "A",
            "a_b",
            "-a",
            "a-",
            ".a",
            "a.",
            "a..b",
            "a.-b",
            "a-.b",
            "é",
            "a%2fb",
            too_long.as_str(),
        ] {
            assert!(!is_dns_subdomain(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn dns_labels_are_subdomains_without_dots_up_to_63() {
        assert!(is_dns_label("team-a"));
        assert!(is_dns_label(&"a".repeat(63)));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(!is_dns_label("a.b"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label("-a"));
    }

    #[test]
    fn data_keys() {
        for ok in [
            "clientId",
            "utterances.jsonl",
            "a_b-c.d",
            ".hidden",
            ".-",
            "a..b",
            "A",
        ] {
            assert!(is_data_key(ok), "{ok:?} should be valid");
        }
        for bad in [
            "",
            ".",
            "..",
            "..a",
            "../x",
            "a/b",
            "a b",
            "k?x=1",
            "é",
            &"k".repeat(254),
        ] {
            assert!(!is_data_key(bad), "{bad:?} should be invalid");
        }
        assert!(is_data_key(&"k".repeat(253)));
    }

    #[test]
    fn label_values() {
        for ok in ["", "a", "A-b_c.d", "x1", &"a".repeat(63)] {
            assert!(is_label_value(ok), "{ok:?} should be valid");
        }
        for bad in ["-a", "a-", "_a", "a.", "a b", "a/b", "é", &"a".repeat(64)] {
            assert!(!is_label_value(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn check_object_name_names_the_field_the_value_and_the_problem() {
        assert_eq!(check_object_name("spec.x.name", "creds"), Ok(()));
        let e = check_object_name("spec.credentialsSecretRef.name", "a?b").unwrap_err();
        assert!(
            e.starts_with(
                "spec.credentialsSecretRef.name: \"a?b\" is not a valid Kubernetes object name: character 2 is '?'"
            ),
            "{e}"
        );
        assert!(e.contains("DNS subdomain (RFC 1123)"), "{e}");
        let cases = [
            ("", "it is empty"),
            (
                "Creds",
                "character 1 is 'C' (upper-case letters are not allowed)",
            ),
            (
                "a..b",
                "it starts or ends with '.' or has two dots in a row",
            ),
            (".x", "it starts or ends with '.' or has two dots in a row"),
            ("../x", "character 3 is '/'"),
            (
                "a.-b",
                "part \"-b\" does not start and end with a letter or digit",
            ),
            (
                "a-",
                "part \"a-\" does not start and end with a letter or digit",
            ),
        ];
        for (value, problem) in cases {
            let e = check_object_name("f", value).unwrap_err();
            assert!(e.contains(problem), "{value:?}: {e}");
        }
        let long = "a".repeat(300);
        let e = check_object_name("f", &long).unwrap_err();
        assert!(
            e.contains("it is 300 characters long, more than 253"),
            "{e}"
        );
        assert!(e.len() < 400, "the value is quoted cut: {e}");
    }

    #[test]
    fn check_namespace_and_data_key_messages() {
        assert_eq!(check_namespace("metadata.namespace", "team-a"), Ok(()));
        let e = check_namespace("metadata.namespace", "a.b").unwrap_err();
        assert!(
            e.starts_with(
                "metadata.namespace: \"a.b\" is not a valid namespace name: character 2 is '.'"
            ),
            "{e}"
        );
        assert_eq!(check_data_key("spec.k", "clientId"), Ok(()));
        let e = check_data_key("spec.k", "../x").unwrap_err();
        assert!(
            e.starts_with(
                "spec.k: \"../x\" is not a valid ConfigMap or Secret key: character 3 is '/'"
            ),
            "{e}"
        );
        let e = check_data_key("spec.k", "..x").unwrap_err();
        assert!(e.contains("it is '.' or starts with '..'"), "{e}");
    }

    #[test]
    fn label_value_keeps_short_names_and_hashes_long_ones() {
        assert_eq!(label_value("billing-support"), "billing-support");
        assert_eq!(label_value("a.b.c"), "a.b.c");
        let n63 = "a".repeat(63);
        assert_eq!(label_value(&n63), n63);
        let a = format!("{}-one", "x".repeat(100));
        let b = format!("{}-two", "x".repeat(100));
        let (la, lb) = (label_value(&a), label_value(&b));
        assert_ne!(la, lb, "long names sharing a prefix stay distinct");
        assert_eq!(la.len(), 63);
        assert!(la.starts_with(&"x".repeat(52)), "{la}");
        assert!(is_label_value(&la) && is_label_value(&lb));
        // A cut that ends in a separator does not leave it before the hash.
        let dotted = format!("{}.{}", "y".repeat(51), "z".repeat(100));
        let l = label_value(&dotted);
        assert!(l.starts_with(&format!("{}-", "y".repeat(51))), "{l}");
        assert!(is_label_value(&l));
        // Deterministic.
        assert_eq!(label_value(&a), la);
        // Not even a name: still a valid, distinct value.
        assert!(is_label_value(&label_value("?/..")));
        assert_ne!(label_value("a?b"), label_value("a!b"));
    }

    #[test]
    fn derived_name_appends_the_suffix_and_hashes_when_too_long() {
        assert_eq!(derived_name("faq", "audit-3"), "faq-audit-3");
        assert_eq!(derived_name("a.b", "audit-3"), "a.b-audit-3");
        assert_eq!(derived_name("faq", ""), "faq");
        let long = "j".repeat(253);
        let d = derived_name(&long, "audit-12");
        assert_eq!(d.len(), 253);
        assert!(d.ends_with("-audit-12"), "{d}");
        assert!(is_dns_subdomain(&d), "{d}");
        let other = format!("{}k", "j".repeat(252));
        assert_ne!(derived_name(&other, "audit-12"), d);
        assert_ne!(derived_name(&long, "audit-13"), d);
        // A cut at a dot does not leave `.-`.
        let dotted = format!("{}.{}", "a".repeat(240), "b".repeat(12));
        let d = derived_name(&dotted, "audit-1");
        assert!(is_dns_subdomain(&d), "{d}");
        assert!(d.len() <= 253);
        // Odd input stays valid.
        for (b, s) in [
            ("", ""),
            ("", "x"),
            ("A_B", "C D"),
            ("..", "--"),
            ("é", "ü"),
        ] {
            let d = derived_name(b, s);
            assert!(is_dns_subdomain(&d), "{b:?} + {s:?} -> {d:?}");
        }
        let huge_suffix = "s".repeat(400);
        let d = derived_name("job", &huge_suffix);
        assert!(is_dns_subdomain(&d), "{d}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn generated_object_names_are_valid(name in object_name()) {
            prop_assert!(is_dns_subdomain(&name), "{name:?}");
            prop_assert!(check_object_name("f", &name).is_ok());
        }

        #[test]
        fn a_disallowed_character_anywhere_makes_a_name_invalid(
            name in object_name(),
            at in any::<prop::sample::Index>(),
            bad in prop::sample::select(vec!['?', '/', '%', ' ', 'A', '_', ':', '#', 'é', '\n']),
        ) {
            let i = at.index(name.len());
            let mut s = name.clone();
            s.replace_range(i..=i, &bad.to_string());
            prop_assert!(!is_dns_subdomain(&s), "{s:?}");
            let e = check_object_name("spec.f", &s).unwrap_err();
            prop_assert!(e.starts_with("spec.f: "), "{e}");
        }

        #[test]
        fn label_value_of_a_valid_name_is_a_valid_label_value(name in object_name()) {
            let l = label_value(&name);
            prop_assert!(is_label_value(&l), "{name:?} -> {l:?}");
            prop_assert!(!l.is_empty());
            if name.len() <= 63 {
                prop_assert_eq!(&l, &name);
            } else {
                prop_assert!(name.starts_with(&l[..l.len() - HASH_LEN - 1]));
            }
        }

        #[test]
        fn label_values_of_long_names_differ_when_names_differ(
            a in name_of_len(64usize..=253), b in name_of_len(64usize..=253)
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(label_value(&a), label_value(&b));
        }

        #[test]
        fn label_value_of_anything_is_valid(s in any::<String>()) {
            prop_assert!(is_label_value(&label_value(&s)));
        }

        #[test]
        fn derived_names_are_valid_and_keep_the_suffix(base in object_name(), suffix in suffix()) {
            let d = derived_name(&base, &suffix);
            prop_assert!(is_dns_subdomain(&d), "{base:?} + {suffix:?} -> {d:?}");
            prop_assert!(d.len() <= 253);
            prop_assert!(d.ends_with(&suffix));
            if base.len() + 1 + suffix.len() <= 253 {
                let expected = if suffix.is_empty() { base.clone() } else { format!("{base}-{suffix}") };
                prop_assert_eq!(d, expected);
            }
        }

        #[test]
        fn derived_names_of_different_long_bases_differ(
            a in name_of_len(200usize..=253), b in name_of_len(200usize..=253),
            suffix in "audit-[0-9]{1,5}"
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(derived_name(&a, &suffix), derived_name(&b, &suffix));
        }

        #[test]
        fn derived_name_of_anything_is_valid(base in any::<String>(), suffix in any::<String>()) {
            let d = derived_name(&base, &suffix);
            prop_assert!(is_dns_subdomain(&d), "{base:?} + {suffix:?} -> {d:?}");
        }
    }
}
