//! Stage 4: lists, then macros, then rules — as Falco orders it.
//!
//! * Lists: items naming an earlier list are replaced by its items.
//! * Macros: parsed once (syntax errors reported at the macro); expanded into
//!   each rule that uses them, honouring visibility (a macro sees only items
//!   defined before it) and rejecting cycles.
//! * Rules: the condition is parsed, exceptions are added as
//!   `and not (...)` terms (built as AST, never as re-parsed text), and the
//!   whole tree is type-checked against the field registry and compiled into
//!   an [`eval::Node`]. Each rule ends active, inactive with a precise reason
//!   (event types mamori does not capture, a Falco field mamori lacks, an
//!   unknown field under `skip-if-unknown-filter`), disabled, or invalid with
//!   an error diagnostic.

use std::collections::{BTreeSet, HashMap};

use super::diag::{Code, Diagnostic, ItemRef};
use super::eval::{self, FastSet, Glob, IpNet, Node, PathPrefixes, Rhs, StrSet};
use super::loader::{
    Collection, CondText, ExFields, ExValue, ExceptionInfo, RuleInfo, StatefulInfo,
};
use super::output::{OutputFormat, StateFields};
use super::parser::{
    self, Check, Expr, Op, Operand as AstOperand, Rhs as AstRhs, Span, Transformer, Value,
};
use super::state;
use super::yaml::Mark;
use crate::event::EvtType;
use crate::fields::{self, FieldId, FieldType, ResolveError};

/// How far macro expansion may nest.
const MAX_MACRO_DEPTH: usize = 64;

/// Load-time options that change compilation.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Treat Falco fields mamori lacks as errors instead of loading the rule inactive.
    pub strict_fields: bool,
    /// Host names `fd.sip.name` & co. compare against, resolved at load.
    pub names: HostNames,
}

/// Name → addresses table for `fd.sip.name = "host"` checks. mamori never
/// sends DNS queries: names come from `/etc/hosts` and, in a pod, the API
/// server's service address (`KUBERNETES_SERVICE_HOST`) for the
/// `kubernetes.default.svc...` names; a name it cannot resolve matches nothing.
#[derive(Debug, Clone, Default)]
pub struct HostNames(pub HashMap<String, Vec<std::net::IpAddr>>);

impl HostNames {
    pub fn add_hosts_file(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(ip) = words.next().and_then(|w| w.parse().ok()) else {
                continue;
            };
            for name in words {
                self.add(name, ip);
            }
        }
    }

    pub fn add_kubernetes_api(&mut self, ip: std::net::IpAddr) {
        for n in [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ] {
            self.add(n, ip);
        }
    }

    pub fn add(&mut self, name: &str, ip: std::net::IpAddr) {
        let v = self.0.entry(name.to_ascii_lowercase()).or_default();
        if !v.contains(&ip) {
            v.push(ip);
        }
    }

    fn lookup(&self, name: &str) -> &[std::net::IpAddr] {
        self.0
            .get(&name.trim_end_matches('.').to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Why a rule is not evaluated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Status {
    Active,
    Inactive { code: Code, reason: String },
    Disabled,
    Invalid { reason: String },
}

/// What `rules list` shows about a rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleSummary {
    pub name: String,
    pub desc: String,
    pub priority: crate::alert::Priority,
    pub tags: Vec<String>,
    pub source: String,
    pub evttypes: Vec<&'static str>,
    #[serde(flatten)]
    pub status: Status,
    pub file: String,
    pub line: u32,
    pub col: u32,
    /// `threshold` or `sequence` for mamori's stateful rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stateful: Option<&'static str>,
}

pub struct CompiledRule {
    pub summary: RuleSummary,
    pub node: Option<Node>,
    pub output: OutputFormat,
    /// Event types the rule (with its sequence steps) must see.
    pub mask: u16,
    /// The `threshold:` / `sequence:` block, compiled.
    pub state: Option<state::Spec>,
}

pub struct Compiled {
    pub rules: Vec<CompiledRule>,
    pub diags: Vec<Diagnostic>,
}

/// A compile failure inside one rule.
struct Fail(Diagnostic);

struct Compiler<'c> {
    col: &'c Collection,
    opts: CompileOptions,
    lists: HashMap<&'c str, (usize, Vec<String>)>,
    list_used: HashMap<&'c str, bool>,
    macros: HashMap<&'c str, usize>,
    macro_asts: Vec<Option<Expr>>,
    macro_used: Vec<bool>,
    diags: Vec<Diagnostic>,
}

/// Per-rule state while compiling its tree.
struct RuleCx<'r> {
    rule: &'r str,
    skip_unknown: bool,
    /// First Falco field mamori lacks: (field, file, mark).
    unsupported: Option<(String, String, Mark)>,
    /// First unknown field under skip-if-unknown-filter.
    unknown: Option<(String, String, Mark)>,
    evt_names: BTreeSet<String>,
    stack: Vec<usize>,
}

fn unquote(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// Parse an integer the way Falco accepts numbers: decimal (optionally signed) or 0x hex.
fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok();
    }
    t.parse::<i64>().ok()
}

enum Scalar {
    Str(String),
    Int(i64),
    Bool(bool),
    Ip(std::net::IpAddr),
    Net(IpNet),
}

impl<'c> Compiler<'c> {
    fn new(col: &'c Collection, opts: CompileOptions) -> Self {
        let mut c = Compiler {
            col,
            opts,
            lists: HashMap::new(),
            list_used: HashMap::new(),
            macros: HashMap::new(),
            macro_asts: Vec::new(),
            macro_used: vec![false; col.macros.len()],
            diags: Vec::new(),
        };
        c.compile_lists();
        c.parse_macros();
        c
    }

    fn compile_lists(&mut self) {
        let col = self.col;
        for l in &col.lists {
            let mut items = Vec::new();
            for it in &l.items {
                match self.lists.get(it.as_str()) {
                    Some((idx, sub)) if *idx < l.visibility => {
                        items.extend(sub.iter().cloned());
                        self.list_used.insert(it.as_str(), true);
                    }
                    _ => items.push(unquote(it).to_string()),
                }
            }
            self.lists.insert(&l.name, (l.index, items));
            self.list_used.entry(&l.name).or_insert(false);
        }
    }

    fn parse_macros(&mut self) {
        for (i, m) in self.col.macros.iter().enumerate() {
            self.macros.insert(&m.name, i);
            match parser::parse(&m.cond.text) {
                Ok(e) => self.macro_asts.push(Some(e)),
                Err(e) => {
                    let (file, mark) = m.cond.position(e.offset);
                    self.diags.push(Diagnostic {
                        severity: Code::ErrCompileCondition.severity(),
                        code: Code::ErrCompileCondition,
                        message: e.message,
                        file: file.to_string(),
                        line: mark.line,
                        col: mark.col,
                        item: Some(ItemRef {
                            kind: "macro",
                            name: m.name.clone(),
                        }),
                    });
                    self.macro_asts.push(None);
                }
            }
        }
    }

    fn fail(
        &self,
        rcx: &RuleCx,
        src: &CondText,
        span: Span,
        code: Code,
        msg: impl Into<String>,
    ) -> Fail {
        let (file, mark) = src.position(span.start);
        rule_fail(rcx.rule, file, mark, code, msg)
    }

    fn expr(
        &mut self,
        e: &Expr,
        src: &CondText,
        rcx: &mut RuleCx,
        vis: usize,
    ) -> Result<Node, Fail> {
        Ok(match e {
            Expr::And(items, _) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    match self.expr(i, src, rcx, vis)? {
                        Node::And(inner) => out.extend(inner.into_vec()),
                        n => out.push(n),
                    }
                }
                Node::And(out.into_boxed_slice())
            }
            Expr::Or(items, _) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    match self.expr(i, src, rcx, vis)? {
                        Node::Or(inner) => out.extend(inner.into_vec()),
                        n => out.push(n),
                    }
                }
                Node::Or(out.into_boxed_slice())
            }
            Expr::Not(inner, _) => match self.expr(inner, src, rcx, vis)? {
                Node::Not(n) => *n,
                n => Node::Not(Box::new(n)),
            },
            Expr::Macro(name, span) => {
                let idx = match self.macros.get(name.as_str()) {
                    Some(&i) if self.col.macros[i].index < vis => i,
                    Some(_) => {
                        return Err(self.fail(
                            rcx,
                            src,
                            *span,
                            Code::ErrCompileCondition,
                            format!("macro '{name}' is used before it is defined"),
                        ))
                    }
                    None => {
                        return Err(self.fail(
                            rcx,
                            src,
                            *span,
                            Code::ErrCompileCondition,
                            format!("undefined macro '{name}'"),
                        ))
                    }
                };
                if rcx.stack.contains(&idx) {
                    return Err(self.fail(
                        rcx,
                        src,
                        *span,
                        Code::ErrCompileCondition,
                        format!("macro '{name}' references itself"),
                    ));
                }
                if rcx.stack.len() >= MAX_MACRO_DEPTH {
                    return Err(self.fail(
                        rcx,
                        src,
                        *span,
                        Code::ErrCompileCondition,
                        format!("macros nested deeper than {MAX_MACRO_DEPTH} levels"),
                    ));
                }
                self.macro_used[idx] = true;
                let col = self.col;
                let m = &col.macros[idx];
                let Some(ast) = self.macro_asts[idx].take() else {
                    return Err(self.fail(
                        rcx,
                        src,
                        *span,
                        Code::ErrCompileCondition,
                        format!("macro '{name}' has a syntax error (reported at the macro)"),
                    ));
                };
                rcx.stack.push(idx);
                let res = self.expr(&ast, &m.cond, rcx, m.visibility);
                rcx.stack.pop();
                self.macro_asts[idx] = Some(ast);
                res?
            }
            Expr::Check(c) => self.check(c, src, rcx)?,
        })
    }

    /// Bind an operand; `Ok(None)` means "unsupported/unknown but tolerated".
    fn operand(
        &mut self,
        o: &AstOperand,
        src: &CondText,
        rcx: &mut RuleCx,
    ) -> Result<Option<eval::Operand>, Fail> {
        let fr = o.field();
        let field = match fields::resolve(&fr.name, fr.arg.as_deref()) {
            Ok(f) => f,
            Err(ResolveError::BadArg(m)) => {
                return Err(self.fail(rcx, src, fr.span, Code::ErrCompileCondition, m));
            }
            Err(ResolveError::Unsupported) if !self.opts.strict_fields => {
                if rcx.unsupported.is_none() {
                    let (file, mark) = src.position(fr.span.start);
                    rcx.unsupported = Some((fr.to_string(), file.to_string(), mark));
                }
                return Ok(None);
            }
            Err(e) => {
                if rcx.skip_unknown {
                    if rcx.unknown.is_none() {
                        let (file, mark) = src.position(fr.span.start);
                        rcx.unknown = Some((fr.to_string(), file.to_string(), mark));
                    }
                    return Ok(None);
                }
                let what = if e == ResolveError::Unsupported {
                    "is a Falco field mamori does not provide"
                } else {
                    "is not a known field"
                };
                return Err(self.fail(
                    rcx,
                    src,
                    fr.span,
                    Code::ErrCompileCondition,
                    format!("'{fr}' {what} (see `mamori fields`)"),
                ));
            }
        };
        let mut transforms = Vec::new();
        collect_transforms(o, &mut transforms);
        let mut ty = field.ty();
        for t in &transforms {
            if ty != FieldType::String {
                return Err(self.fail(
                    rcx,
                    src,
                    o.span(),
                    Code::ErrCompileCondition,
                    format!(
                        "transformer {t:?} needs a string field; '{fr}' is {}",
                        ty.as_str()
                    ),
                ));
            }
            if *t == Transformer::Len {
                ty = FieldType::Int;
            }
        }
        Ok(Some(eval::Operand { field, transforms }))
    }

    fn check(&mut self, c: &Check, src: &CondText, rcx: &mut RuleCx) -> Result<Node, Fail> {
        let Some(lhs) = self.operand(&c.lhs, src, rcx)? else {
            return Ok(Node::Unsupported);
        };
        let ty = operand_type(&lhs);
        let op = c.op;

        // evt.type checks become bit masks (and feed event-type indexing).
        if matches!(lhs.field.id(), FieldId::EvtType | FieldId::SyscallType)
            && lhs.transforms.is_empty()
            && matches!(op, Op::Eq | Op::Ne | Op::In | Op::Intersects)
        {
            let names: Vec<String> = match &c.rhs {
                AstRhs::Value(v) => vec![v.text.clone()],
                AstRhs::List(items, _) => self.expand(items).into_iter().map(|(s, _)| s).collect(),
                _ => Vec::new(),
            };
            if !names.is_empty() || matches!(c.rhs, AstRhs::List(..)) {
                let mut mask = 0u16;
                for n in names {
                    if let Some(t) = EvtType::from_name(&n) {
                        mask |= eval::type_bit(t);
                    }
                    rcx.evt_names.insert(n);
                }
                return Ok(if op == Op::Ne {
                    Node::Not(Box::new(Node::EvtType(mask)))
                } else {
                    Node::EvtType(mask)
                });
            }
        }

        // fd.sip.name = "host": compare the address with the host's addresses.
        let ip_of_name = match lhs.field.id() {
            FieldId::FdSipName => Some("fd.sip"),
            FieldId::FdRipName => Some("fd.rip"),
            FieldId::FdCipName => Some("fd.cip"),
            FieldId::FdLipName => Some("fd.lip"),
            _ => None,
        };
        if let Some(ip_field) = ip_of_name.filter(|_| lhs.transforms.is_empty()) {
            if matches!(op, Op::Eq | Op::Ne | Op::In | Op::Intersects) {
                let names: Vec<String> = match &c.rhs {
                    AstRhs::Value(v) => vec![v.text.clone()],
                    AstRhs::List(items, _) => {
                        self.expand(items).into_iter().map(|(s, _)| s).collect()
                    }
                    _ => Vec::new(),
                };
                let mut ips = FastSet::default();
                for n in &names {
                    ips.extend(self.opts.names.lookup(n).iter().copied());
                }
                let field = fields::resolve(ip_field, None).map_err(|_| {
                    self.fail(
                        rcx,
                        src,
                        c.span,
                        Code::ErrCompileCondition,
                        "internal: address field",
                    )
                })?;
                let check = Node::Check(Box::new(eval::CheckNode::new(
                    eval::Operand {
                        field,
                        transforms: Vec::new(),
                    },
                    Op::In,
                    Rhs::IpSet(ips),
                )));
                return Ok(if op == Op::Ne {
                    Node::Not(Box::new(check))
                } else {
                    check
                });
            }
        }

        let op_ok = match op {
            Op::Exists | Op::Eq | Op::Ne | Op::In | Op::Intersects => true,
            Op::Lt | Op::Le | Op::Gt | Op::Ge => ty.is_numeric(),
            _ => ty == FieldType::String,
        };
        if !op_ok {
            return Err(self.fail(
                rcx,
                src,
                c.op_span,
                Code::ErrCompileCondition,
                format!(
                    "operator '{}' cannot be used with '{}' ({})",
                    op.as_str(),
                    c.lhs.field(),
                    ty.as_str()
                ),
            ));
        }
        let rhs = match &c.rhs {
            AstRhs::None => {
                if op != Op::Exists {
                    return Err(self.fail(
                        rcx,
                        src,
                        c.span,
                        Code::ErrCompileCondition,
                        "missing value",
                    ));
                }
                Rhs::None
            }
            AstRhs::Operand(o) => {
                let Some(r) = self.operand(o, src, rcx)? else {
                    return Ok(Node::Unsupported);
                };
                let rty = operand_type(&r);
                let compatible = rty == ty || (rty.is_numeric() && ty.is_numeric());
                if !compatible {
                    return Err(self.fail(
                        rcx,
                        src,
                        o.span(),
                        Code::ErrCompileCondition,
                        format!(
                            "cannot compare '{}' ({}) with '{}' ({})",
                            c.lhs.field(),
                            ty.as_str(),
                            o.field(),
                            rty.as_str()
                        ),
                    ));
                }
                Rhs::Operand(r)
            }
            AstRhs::Value(v) => {
                if op.is_list_op() {
                    self.list_rhs(op, ty, std::slice::from_ref(v), src, rcx, c)?
                } else {
                    self.value_rhs(op, ty, v, src, rcx, c)?
                }
            }
            AstRhs::List(items, span) => {
                if !op.is_list_op() {
                    return Err(self.fail(
                        rcx,
                        src,
                        *span,
                        Code::ErrCompileCondition,
                        format!(
                            "operator '{}' takes a single value, not a list",
                            op.as_str()
                        ),
                    ));
                }
                self.list_rhs(op, ty, items, src, rcx, c)?
            }
        };
        let constant = matches!(lhs.field.id(), FieldId::EvtDir | FieldId::EvtNum)
            && !matches!(rhs, Rhs::Operand(_));
        let check = eval::CheckNode::new(lhs, op, rhs);
        if constant {
            // evt.dir is always '<' and evt.num always missing in mamori:
            // decide the check now (Falco's never_true idiom folds away).
            return Ok(Node::Const(check.eval_on(&constant_event())));
        }
        Ok(Node::Check(Box::new(check)))
    }

    /// Expand unquoted list names inside a value list.
    fn expand(&mut self, items: &[Value]) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for v in items {
            if !v.quoted {
                if let Some((_, list)) = self.lists.get(v.text.as_str()) {
                    if let Some(u) = self.list_used.get_mut(v.text.as_str()) {
                        *u = true;
                    }
                    out.extend(list.iter().map(|s| (s.clone(), v.span)));
                    continue;
                }
            }
            out.push((v.text.clone(), v.span));
        }
        out
    }

    fn scalar(
        &self,
        ty: FieldType,
        text: &str,
        span: Span,
        src: &CondText,
        rcx: &RuleCx,
        c: &Check,
    ) -> Result<Scalar, Fail> {
        let bad = |what: &str| {
            self.fail(
                rcx,
                src,
                span,
                Code::ErrCompileCondition,
                format!("'{}' expects {what}, found '{text}'", c.lhs.field()),
            )
        };
        Ok(match ty {
            FieldType::String => Scalar::Str(text.to_string()),
            FieldType::Int | FieldType::Port => {
                Scalar::Int(parse_int(text).ok_or_else(|| bad("a number"))?)
            }
            FieldType::Bool => Scalar::Bool(match text {
                "true" => true,
                "false" => false,
                _ => return Err(bad("true or false")),
            }),
            FieldType::Ip => match text.parse() {
                Ok(ip) => Scalar::Ip(ip),
                Err(_) => Scalar::Net(IpNet::parse(text).ok_or_else(|| bad("an IP address"))?),
            },
            FieldType::IpNet => {
                Scalar::Net(IpNet::parse(text).ok_or_else(|| bad("an IP network (a.b.c.d/n)"))?)
            }
        })
    }

    fn value_rhs(
        &mut self,
        op: Op,
        ty: FieldType,
        v: &Value,
        src: &CondText,
        rcx: &RuleCx,
        c: &Check,
    ) -> Result<Rhs, Fail> {
        let text = v.text.as_str();
        Ok(match op {
            Op::IContains => Rhs::StrLower(text.to_ascii_lowercase()),
            Op::Glob => Rhs::Glob(Glob::new(text, false)),
            Op::IGlob => Rhs::Glob(Glob::new(text, true)),
            Op::BContains | Op::BStartsWith => {
                let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    })
                    .collect::<Option<Vec<u8>>>();
                match bytes {
                    Some(b) if hex.len().is_multiple_of(2) => Rhs::Bytes(b),
                    _ => {
                        return Err(self.fail(
                            rcx,
                            src,
                            v.span,
                            Code::ErrCompileCondition,
                            format!("'{}' needs a hex byte string, found '{text}'", op.as_str()),
                        ))
                    }
                }
            }
            Op::Regex => {
                let build = |pattern: &str| {
                    regex::RegexBuilder::new(pattern)
                        .size_limit(1 << 20)
                        .build()
                };
                let re = build(&format!("^(?:{text})$"))
                    .and_then(|whole| {
                        Ok(eval::MatchRegex {
                            whole,
                            somewhere: build(text)?,
                        })
                    })
                    .map_err(|e| {
                        let msg = e.to_string();
                        let msg = msg.lines().last().unwrap_or("invalid").trim().to_string();
                        self.fail(
                            rcx,
                            src,
                            v.span,
                            Code::ErrCompileCondition,
                            format!("invalid regex '{text}': {msg}"),
                        )
                    })?;
                Rhs::Regex(re)
            }
            Op::Contains => Rhs::Contains(Box::new(
                memchr::memmem::Finder::new(text.as_bytes()).into_owned(),
            )),
            Op::StartsWith | Op::EndsWith => Rhs::Str(text.to_string()),
            _ => match self.scalar(ty, text, v.span, src, rcx, c)? {
                Scalar::Str(s) => Rhs::Str(s),
                Scalar::Int(n) => Rhs::Int(n),
                Scalar::Bool(b) => Rhs::Bool(b),
                Scalar::Ip(ip) => Rhs::Ip(ip),
                Scalar::Net(n) => Rhs::Nets(vec![n]),
            },
        })
    }

    fn list_rhs(
        &mut self,
        op: Op,
        ty: FieldType,
        items: &[Value],
        src: &CondText,
        rcx: &RuleCx,
        c: &Check,
    ) -> Result<Rhs, Fail> {
        let values = self.expand(items);
        if op == Op::PMatch {
            let mut p = PathPrefixes::default();
            for (s, _) in &values {
                p.insert(s);
            }
            return Ok(Rhs::Prefixes(p));
        }
        let mut strs = StrSet::default();
        let mut ints = FastSet::default();
        let mut ips = FastSet::default();
        let mut nets = Vec::new();
        let mut bools = Vec::new();
        for (s, span) in &values {
            match self.scalar(ty, s, *span, src, rcx, c)? {
                Scalar::Str(s) => {
                    strs.insert(s);
                }
                Scalar::Int(n) => {
                    ints.insert(n);
                }
                Scalar::Ip(ip) => {
                    ips.insert(ip);
                    nets.push(IpNet {
                        addr: ip,
                        prefix: if ip.is_ipv4() { 32 } else { 128 },
                    });
                }
                Scalar::Net(n) => nets.push(n),
                Scalar::Bool(b) => bools.push(b),
            }
        }
        Ok(match ty {
            FieldType::String => Rhs::StrSet(strs),
            FieldType::Int | FieldType::Port => Rhs::IntSet(ints),
            // Booleans in a list: a set of 0/1.
            FieldType::Bool => Rhs::IntSet(bools.into_iter().map(i64::from).collect()),
            FieldType::Ip if nets.len() == ips.len() => Rhs::IpSet(ips),
            FieldType::Ip | FieldType::IpNet => Rhs::Nets(nets),
        })
    }

    /// Turn a rule's exceptions into `not (...)` terms.
    fn exceptions(&mut self, r: &RuleInfo, rcx: &mut RuleCx) -> Result<Vec<Node>, Fail> {
        let mut out = Vec::new();
        for ex in &r.exceptions {
            if let Some(e) = self.exception(ex, rcx)? {
                out.push(Node::Not(Box::new(e)));
            }
        }
        Ok(out)
    }

    fn exception(&mut self, ex: &ExceptionInfo, rcx: &mut RuleCx) -> Result<Option<Node>, Fail> {
        let src = CondText::synthetic(&ex.ctx.file, ex.ctx.mark);
        let err = |this: &Self, rcx: &RuleCx, mark: Mark, msg: String| {
            let s = CondText::synthetic(&ex.ctx.file, mark);
            this.fail(
                rcx,
                &s,
                Span::default(),
                Code::ErrValidate,
                format!("exception '{}': {msg}", ex.name),
            )
        };
        let field_of =
            |this: &Self, rcx: &RuleCx, name: &str, mark: Mark| -> Result<AstOperand, Fail> {
                parser::parse_operand(name).map_err(|e| {
                    err(
                        this,
                        rcx,
                        mark,
                        format!("bad field '{name}': {}", e.message),
                    )
                })
            };
        let comp_of = |this: &Self, rcx: &RuleCx, comp: &str, mark: Mark| -> Result<Op, Fail> {
            Op::from_comp(comp).ok_or_else(|| {
                err(
                    this,
                    rcx,
                    mark,
                    format!("'{comp}' is not a supported comparison operator"),
                )
            })
        };
        let value = |text: &str| Value {
            text: text.to_string(),
            quoted: false,
            span: Span::default(),
        };
        let mk = |lhs: AstOperand, op: Op, rhs: AstRhs| {
            Expr::Check(Box::new(Check {
                lhs,
                op,
                op_span: Span::default(),
                rhs,
                span: Span::default(),
            }))
        };
        let Some(fields) = &ex.fields else {
            return Err(err(self, rcx, ex.ctx.mark, "has no 'fields'".into()));
        };
        let expr = match fields {
            ExFields::One(f, fmark) => {
                let op = match &ex.comps {
                    None => Op::In,
                    Some(ExFields::One(c, cmark)) => comp_of(self, rcx, c, *cmark)?,
                    Some(ExFields::Many(_)) => {
                        return Err(err(
                            self,
                            rcx,
                            ex.ctx.mark,
                            "fields and comps must both be strings".into(),
                        ))
                    }
                };
                if !op.is_list_op() {
                    return Err(err(
                        self,
                        rcx,
                        ex.ctx.mark,
                        "when fields is a single value, comps must be one of (in, pmatch, intersects)".into(),
                    ));
                }
                let mut vals = Vec::new();
                for v in &ex.values {
                    match v {
                        ExValue::Scalar(s, _) => vals.push(value(s)),
                        ExValue::List(_, m) => {
                            return Err(err(
                                self,
                                rcx,
                                *m,
                                "expected values to be a list of strings".into(),
                            ))
                        }
                    }
                }
                if vals.is_empty() {
                    return Ok(None);
                }
                mk(
                    field_of(self, rcx, f, *fmark)?,
                    op,
                    AstRhs::List(vals, Span::default()),
                )
            }
            ExFields::Many(fs) => {
                let comps: Vec<(Op, Mark)> = match &ex.comps {
                    None => fs.iter().map(|(_, m)| (Op::Eq, *m)).collect(),
                    Some(ExFields::Many(cs)) => cs
                        .iter()
                        .map(|(c, m)| comp_of(self, rcx, c, *m).map(|o| (o, *m)))
                        .collect::<Result<_, _>>()?,
                    Some(ExFields::One(_, m)) => {
                        return Err(err(
                            self,
                            rcx,
                            *m,
                            "fields is a list, so comps must be a list too".into(),
                        ))
                    }
                };
                if comps.len() != fs.len() {
                    return Err(err(
                        self,
                        rcx,
                        ex.ctx.mark,
                        "fields and comps lists must have equal length".into(),
                    ));
                }
                let mut alts = Vec::new();
                for tuple in &ex.values {
                    let ExValue::List(vals, tmark) = tuple else {
                        return Err(err(
                            self,
                            rcx,
                            ex.ctx.mark,
                            "each entry of values must be a list".into(),
                        ));
                    };
                    if vals.len() != fs.len() {
                        return Err(err(
                            self,
                            rcx,
                            *tmark,
                            "fields and values lists must have equal length".into(),
                        ));
                    }
                    let mut terms = Vec::new();
                    for (k, v) in vals.iter().enumerate() {
                        let lhs = field_of(self, rcx, &fs[k].0, fs[k].1)?;
                        let op = comps[k].0;
                        let rhs = match v {
                            ExValue::List(items, _) => AstRhs::List(
                                items
                                    .iter()
                                    .filter_map(|i| match i {
                                        ExValue::Scalar(s, _) => Some(value(s)),
                                        _ => None,
                                    })
                                    .collect(),
                                Span::default(),
                            ),
                            ExValue::Scalar(s, _) if op.is_list_op() => {
                                AstRhs::List(vec![value(s)], Span::default())
                            }
                            ExValue::Scalar(s, _) => AstRhs::Value(Value {
                                quoted: true,
                                ..value(s)
                            }),
                        };
                        terms.push(mk(lhs, op, rhs));
                    }
                    alts.push(Expr::And(terms, Span::default()));
                }
                if alts.is_empty() {
                    return Ok(None);
                }
                Expr::Or(alts, Span::default())
            }
        };
        self.expr(&expr, &src, rcx, usize::MAX).map(Some)
    }

    fn rule(&mut self, r: &RuleInfo) -> CompiledRule {
        let summary = RuleSummary {
            name: r.name.clone(),
            desc: r.desc.clone(),
            priority: r.priority,
            tags: r.tags.clone(),
            source: r.source.clone(),
            evttypes: Vec::new(),
            status: Status::Active,
            file: r.ctx.file.name.clone(),
            line: r.ctx.mark.line,
            col: r.ctx.mark.col,
            stateful: r.stateful.as_ref().map(|s| match s {
                StatefulInfo::Threshold(_) => "threshold",
                StatefulInfo::Sequence(_) => "sequence",
            }),
        };
        let state_fields = match &r.stateful {
            None => StateFields::None,
            Some(StatefulInfo::Threshold(_)) => StateFields::Threshold,
            Some(StatefulInfo::Sequence(q)) => {
                StateFields::Sequence(q.steps.iter().map(|s| s.name.clone()).collect())
            }
        };
        let (output, issues) = OutputFormat::compile_with(&r.output, &state_fields);
        let mut out = CompiledRule {
            summary,
            node: None,
            output,
            mask: 0,
            state: None,
        };
        let item = Some(ItemRef {
            kind: "rule",
            name: r.name.clone(),
        });
        let mk = |code: Code, mark: Mark, file: &str, msg: String| Diagnostic {
            severity: code.severity(),
            code,
            message: msg,
            file: file.to_string(),
            line: mark.line,
            col: mark.col,
            item: item.clone(),
        };
        if r.source != "syscall" {
            self.diags.push(mk(
                Code::UnknownSource,
                r.ctx.mark,
                &r.ctx.file.name,
                format!("unknown source '{}', rule skipped", r.source),
            ));
            out.summary.status = Status::Inactive {
                code: Code::UnknownSource,
                reason: format!("source '{}' is not captured by mamori", r.source),
            };
            return out;
        }
        let mut rcx = RuleCx {
            rule: &r.name,
            skip_unknown: r.skip_if_unknown_filter,
            unsupported: None,
            unknown: None,
            evt_names: BTreeSet::new(),
            stack: Vec::new(),
        };
        let compiled = match parser::parse(&r.cond.text) {
            Err(e) => Err(self.fail(
                &rcx,
                &r.cond,
                Span::new(e.offset, e.offset),
                Code::ErrCompileCondition,
                e.message,
            )),
            Ok(ast) => self
                .expr(&ast, &r.cond, &mut rcx, usize::MAX)
                .and_then(|cond| {
                    let exc = self.exceptions(r, &mut rcx)?;
                    Ok(if exc.is_empty() {
                        cond
                    } else {
                        let mut all = vec![cond];
                        all.extend(exc);
                        Node::And(all.into_boxed_slice())
                    })
                }),
        };
        let stateful = match (compiled, &r.stateful) {
            (Err(f), _) => Err(f),
            (Ok(n), None) => Ok((n, None)),
            (Ok(n), Some(st)) => self.stateful(st, &mut rcx).map(|s| (n, Some(s))),
        };
        let (node, state_parts) = match stateful {
            Ok(x) => x,
            Err(Fail(d)) => {
                out.summary.status = Status::Invalid {
                    reason: d.message.clone(),
                };
                self.diags.push(d);
                return out;
            }
        };
        let mut output_error = false;
        let mut output_warnings = Vec::new();
        for issue in issues {
            let (file, mark) = (&r.output_ctx.file.name, r.output_ctx.mark);
            if issue.unsupported {
                output_warnings.push(mk(Code::UnsupportedOutputField, mark, file, issue.message));
            } else {
                output_error = true;
                self.diags
                    .push(mk(Code::ErrCompileOutput, mark, file, issue.message));
            }
        }
        let node = eval::simplify(node);
        let (own_mask, _) = eval::type_sets(&node);
        let mut mask = own_mask;
        let mut never_step = false;
        let state_parts = state_parts.map(|(spec, steps)| {
            let steps: Vec<(String, Node)> = steps
                .into_iter()
                .map(|(name, n)| {
                    let n = eval::simplify(n);
                    let (m, _) = eval::type_sets(&n);
                    never_step |= m == 0 || matches!(n, Node::Const(false));
                    mask |= m;
                    let mut n = eval::specialize(n, m);
                    eval::order_by_cost(&mut n);
                    (name, n)
                })
                .collect();
            (spec, steps)
        });
        out.summary.evttypes = EvtType::ALL
            .into_iter()
            .filter(|t| mask & eval::type_bit(*t) != 0)
            .map(EvtType::as_str)
            .collect();
        let (file, mark) = (r.ctx.file.name.as_str(), r.ctx.mark);
        // An inactive rule always says why, as a warning at its position.
        let inactive =
            |diags: &mut Vec<Diagnostic>, code: Code, at: Mark, f: &str, reason: String| {
                diags.push(mk(code, at, f, reason.clone()));
                Status::Inactive { code, reason }
            };
        let status = if output_error {
            Status::Invalid {
                reason: "output refers to an unknown field".into(),
            }
        } else if !r.enabled {
            Status::Disabled
        } else if never_step {
            let reason = "a sequence step can never match any event mamori captures".to_string();
            inactive(&mut self.diags, Code::NeverTrue, mark, file, reason)
        } else if matches!(node, Node::Const(false)) {
            let reason = "condition is always false on mamori's events (evt.dir is always '<', evt.num is never set)".to_string();
            inactive(&mut self.diags, Code::NeverTrue, mark, file, reason)
        } else if mask == 0 {
            let others: Vec<&str> = rcx
                .evt_names
                .iter()
                .map(String::as_str)
                .filter(|n| EvtType::from_name(n).is_none())
                .collect();
            let reason = if others.is_empty() {
                "condition can never match any event type".to_string()
            } else {
                format!(
                    "only matches event types mamori does not capture: {}",
                    others.join(", ")
                )
            };
            inactive(
                &mut self.diags,
                Code::UnsupportedEvttype,
                mark,
                file,
                reason,
            )
        } else if let Some((field, f, m)) = rcx.unknown.take() {
            let reason = format!("unknown field '{field}' (skip-if-unknown-filter)");
            inactive(&mut self.diags, Code::UnknownFilter, m, &f, reason)
        } else if let Some((field, f, m)) = rcx.unsupported.take() {
            let reason = format!("uses Falco field '{field}' which mamori does not provide");
            inactive(&mut self.diags, Code::UnsupportedField, m, &f, reason)
        } else {
            if mask == eval::ALL_TYPES && r.warn_evttypes {
                self.diags.push(mk(
                    Code::NoEvttype,
                    mark,
                    file,
                    "condition does not restrict evt.type: the rule runs on every event".into(),
                ));
            }
            Status::Active
        };
        let active = status == Status::Active;
        out.summary.status = status;
        if active {
            // `<NA>` in the output only matters for rules that can fire.
            self.diags.append(&mut output_warnings);
            let mut node = eval::specialize(node, own_mask);
            eval::order_by_cost(&mut node);
            out.node = Some(node);
            out.mask = mask;
            out.state = state_parts.map(|(spec, steps)| match spec {
                PartialSpec::Threshold(t) => state::Spec::Threshold(t),
                PartialSpec::Sequence(mut q) => {
                    q.steps = steps;
                    state::Spec::Sequence(q)
                }
            });
        }
        out
    }

    /// Compile a `threshold:` / `sequence:` block: key fields bound against
    /// the registry, step conditions compiled like the rule's own.
    fn stateful(
        &mut self,
        st: &StatefulInfo,
        rcx: &mut RuleCx,
    ) -> Result<(PartialSpec, Vec<(String, Node)>), Fail> {
        let bind = |fields: &[(String, Mark)], file: &str| -> Result<Vec<eval::Operand>, Fail> {
            fields
                .iter()
                .map(|(name, mark)| {
                    let (n, arg) = match name.find('[') {
                        Some(k) if name.ends_with(']') => {
                            (&name[..k], Some(&name[k + 1..name.len() - 1]))
                        }
                        _ => (name.as_str(), None),
                    };
                    fields::resolve(n, arg)
                        .map(|field| eval::Operand {
                            field,
                            transforms: Vec::new(),
                        })
                        .map_err(|e| {
                            let why = match e {
                                ResolveError::Unknown => "is not a field mamori knows".to_string(),
                                ResolveError::Unsupported => {
                                    "is a Falco field mamori does not provide".to_string()
                                }
                                ResolveError::BadArg(m) => m,
                            };
                            rule_fail(
                                rcx.rule,
                                file,
                                *mark,
                                Code::ErrValidate,
                                format!("key field '{name}' {why}"),
                            )
                        })
                })
                .collect()
        };
        match st {
            StatefulInfo::Threshold(t) => {
                let file = &t.ctx.file.name;
                let spec = state::ThresholdSpec {
                    by: bind(&t.by, file)?,
                    distinct: bind(&t.distinct, file)?,
                    count: t.count,
                    within_ns: t.within_ns,
                    max_keys: t.max_keys,
                };
                Ok((PartialSpec::Threshold(spec), Vec::new()))
            }
            StatefulInfo::Sequence(q) => {
                let file = &q.ctx.file.name;
                let by = bind(&q.by, file)?;
                if q.tree
                    && !(by.len() == 1
                        && matches!(by[0].field.id(), FieldId::ProcPid | FieldId::ProcPpid))
                {
                    let mark = q.by.first().map(|b| b.1).unwrap_or(q.ctx.mark);
                    return Err(rule_fail(
                        rcx.rule,
                        file,
                        mark,
                        Code::ErrValidate,
                        "'tree: true' needs 'by' to be exactly one of proc.pid, proc.ppid",
                    ));
                }
                let mut steps = Vec::new();
                for step in &q.steps {
                    let node = match parser::parse(&step.cond.text) {
                        Err(e) => {
                            return Err(self.fail(
                                rcx,
                                &step.cond,
                                Span::new(e.offset, e.offset),
                                Code::ErrCompileCondition,
                                e.message,
                            ))
                        }
                        Ok(ast) => self.expr(&ast, &step.cond, rcx, usize::MAX)?,
                    };
                    steps.push((step.name.clone(), node));
                }
                let spec = state::SequenceSpec {
                    by,
                    tree: q.tree,
                    within_ns: q.within_ns,
                    steps: Vec::new(),
                    max_keys: q.max_keys,
                };
                Ok((PartialSpec::Sequence(spec), steps))
            }
        }
    }
}

/// A compile failure of rule `rule` at `file:mark`.
fn rule_fail(rule: &str, file: &str, mark: Mark, code: Code, msg: impl Into<String>) -> Fail {
    Fail(Diagnostic {
        severity: code.severity(),
        code,
        message: msg.into(),
        file: file.to_string(),
        line: mark.line,
        col: mark.col,
        item: Some(ItemRef {
            kind: "rule",
            name: rule.to_string(),
        }),
    })
}

/// A stateful spec whose sequence steps are not yet simplified.
enum PartialSpec {
    Threshold(state::ThresholdSpec),
    Sequence(state::SequenceSpec),
}

/// An event for folding checks on fields whose value mamori never varies.
fn constant_event() -> crate::event::Event {
    crate::event::Event::new(0, EvtType::Execve, 0, Default::default())
}

fn collect_transforms(o: &AstOperand, out: &mut Vec<Transformer>) {
    if let AstOperand::Transform(t, inner, _) = o {
        collect_transforms(inner, out);
        out.push(*t);
    }
}

fn operand_type(o: &eval::Operand) -> FieldType {
    if o.transforms.contains(&Transformer::Len) {
        FieldType::Int
    } else {
        o.field.ty()
    }
}

/// Compile a collection.
pub fn compile(col: &Collection, opts: CompileOptions) -> Compiled {
    let mut c = Compiler::new(col, opts);
    let mut rules = Vec::with_capacity(col.rules.len());
    for r in &col.rules {
        rules.push(c.rule(r));
    }
    for (i, m) in col.macros.iter().enumerate() {
        if !c.macro_used[i] {
            c.diags.push(Diagnostic {
                severity: Code::UnusedMacro.severity(),
                code: Code::UnusedMacro,
                message: "macro not referred to by any rule/macro".into(),
                file: m.ctx.file.name.clone(),
                line: m.ctx.mark.line,
                col: m.ctx.mark.col,
                item: Some(ItemRef {
                    kind: "macro",
                    name: m.name.clone(),
                }),
            });
        }
    }
    for l in &col.lists {
        if !c.list_used.get(l.name.as_str()).copied().unwrap_or(false) {
            c.diags.push(Diagnostic {
                severity: Code::UnusedList.severity(),
                code: Code::UnusedList,
                message: "list not referred to by any rule/macro/list".into(),
                file: l.ctx.file.name.clone(),
                line: l.ctx.mark.line,
                col: l.ctx.mark.col,
                item: Some(ItemRef {
                    kind: "list",
                    name: l.name.clone(),
                }),
            });
        }
    }
    Compiled {
        rules,
        diags: c.diags,
    }
}
