//! Validation tests (errors with exact file:line:column and what was
//! expected) and layering tests (override, disable, append).

use super::bench::{exec, open};
use super::{check, load, Action, EvalContext, KillScope, Severity};

fn errs(text: &str) -> Vec<String> {
    match check(&[("rules/x.yaml", text)]) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

#[track_caller]
fn one_err(text: &str, want_prefix: &str) {
    let e = errs(text);
    assert!(
        e.len() == 1 && e[0].starts_with(want_prefix),
        "want `{want_prefix}...`, got {e:#?}"
    );
}

const HEAD: &str = "- rule: r\n  description: d\n  severity: low\n";

#[test]
fn unknown_fields_name_the_expected_ones() {
    let e = errs("- rule: a\n  description: d\n  sevrity: high\n  kind: open\n");
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("rules/x.yaml:1:9: rule `a` is missing `severity` (one of `info`, `low`"),
        "{}",
        e[0]
    );
    assert_eq!(
        e[1],
        "rules/x.yaml:3:3: unknown field `sevrity`, expected one of `rule`, `description`, `severity`, `tags`, \
         `kind`, `match`, `after_first_request`, `except`, `exceptions`, `action`, `kill_scope`, `enabled`, `supersedes`, `append`"
    );
    one_err(
        &format!("{HEAD}  kind: open\n  match:\n    pth: /x\n"),
        "rules/x.yaml:6:5: unknown field `pth`, expected one of `server`, ",
    );
    assert_eq!(
        errs("- list: l\n  itms: [a]\n"),
        [
            "rules/x.yaml:1:9: list `l` is missing `items`",
            "rules/x.yaml:2:3: unknown field `itms`, expected one of `list`, `items`, `append`",
        ]
    );
    one_err(
        "- rules: a\n",
        "rules/x.yaml:1:3: expected an item with one of `rule`, `list`, `macro`, `disable`",
    );
}

#[test]
fn bad_values_are_reported_where_they_are_written() {
    one_err(
        &format!("{HEAD}  kind: open\n  match:\n    path: [/ok, \"/a/[b\"]\n"),
        "rules/x.yaml:6:17: invalid glob `/a/[b`",
    );
    one_err(
        &format!("{HEAD}  kind: rpc\n  match:\n    text_regex: 'a('\n"),
        "rules/x.yaml:6:17: invalid regex `a(`",
    );
    one_err(
        &format!("{HEAD}  kind: connect\n  match:\n    addr: [10.0.0.0/8, 10.0.0.0/33]\n"),
        "rules/x.yaml:6:24: invalid address or CIDR `10.0.0.0/33`",
    );
    one_err(
        &format!("{HEAD}  kind: connect\n  match:\n    port: 99999\n"),
        "rules/x.yaml:6:11: invalid port `99999`",
    );
    one_err(
        &format!("{HEAD}  kind: open\n  match:\n    flags: O_WRITE\n"),
        "rules/x.yaml:6:12: invalid `flags` value `O_WRITE`, expected one of `O_RDONLY`",
    );
    one_err(
        &format!("{HEAD}  kind: open\n  match:\n    write: yes\n"),
        "rules/x.yaml:6:5: expected `true` or `false` for `write`",
    );
    one_err(
        &format!("{HEAD}  kind: open\n  match:\n    file: /a/*\n"),
        "rules/x.yaml:6:11: invalid file `/a/*`, expected an absolute path without wildcards",
    );
    // A bad item in a list is reported in the list, whoever uses it.
    let src = "- list: paths\n  items: [\"/a/[b\"]\n- rule: r\n  description: d\n  severity: low\n  kind: open\n  match:\n    path: $paths\n";
    one_err(src, "rules/x.yaml:2:11: invalid glob `/a/[b`");
}

#[test]
fn severity_action_and_kind_are_checked() {
    one_err("- rule: r\n  description: d\n  severity: urgent\n  kind: open\n", "rules/x.yaml:3:13: invalid severity, expected one of `info`, `low`, `medium`, `high`, `critical`");
    one_err(
        &format!("{HEAD}  kind: open\n  action: block\n"),
        "rules/x.yaml:5:11: invalid action, expected one of `alert`, `kill`",
    );
    one_err(
        &format!("{HEAD}  kind: open\n  action: kill\n  kill_scope: all\n"),
        "rules/x.yaml:6:15: invalid kill_scope, expected one of `process`, `tree`",
    );
    one_err(
        &format!("{HEAD}  kind: [open, exac]\n"),
        "rules/x.yaml:4:16: unknown event kind `exac`, expected one of `exec`, `open`",
    );
    // an empty list passed the check and then broke enforcement's compile
    one_err(&format!("{HEAD}  kind: []\n  action: kill\n"), "rules/x.yaml:4:9: `kind` is empty: name one or more of");
    one_err(
        &format!("{HEAD}  kind: exec\n  match:\n    path: /x\n"),
        "rules/x.yaml:6:5: field `path` applies to kind open, but rule `r` matches kind exec",
    );
    one_err(
        &format!("{HEAD}  kind: exec\n  kill_scope: tree\n"),
        "rules/x.yaml:1:9: rule `r` has `kill_scope: tree` but `action: alert`",
    );
    one_err(
        &format!("{HEAD}  kind: exec\n  exceptions:\n    - name: e\n      fields: [server, path]\n      values: []\n"),
        "rules/x.yaml:7:24: field `path` applies to kind open, but rule `r` matches kind exec",
    );
    let set = check(&[(
        "k.yaml",
        format!("{HEAD}  kind: exec\n  action: kill\n  kill_scope: tree\n"),
    )])
    .unwrap();
    let r = set.rule("r").unwrap();
    assert_eq!(
        (r.severity, r.action, r.kill_scope),
        (Severity::Low, Action::Kill, KillScope::Tree)
    );
}

#[test]
fn references_duplicates_and_structure() {
    one_err(
        &format!("{HEAD}  kind: exec\n  match:\n    exe_name: [sh, $shells]\n"),
        "rules/x.yaml:6:20: undefined list `shells`",
    );
    one_err(
        &format!("{HEAD}  kind: exec\n  match:\n    macro: is_shell\n"),
        "rules/x.yaml:6:12: undefined macro `is_shell`",
    );
    one_err(
        &format!("- macro: a\n  match:\n    macro: b\n- macro: b\n  match:\n    macro: a\n{HEAD}  kind: exec\n  match:\n    macro: a\n"),
        "rules/x.yaml:6:12: macro `a` refers to itself (through a -> b)",
    );
    one_err(
        &format!("{HEAD}  kind: open\n{HEAD}  kind: exec\n"),
        "rules/x.yaml:5:9: duplicate rule `r` in this file (first defined at line 1)",
    );
    one_err(
        "- list: l\n  items: [a]\n- list: l\n  items: [b]\n",
        "rules/x.yaml:3:9: duplicate list `l` in this file (first defined at line 1)",
    );
    one_err(
        "- list: l\n  append: true\n  items: [a]\n",
        "rules/x.yaml:1:9: cannot append to list `l`: it is not defined in this or an earlier file",
    );
    one_err(
        "- disable: [nope]\n",
        "rules/x.yaml:1:13: rule `nope` is not defined in this or an earlier file",
    );
    one_err(
        &format!("{HEAD}  kind: exec\n  exceptions:\n    - name: e\n      fields: [server, tool]\n      values: [[a]]\n"),
        "rules/x.yaml:8:16: expected 2 values (one per field: server, tool), found 1",
    );
    one_err(
        &format!("{HEAD}  kind: exec\n- rule: r\n  append: true\n  severity: high\n"),
        "rules/x.yaml:7:3: `severity` cannot be appended",
    );
    one_err(
        "- rule: r\n  description: [d\n",
        "rules/x.yaml:3:1: invalid YAML",
    );
    one_err(
        "rule: r\n",
        "rules/x.yaml:1:1: expected a list of rules, lists and macros, found a mapping",
    );
    assert!(errs("").is_empty() && errs("# nothing\n").is_empty());
}

#[test]
fn errors_from_several_files_come_in_file_order() {
    let e = load(&[("b.yaml", "- disable: [x]\n"), ("a.yaml", "- list: l\n")])
        .err()
        .unwrap();
    let shown: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown[0],
        "b.yaml:1:13: rule `x` is not defined in this or an earlier file"
    );
    assert_eq!(shown[1], "a.yaml:1:9: list `l` is missing `items`");
}

#[test]
fn a_later_file_overrides_disables_and_appends() {
    let ctx = EvalContext {
        first_request_seen: true,
        ..Default::default()
    };
    let key = open("/usr/bin/node", "/home/u/.ssh/id_rsa", &["O_RDONLY"]);
    let mine = open("/usr/bin/node", "/srv/keys/k", &["O_RDONLY"]);

    // Replace: same id, new definition.
    let s = load(&[("u.yaml", "- rule: ssh-key-read\n  description: mine\n  severity: low\n  kind: open\n  match:\n    path: /srv/keys/*\n")]).unwrap();
    assert_eq!(s.rule("ssh-key-read").unwrap().severity, Severity::Low);
    assert!(s.evaluate(&key, &ctx).is_empty());
    assert_eq!(s.evaluate(&mine, &ctx)[0].description, "mine");

    // Disable, two ways; re-enable in a later file.
    for text in [
        "- rule: ssh-key-read\n  enabled: false\n",
        "- disable: [ssh-key-read, dotenv-read]\n",
    ] {
        let s = load(&[("u.yaml", text)]).unwrap();
        assert!(!s.rule("ssh-key-read").unwrap().enabled);
        assert!(s.evaluate(&key, &ctx).is_empty());
    }
    let s = load(&[
        ("u.yaml", "- disable: [ssh-key-read]\n"),
        ("v.yaml", "- rule: ssh-key-read\n  enabled: true\n"),
    ])
    .unwrap();
    assert_eq!(s.evaluate(&key, &ctx).len(), 1);

    // A list redefined without append replaces the default's items.
    let s = load(&[("u.yaml", "- list: ssh_key_readers\n  items: [node]\n")]).unwrap();
    assert!(s.evaluate(&key, &ctx).is_empty());

    // Appending tags and excepts.
    let s = load(&[(
        "u.yaml",
        "- rule: ssh-key-read\n  append: true\n  tags: [mine]\n  except:\n    - server: srv\n",
    )])
    .unwrap();
    assert!(s
        .rule("ssh-key-read")
        .unwrap()
        .tags
        .iter()
        .any(|t| t == "mine"));
    assert!(s.evaluate(&key, &ctx).is_empty());
}

#[test]
fn user_rules_combine_fields_lists_and_macros() {
    let text = r#"
- list: downloaders
  items: [curl, wget]
- macro: in_fetch_tool
  match:
    tool: ["fetch*", web_get]
- rule: download-in-shell-tool
  description: a downloader ran outside the fetch tools
  severity: medium
  kind: exec
  action: kill
  match:
    exe_name: $downloaders
    argv_regex: 'https?://'
    not:
      macro: in_fetch_tool
- rule: dollar-literal
  description: d
  severity: info
  kind: exec
  match:
    argv_contains: $$HOME
"#;
    let s = check(&[("u.yaml", text)]).unwrap();
    let ctx = EvalContext::default();
    let curl = exec(
        "/usr/bin/curl",
        &["curl", "-s", "https://x.example/p"],
        None,
    ); // tool `run`
    let m = s.evaluate(&curl, &ctx);
    assert_eq!(
        (m.len(), m[0].id, m[0].action),
        (1, "download-in-shell-tool", Action::Kill)
    );
    let mut fetch = curl.clone();
    fetch.tool_call.as_mut().unwrap().name = Some("fetch_url".into());
    assert!(s.evaluate(&fetch, &ctx).is_empty());
    assert!(s
        .evaluate(&exec("/usr/bin/curl", &["curl", "--version"], None), &ctx)
        .is_empty());
    assert_eq!(
        s.evaluate(&exec("/usr/bin/echo", &["echo", "$HOME"], None), &ctx)[0].id,
        "dollar-literal"
    );
}

#[test]
fn readme_examples_load_on_top_of_the_defaults() {
    // Guards the documentation: every full YAML example in rules/README.md
    // (a block of items) must load after the default pack.
    let readme = include_str!("../../../rules/README.md");
    let mut n = 0;
    for block in readme.split("```yaml\n").skip(1) {
        let text = block.split("```").next().unwrap();
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty() && !l.starts_with('#'));
        if !first.is_some_and(|l| l.starts_with("- ")) {
            continue;
        }
        n += 1;
        if let Err(e) = load(&[("README.md", text)]) {
            panic!("README example does not load:\n{text}\n{}", e[0]);
        }
    }
    assert!(n >= 4, "found only {n} examples");
}

#[test]
fn supersedes_names_rules_that_exist_and_folds_only_what_it_may() {
    one_err(
        &format!("{HEAD}  kind: exec\n  supersedes: [nope]\n"),
        "rules/x.yaml:5:16: `supersedes`: no rule `nope` is defined",
    );
    one_err(&format!("{HEAD}  kind: exec\n  supersedes: r\n"), "rules/x.yaml:5:15: rule `r` supersedes itself");
    // a wins over b (an alert rule), not over c (a kill rule)
    let text = "- rule: a\n  description: d\n  severity: high\n  kind: exec\n  supersedes: [b, c]\n\
                - rule: b\n  description: d\n  severity: low\n  kind: exec\n\
                - rule: c\n  description: d\n  severity: low\n  kind: exec\n  action: kill\n";
    let s = check(&[("rules/x.yaml", text)]).unwrap();
    let ev = exec("/bin/true", &["true"], None);
    let m = s.evaluate(&ev, &EvalContext::default());
    assert_eq!(m.len(), 3);
    let folded: Vec<(&str, Vec<&str>)> = s.fold_superseded(&m).into_iter().map(|(m, also)| (m.id, also)).collect();
    assert_eq!(folded, [("a", vec!["b"]), ("c", vec![])]);
    // alone, a superseded rule alerts as usual
    let folded = s.fold_superseded(&m[1..]);
    assert_eq!(folded.iter().map(|(m, _)| m.id).collect::<Vec<_>>(), ["b", "c"]);
    // a chain folds into its head; a cycle is refused
    let rule = |id: &str, sup: &str| format!("- rule: {id}\n  description: d\n  severity: low\n  kind: exec\n  supersedes: [{sup}]\n");
    let chain = format!("{}{}- rule: z\n  description: d\n  severity: low\n  kind: exec\n", rule("x", "y"), rule("y", "z"));
    let s = check(&[("rules/x.yaml", chain.as_str())]).unwrap();
    let m = s.evaluate(&ev, &EvalContext::default());
    let folded: Vec<(&str, Vec<&str>)> = s.fold_superseded(&m).into_iter().map(|(m, also)| (m.id, also)).collect();
    assert_eq!(folded, [("x", vec!["y", "z"])]);
    let cycle = format!("{}{}{}", rule("x", "y"), rule("y", "z"), rule("z", "x"));
    let e = errs(&cycle);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e.iter().all(|e| e.contains("a cycle has no alert to stand")), "{e:#?}");
}
