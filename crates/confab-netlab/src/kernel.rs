//! The kernel-level lab: network namespaces joined by veth pairs, with tbf rate caps,
//! nftables random loss and blackouts, a masquerading NAT and a real TURN server (coturn),
//! for tests that run whole processes (`confab-peer`, Chromium) on a bad network.
//!
//! Every name is prefixed `cfb-<pid>-<tag>-` with a random tag, so parallel tests never
//! collide, and a lab left behind by a killed test process is swept by the next one. Nothing
//! is configured in the root namespace: interfaces are created inside the lab's own
//! namespaces, and all addresses (10.0.0.0/8 for homes, 203.0.113.0/24 for the "internet")
//! exist only there. [`KernelLab`]'s drop kills what runs in its namespaces and deletes them,
//! also when a test panics.
//!
//! Needs root, `ip` (iproute2), and for the parts that use them `tc`, `nft` (nftables) and
//! `turnserver` (coturn). [`KernelLab::new`] answers [`KernelError::Unavailable`] when the
//! machine cannot do it, so a test can say why it skips.

use std::collections::hash_map::RandomState;
use std::ffi::OsStr;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Errors of the kernel lab.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("the kernel network lab is unavailable here: {0}")]
    Unavailable(String),
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("the TURN server did not start: {0}")]
    Turn(String),
}

type Result<T> = std::result::Result<T, KernelError>;

const PREFIX: &str = "cfb-";

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion; its stdout, or a worded error with its stderr.
fn run(mut cmd: Command) -> Result<String> {
    let what = describe(&cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| KernelError::Command {
            command: what.clone(),
            message: format!("cannot run it: {e}"),
        })?;
    if !out.status.success() {
        return Err(KernelError::Command {
            command: what,
            message: format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cmd<I, S>(program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(program);
    c.args(args);
    c
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(program).is_file())
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Deletes namespaces of earlier labs whose process is gone (a test killed mid-run).
fn sweep_stale() {
    let Ok(list) = run(cmd("ip", ["netns", "list"])) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!("netlab: removing stale namespace {name}");
            kill_all_in(name);
            let _ = run(cmd("ip", ["netns", "del", name]));
        }
    }
}

/// Kills every process inside namespace `name`.
fn kill_all_in(name: &str) {
    let Ok(pids) = run(cmd("ip", ["netns", "pids", name])) else {
        return;
    };
    let pids: Vec<&str> = pids.split_whitespace().collect();
    if !pids.is_empty() {
        let mut c = cmd("kill", ["-KILL"]);
        c.args(&pids);
        let _ = run(c);
    }
}

struct LabInner {
    /// `cfb-<pid>-<tag>-`
    prefix: String,
    namespaces: Mutex<Vec<String>>,
}

/// A set of network namespaces owned by one test. Dropping it kills every process left in
/// them and deletes them.
pub struct KernelLab {
    inner: Arc<LabInner>,
}

impl std::fmt::Debug for KernelLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelLab")
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

impl KernelLab {
    /// A lab for the test named `test`, or `None` after printing `SKIPPED <test>: <why>` when
    /// this machine cannot make one ([`KernelError::Unavailable`]); any other failure panics.
    pub fn for_test(test: &str) -> Option<Self> {
        match KernelLab::new() {
            Ok(lab) => Some(lab),
            Err(e @ KernelError::Unavailable(_)) => {
                eprintln!("SKIPPED {test}: {e}");
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }

    /// A new, empty lab. [`KernelError::Unavailable`] when not root or when network
    /// namespaces cannot be made here.
    pub fn new() -> Result<Self> {
        match effective_uid() {
            Some(0) => {}
            Some(uid) => {
                return Err(KernelError::Unavailable(format!(
                    "it needs root (running as uid {uid})"
                )))
            }
            None => {
                return Err(KernelError::Unavailable(
                    "cannot tell the user id (no /proc/self/status)".into(),
                ))
            }
        }
        if !on_path("ip") {
            return Err(KernelError::Unavailable(
                "`ip` is missing (install iproute2)".into(),
            ));
        }
        if let Err(e) = run(cmd("ip", ["netns", "list"])) {
            return Err(KernelError::Unavailable(format!("`ip netns` fails: {e}")));
        }
        sweep_stale();
        let tag = format!("{:06x}", random_u64() & 0xff_ffff);
        let lab = KernelLab {
            inner: Arc::new(LabInner {
                prefix: format!("{PREFIX}{}-{tag}-", std::process::id()),
                namespaces: Mutex::new(Vec::new()),
            }),
        };
        // Can a namespace actually be made? (Containers without CAP_SYS_ADMIN cannot.)
        match lab.namespace("probe") {
            Ok(ns) => lab.remove_namespace(&ns),
            Err(e) => return Err(KernelError::Unavailable(e.to_string())),
        }
        Ok(lab)
    }

    /// The `cfb-<pid>-<tag>-` prefix of this lab's names.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// A new namespace `<prefix><role>` with its loopback up.
    pub fn namespace(&self, role: &str) -> Result<Netns> {
        if role.is_empty() || !role.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(KernelError::Invalid(format!(
                "a namespace role is letters, digits and '-', not {role:?}"
            )));
        }
        let name = format!("{}{role}", self.inner.prefix);
        run(cmd("ip", ["netns", "add", &name]))?;
        self.inner
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        let ns = Netns { name };
        ns.ip(["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn remove_namespace(&self, ns: &Netns) {
        kill_all_in(&ns.name);
        let _ = run(cmd("ip", ["netns", "del", &ns.name]));
        self.inner
            .namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| *n != ns.name);
    }

    /// Joins `a` and `b` with a veth pair: interface `a_if` with address `a_addr` (CIDR,
    /// e.g. `10.0.1.1/24`) in `a`, `b_if` with `b_addr` in `b`; both up.
    pub fn link(
        &self,
        a: &Netns,
        a_if: &str,
        a_addr: &str,
        b: &Netns,
        b_if: &str,
        b_addr: &str,
    ) -> Result<()> {
        for n in [a_if, b_if] {
            if n.is_empty() || n.len() > 15 || n.contains(['/', ' ']) {
                return Err(KernelError::Invalid(format!(
                    "an interface name is 1 to 15 characters without '/' or spaces, not {n:?}"
                )));
            }
        }
        // Made inside `a` with its peer moved straight into `b`: never in the root namespace.
        a.ip([
            "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
        ])?;
        a.ip(["addr", "add", a_addr, "dev", a_if])?;
        b.ip(["addr", "add", b_addr, "dev", b_if])?;
        a.ip(["link", "set", a_if, "up"])?;
        b.ip(["link", "set", b_if, "up"])?;
        Ok(())
    }

    /// Two hosts on one link: `a` (10.0.0.1) and `b` (10.0.0.2), interfaces `eth0`.
    pub fn pair(&self) -> Result<Pair> {
        let a = self.namespace("a")?;
        let b = self.namespace("b")?;
        self.link(&a, "eth0", "10.0.0.1/24", &b, "eth0", "10.0.0.2/24")?;
        Ok(Pair {
            a,
            b,
            a_addr: Ipv4Addr::new(10, 0, 0, 1),
            b_addr: Ipv4Addr::new(10, 0, 0, 2),
        })
    }

    /// Two homes behind one masquerading NAT, and an "internet" beyond it:
    ///
    /// ```text
    ///  home-a 10.0.1.2 ──lan-a┐
    ///                         nat ──wan 203.0.113.1 ─── internet 203.0.113.10
    ///  home-b 10.0.2.2 ──lan-b┘
    /// ```
    ///
    /// The NAT forwards homes → internet (masquerading as 203.0.113.1) and replies back, and
    /// nothing else: the homes cannot reach each other (nothing is forwarded between LAN
    /// interfaces, and there is no hairpinning through the public address) and the internet
    /// cannot reach them. A TURN server on the internet side ([`TurnServer::start`]) is the
    /// only way through. Any further LAN link to `nat` is forwarded the same way, e.g. a
    /// second path for home-a (for network-change tests):
    ///
    /// ```no_run
    /// # fn f(lab: &confab_netlab::kernel::KernelLab, nat: &confab_netlab::kernel::NatLab)
    /// #     -> Result<(), confab_netlab::kernel::KernelError> {
    /// lab.link(&nat.home_a, "eth1", "10.0.3.2/24", &nat.nat, "lan-a2", "10.0.3.1/24")?;
    /// nat.home_a.run("ip", ["route", "add", "default", "via", "10.0.3.1", "metric", "100"])?;
    /// nat.home_a.set_link("eth0", false)?; // the first path dies
    /// # Ok(()) }
    /// ```
    pub fn nat(&self) -> Result<NatLab> {
        let home_a = self.namespace("home-a")?;
        let home_b = self.namespace("home-b")?;
        let nat = self.namespace("nat")?;
        let internet = self.namespace("internet")?;
        self.link(&home_a, "eth0", "10.0.1.2/24", &nat, "lan-a", "10.0.1.1/24")?;
        self.link(&home_b, "eth0", "10.0.2.2/24", &nat, "lan-b", "10.0.2.1/24")?;
        self.link(
            &nat,
            "wan",
            "203.0.113.1/24",
            &internet,
            "eth0",
            "203.0.113.10/24",
        )?;
        home_a.ip(["route", "add", "default", "via", "10.0.1.1"])?;
        home_b.ip(["route", "add", "default", "via", "10.0.2.1"])?;
        // As on the real internet, a packet for a private address leaves (and is dropped at
        // the NAT) rather than failing to send: without a route coturn's sendto to a home's
        // host candidate failed, and coturn closed that allocation.
        internet.ip(["route", "add", "default", "via", "203.0.113.1"])?;
        nat.run("sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"])?;
        nat.nft_script(
            "table ip confab_nat {\n\
               chain postrouting { type nat hook postrouting priority srcnat; oifname \"wan\" masquerade; }\n\
             }\n\
             table inet confab_fwd {\n\
               chain forward { type filter hook forward priority filter; policy drop;\n\
                 iifname != \"wan\" oifname \"wan\" accept;\n\
                 iifname \"wan\" ct state established,related accept; }\n\
             }\n",
        )?;
        Ok(NatLab {
            home_a,
            home_b,
            nat,
            internet,
            home_a_addr: Ipv4Addr::new(10, 0, 1, 2),
            home_b_addr: Ipv4Addr::new(10, 0, 2, 2),
            public_addr: Ipv4Addr::new(203, 0, 113, 1),
            internet_addr: Ipv4Addr::new(203, 0, 113, 10),
        })
    }
}

impl Drop for KernelLab {
    fn drop(&mut self) {
        let names: Vec<String> = std::mem::take(
            &mut *self
                .inner
                .namespaces
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for name in names.iter().rev() {
            kill_all_in(name);
        }
        for name in names.iter().rev() {
            if let Err(e) = run(cmd("ip", ["netns", "del", name])) {
                tracing::warn!("netlab: {e}");
            }
        }
    }
}

/// Two namespaces on one veth link (see [`KernelLab::pair`]).
#[derive(Debug, Clone)]
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
    pub a_addr: Ipv4Addr,
    pub b_addr: Ipv4Addr,
}

/// The NAT topology (see [`KernelLab::nat`]).
#[derive(Debug, Clone)]
pub struct NatLab {
    pub home_a: Netns,
    pub home_b: Netns,
    pub nat: Netns,
    pub internet: Netns,
    pub home_a_addr: Ipv4Addr,
    pub home_b_addr: Ipv4Addr,
    /// The NAT's address on the internet side: what the homes look like from there.
    pub public_addr: Ipv4Addr,
    /// The internet host (where the TURN server and a signaling server go).
    pub internet_addr: Ipv4Addr,
}

/// Which packets a loss or blackout rule takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// UDP only (media; TCP signaling is spared).
    Udp,
    /// Every IP packet.
    All,
}

/// One network namespace of a lab (a handle: the lab owns and deletes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <name> <program>`: a command that runs inside this namespace. Spawn it
    /// through [`Netns::spawn`] so it is stopped when the handle is dropped.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `program args…` in this namespace to completion; its stdout.
    pub fn run<I, S>(&self, program: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(program);
        c.args(args);
        run(c)
    }

    fn ip<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run("ip", args)
    }

    /// Starts `cmd` (made with [`Netns::command`]); the process is killed when the returned
    /// handle is dropped (and in any case when the lab is).
    pub fn spawn(&self, mut cmd: Command) -> Result<LabProcess> {
        let what = describe(&cmd);
        let child = cmd.spawn().map_err(|e| KernelError::Command {
            command: what.clone(),
            message: format!("cannot start it: {e}"),
        })?;
        Ok(LabProcess { child, what })
    }

    /// Sets interface `ifname` up or down (a path dies / comes back).
    pub fn set_link(&self, ifname: &str, up: bool) -> Result<()> {
        self.ip(["link", "set", ifname, if up { "up" } else { "down" }])?;
        Ok(())
    }

    /// Caps what leaves through `ifname` at `rate_bps` with a tbf queue of about `queue_ms`
    /// (tail drop beyond it). Replaces an earlier cap.
    pub fn rate_cap(&self, ifname: &str, rate_bps: u64, queue_ms: u32) -> Result<()> {
        if rate_bps < 8000 {
            return Err(KernelError::Invalid(format!(
                "a rate cap is at least 8000 bit/s, not {rate_bps}"
            )));
        }
        // A bucket of 20 ms of traffic, never below two full-size packets.
        let burst = (rate_bps / 8 / 50).max(3200);
        self.run(
            "tc",
            [
                "qdisc",
                "replace",
                "dev",
                ifname,
                "root",
                "tbf",
                "rate",
                &format!("{rate_bps}bit"),
                "burst",
                &burst.to_string(),
                "latency",
                &format!("{queue_ms}ms"),
            ],
        )?;
        Ok(())
    }

    /// Lifts the cap on `ifname`.
    pub fn clear_rate_cap(&self, ifname: &str) -> Result<()> {
        self.run("tc", ["qdisc", "del", "dev", ifname, "root"])?;
        Ok(())
    }

    fn nft_script(&self, script: &str) -> Result<()> {
        use std::io::Write;
        let mut c = self.command("nft");
        c.args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = describe(&c);
        let err = |message: String| KernelError::Command {
            command: what.clone(),
            message,
        };
        let mut child = c.spawn().map_err(|e| err(format!("cannot run it: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| err(format!("cannot write the rules: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("it did not finish: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            )));
        }
        Ok(())
    }

    /// Adds a drop rule on this namespace's input hook (what arrives for its own sockets);
    /// the rule is removed when the handle is dropped or [`NftRule::remove`]d.
    fn input_drop(&self, fraction: Option<f64>, traffic: Traffic) -> Result<NftRule> {
        self.nft_script(
            "table inet confab_lab {\n\
               chain input { type filter hook input priority filter; policy accept; }\n\
             }\n",
        )?;
        let mut rule = String::from("add rule inet confab_lab input ");
        if traffic == Traffic::Udp {
            rule.push_str("meta l4proto udp ");
        }
        if let Some(f) = fraction {
            let per_10k = (f * 10_000.0).round() as u32;
            rule.push_str(&format!("numgen random mod 10000 < {per_10k} "));
        }
        rule.push_str("drop");
        let out = self.run("nft", ["--echo", "--handle", &rule])?;
        let handle = out
            .rsplit("# handle ")
            .next()
            .and_then(|h| h.split_whitespace().next())
            .and_then(|h| h.parse::<u64>().ok())
            .ok_or_else(|| KernelError::Command {
                command: format!("nft {rule}"),
                message: format!("no rule handle in its answer {out:?}"),
            })?;
        Ok(NftRule {
            ns: self.clone(),
            handle,
            removed: false,
        })
    }

    /// Random loss of `fraction` (0..=1, in steps of 0.0001) of the packets arriving here.
    pub fn random_loss(&self, fraction: f64, traffic: Traffic) -> Result<NftRule> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(KernelError::Invalid(format!(
                "loss is a fraction between 0 and 1, not {fraction}"
            )));
        }
        self.input_drop(Some(fraction), traffic)
    }

    /// Drops everything arriving here until the rule is removed.
    pub fn blackout(&self, traffic: Traffic) -> Result<NftRule> {
        self.input_drop(None, traffic)
    }
}

/// An nftables rule in a lab namespace; removed on drop.
#[derive(Debug)]
pub struct NftRule {
    ns: Netns,
    handle: u64,
    removed: bool,
}

impl NftRule {
    /// Removes the rule now (ends the loss or the blackout).
    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        self.ns.run(
            "nft",
            [
                "delete",
                "rule",
                "inet",
                "confab_lab",
                "input",
                "handle",
                &self.handle.to_string(),
            ],
        )?;
        Ok(())
    }
}

impl Drop for NftRule {
    fn drop(&mut self) {
        if !self.removed {
            let h = self.handle.to_string();
            let _ = self.ns.run(
                "nft",
                [
                    "delete",
                    "rule",
                    "inet",
                    "confab_lab",
                    "input",
                    "handle",
                    &h,
                ],
            );
        }
    }
}

/// A process started in a lab namespace; killed (and reaped) on drop.
#[derive(Debug)]
pub struct LabProcess {
    child: Child,
    what: String,
}

impl LabProcess {
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to end; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Ok(Some(s)),
                Ok(None) if Instant::now() >= deadline => return Ok(None),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    return Err(KernelError::Command {
                        command: self.what.clone(),
                        message: format!("cannot wait for it: {e}"),
                    })
                }
            }
        }
    }

    /// Stops the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A coturn TURN server (UDP, long-term credentials) running in a lab namespace, with its
/// options all on the command line (no configuration file, no database outside its own
/// temporary directory). Stopped on drop.
#[derive(Debug)]
pub struct TurnServer {
    process: LabProcess,
    ns: Netns,
    dir: PathBuf,
    pub addr: SocketAddr,
    pub username: String,
    pub password: String,
    pub realm: String,
}

impl TurnServer {
    /// Starts `turnserver` in `ns`, listening and relaying on `ip:port`, with one user.
    /// Waits until it listens (at most 10 s).
    pub fn start(
        ns: &Netns,
        ip: IpAddr,
        port: u16,
        username: &str,
        password: &str,
    ) -> Result<Self> {
        if !on_path("turnserver") {
            return Err(KernelError::Unavailable(
                "`turnserver` is missing (install coturn)".into(),
            ));
        }
        for s in [username, password] {
            if s.is_empty() || s.contains([':', ' ', '\n']) {
                return Err(KernelError::Invalid(format!(
                    "TURN user names and passwords are non-empty without ':' or spaces, not {s:?}"
                )));
            }
        }
        let dir = std::env::temp_dir().join(format!(
            "{}-turn-{:08x}",
            ns.name,
            random_u64() & 0xffff_ffff
        ));
        std::fs::create_dir_all(&dir).map_err(|e| {
            KernelError::Turn(format!("cannot make its directory {}: {e}", dir.display()))
        })?;
        let realm = "confab.test".to_string();
        let log = dir.join("turn.log");
        let mut c = ns.command("turnserver");
        c.arg("-n")
            .arg(format!("--listening-ip={ip}"))
            .arg(format!("--relay-ip={ip}"))
            .arg(format!("--listening-port={port}"))
            .args(["--min-port=49152", "--max-port=49999"])
            .arg("--lt-cred-mech")
            .arg("--fingerprint")
            .arg(format!("--user={username}:{password}"))
            .arg(format!("--realm={realm}"))
            .args(["--no-tls", "--no-dtls", "--no-cli", "--no-rfc5780"])
            .arg("--allow-loopback-peers")
            .arg(format!(
                "--pidfile={}",
                dir.join("turnserver.pid").display()
            ))
            .arg(format!("--db={}", dir.join("turndb").display()))
            .arg(format!("--log-file={}", log.display()))
            .args(["--simple-log", "--no-stdout-log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = ns.spawn(c)?;
        let mut server = TurnServer {
            process,
            ns: ns.clone(),
            dir,
            addr: SocketAddr::new(ip, port),
            username: username.to_string(),
            password: password.to_string(),
            realm,
        };
        if let Err(e) = server.wait_listening(Duration::from_secs(10)) {
            let tail = server.log_tail(20);
            return Err(KernelError::Turn(format!("{e}; its log ends:\n{tail}")));
        }
        Ok(server)
    }

    fn wait_listening(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let needle = format!("{}:{}", self.addr.ip(), self.addr.port());
        loop {
            if let Ok(sockets) = self.ns.run("ss", ["-Hlun"]) {
                if sockets.split_whitespace().any(|w| w == needle) {
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = self.process.child().try_wait() {
                return Err(KernelError::Turn(format!("it exited ({status})")));
            }
            if Instant::now() >= deadline {
                return Err(KernelError::Turn(format!(
                    "no UDP listener on {needle} within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("turn.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `turn:<ip>:<port>?transport=udp`, for an ICE server entry.
    pub fn url(&self) -> String {
        format!("turn:{}?transport=udp", self.addr)
    }
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
