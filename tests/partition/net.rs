//! Network namespaces for the partition tests: one `hub` namespace routes between members,
//! each member (a PostgreSQL node, the agent, an etcd member, a pooler, a client group) has
//! its own namespace joined to the hub by a veth pair, with the address 10.77.<i>.2 (the
//! hub's side is 10.77.<i>.1). Addresses exist only inside these namespaces. A partition is
//! a pair of `blackhole` routing rules in the hub (packets silently dropped, as on a real
//! network); healing deletes them. Dropping the value deletes every namespace.

use std::collections::BTreeSet;
use std::process::Command;

/// The namespaces of one test run.
pub struct Net {
    prefix: String,
    members: Vec<String>,
    cuts: BTreeSet<(usize, usize)>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e} (apt-get install iproute2)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// Creates the hub and one namespace per member name, index i+1 in order.
    pub fn create(members: &[&str]) -> Result<Net, String> {
        let mut net = Net {
            prefix: format!("psl{}", std::process::id()),
            members: Vec::new(),
            cuts: BTreeSet::new(),
        };
        let hub = net.hub();
        ip(&["netns", "add", &hub])?;
        net.members.push("hub".into());
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        let fwd = Command::new("ip")
            .args([
                "netns",
                "exec",
                &hub,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])
            .status()
            .map_err(|e| e.to_string())?;
        if !fwd.success() {
            return Err("cannot enable forwarding in the hub".into());
        }
        for (k, m) in members.iter().enumerate() {
            let i = k + 1;
            let ns = format!("{}-{m}", net.prefix);
            ip(&["netns", "add", &ns])?;
            net.members.push((*m).to_string());
            let h = format!("h{i}");
            ip(&[
                "link", "add", &h, "netns", &hub, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&[
                "-n",
                &hub,
                "addr",
                "add",
                &format!("10.77.{i}.1/24"),
                "dev",
                &h,
            ])?;
            ip(&["-n", &hub, "link", "set", &h, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.77.{i}.2/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &format!("10.77.{i}.1"),
            ])?;
        }
        Ok(net)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    fn index(&self, member: &str) -> usize {
        self.members
            .iter()
            .position(|m| m == member)
            .unwrap_or_else(|| panic!("no member {member}"))
    }

    /// The namespace name of `member`.
    pub fn ns(&self, member: &str) -> String {
        format!("{}-{member}", self.prefix)
    }

    /// The address of `member`.
    pub fn addr(&self, member: &str) -> String {
        format!("10.77.{}.2", self.index(member))
    }

    /// The namespace file (for `setns`).
    pub fn ns_path(&self, member: &str) -> String {
        format!("/var/run/netns/{}", self.ns(member))
    }

    /// A command run inside `member`'s namespace.
    pub fn command(&self, member: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(member), program]);
        c
    }

    fn rule(&self, op: &str, a: usize, b: usize) -> Result<(), String> {
        let (from, to) = (format!("10.77.{a}.0/24"), format!("10.77.{b}.0/24"));
        ip(&[
            "-n",
            &self.hub(),
            "rule",
            op,
            "from",
            &from,
            "to",
            &to,
            "blackhole",
        ])
    }

    /// Drops every packet between `a` and `b`, both ways.
    pub fn cut(&mut self, a: &str, b: &str) {
        let (i, j) = (self.index(a), self.index(b));
        for (x, y) in [(i, j), (j, i)] {
            if self.cuts.insert((x, y)) {
                self.rule("add", x, y).unwrap();
            }
        }
    }

    /// Cuts every member of `group` from every member outside it.
    pub fn isolate(&mut self, group: &[&str]) {
        let others: Vec<String> = self.members[1..]
            .iter()
            .filter(|m| !group.contains(&m.as_str()))
            .cloned()
            .collect();
        for a in group {
            for b in &others {
                self.cut(a, b);
            }
        }
    }

    /// Removes every cut.
    pub fn heal(&mut self) {
        for (x, y) in std::mem::take(&mut self.cuts) {
            let _ = self.rule("del", x, y);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for m in self.members.iter().rev() {
            let _ = ip(&["netns", "del", &format!("{}-{m}", self.prefix)]);
        }
    }
}
