#![allow(clippy::expect_used, clippy::unwrap_used)]
use super::*;

/// Checks `normalize_path` results; errors are written as their `Debug` form.
fn check_normalized(cases: &[(&str, &str)]) {
    for (raw, want) in cases {
        let got = normalize_path(raw).map_or_else(|e| format!("{e:?}"), Cow::into_owned);
        assert_eq!(got, *want, "normalize_path({raw:?})");
    }
}

#[test]
fn empty_and_dot_segments_are_resolved() {
    check_normalized(&[
        ("/", "/"),
        ("//a///b", "/a/b"),
        ("/a/b/", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/../c", "/a/c"),
        ("/a/..", "/"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/.%2E/b", "/b"),
        ("/a/%2E/b", "/a/b"),
    ]);
}

#[test]
fn climbing_above_the_root_is_refused() {
    check_normalized(&[
        ("/%2E%2E/x", "AboveRoot"),
        ("/..", "AboveRoot"),
        ("/a/../../b", "AboveRoot"),
    ]);
}

#[test]
fn encoded_separators_and_control_characters_are_refused() {
    check_normalized(&[
        ("/a%2Fb", "ForbiddenCharacter('/')"),
        ("/a%2fb", "ForbiddenCharacter('/')"),
        ("/a%5Cb", "ForbiddenCharacter('\\\\')"),
        ("/a\\b", "ForbiddenCharacter('\\\\')"),
        ("/a%00", "ForbiddenCharacter('\\0')"),
        ("/a%0A", "ForbiddenCharacter('\\n')"),
        ("/a\tb", "ForbiddenCharacter('\\t')"),
        ("/a%7f", "ForbiddenCharacter('\\u{7f}')"),
        ("/a%C2%85", "ForbiddenCharacter('\\u{85}')"),
        ("/public/..;/admin", "ForbiddenCharacter(';')"),
        ("/admin%3bx=1", "ForbiddenCharacter(';')"),
    ]);
}

#[test]
fn trailing_dots_are_stripped_but_dot_only_segments_are_refused() {
    check_normalized(&[
        ("/admin.", "/admin"),
        ("/admin..", "/admin"),
        ("/admin%2e", "/admin"),
        ("/a.b./c", "/a.b/c"),
        ("/...", "OnlyDots"),
        ("/a/%2e%2e%2e", "OnlyDots"),
    ]);
}

#[test]
fn the_result_is_re_encoded_for_forwarding() {
    check_normalized(&[
        ("/files/a%20b", "/files/a%20b"),
        ("/files/a b", "/files/a%20b"),
        ("/q%3Fx%23y%25", "/q%3Fx%23y%25"),
        ("/%61dmin", "/admin"),
        ("/a:b@c!$&'()*+,=-_~", "/a:b@c!$&'()*+,=-_~"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/café", "/caf%C3%A9"),
    ]);
}

#[test]
fn malformed_input_is_refused() {
    check_normalized(&[
        ("/%zz", "MalformedEscape"),
        ("/a%", "MalformedEscape"),
        ("/a%2", "MalformedEscape"),
        ("/%C3", "InvalidUtf8"),
        ("/%FF", "InvalidUtf8"),
        ("", "NotAbsolute"),
        ("a/b", "NotAbsolute"),
        ("*", "NotAbsolute"),
    ]);
}

#[test]
fn normalisation_is_idempotent() {
    for raw in ["//a/./b/../c.", "/caf%c3%a9/x y", "/%2525", "/a%3Fb", "/"] {
        let once = normalize_path(raw).unwrap();
        assert_eq!(normalize_path(&once).unwrap(), once, "{raw}");
    }
}

/// Every path up to five characters over an alphabet of the characters that matter: the
/// shortcut for paths already in normal form agrees with the full normalisation, and (for
/// paths without `%`, whose escapes may re-encode to themselves) takes every such path.
#[test]
fn paths_in_normal_form_are_recognised_without_decoding() {
    let alphabet: Vec<char> = "/.a%;~2F@ \\é".chars().collect();
    let mut paths = vec![String::new()];
    let mut shortcuts = 0;
    for _ in 0..5 {
        let longer: Vec<String> = paths
            .iter()
            .flat_map(|path| alphabet.iter().map(move |c| format!("{path}{c}")))
            .collect();
        for path in &longer {
            let normalized = normalize_segments(path);
            if is_normal_form(path) {
                shortcuts += 1;
                assert_eq!(normalized.as_deref(), Ok(path.as_str()), "{path:?}");
            } else if !path.contains('%') {
                assert_ne!(normalized.as_deref(), Ok(path.as_str()), "{path:?}");
            }
        }
        paths = longer;
    }
    assert!(shortcuts > 1000, "{shortcuts}");
    assert!(matches!(
        normalize_path("/orders/1"),
        Ok(Cow::Borrowed("/orders/1"))
    ));
    assert!(matches!(normalize_path("/orders/./1"), Ok(Cow::Owned(_))));
}
