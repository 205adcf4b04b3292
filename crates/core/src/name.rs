//! Operation names: `namespace.tool`, kept within MCP's tool-name rules
//! (1-128 characters of `A-Za-z0-9_.-`). Out-of-rule upstream names are rewritten
//! deterministically, so the same upstream name always maps to the same operation name.

/// Longest tool name MCP allows.
pub const MAX_NAME_LEN: usize = 128;

/// Whether `c` may appear in a tool name.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Whether `name` satisfies MCP's tool-name rules.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.chars().all(is_name_char)
}

/// Whether `namespace` is usable: non-empty, name characters only, no dot (the separator), and
/// short enough to leave room for a tool name.
pub fn is_valid_namespace(namespace: &str) -> bool {
    !namespace.is_empty()
        && namespace.len() <= 64
        && namespace.chars().all(|c| is_name_char(c) && c != '.')
}

/// The operation name for `tool` of `namespace`; `prefix = false` keeps the bare tool name.
pub fn operation_name(namespace: &str, tool: &str, prefix: bool) -> String {
    let full = if prefix {
        format!("{namespace}.{tool}")
    } else {
        tool.to_owned()
    };
    if is_valid_name(&full) {
        return full;
    }
    let head = if prefix {
        format!("{namespace}.")
    } else {
        String::new()
    };
    let mut body: String = tool
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    if body.is_empty() {
        body.push('_');
    }
    let candidate = format!("{head}{body}");
    if candidate.len() <= MAX_NAME_LEN && candidate != full {
        // The hash keeps two different raw names that clean up the same way apart.
        let suffix = format!("-{:08x}", fnv1a(tool.as_bytes()) as u32);
        if candidate.len() + suffix.len() <= MAX_NAME_LEN {
            return format!("{candidate}{suffix}");
        }
    }
    let suffix = format!("-{:08x}", fnv1a(tool.as_bytes()) as u32);
    let room = MAX_NAME_LEN - head.len() - suffix.len();
    let cut: String = body.chars().take(room).collect();
    format!("{head}{cut}{suffix}")
}

/// FNV-1a: tiny, stable across releases and platforms (std's hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_pass_through() {
        assert_eq!(
            operation_name("github", "create_issue", true),
            "github.create_issue"
        );
        assert_eq!(
            operation_name("ref", "test_simple_text", false),
            "test_simple_text"
        );
    }

    #[test]
    fn invalid_names_are_rewritten_deterministically() {
        let a = operation_name("fx", "weird name/with:chars", true);
        assert!(is_valid_name(&a), "{a}");
        assert!(a.starts_with("fx.weird_name_with_chars-"));
        assert_eq!(a, operation_name("fx", "weird name/with:chars", true));
        // Two raw names that clean up identically stay distinct.
        assert_ne!(a, operation_name("fx", "weird name/with/chars", true));
    }

    #[test]
    fn long_names_are_cut_to_the_limit() {
        let long = "x".repeat(300);
        let n = operation_name("ns", &long, true);
        assert!(is_valid_name(&n));
        assert_eq!(n.len(), MAX_NAME_LEN);
        assert_ne!(n, operation_name("ns", &"x".repeat(299), true));
    }

    #[test]
    fn namespaces_exclude_the_separator() {
        assert!(is_valid_namespace("git-hub_2"));
        assert!(!is_valid_namespace("a.b"));
        assert!(!is_valid_namespace(""));
    }
}
