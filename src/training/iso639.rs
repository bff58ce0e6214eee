//! ISO 639-1 two-letter language codes.

const CODES: [&str; 184] = [
    "aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be", "bg", "bh",
    "bi", "bm", "bn", "bo", "br", "bs", "ca", "ce", "ch", "co", "cr", "cs", "cu", "cv", "cy", "da",
    "de", "dv", "dz", "ee", "el", "en", "eo", "es", "et", "eu", "fa", "ff", "fi", "fj", "fo", "fr",
    "fy", "ga", "gd", "gl", "gn", "gu", "gv", "ha", "he", "hi", "ho", "hr", "ht", "hu", "hy", "hz",
    "ia", "id", "ie", "ig", "ii", "ik", "io", "is", "it", "iu", "ja", "jv", "ka", "kg", "ki", "kj",
    "kk", "kl", "km", "kn", "ko", "kr", "ks", "ku", "kv", "kw", "ky", "la", "lb", "lg", "li", "ln",
    "lo", "lt", "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "na", "nb",
    "nd", "ne", "ng", "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os", "pa", "pi",
    "pl", "ps", "pt", "qu", "rm", "rn", "ro", "ru", "rw", "sa", "sc", "sd", "se", "sg", "si", "sk",
    "sl", "sm", "sn", "so", "sq", "sr", "ss", "st", "su", "sv", "sw", "ta", "te", "tg", "th", "ti",
    "tk", "tl", "tn", "to", "tr", "ts", "tt", "tw", "ty", "ug", "uk", "ur", "uz", "ve", "vi", "vo",
    "wa", "wo", "xh", "yi", "yo", "za", "zh", "zu",
];

/// True when `code` is a lowercase ISO 639-1 code such as `en` or `de`.
pub fn is_iso639_1(code: &str) -> bool {
    code.len() == 2 && CODES.binary_search(&code).is_ok()
}

/// For a value that is close to a code (`EN`, `en-US`, `en_GB`), the code it most likely means.
pub fn suggest(value: &str) -> Option<String> {
    let primary = value.split(['-', '_']).next()?.trim().to_ascii_lowercase();
    is_iso639_1(&primary).then_some(primary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_and_checked() {
        assert!(CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(is_iso639_1("en"));
        assert!(is_iso639_1("zu"));
        assert!(!is_iso639_1("EN"));
        assert!(!is_iso639_1("xx"));
        assert!(!is_iso639_1("eng"));
        assert_eq!(suggest("en-US").as_deref(), Some("en"));
        assert_eq!(suggest("DE").as_deref(), Some("de"));
        assert_eq!(suggest("klingon"), None);
    }
}
