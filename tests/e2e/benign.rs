//! The benign corpus (issue 15): a real MCP server (the Python SDK 2.x
//! test server, tests/mcp/servers/sdk2_server.py, driven by the SDK's own
//! client) doing what a developer host does in its tool calls, and the
//! default rules staying silent about it, with a canary rule in the same
//! run proving they were running on every request.
//!
//! - `python3 -c 'print(1)'` through a pyenv shim tree. pyenv is not in
//!   the registries CI reaches, so the tree is a fixture laid out as pyenv
//!   lays it out (`~/.pyenv/shims/python3` is a `#!/usr/bin/env bash` shim
//!   running `libexec/pyenv exec`, which runs `pyenv-exec`, which asks
//!   `pyenv-version-name` and `pyenv-hooks`, then execs the real python3).
//! - Debian's `rbenv` (`rbenv exec ruby`, /usr/lib/rbenv/libexec) and
//!   `direnv exec` of an allowed .envrc (scripts/install-deps.sh installs
//!   both): direnv's evaluation shell, a `bash -c` /usr/bin/direnv starts.
//! - git with a shell-script pre-commit hook, `git commit` in a call.
//! - `npm install --offline` of a pinned package (ms@2.1.3, in the npm
//!   cache tests/mcp/setup.sh warms) into a project, then node requiring it.
//! - `uv venv` and `uv pip install --offline` of a pinned package (idna,
//!   tests/mcp/requirements-servers.txt, in setup.sh's uv cache), then the
//!   venv's python importing it.
//! - node installed by nvm. nvm is not in the registries CI reaches
//!   either, so its tree is a fixture laid out as nvm lays it out: `nvm.sh`
//!   defining the `nvm` shell function, `nvm-exec` (a `#!/usr/bin/env
//!   bash` script sourcing it, `nvm use $NODE_VERSION`, then exec of its
//!   arguments) and `versions/node/vX/bin/node`, the user's own copy of the
//!   node binary as nvm's download is. A host runs `~/.nvm/versions/node/
//!   vX/bin/node` directly or through `nvm-exec`; `bash -c '. nvm.sh; ...'`
//!   is a command string, which unexpected-shell is about by design.
//!
//! And what must still alert, in the same shim layout: `sh -c` started by
//! the shimmed python (1 alert), a script in /tmp run by bash (1 alert,
//! `unexpected-shell`, with `exec-from-temp` in `also_matched`). Under `--enforce` the shim runs and `sh -c` is
//! killed in the kernel before its first instruction.

use crate::harness::*;
use crate::mcp::{drive_env, mcp_env, server_argv};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A rule that fires on every request a server reads: the positive control
/// of "the rules raised nothing".
const CANARY: &str = "- rule: test-canary\n  description: a request (the rules are running)\n  severity: info\n  kind: rpc\n  match:\n    direction: client_to_server\n    message: request\n";

/// A home of this test's own under `$HOME/.cache`: outside every temp
/// directory (a version manager's root under /tmp is not trusted).
fn home_dir(name: &str) -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let d = Path::new(&home).join(".cache").join(format!("mcp-sensor-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A pyenv tree under `home` (fixture: pyenv's layout and its exec chain),
/// with `system` as the version; returns the python3 shim.
fn pyenv_fixture(home: &Path) -> PathBuf {
    let root = home.join(".pyenv");
    let r = root.display();
    script(
        &root.join("shims/python3"),
        &format!("#!/usr/bin/env bash\nset -e\n[ -n \"$PYENV_DEBUG\" ] && set -x\nprogram=\"${{0##*/}}\"\nexport PYENV_ROOT=\"{r}\"\nexec \"{r}/libexec/pyenv\" exec \"$program\" \"$@\"\n"),
    );
    script(
        &root.join("libexec/pyenv"),
        "#!/usr/bin/env bash\nset -e\ncommand=\"$1\"; shift\nexport PATH=\"${PYENV_ROOT}/libexec:$PATH\"\nexec \"pyenv-$command\" \"$@\"\n",
    );
    script(
        &root.join("libexec/pyenv-exec"),
        "#!/usr/bin/env bash\nset -e\nversion=\"$(pyenv-version-name)\"\nfor hook in $(pyenv-hooks exec); do source \"$hook\"; done\nprogram=\"$1\"; shift\nexec \"${PYENV_ROOT}/versions/${version}/bin/${program}\" \"$@\"\n",
    );
    script(&root.join("libexec/pyenv-version-name"), "#!/usr/bin/env bash\nset -e\necho system\n");
    script(&root.join("libexec/pyenv-hooks"), "#!/usr/bin/env bash\nset -e\nexit 0\n");
    std::fs::create_dir_all(root.join("versions/system/bin")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/python3", root.join("versions/system/bin/python3")).unwrap();
    root.join("shims/python3")
}

/// An nvm tree under `home` (fixture: nvm's layout; nvm is a shell
/// function, `nvm-exec` its script for running a command under a version)
/// with the host's node copied in as the version node reports; returns
/// (`~/.nvm`, that version, e.g. `v20.20.2`).
fn nvm_fixture(home: &Path) -> (PathBuf, String) {
    let out = std::process::Command::new("node")
        .args(["-p", "process.execPath + ' ' + process.version"])
        .output()
        .expect("node on PATH (tests/mcp/setup.sh installs it)");
    let out = String::from_utf8(out.stdout).unwrap();
    let (node, version) = out.trim().split_once(' ').expect("node -p: `execPath version`");
    let root = home.join(".nvm");
    script(
        &root.join("nvm.sh"),
        "# nvm's entry point is sourced: it defines the nvm function\nexport NVM_DIR=\"${NVM_DIR:-$(cd \"$(dirname \"${BASH_SOURCE[0]}\")\" && pwd)}\"\nnvm() {\n  case \"$1\" in\n    use)\n      local bin=\"$NVM_DIR/versions/node/$2/bin\"\n      [ -x \"$bin/node\" ] || { echo \"N/A: version $2 is not installed yet\" >&2; return 3; }\n      export PATH=\"$bin:$PATH\" NVM_BIN=\"$bin\"\n      echo \"Now using node $2\" ;;\n    *) echo \"nvm fixture: only use\" >&2; return 1 ;;\n  esac\n}\n",
    );
    script(
        &root.join("nvm-exec"),
        "#!/usr/bin/env bash\nDIR=\"$(cd \"$(dirname \"${BASH_SOURCE[0]}\")\" && pwd)\"\n. \"$DIR/nvm.sh\" --no-use\nif [ -n \"$NODE_VERSION\" ]; then\n  nvm use \"$NODE_VERSION\" >/dev/null || exit 127\nelse\n  echo \"No NODE_VERSION provided\" >&2; exit 127\nfi\nexec \"$@\"\n",
    );
    let bin = root.join(format!("versions/node/{version}/bin"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(node, bin.join("node")).unwrap_or_else(|e| panic!("copy {node} into the nvm fixture: {e}"));
    (root, version.to_string())
}

/// A project under `home` with an allowed `.envrc` exporting
/// GREETING=hello (direnv, Debian's package: scripts/install-deps.sh),
/// and the tool call running `direnv exec` on it: direnv evaluates the
/// .envrc with `bash -c 'eval "$("/usr/bin/direnv" stdlib)" && __main__
/// source_env ".../.envrc"'`, then execs printenv.
fn direnv_fixture(home: &Path) -> Value {
    let proj = home.join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join(".envrc"), "export GREETING=hello\n").unwrap();
    let (config, data) = (format!("{}/.config", home.display()), format!("{}/.local/share", home.display()));
    let denv = [("HOME", home.to_str().unwrap()), ("XDG_CONFIG_HOME", &*config), ("XDG_DATA_HOME", &*data)];
    let st = std::process::Command::new("direnv").arg("allow").arg(&proj).envs(denv).status().expect("direnv (scripts/install-deps.sh)");
    assert!(st.success());
    let (home_s, config, data) = (format!("HOME={}", home.display()), format!("XDG_CONFIG_HOME={config}"), format!("XDG_DATA_HOME={data}"));
    call(&["/usr/bin/env", &home_s, &config, &data, "direnv", "exec", proj.to_str().unwrap(), "/usr/bin/printenv", "GREETING"])
}

/// Whether `run` saw direnv's evaluation shell: a shell running a command
/// string, started by /usr/bin/direnv (the positive control of "direnv
/// raised nothing").
fn saw_direnv_shell(run: &Run) -> bool {
    run.of_kind("exec").any(|e| e["parent_exe"] == "/usr/bin/direnv" && e["shell_mode"] == "command" && e["argv"][2].as_str().is_some_and(|c| c.contains("source_env")))
}

fn rules_file(d: &Path) -> PathBuf {
    let f = d.join("test-rules.yaml");
    std::fs::write(&f, CANARY).unwrap();
    f
}

fn call(argv: &[&str]) -> Value {
    json!({"call": "run", "arguments": {"argv": argv}})
}

/// The alerts (canary aside) raised under the tool call with request id `id`.
fn alerts_of<'a>(run: &'a Run, id: &Value) -> Vec<&'a Value> {
    run.of_kind("alert").filter(|a| a["rule"] != "test-canary" && a["tool_call"]["id"] == *id).collect()
}

/// The request ids of the `run` calls, in order.
fn run_ids(run: &Run) -> Vec<Value> {
    run.of_kind("rpc")
        .filter(|e| e["direction"] == "client_to_server" && e["method"] == "tools/call" && e["tool"] == "run")
        .map(|e| e["id"].clone())
        .collect()
}

fn sdk2(env: &std::collections::HashMap<String, String>) -> Vec<String> {
    server_argv(env, "MCP_SDK2_TEST_SERVER")
}

/// Monitoring: the corpus raises nothing; `sh -c` through the shim and a
/// /tmp script raise exactly one alert each.
#[test]
fn kernel_benign_corpus_is_quiet_and_shells_through_the_shim_still_alert() {
    let d = scratch("benign");
    let home = home_dir("benign");
    let shim = pyenv_fixture(&home);
    let shim = shim.to_str().unwrap();
    let (nvm, node_version) = nvm_fixture(&home);
    let nvm_node = nvm.join(format!("versions/node/{node_version}/bin/node"));
    let nvm_node = nvm_node.to_str().unwrap();
    let nvm_exec = nvm.join("nvm-exec");
    // a node project npm installs into, and where uv makes its venv
    let npm_proj = home.join("npm-proj");
    std::fs::create_dir_all(&npm_proj).unwrap();
    std::fs::write(npm_proj.join("package.json"), "{\"name\": \"npm-proj\", \"version\": \"1.0.0\", \"private\": true}\n").unwrap();
    let venv = home.join("venv");
    // git with a shell-script pre-commit hook
    let repo = home.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| assert!(std::process::Command::new("git").args(args).current_dir(&repo).status().unwrap().success());
    git(&["init", "-q"]);
    git(&["config", "user.email", "t@example.com"]);
    git(&["config", "user.name", "t"]);
    script(&repo.join(".git/hooks/pre-commit"), "#!/bin/sh\nexit 0\n");
    std::fs::write(repo.join("a.txt"), "a\n").unwrap();
    git(&["add", "a.txt"]);
    let direnv_exec = direnv_fixture(&home);
    // the corpus's files are a user's, as on a developer host: not
    // root's (which would make every script package-managed)
    let st = std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(&home).status().unwrap();
    assert!(st.success());
    let tmp_script = d.join("x.sh");
    script(&tmp_script, "#!/bin/sh\necho tmp\n");
    let rbenv_root = home.join(".rbenv");
    let rr = rbenv_root.to_str().unwrap();
    let repo_s = repo.to_str().unwrap();
    let env = mcp_env();
    let dep = |k: &str| env.get(k).unwrap_or_else(|| panic!("{k} not in env.sh: rerun tests/mcp/setup.sh")).as_str();
    let npm_cache = format!("npm_config_cache={}", dep("MCP_NPM_CACHE"));
    let uv_cache = format!("UV_CACHE_DIR={}", dep("MCP_UV_CACHE"));
    // uv where its installer puts it (~/.local/bin), wherever the checkout
    // is: in a checkout under /tmp, tests/.deps's uv is a program in a
    // world-writable directory, which exec-from-temp is right to report
    let uv_home = home.join(".local/bin/uv");
    std::fs::create_dir_all(uv_home.parent().unwrap()).unwrap();
    std::fs::copy(dep("MCP_UV"), &uv_home).expect("copy uv into the corpus's home");
    let uv = uv_home.to_str().unwrap();
    let (npm_proj_s, venv_s) = (npm_proj.to_str().unwrap(), venv.to_str().unwrap());
    let venv_python = format!("{venv_s}/bin/python");
    let require_ms = format!("console.log(require('{npm_proj_s}/node_modules/ms')('2h'))");
    let mut steps = vec![json!({"list_tools": true})];
    let benign: Vec<Value> = vec![
        call(&[shim, "-c", "print(1)"]),
        call(&[shim, "-c", "print(2)"]),
        call(&[shim, "-c", "print(3)"]),
        call(&["/usr/bin/env", &format!("RBENV_ROOT={rr}"), "rbenv", "exec", "ruby", "-e", "puts 4"]),
        call(&["/usr/bin/git", "-c", "safe.directory=*", "-C", repo_s, "commit", "-q", "--allow-empty", "-m", "one"]),
        // ms@2.1.3: tests/mcp/npm/package-lock.json, in the npx cache
        call(&["/usr/bin/env", &npm_cache, "npm_config_update_notifier=false", "npm", "--prefix", npm_proj_s, "install", "--offline", "--no-audit", "--no-fund", "--save-exact", "ms@2.1.3"]),
        call(&[nvm_node, "-e", &require_ms]),
        call(&["/usr/bin/env", &format!("NODE_VERSION={node_version}"), nvm_exec.to_str().unwrap(), "node", "-e", "console.log(7)"]),
        call(&["/usr/bin/env", &uv_cache, "UV_PYTHON_DOWNLOADS=never", uv, "venv", "-q", "--clear", "--python", dep("MCP_UV_PYTHON"), venv_s]),
        call(&["/usr/bin/env", &uv_cache, uv, "pip", "install", "-q", "--offline", "--python", &venv_python, "idna==3.20"]),
        call(&[&venv_python, "-c", "import idna; print(idna.__version__)"]),
        direnv_exec,
    ];
    // each benign call's stdout; None: not checked (npm's own words), its
    // effect is checked by the call after it
    let expected = [Some("1"), Some("2"), Some("3"), Some("4"), Some(""), None, Some("7200000"), Some("7"), Some(""), Some(""), Some("3.20"), Some("hello")];
    assert_eq!(expected.len(), benign.len());
    // MCP_SENSOR_BENIGN_ROUNDS: the corpus that many times (BENCHMARKS.md,
    // false alarms per 1,000 tool calls)
    let rounds: usize = std::env::var("MCP_SENSOR_BENIGN_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let per_round = benign.len();
    let benign: Vec<Value> = (0..rounds).flat_map(|_| benign.clone()).collect();
    let n_benign = benign.len();
    steps.extend(benign);
    // what must still alert, after the benign calls
    steps.push(call(&[shim, "-c", "import subprocess; subprocess.run(['sh', '-c', 'echo 5'])"]));
    steps.push(call(&["/bin/bash", tmp_script.to_str().unwrap()]));
    let rules = rules_file(&d);
    let s = drive_env(&d, sdk2(&env), json!(steps), &["--rules", rules.to_str().unwrap()], &[("HOME", home.to_str().unwrap())]);
    let run = &s.run;
    assert_eq!(s.client["ok"], true, "{}\n{}", s.client, run.describe());
    let text = |i: usize| s.client["results"][i + 1]["content_text"].as_str().unwrap_or("").trim().to_string();
    for i in 0..n_benign {
        if let Some(want) = expected[i % per_round] {
            assert_eq!(text(i), want, "call {i}: {}", s.client);
        }
    }
    // positive controls: the canary fired on every request, and the shims'
    // bash script runs were seen (and classified)
    let requests = run.of_kind("rpc").filter(|e| e["direction"] == "client_to_server" && e["message"] == "request").count();
    assert_eq!(run.of_kind("alert").filter(|a| a["rule"] == "test-canary").count(), requests, "{}", run.describe());
    let pyenv_runs: Vec<&Value> = run.of_kind("exec").filter(|e| e["shell_mode"] == "script" && e["script"].as_str().is_some_and(|s| s.contains("/.pyenv/libexec/"))).collect();
    assert!(pyenv_runs.iter().all(|e| e["script_writable_by"] == "user"), "excepted by where they live, not by owner\n{}", run.describe());
    assert!(pyenv_runs.len() >= 3 * 4 * rounds, "the shims' bash runs were seen: {}\n{}", pyenv_runs.len(), run.describe());
    assert!(run.of_kind("exec").any(|e| e["script"].as_str().is_some_and(|s| s.starts_with("/usr/lib/rbenv/libexec/"))), "rbenv ran\n{}", run.describe());
    assert!(run.of_kind("exec").any(|e| e["script"].as_str().is_some_and(|s| s.ends_with("/hooks/pre-commit"))), "the hook ran\n{}", run.describe());
    assert!(saw_direnv_shell(run), "direnv's evaluation shell ran\n{}", run.describe());
    // npm, uv and nvm ran, watched, and did their work
    let argv_has = |e: &Value, words: &[&str]| words.iter().all(|w| e["argv"].as_array().is_some_and(|a| a.iter().any(|x| x == w)));
    let npm_runs = run.of_kind("exec").filter(|e| e["exe"].as_str().is_some_and(|x| x.ends_with("/node")) && argv_has(e, &["install", "ms@2.1.3"])).count();
    assert_eq!(npm_runs, rounds, "npm install ran under node, once a round\n{}", run.describe());
    let ms = std::fs::read_to_string(npm_proj.join("node_modules/ms/package.json")).expect("npm installed ms");
    assert_eq!(serde_json::from_str::<Value>(&ms).unwrap()["version"], "2.1.3");
    let nvm_bin = format!("/.nvm/versions/node/{node_version}/bin/node");
    let nvm_nodes = run.of_kind("exec").filter(|e| e["exe"].as_str().is_some_and(|x| x.ends_with(&nvm_bin))).count();
    assert_eq!(nvm_nodes, 2 * rounds, "nvm's node ran, directly and by nvm-exec\n{}", run.describe());
    // bash running nvm-exec (its `#!/usr/bin/env bash` exec names the
    // script too, with env as exe)
    let nvm_execs: Vec<&Value> = run.of_kind("exec").filter(|e| e["exe_is"]["name"] == "bash" && e["script"].as_str().is_some_and(|s| s.ends_with("/.nvm/nvm-exec"))).collect();
    assert_eq!(nvm_execs.len(), rounds, "nvm-exec ran under bash: {nvm_execs:#?}");
    assert!(nvm_execs.iter().all(|e| e["shell_mode"] == "script" && e["script_writable_by"] == "user"), "{nvm_execs:#?}");
    let uv_exe = std::fs::canonicalize(uv).unwrap().display().to_string();
    for sub in ["venv", "pip"] {
        let n = run.of_kind("exec").filter(|e| e["exe"] == *uv_exe && e["argv"][1] == sub).count();
        assert_eq!(n, rounds, "uv {sub} ran once a round\n{}", run.describe());
    }
    assert!(std::fs::read_dir(venv.join("lib")).unwrap().flatten().any(|p| p.path().join("site-packages/idna-3.20.dist-info").is_dir()), "uv installed idna 3.20 into {venv_s}");
    let ids = run_ids(run);
    assert_eq!(ids.len(), n_benign + 2, "{}", run.describe());
    for (i, id) in ids[..n_benign].iter().enumerate() {
        let a = alerts_of(run, id);
        assert!(a.is_empty(), "benign call {i} raised {a:#?}");
    }
    let a = alerts_of(run, &ids[n_benign]);
    assert_eq!(a.len(), 1, "sh -c through the shim: one alert {a:#?}");
    assert_eq!(a[0]["rule"], "unexpected-shell", "{}", a[0]);
    assert_eq!(a[0]["event"]["shell_mode"], "command", "{}", a[0]);
    let a = alerts_of(run, &ids[n_benign + 1]);
    assert_eq!(a.len(), 1, "bash /tmp/x.sh: one alert for the finding {a:#?}");
    assert_eq!(a[0]["rule"], "unexpected-shell", "{}", a[0]);
    assert_eq!(a[0]["also_matched"], json!(["exec-from-temp"]), "{}", a[0]);
    assert_eq!(a[0]["event"]["script"], tmp_script.display().to_string(), "{}", a[0]);
    let execs = run.of_kind("exec").count();
    println!("benign corpus: {n_benign} tool calls, {execs} execs in the run, 0 alerts on them (canary: {requests} requests)");
    let _ = std::fs::remove_dir_all(&home);
}

/// `--enforce` (the default pack): the shim's bash runs its libexec
/// scripts (the kernel reads their argv: script runs), the shimmed python
/// answers; direnv's evaluation shell runs (the kernel spares a shell
/// /usr/bin/direnv starts: EXEMPT by the parent's identity); `sh -c` is
/// killed in the kernel before its command ran.
#[test]
fn kernel_enforce_spares_the_shim_and_kills_sh_c_in_the_kernel() {
    let d = scratch("benign-enforce");
    let home = home_dir("benign-enforce");
    let shim = pyenv_fixture(&home);
    let shim = shim.to_str().unwrap();
    let direnv_exec = direnv_fixture(&home);
    let marker = home.join("sh-ran");
    let inner = format!("import subprocess; r = subprocess.run(['sh', '-c', 'touch {}']); print(r.returncode)", marker.display());
    let steps = json!([call(&[shim, "-c", "print(1)"]), direnv_exec, call(&[shim, "-c", &inner])]);
    let env = mcp_env();
    let s = drive_env(&d, sdk2(&env), steps, &["--enforce"], &[("HOME", home.to_str().unwrap())]);
    let run = &s.run;
    assert_eq!(s.client["ok"], true, "{}\n{}", s.client, run.describe());
    let text = |i: usize| s.client["results"][i]["content_text"].as_str().unwrap_or("").trim().to_string();
    assert_eq!(text(0), "1", "the shim ran under --enforce: {}\n{}", s.client, run.describe());
    assert_eq!(text(1), "hello", "direnv evaluated the .envrc under --enforce: {}\n{}", s.client, run.describe());
    assert!(saw_direnv_shell(run), "direnv's evaluation shell ran\n{}", run.describe());
    assert_eq!(text(2), "-9", "sh -c was killed: {}\n{}", s.client, run.describe());
    assert!(!marker.exists(), "the shell ran its command\n{}", run.describe());
    let ids = run_ids(run);
    assert!(alerts_of(run, &ids[0]).is_empty(), "{:#?}", alerts_of(run, &ids[0]));
    assert!(alerts_of(run, &ids[1]).is_empty(), "{:#?}", alerts_of(run, &ids[1]));
    let a = alerts_of(run, &ids[2]);
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0]["rule"], "unexpected-shell", "{}", a[0]);
    assert_eq!(a[0]["action"], "killed", "{}", a[0]);
    // decided at sched_process_exec, BPF LSM or not: the LSM check comes
    // before the new argv can be read
    assert_eq!(a[0]["decided_by"], "kernel_syscall_exit", "{}", a[0]);
    let fin = run.final_drops();
    assert_eq!(fin["enforced"]["kill_exec"], 1, "{fin}");
    let _ = std::fs::remove_dir_all(&home);
}
