//! `sprout token new NAME`: a fresh random token, and the `[[user]]` block for sproutd's
//! configuration, which holds only the token's SHA-256.
//!
//! The token is 32 bytes from the operating system's random generator (getrandom(2),
//! through ring's `SystemRandom`), written as 64 lowercase hex digits: one word of
//! visible ASCII that needs no quoting in a shell, a TOML file or an `auth` line.

use ring::rand::SecureRandom;

/// Bytes of randomness in a token.
pub const TOKEN_BYTES: usize = 32;

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A fresh token: 32 random bytes as hex.
pub fn new_token() -> Result<String, String> {
    let mut b = [0u8; TOKEN_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "the operating system's random generator failed".to_string())?;
    Ok(hex(&b))
}

/// The hex SHA-256 of a token, as sproutd's `token-sha256` holds it.
pub fn sha256_hex(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// A user name fit for a TOML string and a log line: 1 to 64 of A-Z a-z 0-9 - _ . @
pub fn check_user_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid user name {s:?}: 1 to 64 of A-Z a-z 0-9 - _ . @"
        ))
    }
}

/// What `sprout token new NAME` prints on stdout: the token alone on the first line (for
/// `head -n1`), a blank line, then the `[[user]]` block to paste, whose only secret is the
/// hash.
pub fn render(name: &str, token: &str) -> String {
    format!(
        "\
{token}

# Paste into sproutd's configuration file, then reload it (SIGHUP):
[[user]]
name = \"{name}\"
token-sha256 = \"{hash}\"
# tubes = [\"emails\", \"emails-*\"]   # exact names or trailing-* prefixes
# may = [\"produce\", \"consume\", \"inspect\", \"admin\"]
",
        hash = sha256_hex(token)
    )
}

/// The note for stderr.
pub const NOTE: &str = "sprout: the token (first line) is shown only now: give it to the \
client (--token, SPROUT_TOKEN, or `auth TOKEN` as its first command); sproutd's \
configuration holds its SHA-256 only";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_strings() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn tokens_are_fresh_hex() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn user_names() {
        assert!(check_user_name("mailer").is_ok());
        assert!(check_user_name("ci.bot@build-1").is_ok());
        for bad in ["", "a b", "x\"y", "é", &"n".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn block_holds_the_hash_of_the_token() {
        let out = render("mailer", "abc");
        assert_eq!(out.lines().next(), Some("abc"));
        assert!(out.contains("name = \"mailer\""));
        assert!(out.contains(&format!("token-sha256 = \"{}\"", sha256_hex("abc"))));
        assert!(out.contains("# tubes = ["));
        assert!(out.contains("# may = ["));
    }
}
