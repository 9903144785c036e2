//! Load results as data: every problem found while loading rules is a
//! [`Diagnostic`] with a stable code, a severity, a position and the item it
//! belongs to. The CLI renders them as text or JSON; `mamori run` logs them.
//!
//! Codes follow Falco's load-result names where the meaning is the same
//! (`LOAD_ERR_YAML_PARSE`, `LOAD_NO_EVTTYPE`, …) so operators who know Falco
//! recognise them; mamori-only situations get `LOAD_UNSUPPORTED_*` codes.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Stable diagnostic codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    // errors
    ErrFileRead,
    ErrYamlParse,
    ErrYamlValidate,
    ErrCompileCondition,
    ErrCompileOutput,
    ErrValidate,
    // warnings
    UnknownSource,
    NoEvttype,
    UnknownFilter,
    UnusedMacro,
    UnusedList,
    UnknownItem,
    DeprecatedItem,
    UnsupportedEvttype,
    UnsupportedField,
    UnsupportedOutputField,
    ExceptionNameNotUnique,
    RuleRedefined,
    NeverTrue,
}

impl Code {
    pub const ALL: [Code; 19] = [
        Code::ErrFileRead,
        Code::ErrYamlParse,
        Code::ErrYamlValidate,
        Code::ErrCompileCondition,
        Code::ErrCompileOutput,
        Code::ErrValidate,
        Code::UnknownSource,
        Code::NoEvttype,
        Code::UnknownFilter,
        Code::UnusedMacro,
        Code::UnusedList,
        Code::UnknownItem,
        Code::DeprecatedItem,
        Code::UnsupportedEvttype,
        Code::UnsupportedField,
        Code::UnsupportedOutputField,
        Code::ExceptionNameNotUnique,
        Code::RuleRedefined,
        Code::NeverTrue,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Code::ErrFileRead => "LOAD_ERR_FILE_READ",
            Code::ErrYamlParse => "LOAD_ERR_YAML_PARSE",
            Code::ErrYamlValidate => "LOAD_ERR_YAML_VALIDATE",
            Code::ErrCompileCondition => "LOAD_ERR_COMPILE_CONDITION",
            Code::ErrCompileOutput => "LOAD_ERR_COMPILE_OUTPUT",
            Code::ErrValidate => "LOAD_ERR_VALIDATE",
            Code::UnknownSource => "LOAD_UNKNOWN_SOURCE",
            Code::NoEvttype => "LOAD_NO_EVTTYPE",
            Code::UnknownFilter => "LOAD_UNKNOWN_FILTER",
            Code::UnusedMacro => "LOAD_UNUSED_MACRO",
            Code::UnusedList => "LOAD_UNUSED_LIST",
            Code::UnknownItem => "LOAD_UNKNOWN_ITEM",
            Code::DeprecatedItem => "LOAD_DEPRECATED_ITEM",
            Code::UnsupportedEvttype => "LOAD_UNSUPPORTED_EVTTYPE",
            Code::UnsupportedField => "LOAD_UNSUPPORTED_FIELD",
            Code::UnsupportedOutputField => "LOAD_UNSUPPORTED_OUTPUT_FIELD",
            Code::ExceptionNameNotUnique => "LOAD_EXCEPTION_NAME_NOT_UNIQUE",
            Code::RuleRedefined => "LOAD_RULE_REDEFINED",
            Code::NeverTrue => "LOAD_NEVER_TRUE",
        }
    }

    pub const fn severity(self) -> Severity {
        match self {
            Code::ErrFileRead
            | Code::ErrYamlParse
            | Code::ErrYamlValidate
            | Code::ErrCompileCondition
            | Code::ErrCompileOutput
            | Code::ErrValidate => Severity::Error,
            _ => Severity::Warning,
        }
    }

    /// One-line description (what the code means, not this instance).
    pub const fn description(self) -> &'static str {
        match self {
            Code::ErrFileRead => "the rules file or directory could not be read",
            Code::ErrYamlParse => "the file is not valid YAML",
            Code::ErrYamlValidate => "a YAML item has the wrong shape or type for its key",
            Code::ErrCompileCondition => {
                "a condition does not parse or does not type-check (unknown field, macro, bad regex, wrong operator)"
            }
            Code::ErrCompileOutput => "an output string refers to an unknown field",
            Code::ErrValidate => {
                "an item is inconsistent (override of a missing item, bad priority, bad exception)"
            }
            Code::UnknownSource => "the rule's source is not `syscall`; the rule is skipped",
            Code::NoEvttype => {
                "the condition does not restrict evt.type: the rule runs on every event type"
            }
            Code::UnknownFilter => {
                "the rule uses an unknown field and says skip-if-unknown-filter; it is loaded inactive"
            }
            Code::UnusedMacro => "a macro is defined but no rule uses it",
            Code::UnusedList => "a list is defined but no rule or macro uses it",
            Code::UnknownItem => "an unknown top-level item or key was ignored",
            Code::DeprecatedItem => "a deprecated form (append: true) was used",
            Code::UnsupportedEvttype => {
                "the rule only matches event types mamori does not capture; it is loaded inactive"
            }
            Code::UnsupportedField => {
                "the rule uses a Falco field mamori does not provide; it is loaded inactive"
            }
            Code::UnsupportedOutputField => {
                "the output uses a Falco field mamori does not provide; it renders as <NA>"
            }
            Code::ExceptionNameNotUnique => "two exceptions of one rule share a name",
            Code::NeverTrue => {
                "the condition is always false on mamori's events (evt.dir is always '<', evt.num is never set); the rule is loaded inactive"
            }
            Code::RuleRedefined => {
                "a rule with the same name was defined earlier; as in Falco, the later definition replaces it in place"
            }
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Which item a diagnostic belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemRef {
    /// `rule`, `macro`, `list`, …
    pub kind: &'static str,
    pub name: String,
}

/// One load problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: Code,
    pub message: String,
    pub file: String,
    pub line: u32,
    pub col: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemRef>,
}

impl Diagnostic {
    /// A rule file or directory the caller could not read (the engine itself
    /// reads nothing; see [`crate::Engine::load`]).
    pub fn unreadable(file: impl Into<String>, why: impl fmt::Display) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code: Code::ErrFileRead,
            message: format!("cannot read: {why}"),
            file: file.into(),
            line: 1,
            col: 1,
            item: None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}[{}]: ",
            self.file, self.line, self.col, self.code
        )?;
        if let Some(item) = &self.item {
            write!(f, "{} '{}': ", item.kind, item.name)?;
        }
        f.write_str(&self.message)
    }
}

/// The result of loading: diagnostics plus counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub files: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
    pub rules_total: usize,
    pub rules_active: usize,
    pub rules_inactive: usize,
    pub rules_disabled: usize,
}

impl LoadReport {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn with_code(&self, code: Code) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(move |d| d.code == code)
    }

    /// Summary line: `N rules: A active, I inactive, D disabled; E errors, W warnings`.
    pub fn summary(&self) -> String {
        format!(
            "{} rules: {} active, {} inactive, {} disabled; {} errors, {} warnings",
            self.rules_total,
            self.rules_active,
            self.rules_inactive,
            self.rules_disabled,
            self.errors().count(),
            self.warnings().count()
        )
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        write!(f, "{}", self.summary())
    }
}
