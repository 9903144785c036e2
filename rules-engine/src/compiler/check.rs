//! Field binding and type checks: each `field op value` of a condition is
//! bound against [`crate::fields`] (unknown and unsupported fields handled as
//! the rule's options say), its operator checked against the field's type,
//! its values parsed to that type (numbers, booleans, addresses, networks,
//! regexes, globs, byte strings), and list values expanded into sets.
//! `evt.type` checks become bit masks (what the engine indexes rules by) and
//! `fd.*ip.name` checks compare against the host's resolved addresses.

use super::{Compiler, Fail, RuleCx};
use crate::diag::Code;
use crate::eval::{self, FastSet, Glob, IpNet, Node, PathPrefixes, Rhs, StrSet};
use crate::event::EvtType;
use crate::fields::{self, FieldId, FieldType, ResolveError};
use crate::parser::{Check, Op, Operand as AstOperand, Rhs as AstRhs, Span, Transformer, Value};
use crate::reader::CondText;

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

impl Compiler<'_> {
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

    /// Bind and type-check one `field op value`.
    pub(super) fn check(
        &mut self,
        c: &Check,
        src: &CondText,
        rcx: &mut RuleCx,
    ) -> Result<Node, Fail> {
        let Some(lhs) = self.operand(&c.lhs, src, rcx)? else {
            return Ok(Node::Unsupported);
        };
        let ty = operand_type(&lhs);
        if let Some(n) = self.evt_type_check(c, &lhs, rcx) {
            return Ok(n);
        }
        if let Some(n) = self.host_name_check(c, &lhs, src, rcx)? {
            return Ok(n);
        }
        let op = c.op;
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
        let Some(rhs) = self.rhs(c, ty, src, rcx)? else {
            return Ok(Node::Unsupported);
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

    /// The names a check compares with: its value, or its list expanded.
    fn rhs_names(&mut self, rhs: &AstRhs) -> Vec<String> {
        match rhs {
            AstRhs::Value(v) => vec![v.text.clone()],
            AstRhs::List(items, _) => self.expand(items).into_iter().map(|(s, _)| s).collect(),
            _ => Vec::new(),
        }
    }

    /// `evt.type` checks become bit masks (and feed event-type indexing).
    fn evt_type_check(&mut self, c: &Check, lhs: &eval::Operand, rcx: &mut RuleCx) -> Option<Node> {
        let op = c.op;
        if !(matches!(lhs.field.id(), FieldId::EvtType | FieldId::SyscallType)
            && lhs.transforms.is_empty()
            && matches!(op, Op::Eq | Op::Ne | Op::In | Op::Intersects))
        {
            return None;
        }
        let names = self.rhs_names(&c.rhs);
        if names.is_empty() && !matches!(c.rhs, AstRhs::List(..)) {
            return None;
        }
        let mut mask: eval::TypeMask = 0;
        for n in names {
            if let Some(t) = EvtType::from_name(&n) {
                mask |= eval::type_bit(t);
            }
            rcx.evt_names.insert(n);
        }
        Some(if op == Op::Ne {
            Node::Not(Box::new(Node::EvtType(mask)))
        } else {
            Node::EvtType(mask)
        })
    }

    /// `fd.sip.name = "host"`: compare the address with the host's addresses.
    fn host_name_check(
        &mut self,
        c: &Check,
        lhs: &eval::Operand,
        src: &CondText,
        rcx: &RuleCx,
    ) -> Result<Option<Node>, Fail> {
        let ip_of_name = match lhs.field.id() {
            FieldId::FdSipName => Some("fd.sip"),
            FieldId::FdRipName => Some("fd.rip"),
            FieldId::FdCipName => Some("fd.cip"),
            FieldId::FdLipName => Some("fd.lip"),
            _ => None,
        };
        let op = c.op;
        let Some(ip_field) = ip_of_name.filter(|_| lhs.transforms.is_empty()) else {
            return Ok(None);
        };
        if !matches!(op, Op::Eq | Op::Ne | Op::In | Op::Intersects) {
            return Ok(None);
        }
        let names = self.rhs_names(&c.rhs);
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
        Ok(Some(if op == Op::Ne {
            Node::Not(Box::new(check))
        } else {
            check
        }))
    }

    /// The right-hand side, parsed for a left side of type `ty`; `Ok(None)`
    /// when it names a tolerated unsupported/unknown field.
    fn rhs(
        &mut self,
        c: &Check,
        ty: FieldType,
        src: &CondText,
        rcx: &mut RuleCx,
    ) -> Result<Option<Rhs>, Fail> {
        let op = c.op;
        Ok(Some(match &c.rhs {
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
                    return Ok(None);
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
        }))
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
