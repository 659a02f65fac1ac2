//! Names as HFS+ and APFS treat them: stored in NFD with their case as created, and
//! compared under a key that ignores both case and normal form.

use unicode_normalization::UnicodeNormalization;

/// The spelling a name is stored and listed in: its NFD. `None` for a name that is not
/// UTF-8, which macOS refuses (`EILSEQ`).
pub fn stored(name: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(name).ok()?;
    Some(s.nfd().collect::<String>().into_bytes())
}

/// The key two names are one entry under: the NFD lower-cased, then NFD again (lower-casing
/// can compose or decompose: `İ` becomes `i` and a combining dot). `None` as for [`stored`].
pub fn key(name: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(name).ok()?;
    let lower: String = s.nfd().flat_map(char::to_lowercase).collect();
    Some(lower.nfd().collect::<String>().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_form_share_a_key_and_nfd_is_stored() {
        let nfc = "Caf\u{e9}".as_bytes();
        let nfd = "cafe\u{301}".as_bytes();
        assert_eq!(key(nfc), key(nfd));
        assert_eq!(key(b"README"), key(b"readme"));
        assert_ne!(key(b"a"), key(b"b"));
        assert_eq!(stored(nfc).unwrap(), "Cafe\u{301}".as_bytes());
        assert_eq!(stored(b"Ab").unwrap(), b"Ab");
        assert_eq!(stored(b"\xff"), None);
    }
}
