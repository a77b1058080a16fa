#![allow(clippy::expect_used, clippy::unwrap_used)]
use super::*;

const EXAMPLE: &str = r#"
    [[rule]]
    path = "/health"
    public = true

    [[rule]]
    path = "/orders"               # writes need more than reads
    methods = ["POST", "DELETE"]
    permissions = ["orders:write"]

    [[rule]]
    path = "/orders"
    permissions = ["orders:read"]

    [[rule]]
    path = "/admin"
    permissions = ["admin", "audit.read"]
"#;

/// Builds a policy from `PUBLIC_PATHS` and an inline array of rule tables.
fn policy(public: &str, rules: &str) -> AccessPolicy {
    let rules = Rules::parse(&format!("rule = [{rules}]")).unwrap();
    AccessPolicy::new(parse_public_paths(public).unwrap(), rules)
}

/// "public", or "token[...]" with the permissions the token must hold.
fn needs(policy: &AccessPolicy, method: &str, raw_path: &str) -> String {
    needs_with_overrides(policy, method, &[], raw_path)
}

/// As [`needs`], for a request that also carries method-override headers.
fn needs_with_overrides(
    policy: &AccessPolicy,
    method: &str,
    overrides: &[&str],
    raw_path: &str,
) -> String {
    match policy.decide(method, overrides, &normalize_path(raw_path).unwrap()) {
        Access::Public => "public".into(),
        Access::Authenticated {
            required_permissions: p,
        } => format!("token[{}]", p.join(",")),
    }
}

/// Parses an inline array of rule tables and returns the (single-line) error message.
fn rules_error(rules: &str) -> String {
    let msg = Rules::parse(&format!("rule = [{rules}]"))
        .unwrap_err()
        .to_string();
    assert!(!msg.contains('\n'), "not one line: {msg}");
    msg
}

#[test]
fn a_full_example_file_parses_and_decides() {
    let rules = Rules::parse(EXAMPLE).unwrap();
    assert_eq!(rules.len(), 4);
    let p = AccessPolicy::new(vec![], rules);
    assert_eq!(needs(&p, "GET", "/health"), "public");
    assert_eq!(needs(&p, "POST", "/orders/7"), "token[orders:write]");
    assert_eq!(needs(&p, "GET", "/orders/7"), "token[orders:read]");
    assert_eq!(needs(&p, "GET", "/admin/users"), "token[admin,audit.read]");
    assert_eq!(needs(&p, "GET", "/other"), "token[]");
}

#[test]
fn an_empty_file_is_valid_and_every_path_needs_a_token() {
    assert!(Rules::parse("").unwrap().len() == 0);
    assert!(Rules::parse("# nothing here\n").unwrap().len() == 0);
    let p = AccessPolicy::new(vec![], Rules::parse("").unwrap());
    assert_eq!(needs(&p, "GET", "/anything"), "token[]");
}

#[test]
fn invalid_rules_are_reported_by_number_and_path() {
    let cases = [
        (
            r#"{ path = "/a", publik = true }"#,
            "unknown field `publik`",
        ),
        (r#"{ methods = ["GET"] }"#, "missing field `path`"),
        (r#"{ path = "orders" }"#, "must start with '/'"),
        (r#"{ path = "/orders/" }"#, r#"(use "/orders")"#),
        (r#"{ path = "/a//b" }"#, r#"(use "/a/b")"#),
        (r#"{ path = "/a/./b" }"#, r#"(use "/a/b")"#),
        (r#"{ path = "/a/../b" }"#, r#"(use "/b")"#),
        (r#"{ path = "/admin." }"#, r#"(use "/admin")"#),
        (
            r#"{ path = "/a%20b" }"#,
            "must not contain percent-encoding",
        ),
        (r#"{ path = "/a b" }"#, "would need percent-encoding"),
        (r#"{ path = "/.." }"#, "climbs above the root"),
        (
            r#"{ path = "/a", methods = ["GE T"] }"#,
            r#"method "GE T" is not an HTTP method token"#,
        ),
        (
            r#"{ path = "/a", methods = ["GET", ""] }"#,
            r#"method "" is not"#,
        ),
        (
            r#"{ path = "/a", methods = ["G(E)T"] }"#,
            r#"method "G(E)T" is not"#,
        ),
        (
            r#"{ path = "/a", methods = ["G\u00c9T"] }"#,
            r#"method "GÉT" is not"#,
        ),
        (
            r#"{ path = "/a", methods = [] }"#,
            "methods must not be empty",
        ),
        (
            r#"{ path = "/a", permissions = ["a b"] }"#,
            r#"permission "a b""#,
        ),
        (r#"{ path = "/a", permissions = [""] }"#, r#"permission """#),
        (
            r#"{ path = "/a", public = true, permissions = ["x"] }"#,
            "public rule cannot",
        ),
    ];
    for (rule, expected) in cases {
        let msg = rules_error(&format!(r#"{{ path = "/ok" }}, {rule}"#));
        assert!(msg.starts_with("rule 2"), "{msg}");
        assert!(msg.contains(expected), "{rule} gave {msg}");
    }
    let msg = rules_error(r#"{ path = "/a", methods = ["GE T"] }"#);
    assert!(msg.starts_with(r#"rule 1 (path "/a"): "#), "{msg}");
}

#[test]
fn permissions_may_be_up_to_128_characters() {
    let rule = |n: usize| format!(r#"{{ path = "/a", permissions = ["{}"] }}"#, "x".repeat(n));
    assert!(Rules::parse(&format!("rule = [{}]", rule(128))).is_ok());
    assert!(rules_error(&rule(129)).starts_with("rule 1"));
}

#[test]
fn a_misspelt_table_or_broken_toml_is_rejected_with_its_line() {
    let msg = Rules::parse("[[rules]]\npath = \"/a\"")
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "invalid TOML at line 1: unknown field `rules`, expected `rule`"
    );
    let msg = Rules::parse("[[rule]]\npath = \"/a\"\nmethods = [\n").unwrap_err();
    assert!(
        msg.to_string().starts_with("invalid TOML at line 3"),
        "{msg}"
    );
}

#[test]
fn load_names_the_file() {
    let missing = Path::new("/nonexistent/rules.toml");
    let msg = Rules::load(missing).unwrap_err().to_string();
    assert!(
        msg.starts_with("cannot read rules file /nonexistent/rules.toml: "),
        "{msg}"
    );
    let file = std::env::temp_dir().join(format!("sidecar-rules-{}.toml", std::process::id()));
    std::fs::write(&file, "[[rule]]\npath = \"x\"\n").unwrap();
    let msg = Rules::load(&file).unwrap_err().to_string();
    std::fs::remove_file(&file).unwrap();
    let expected = format!("rules file {}: rule 1 (path \"x\"): ", file.display());
    assert!(msg.starts_with(&expected), "{msg}");
}

#[test]
fn public_paths_are_trimmed_and_empty_entries_ignored() {
    let parsed = parse_public_paths(" /health , ,/docs/api,, ").unwrap();
    assert_eq!(parsed, ["/health", "/docs/api"]);
    assert!(parse_public_paths("").unwrap().is_empty());
    for bad in ["health", "/docs/", "/a/./b", "/%61", "/a.", "//a"] {
        let msg = parse_public_paths(&format!("/ok,{bad}"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(&format!("PUBLIC_PATHS entry {bad:?}: ")),
            "{msg}"
        );
    }
}

#[test]
fn prefixes_match_whole_segments_only() {
    let p = policy("/docs", r#"{ path = "/orders", permissions = ["o"] }"#);
    assert_eq!(needs(&p, "GET", "/orders"), "token[o]");
    assert_eq!(needs(&p, "GET", "/orders/1/items"), "token[o]");
    assert_eq!(needs(&p, "GET", "/orders-archive"), "token[]");
    assert_eq!(needs(&p, "GET", "/docs/x"), "public");
    assert_eq!(needs(&p, "GET", "/docsx"), "token[]");
    let root = policy("", r#"{ path = "/", permissions = ["r"] }"#);
    assert_eq!(needs(&root, "GET", "/"), "token[r]");
    assert_eq!(needs(&root, "GET", "/any/thing"), "token[r]");
}

#[test]
fn methods_filter_rules_case_insensitively() {
    let p = policy(
        "",
        r#"{ path = "/o", methods = ["DELETE"], permissions = ["w"] }"#,
    );
    for method in ["DELETE", "delete", "Delete", "dElEtE"] {
        assert_eq!(needs(&p, method, "/o/1"), "token[w]", "{method}");
    }
    assert_eq!(needs(&p, "GET", "/o/1"), "token[]");
    assert_eq!(needs(&p, "DELET", "/o/1"), "token[]");
}

#[test]
fn rule_methods_may_be_written_in_any_case_and_are_stored_uppercase() {
    let rules = Rules::parse(
        r#"rule = [{ path = "/o", methods = ["delete", "Patch", "m-search"], permissions = ["w"] }]"#,
    )
    .unwrap();
    assert_eq!(
        rules.rules[0].methods.as_deref(),
        Some(["DELETE", "PATCH", "M-SEARCH"].map(String::from).as_slice())
    );
    let p = AccessPolicy::new(vec![], rules);
    for method in ["DELETE", "delete", "PATCH", "patch", "M-SEARCH", "m-search"] {
        assert_eq!(needs(&p, method, "/o"), "token[w]", "{method}");
    }
    assert_eq!(needs(&p, "POST", "/o"), "token[]");
}

#[test]
fn a_get_rule_also_covers_head() {
    let p = policy(
        "",
        r#"{ path = "/r", methods = ["GET"], permissions = ["read"] },
           { path = "/h", methods = ["HEAD"], permissions = ["head"] },
           { path = "/c", methods = ["get"], public = true }"#,
    );
    for method in ["GET", "get", "HEAD", "head", "Head"] {
        assert_eq!(needs(&p, method, "/r/1"), "token[read]", "{method}");
    }
    assert_eq!(needs(&p, "POST", "/r/1"), "token[]");
    // A HEAD rule is only for HEAD.
    assert_eq!(needs(&p, "HEAD", "/h"), "token[head]");
    assert_eq!(needs(&p, "GET", "/h"), "token[]");
    // Public GET means public HEAD too, and nothing else.
    assert_eq!(needs(&p, "HEAD", "/c"), "public");
    assert_eq!(needs(&p, "POST", "/c"), "token[]");
}

/// `/orders`: DELETE needs `orders:delete`, writes `orders:write`, reads are public;
/// `/audit` needs `audit` for everything; `/open` is public for every method.
const OVERRIDE_RULES: &str = r#"
    { path = "/orders", methods = ["DELETE"], permissions = ["orders:delete", "orders:write"] },
    { path = "/orders", methods = ["POST", "PUT", "PATCH"], permissions = ["orders:write"] },
    { path = "/orders", methods = ["GET"], public = true },
    { path = "/audit", permissions = ["audit"] },
    { path = "/open", public = true }
"#;

#[test]
fn a_request_is_judged_under_every_method_an_override_header_names() {
    let p = policy("", OVERRIDE_RULES);
    // The request line alone.
    assert_eq!(needs(&p, "GET", "/orders/7"), "public");
    assert_eq!(needs(&p, "POST", "/orders/7"), "token[orders:write]");
    // A public GET turned into a DELETE needs what DELETE needs.
    assert_eq!(
        needs_with_overrides(&p, "GET", &["DELETE"], "/orders/7"),
        "token[orders:delete,orders:write]"
    );
    assert_eq!(
        needs_with_overrides(&p, "POST", &["delete"], "/orders/7"),
        "token[orders:write,orders:delete]"
    );
    // Overriding to a public method does not make a protected request public.
    assert_eq!(
        needs_with_overrides(&p, "DELETE", &["GET"], "/orders/7"),
        "token[orders:delete,orders:write]"
    );
    assert_eq!(
        needs_with_overrides(&p, "POST", &["GET", "HEAD"], "/orders/7"),
        "token[orders:write]"
    );
    // Public only if public under every candidate.
    assert_eq!(
        needs_with_overrides(&p, "GET", &["HEAD", "get"], "/orders/7"),
        "public"
    );
    assert_eq!(
        needs_with_overrides(&p, "GET", &["head", "PUT"], "/orders/7"),
        "token[orders:write]"
    );
    assert_eq!(
        needs_with_overrides(&p, "GET", &["DELETE"], "/open"),
        "public"
    );
    // A method no rule names falls to the default: a token, no permissions.
    assert_eq!(
        needs_with_overrides(&p, "GET", &["PURGE"], "/orders/7"),
        "token[]"
    );
    assert_eq!(
        needs_with_overrides(&p, "GET", &["PURGE"], "/audit"),
        "token[audit]"
    );
}

#[test]
fn combined_permissions_are_the_union_without_repeats_in_first_seen_order() {
    let p = policy(
        "",
        r#"{ path = "/x", methods = ["PUT"], permissions = ["a", "b"] },
           { path = "/x", methods = ["PATCH"], permissions = ["b", "c"] },
           { path = "/x", methods = ["POST"], permissions = ["c"] },
           { path = "/x", methods = ["GET"], public = true }"#,
    );
    assert_eq!(
        needs_with_overrides(&p, "PUT", &["PATCH"], "/x"),
        "token[a,b,c]"
    );
    assert_eq!(
        needs_with_overrides(&p, "PATCH", &["PUT"], "/x"),
        "token[b,c,a]"
    );
    assert_eq!(
        needs_with_overrides(&p, "PUT", &["PUT", "put"], "/x"),
        "token[a,b]"
    );
    assert_eq!(
        needs_with_overrides(&p, "GET", &["POST", "PATCH", "PUT"], "/x"),
        "token[c,b,a]"
    );
    assert_eq!(
        needs_with_overrides(&p, "DELETE", &["POST"], "/x"),
        "token[c]"
    );
}

#[test]
fn access_requirements_combine_like_a_logical_and() {
    let ab = ["a", "b"].map(String::from);
    let bc = ["b", "c"].map(String::from);
    let token = |p: &[String]| Access::Authenticated {
        required_permissions: Cow::Owned(p.to_vec()),
    };
    assert_eq!(Access::Public.and(Access::Public), Access::Public);
    assert_eq!(Access::Public.and(token(&ab)), token(&ab));
    assert_eq!(token(&ab).and(Access::Public), token(&ab));
    assert_eq!(token(&[]).and(Access::Public), token(&[]));
    assert_eq!(Access::Public.and(token(&[])), token(&[]));
    assert_eq!(
        token(&ab).and(token(&bc)),
        token(&["a", "b", "c"].map(String::from))
    );
    assert_eq!(token(&[]).and(token(&[])), token(&[]));
}

#[test]
fn the_first_matching_rule_wins() {
    let specific = r#"{ path = "/a/b", public = true }"#;
    let general = r#"{ path = "/a", permissions = ["x"] }"#;
    let p = policy("", &format!("{specific}, {general}"));
    assert_eq!(needs(&p, "GET", "/a/b/c"), "public");
    assert_eq!(needs(&p, "GET", "/a/c"), "token[x]");
    let reversed = policy("", &format!("{general}, {specific}"));
    assert_eq!(needs(&reversed, "GET", "/a/b/c"), "token[x]");
}

#[test]
fn public_paths_are_checked_before_the_rules_file() {
    let p = policy(
        "/admin/status",
        r#"{ path = "/admin", permissions = ["admin"] }"#,
    );
    assert_eq!(needs(&p, "GET", "/admin/status"), "public");
    assert_eq!(needs(&p, "GET", "/admin/users"), "token[admin]");
}

#[test]
fn path_tricks_do_not_bypass_the_admin_rule() {
    let p = policy("/orders", r#"{ path = "/admin", permissions = ["admin"] }"#);
    let tricks = [
        "/orders/../admin",
        "//admin",
        "/admin.",
        "/%61dmin",
        "/./admin/",
        "/admin%2e/x",
    ];
    for raw in tricks {
        assert_eq!(needs(&p, "GET", raw), "token[admin]", "{raw}");
    }
}

#[test]
fn paths_are_case_sensitive_so_upper_case_falls_back_to_token_required() {
    // Never more public than `/admin`; see `AccessPolicy::decide` for the upstream caveat.
    let p = policy("", r#"{ path = "/admin", permissions = ["admin"] }"#);
    assert_eq!(needs(&p, "GET", "/ADMIN"), "token[]");
}
