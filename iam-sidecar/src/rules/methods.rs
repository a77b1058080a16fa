//! HTTP methods as rules match them: RFC 9110 tokens in any case, compared
//! case-insensitively, with `GET` covering `HEAD`.
//!
//! Methods are case-sensitive in RFC 9110, but many servers and frameworks uppercase them (so
//! `delete /orders/7` runs the `DELETE` handler), and upstreams answer `HEAD` with their `GET`
//! handler, so a rule written for `DELETE` or `GET` must hold for those too.

/// RFC 9110 `tchar`s besides letters and digits.
const TCHAR_SYMBOLS: &[u8] = b"!#$%&'*+-.^_`|~";

/// Whether `method` is an RFC 9110 `token` (one or more `tchar`s), in any case.
pub fn is_method_token(method: &str) -> bool {
    !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || TCHAR_SYMBOLS.contains(&b))
}

/// Whether a rule listing `rule_method` (canonical uppercase) applies to a request the
/// upstream runs as `method` (any case): the same method, or `HEAD` under a `GET` rule.
pub fn rule_method_covers(rule_method: &str, method: &str) -> bool {
    rule_method.eq_ignore_ascii_case(method)
        || (rule_method == "GET" && method.eq_ignore_ascii_case("HEAD"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_tokens_are_letters_digits_and_tchar_symbols_in_any_case() {
        for method in [
            "GET", "get", "Delete", "M-SEARCH", "PROPFIND", "A", "z", "0", "123", "X_1",
        ] {
            assert!(is_method_token(method), "{method}");
        }
        // Every symbol RFC 9110 allows in a token, alone and after a letter.
        for symbol in "!#$%&'*+-.^_`|~".chars() {
            assert!(is_method_token(&symbol.to_string()), "{symbol}");
            assert!(is_method_token(&format!("A{symbol}")), "A{symbol}");
        }
    }

    #[test]
    fn non_tokens_are_not_methods() {
        for method in [
            "", " ", "GE T", " GET", "GET ", "GET\t", "G\"ET", "(GET)", "GET,POST", "GET;",
            "GET/1", "GET:", "G@T", "G[T]", "G{T}", "G=T", "G?T", "G\\T", "G\u{e9}T", "GET\u{0}",
            "\u{7f}",
        ] {
            assert!(!is_method_token(method), "{method:?}");
        }
    }

    #[test]
    fn a_rule_method_covers_the_same_method_in_any_case() {
        for method in ["DELETE", "delete", "Delete", "dElEtE"] {
            assert!(rule_method_covers("DELETE", method), "{method}");
        }
        assert!(!rule_method_covers("DELETE", "DELET"));
        assert!(!rule_method_covers("DELETE", "POST"));
        assert!(!rule_method_covers("POST", "DELETE"));
    }

    #[test]
    fn a_get_rule_covers_head_but_not_the_other_way_round() {
        for method in ["HEAD", "head", "Head"] {
            assert!(rule_method_covers("GET", method), "{method}");
        }
        assert!(!rule_method_covers("HEAD", "GET"));
        assert!(rule_method_covers("HEAD", "head"));
        assert!(!rule_method_covers("POST", "HEAD"));
        assert!(!rule_method_covers("GET", "HEADER"));
        assert!(!rule_method_covers("GET", "POST"));
    }
}
