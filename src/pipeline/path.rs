//! Request paths made safe to route on: the path the gateway routes on must be the path every
//! upstream resolves, or a prefix can be walked around (`/public/..;/admin` on Tomcat,
//! `/%61dmin` on any decoding upstream, `//admin` on a slash-merging one).
//!
//! - percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2), so `/%61dmin` is
//!   `/admin`;
//! - runs of `/` are merged, so `//admin` is `/admin`;
//! - refused (400): `.` and `..` segments, also with `;params` (`..;x`); encoded `/`, `\`, `.`
//!   and control characters (`%2f`, `%5c`, `%2e`, `%00`..`%1f`, `%7f`); a literal `\`; a `%`
//!   that does not begin an escape (`%%36%31` would decode to `%61`, which an upstream decodes
//!   again); a segment of params alone before another segment (`/;x/admin` is `//admin` to a
//!   servlet container, which merges it into `/admin`);
//! - routing ignores `;params` in a segment (`/admin;x/y` routes as `/admin/y`, as servlet
//!   containers resolve it); the upstream gets the path with its params.

use std::borrow::Cow;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    DotSegment,
    EncodedSeparator,
    Backslash,
    ControlCharacter,
    StrayPercent,
    ParamsOnlySegment,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            PathError::DotSegment => "dot segment in path",
            PathError::EncodedSeparator => "encoded '/', '\\' or '.' in path",
            PathError::Backslash => "backslash in path",
            PathError::ControlCharacter => "control character in path",
            PathError::StrayPercent => "'%' without two hex digits in path",
            PathError::ParamsOnlySegment => "segment of ';' parameters alone in path",
        }
    }
}

/// A request path after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a> {
    /// The path sent upstream.
    pub forward: Cow<'a, str>,
    /// The path routes are matched on: `forward` without `;params` in its segments.
    pub route: Cow<'a, str>,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalises a request path (see the module comment). Borrowed when nothing changes, which is
/// the common case.
pub fn normalise(path: &str) -> Result<NormalPath<'_>, PathError> {
    let b = path.as_bytes();
    let rewrite =
        b.iter().any(|&c| matches!(c, b'%' | b'\\' | b';')) || b.windows(2).any(|w| w == b"//");
    if !rewrite {
        if b.contains(&b'.') && path.split('/').any(|s| s == "." || s == "..") {
            return Err(PathError::DotSegment);
        }
        return Ok(NormalPath {
            forward: Cow::Borrowed(path),
            route: Cow::Borrowed(path),
        });
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let decoded = match (b.get(i + 1).copied().and_then(hex), b.get(i + 2)) {
                    (Some(h), Some(&l)) => hex(l).map(|l| h << 4 | l),
                    _ => None,
                };
                match decoded {
                    None => return Err(PathError::StrayPercent),
                    Some(b'/' | b'\\' | b'.') => return Err(PathError::EncodedSeparator),
                    Some(d) if d < 0x20 || d == 0x7f => return Err(PathError::ControlCharacter),
                    Some(d) if unreserved(d) => {
                        out.push(d);
                        i += 3;
                        continue;
                    }
                    // Reserved or non-ASCII octets keep their encoding.
                    _ => out.push(c),
                }
            }
            b'/' if out.last() == Some(&b'/') => {}
            _ => out.push(c),
        }
        i += 1;
    }
    let forward: Cow<'_, str> = if out == b {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(String::from_utf8(out).expect("decoded bytes are ASCII"))
    };
    let mut has_params = false;
    let mut segments = forward.split('/').peekable();
    while let Some(segment) = segments.next() {
        let (name, params) = match segment.split_once(';') {
            Some((name, _)) => (name, true),
            None => (segment, false),
        };
        has_params |= params;
        if name == "." || name == ".." {
            return Err(PathError::DotSegment);
        }
        // Routed as an empty segment, resolved upstream as none: `/a/;x/b` is `/a/b` there.
        // Last, it is a trailing slash either way (`/app/;jsessionid=1`).
        if params && name.is_empty() && segments.peek().is_some() {
            return Err(PathError::ParamsOnlySegment);
        }
    }
    let route = if has_params {
        let stripped: Vec<&str> = forward
            .split('/')
            .map(|s| s.split_once(';').map_or(s, |(name, _)| name))
            .collect();
        Cow::Owned(stripped.join("/"))
    } else {
        forward.clone()
    };
    Ok(NormalPath { forward, route })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> (String, String) {
        let n = normalise(p).unwrap_or_else(|e| panic!("{p:?}: {e:?}"));
        (n.forward.into_owned(), n.route.into_owned())
    }

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        for p in ["/", "/orders/7", "/a/b.c/..d", "/a/.../b", "/v1.2/x"] {
            let n = normalise(p).unwrap();
            assert!(matches!(n.forward, Cow::Borrowed(_)), "{p}");
            assert_eq!(n.forward, p);
            assert_eq!(n.route, p);
        }
    }

    #[test]
    fn unreserved_characters_are_decoded_and_slashes_merged() {
        assert_eq!(ok("/%61dmin/x").0, "/admin/x");
        assert_eq!(ok("/%41%7e%2D%5f").0, "/A~-_");
        assert_eq!(ok("//admin///x").0, "/admin/x");
        // Reserved and non-ASCII octets keep their encoding.
        assert_eq!(ok("/a%20b/%C3%A9/%3F").0, "/a%20b/%C3%A9/%3F");
    }

    /// Found by fuzzing (`fuzz/regressions/path/`): a '%' kept as it was next to decoded
    /// characters made a new escape (`%%36%31dmin` -> `%61dmin`, routed as `/`, served by a
    /// decoding upstream as `/admin`; `%2%66` -> `%2f`).
    #[test]
    fn a_percent_that_begins_no_escape_is_refused() {
        for p in [
            "/a/%2",
            "/a/%zz",
            "/%%36%31dmin/x",
            "/%2%66admin",
            "/a%",
            "/%%",
            "/%g0",
        ] {
            assert_eq!(normalise(p), Err(PathError::StrayPercent), "{p}");
        }
        assert_eq!(ok("/%25%36%31").0, "/%2561", "an encoded '%' stays encoded");
    }

    /// Found by fuzzing: `/api/;x/admin` was routed as `/api//admin` (under `/api`) while a
    /// servlet container drops the params, merges the slashes and serves `/api/admin`.
    #[test]
    fn a_segment_of_params_alone_is_refused_unless_last() {
        for p in ["/api/;x/admin", "/;/admin", "//;x//admin", "/a/;/"] {
            assert_eq!(normalise(p), Err(PathError::ParamsOnlySegment), "{p}");
        }
        assert_eq!(
            ok("/app/;jsessionid=1"),
            ("/app/;jsessionid=1".into(), "/app/".into())
        );
        assert_eq!(ok("/;x"), ("/;x".into(), "/".into()));
    }

    #[test]
    fn dot_segments_and_encoded_separators_are_refused() {
        for p in [
            "/public/../private",
            "/a/./b",
            "/a/.",
            "/a/..",
            "/public/..;/admin/x",
            "/public/..;jsessionid=1/admin",
            "/public/.;/x",
        ] {
            assert_eq!(normalise(p), Err(PathError::DotSegment), "{p}");
        }
        for p in [
            "/public/%2e%2E/private",
            "/a/.%2E/b",
            "/a%2Fb",
            "/a%2fb",
            "/public/..%5cadmin/x",
            "/a%5Cb",
            "/report%2epdf",
        ] {
            assert_eq!(normalise(p), Err(PathError::EncodedSeparator), "{p}");
        }
        assert_eq!(normalise("/a\\b"), Err(PathError::Backslash));
        assert_eq!(normalise("/a%00b"), Err(PathError::ControlCharacter));
        assert_eq!(normalise("/a%0a"), Err(PathError::ControlCharacter));
        assert_eq!(normalise("/a%7F"), Err(PathError::ControlCharacter));
    }

    #[test]
    fn params_are_ignored_for_routing_and_kept_upstream() {
        assert_eq!(
            ok("/admin;x=1/y"),
            ("/admin;x=1/y".into(), "/admin/y".into())
        );
        assert_eq!(ok("/a/b;v=2"), ("/a/b;v=2".into(), "/a/b".into()));
    }
}
