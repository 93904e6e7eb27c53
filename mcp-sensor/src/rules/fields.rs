//! The vocabulary of the rule language: event kinds, match fields (which
//! kinds each applies to and what values it takes), severities and actions.
//!
//! One table per concept, so that the parser's "expected one of ..."
//! messages, the compiler and the README cannot drift apart.

use serde::Serialize;

/// Event kinds a rule can select with `kind:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Exec,
    Open,
    Connect,
    Rpc,
    Exit,
    Fork,
    Malformed,
    /// A successful io_uring_setup(2).
    IoUringSetup,
    /// ptrace attach/seize, process_vm_readv/writev of another process.
    Ptrace,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::Exec,
        EventKind::Open,
        EventKind::Connect,
        EventKind::Rpc,
        EventKind::Exit,
        EventKind::Fork,
        EventKind::Malformed,
        EventKind::IoUringSetup,
        EventKind::Ptrace,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
            EventKind::Open => "open",
            EventKind::Connect => "connect",
            EventKind::Rpc => "rpc",
            EventKind::Exit => "exit",
            EventKind::Fork => "fork",
            EventKind::Malformed => "malformed",
            EventKind::IoUringSetup => "io_uring_setup",
            EventKind::Ptrace => "ptrace",
        }
    }

    pub(crate) fn from_name(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == s)
    }

    pub(crate) fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// How bad a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub(crate) const NAMES: &'static [&'static str] =
        &["info", "low", "medium", "high", "critical"];
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
    pub(crate) fn from_name(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// What the agent does on a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Report only (monitoring).
    Alert,
    /// Report and kill (enforcement); see [`KillScope`].
    Kill,
    /// Connect rules: refuse the connect in the kernel (EPERM), the
    /// process lives on (enforcement).
    Deny,
}

/// Which processes a `kill` action ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KillScope {
    /// The process the event is about.
    Process,
    /// The whole MCP server tree the process belongs to.
    Tree,
}

/// What values a field takes; decides how its values are compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueType {
    /// Exact names, or globs where `*`/`?`/`[` appear (no path semantics).
    Str,
    /// Path globs: `*` stays within one component, `**` crosses them.
    PathGlob,
    /// Absolute literal paths, matched by path or by (dev, ino).
    FileIdentity,
    Regex,
    Cidr,
    Port,
    Uint,
    Bool,
    Enum(&'static [&'static str]),
}

macro_rules! fields {
    ($($var:ident $name:literal [$($k:ident)*] $ty:expr;)*) => {
        /// A match field: a property of an event (or of its context).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum Field { $($var),* }
        impl Field {
            pub(crate) const ALL: &'static [Field] = &[$(Field::$var),*];
            pub(crate) fn name(self) -> &'static str { match self { $(Field::$var => $name),* } }
            /// Kinds the field applies to; 0 means every kind (scope fields).
            pub(crate) fn kinds(self) -> u16 {
                match self { $(Field::$var => 0 $(| EventKind::$k.bit())*),* }
            }
            pub(crate) fn value_type(self) -> ValueType { match self { $(Field::$var => $ty),* } }
        }
    };
}

pub(crate) const FILE_FLAGS: &[&str] = &["pseudo", "deleted", "path_truncated", "invalid_utf8"];
/// Whose process a `/proc/<pid>/...` path names (`proc_owner`): the
/// opening process itself, another process of its server's tree, or any
/// other process (the MCP client, pid 1, another user's program).
pub(crate) const PROC_OWNERS: &[&str] = &["self", "tree", "foreign"];
pub(crate) const OPEN_FLAGS: &[&str] = &[
    "O_RDONLY",
    "O_WRONLY",
    "O_RDWR",
    "O_CREAT",
    "O_EXCL",
    "O_NOCTTY",
    "O_TRUNC",
    "O_APPEND",
    "O_NONBLOCK",
    "O_DSYNC",
    "O_ASYNC",
    "O_DIRECT",
    "O_LARGEFILE",
    "O_DIRECTORY",
    "O_NOFOLLOW",
    "O_NOATIME",
    "O_CLOEXEC",
    "O_PATH",
    "O_SYNC",
    "O_TMPFILE",
];

fields! {
    Server "server" [] ValueType::Str;
    ServerCmdline "server_cmdline" [] ValueType::Str;
    Tool "tool" [] ValueType::Str;
    Method "method" [] ValueType::Str;
    Exe "exe" [] ValueType::PathGlob;
    ExeName "exe_name" [] ValueType::Str;
    ExeIs "exe_is" [Exec] ValueType::Str;
    Comm "comm" [] ValueType::Str;
    Uid "uid" [] ValueType::Uint;
    Script "script" [Exec] ValueType::PathGlob;
    ParentExe "parent_exe" [Exec] ValueType::PathGlob;
    ShellMode "shell_mode" [Exec] ValueType::Enum(crate::shell_run::SHELL_MODES);
    ScriptWritableBy "script_writable_by" [Exec] ValueType::Enum(crate::shell_run::WRITABLE_BY);
    Filename "filename" [Exec] ValueType::PathGlob;
    ArgvContains "argv_contains" [Exec] ValueType::Str;
    ArgvRegex "argv_regex" [Exec] ValueType::Regex;
    FileFlags "file_flags" [Exec Open] ValueType::Enum(FILE_FLAGS);
    File "file" [Exec Open] ValueType::FileIdentity;
    Path "path" [Open] ValueType::PathGlob;
    Basename "basename" [Open] ValueType::Str;
    ProcOwner "proc_owner" [Open] ValueType::Enum(PROC_OWNERS);
    Write "write" [Open] ValueType::Bool;
    Flags "flags" [Open] ValueType::Enum(OPEN_FLAGS);
    Outcome "outcome" [Open Connect Ptrace] ValueType::Enum(&["success", "failure"]);
    TargetOwner "target_owner" [Ptrace] ValueType::Enum(PROC_OWNERS);
    Syscall "syscall" [Ptrace] ValueType::Str;
    Family "family" [Connect] ValueType::Str;
    Addr "addr" [Connect] ValueType::Cidr;
    Port "port" [Connect] ValueType::Port;
    UnixPath "unix_path" [Connect] ValueType::PathGlob;
    Direction "direction" [Rpc Malformed] ValueType::Enum(&["client_to_server", "server_to_client"]);
    Message "message" [Rpc] ValueType::Enum(&["request", "response", "error", "notification"]);
    IsError "is_error" [Rpc] ValueType::Bool;
    TextRegex "text_regex" [Rpc] ValueType::Regex;
    DescriptionChanged "description_changed" [Rpc] ValueType::Bool;
    DefinitionsUpgraded "definitions_upgraded" [Rpc] ValueType::Bool;
}

impl Field {
    pub(crate) fn from_name(s: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.name() == s)
    }
}

/// Names of the kinds in a mask, for messages.
pub(crate) fn kind_names(mask: u16) -> String {
    let v: Vec<&str> = EventKind::ALL
        .iter()
        .filter(|k| mask & k.bit() != 0)
        .map(|k| k.name())
        .collect();
    v.join(", ")
}

/// "`a`, `b` or `c`" for "expected one of" messages.
pub(crate) fn one_of(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let v: Vec<String> = names
        .into_iter()
        .map(|n| format!("`{}`", n.as_ref()))
        .collect();
    v.join(", ")
}
