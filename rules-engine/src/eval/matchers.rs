//! The value matchers a check compiles its right side into, once at load:
//! string sets with a length filter, `pmatch` path prefixes, globs, CIDR
//! networks, suffix sets, whole-value regexes, and the hasher their sets
//! use. Each answers one probe per event without allocating (bar a glob
//! over non-ASCII text).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// A word-at-a-time multiplicative hash (the Fx scheme): set members are
/// short strings from rule files, probed with process names and paths; this
/// is several times faster than SipHash for them, and the sets are built from
/// operator-controlled rule files, so flooding resistance is not needed.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Fnv {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for Fnv {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        // The tail (0-7 bytes) in at most three fixed-size reads: a
        // variable-length copy would be a call to memcpy per hashed string.
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let n = rest.len();
            let w = if n >= 4 {
                let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
                let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
                lo | (hi as u64) << 32
            } else {
                let (a, b, c) = (rest[0] as u64, rest[n / 2] as u64, rest[n - 1] as u64);
                a | b << 8 | c << 16
            };
            self.add(w ^ (n as u64) << 56);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

pub(crate) type FastSet<T> = HashSet<T, BuildHasherDefault<Fnv>>;

/// A string set for `in`/`intersects`, with a length filter in front of the
/// hash lookup: most probes (a process name against a list of 40 others) are
/// rejected by their length alone.
#[derive(Debug, Default)]
pub(crate) struct StrSet {
    set: FastSet<String>,
    /// Bit `i` set if a member has length `i` (bit 63: length >= 63).
    lens: u64,
}

impl StrSet {
    #[inline]
    fn len_bit(n: usize) -> u64 {
        1u64 << n.min(63)
    }

    pub(crate) fn insert(&mut self, s: String) {
        self.lens |= Self::len_bit(s.len());
        self.set.insert(s);
    }

    #[inline]
    pub(crate) fn contains(&self, s: &str) -> bool {
        self.lens & Self::len_bit(s.len()) != 0 && self.set.contains(s)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &String> {
        self.set.iter()
    }

    /// A canonical text of the members (sorted), for telling equal checks apart.
    pub(crate) fn key(&self) -> String {
        sorted_key(self.set.iter())
    }
}

/// Members sorted and joined unambiguously (debug-quoted).
pub(crate) fn sorted_key<T: std::fmt::Debug>(items: impl Iterator<Item = T>) -> String {
    let mut v: Vec<String> = items.map(|x| format!("{x:?}")).collect();
    v.sort_unstable();
    v.join(",")
}

/// An IPv4/IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub(crate) fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(IpNet { addr, prefix })
    }

    pub(crate) fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(*a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(*a) & mask
            }
            _ => false,
        }
    }
}

/// `pmatch` set: a path matches if it equals an entry or lies below it.
#[derive(Debug, Default)]
pub(crate) struct PathPrefixes {
    set: FastSet<String>,
    root: bool,
}

impl PathPrefixes {
    pub(crate) fn key(&self) -> String {
        format!("{}{}", self.root, sorted_key(self.set.iter()))
    }

    pub(crate) fn insert(&mut self, p: &str) {
        let t = p.trim_end_matches('/');
        if t.is_empty() && p.starts_with('/') {
            self.root = true;
        } else {
            self.set.insert(t.to_string());
        }
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        if self.root && path.starts_with('/') {
            return true;
        }
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        if self.set.contains(path) {
            return true;
        }
        path.match_indices('/')
            .any(|(i, _)| i > 0 && self.set.contains(&path[..i]))
    }
}

/// A compiled shell glob (`*`, `?`, `[...]`, `\` escape); `*` also matches `/`
/// (fnmatch without FNM_PATHNAME, as Falco uses it).
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    toks: Vec<GlobTok>,
    icase: bool,
}

#[derive(Debug, Clone)]
enum GlobTok {
    Char(char),
    Any,
    Star,
    Class(bool, Vec<(char, char)>),
}

impl Glob {
    pub(crate) fn key(&self) -> String {
        format!("{}{:?}", self.icase, self.toks)
    }

    pub(crate) fn new(pat: &str, icase: bool) -> Glob {
        let mut toks = Vec::new();
        let chars: Vec<char> = pat.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' => {
                    if !matches!(toks.last(), Some(GlobTok::Star)) {
                        toks.push(GlobTok::Star);
                    }
                }
                '?' => toks.push(GlobTok::Any),
                '\\' if i + 1 < chars.len() => {
                    i += 1;
                    toks.push(GlobTok::Char(fold(chars[i], icase)));
                }
                '[' => {
                    let mut j = i + 1;
                    let neg = matches!(chars.get(j), Some('!' | '^'));
                    if neg {
                        j += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    while j < chars.len() && (chars[j] != ']' || first) {
                        let lo = chars[j];
                        if chars.get(j + 1) == Some(&'-')
                            && chars.get(j + 2).is_some_and(|c| *c != ']')
                        {
                            ranges.push((fold(lo, icase), fold(chars[j + 2], icase)));
                            j += 3;
                        } else {
                            ranges.push((fold(lo, icase), fold(lo, icase)));
                            j += 1;
                        }
                        first = false;
                    }
                    if j < chars.len() {
                        toks.push(GlobTok::Class(neg, ranges));
                        i = j;
                    } else {
                        toks.push(GlobTok::Char('['));
                    }
                }
                _ => toks.push(GlobTok::Char(fold(c, icase))),
            }
            i += 1;
        }
        Glob { toks, icase }
    }

    /// Iterative matcher with single-star backtracking: O(len(s) * len(pattern)).
    /// ASCII input (nearly every path) is matched in place, without allocating.
    pub(crate) fn matches(&self, s: &str) -> bool {
        if s.is_ascii() {
            let b = s.as_bytes();
            self.match_with(b.len(), |i| fold(b[i] as char, self.icase))
        } else {
            let chars: Vec<char> = s.chars().map(|c| fold(c, self.icase)).collect();
            self.match_with(chars.len(), |i| chars[i])
        }
    }

    fn match_with(&self, len: usize, at: impl Fn(usize) -> char) -> bool {
        let (mut si, mut pi) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while si < len {
            let c = at(si);
            let ok = match self.toks.get(pi) {
                Some(GlobTok::Char(p)) => *p == c,
                Some(GlobTok::Any) => true,
                Some(GlobTok::Class(neg, r)) => {
                    r.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *neg
                }
                Some(GlobTok::Star) => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                None => false,
            };
            if ok {
                si += 1;
                pi += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        self.toks[pi..].iter().all(|t| matches!(t, GlobTok::Star))
    }
}

#[inline]
fn fold(c: char, icase: bool) -> char {
    if icase {
        c.to_ascii_lowercase()
    } else {
        c
    }
}

pub(super) fn contains_icase(hay: &str, needle_lower: &str) -> bool {
    let h = hay.as_bytes();
    let n = needle_lower.as_bytes();
    if n.is_empty() {
        return true;
    }
    if n.len() > h.len() {
        return false;
    }
    (0..=h.len() - n.len()).any(|i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

pub(super) fn memmem(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// A Falco `regex` check: the pattern must match the whole value. An
/// unanchored search for the same pattern runs first: a whole-value match
/// is also a match somewhere, and the unanchored search can skip ahead on
/// the pattern's literals (`s3api `, `/dev/`), so most values are rejected
/// without running the anchored automaton over them.
#[derive(Debug)]
pub(crate) struct MatchRegex {
    pub whole: regex::Regex,
    pub somewhere: regex::Regex,
}

impl MatchRegex {
    #[inline]
    pub(crate) fn is_match(&self, s: &str) -> bool {
        self.somewhere.is_match(s) && self.whole.is_match(s)
    }
}

/// Suffixes of one field. A suffix containing `/` can only match a value
/// whose last path component equals the suffix's last component, so those
/// are found by one hash lookup of the value's last component; the others
/// are compared one by one.
#[derive(Debug, Default)]
pub(crate) struct SuffixSet {
    by_last: std::collections::HashMap<String, Vec<String>, BuildHasherDefault<Fnv>>,
    other: Vec<String>,
}

impl SuffixSet {
    pub(crate) fn key(&self) -> String {
        sorted_key(self.by_last.values().flatten().chain(self.other.iter()))
    }

    pub(crate) fn insert(&mut self, suffix: &str) {
        match suffix.rfind('/') {
            Some(i) => self
                .by_last
                .entry(suffix[i + 1..].to_string())
                .or_default()
                .push(suffix.to_string()),
            None => self.other.push(suffix.to_string()),
        }
    }

    pub(crate) fn matches(&self, s: &str) -> bool {
        let last = s.rfind('/').map_or(s, |i| &s[i + 1..]);
        let by_last = s.contains('/')
            && self
                .by_last
                .get(last)
                .is_some_and(|v| v.iter().any(|suf| s.ends_with(suf.as_str())));
        by_last || self.other.iter().any(|suf| s.ends_with(suf.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_set_agrees_with_ends_with() {
        let sufs = [
            "/.aws/credentials",
            "/.kube/config",
            "config",
            "/etc/",
            "a/b",
            "/x",
        ];
        let mut set = SuffixSet::default();
        for x in sufs {
            set.insert(x);
        }
        let values = [
            "/root/.aws/credentials",
            "/root/.aws/credentials.bak",
            "/home/u/.kube/config",
            "/home/u/.kubeconfig",
            "kubeconfig",
            "/etc/",
            "/etc",
            "xa/b",
            "/a/b",
            "b",
            "/x",
            "x",
            "",
            "/",
            "/root/.aws/credentials/",
            "credentials",
        ];
        for v in values {
            let naive = sufs.iter().any(|x| v.ends_with(x));
            assert_eq!(set.matches(v), naive, "{v:?}");
        }
    }

    #[test]
    fn glob_semantics() {
        let g = Glob::new("/etc/*shadow*", false);
        assert!(g.matches("/etc/shadow"));
        assert!(g.matches("/etc/sub/gshadow-"));
        assert!(!g.matches("/tmp/shadow"));
        assert!(Glob::new("a?c", false).matches("abc"));
        assert!(Glob::new("[a-c]x", false).matches("bx"));
        assert!(!Glob::new("[!a-c]x", false).matches("bx"));
        assert!(Glob::new("*.PEM", true).matches("key.pem"));
        assert!(Glob::new("\\*", false).matches("*"));
        assert!(!Glob::new("\\*", false).matches("a"));
        assert!(Glob::new("", false).matches(""));
        // pathological pattern stays fast
        let g = Glob::new(&"*a".repeat(50), false);
        assert!(!g.matches(&"a".repeat(30)));
    }

    #[test]
    fn pmatch_is_component_wise() {
        let mut p = PathPrefixes::default();
        p.insert("/etc");
        p.insert("/usr/lib/");
        assert!(p.matches("/etc"));
        assert!(p.matches("/etc/passwd"));
        assert!(!p.matches("/etcx/passwd"));
        assert!(p.matches("/usr/lib/x.so"));
        assert!(!p.matches("/usr/li"));
        let mut root = PathPrefixes::default();
        root.insert("/");
        assert!(root.matches("/anything"));
    }

    #[test]
    fn ipnet_contains() {
        let n = IpNet::parse("192.0.2.0/24").unwrap();
        assert!(n.contains(&"192.0.2.77".parse().unwrap()));
        assert!(!n.contains(&"192.0.3.1".parse().unwrap()));
        assert!(IpNet::parse("::1/128")
            .unwrap()
            .contains(&"::1".parse().unwrap()));
        assert!(IpNet::parse("1.2.3.4/33").is_none());
    }
}
