//! Headless Chromium used the way a person uses a page: it loads the page,
//! clicks and hovers where an element is drawn, and reads the text as
//! rendered (`innerText`: what is displayed, never hidden markup). Speaks
//! the DevTools protocol over `--remote-debugging-pipe` (fds 3 and 4,
//! NUL-terminated JSON): no port, no extra crate. Chromium missing is a
//! failure: scripts/install-deps.sh installs it.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(60);

pub struct Page {
    child: Child,
    to: std::fs::File,
    from: mpsc::Receiver<Value>,
    next: u64,
    session: String,
}

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
    (fds[0], fds[1])
}

impl Page {
    /// Opens `page` (a file) in a fresh headless Chromium, 1280x900.
    pub fn open(dir: &Path, page: &Path) -> Page {
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let (cmd_r, cmd_w) = pipe();
        let (evt_r, evt_w) = pipe();
        let mut c = Command::new("chromium");
        c.args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
            .args(["--disable-component-update", "--disable-sync", "--window-size=1280,900", "--remote-debugging-pipe"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("chromium.stderr")).unwrap());
        // SAFETY: only dup/dup2 between fork and exec. Copies above 10
        // first, so neither lands on the other's target; dup2's copies are
        // not close-on-exec.
        unsafe {
            c.pre_exec(move || {
                let (r, w) = (libc::fcntl(cmd_r, libc::F_DUPFD, 10), libc::fcntl(evt_w, libc::F_DUPFD, 10));
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run chromium ({e}): install it with scripts/install-deps.sh (Debian package `chromium`)"));
        // SAFETY: our ends, owned from here on; the child's ends are closed.
        let (to, mut from_pipe) = unsafe {
            libc::close(cmd_r);
            libc::close(evt_w);
            (std::fs::File::from_raw_fd(cmd_w), std::fs::File::from_raw_fd(evt_r))
        };
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            while let Ok(n) = from_pipe.read(&mut chunk) {
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if tx.send(serde_json::from_slice(&msg[..end]).expect("DevTools sends JSON")).is_err() {
                        return;
                    }
                }
            }
        });
        let mut p = Page { child, to, from, next: 0, session: String::new() };
        let url = format!("file://{}", page.canonicalize().unwrap().display());
        let target = p.call("Target.createTarget", json!({"url": url}))["targetId"].clone();
        let attached = p.call("Target.attachToTarget", json!({"targetId": target, "flatten": true}));
        p.session = attached["sessionId"].as_str().expect("a session id").to_string();
        p
    }

    /// One DevTools command; its result, or a panic with the error.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let mut msg = json!({"id": self.next, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("chromium is running");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.from.recv_timeout(left).unwrap_or_else(|e| panic!("chromium did not answer {method}: {e}"));
            if m["id"] == self.next {
                assert!(m["error"].is_null(), "{method}: {}", m["error"]);
                return m["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, js: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": js, "returnByValue": true}));
        assert!(r["exceptionDetails"].is_null(), "{js}: {}", r["exceptionDetails"]);
        r["result"]["value"].clone()
    }

    /// Waits (60 s at most) until `js` is true.
    pub fn wait_until(&mut self, js: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.eval(js) != json!(true) {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page's text as displayed, whitespace runs made one space.
    pub fn text(&mut self) -> String {
        let t = self.eval("document.body.innerText");
        t.as_str().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Waits until the displayed text contains `needle`; returns the text.
    pub fn wait_for_text(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let t = self.text();
            if t.contains(needle) {
                return t;
            }
            assert!(Instant::now() < deadline, "the page never showed `{needle}`; it shows:\n{t}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where the element whose whole text is `text` is drawn (scrolled into
    /// view, its centre not covered by anything else).
    pub fn where_is(&mut self, text: &str) -> (f64, f64) {
        let js = format!(
            "(() => {{ const want = {}; const w = document.createTreeWalker(document.body, NodeFilter.SHOW_ELEMENT);
              for (let n = w.nextNode(); n; n = w.nextNode()) {{
                if (n.children.length || n.textContent !== want) continue;
                n.scrollIntoView({{block: 'center'}});
                const r = n.getBoundingClientRect(), x = r.x + r.width / 2, y = r.y + r.height / 2;
                if (r.width > 0 && r.height > 0 && n.contains(document.elementFromPoint(x, y))) return [x, y];
              }}
              return null; }})()",
            json!(text)
        );
        let at = self.eval(&js);
        let xy = at.as_array().unwrap_or_else(|| panic!("`{text}` is not drawn where it can be clicked"));
        (xy[0].as_f64().unwrap(), xy[1].as_f64().unwrap())
    }

    /// The centres of the elements drawn along the horizontal lines
    /// `y + dy` right of `(x, y)`, each element once, left to right:
    /// where a person would point to see what they are.
    pub fn drawn_right_of(&mut self, (x, y): (f64, f64), dys: &[f64]) -> Vec<(f64, f64)> {
        let js = format!(
            "(() => {{ const seen = new Set(), out = [];
              for (const dy of {dys}) for (let x = {x}; x < innerWidth; x++) {{
                const e = document.elementFromPoint(x, {y} + dy);
                if (!e || seen.has(e)) continue;
                seen.add(e);
                const r = e.getBoundingClientRect();
                out.push([Math.max(r.left, x) + Math.min(r.width, 4) / 2, {y} + dy]);
              }}
              return out; }})()",
            dys = json!(dys)
        );
        let v = self.eval(&js);
        v.as_array().unwrap().iter().map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap())).collect()
    }

    fn mouse(&mut self, kind: &str, (x, y): (f64, f64)) {
        self.call("Input.dispatchMouseEvent", json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}));
    }

    /// A left click at the point.
    pub fn click(&mut self, at: (f64, f64)) {
        self.hover(at);
        self.mouse("mousePressed", at);
        self.mouse("mouseReleased", at);
    }

    /// The pointer moved to the point.
    pub fn hover(&mut self, at: (f64, f64)) {
        self.call("Input.dispatchMouseEvent", json!({"type": "mouseMoved", "x": at.0, "y": at.1}));
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
