//! The Debian package: `packaging/build-deb.sh` builds it from the test binary; its control
//! data and file list are checked, the units refer to files the package installs, the packaged
//! example configuration passes `check-config`, and `dpkg --root` installs it into a scratch
//! root (maintainer scripts included: the `pgsluice` system user is created) and purges it.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?} cannot run ({e}); dpkg-deb comes with Debian's dpkg package")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Builds the package from the test binary into `dir`; returns its path.
fn build(dir: &Path) -> PathBuf {
    let out = run(Command::new("bash")
        .arg(root().join("packaging/build-deb.sh"))
        .args([
            "--binary",
            env!("CARGO_BIN_EXE_pgsluice"),
            "--compress",
            "gzip",
            "--out",
        ])
        .arg(dir));
    let deb = PathBuf::from(out.trim());
    let want = format!("pgsluice_{}_", env!("CARGO_PKG_VERSION"));
    assert!(
        deb.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&want),
        "{deb:?}"
    );
    deb
}

#[test]
fn deb_contents_units_and_install() {
    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path());
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    for want in [
        "Package: pgsluice",
        &format!("Version: {}", env!("CARGO_PKG_VERSION")),
        "Depends: libc6",
        "postinst",
        "prerm",
        "postrm",
        "conffiles",
    ] {
        assert!(info.contains(want), "no {want:?} in dpkg-deb -I:\n{info}");
    }
    let list = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for want in [
        "-rwxr-xr-x root/root",
        "./usr/bin/pgsluice",
        "./lib/systemd/system/pgsluice-pooler.service",
        "./lib/systemd/system/pgsluice-agent.service",
        "-rw-r----- root/root",
        "./etc/pgsluice/pgsluice.toml",
        "./usr/share/doc/pgsluice/copyright",
        "./usr/share/doc/pgsluice/operations.md",
        "./usr/share/pgsluice/monitoring/alerts.yml",
        "./usr/share/pgsluice/monitoring/grafana/pgsluice.json",
    ] {
        assert!(list.contains(want), "no {want:?} in dpkg-deb -c:\n{list}");
    }
    let tree = dir.path().join("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
    units_refer_to_packaged_files(&tree);
    // The example names /etc/pgsluice/control.secret, which the postinst makes: check it
    // against a secret file of the same shape.
    use std::os::unix::fs::PermissionsExt;
    let secret = dir.path().join("control.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let example = std::fs::read_to_string(tree.join("etc/pgsluice/pgsluice.toml")).unwrap();
    assert!(
        example.contains("\"/etc/pgsluice/control.secret\""),
        "{example}"
    );
    let checked = dir.path().join("checked.toml");
    std::fs::write(
        &checked,
        example.replace(
            "/etc/pgsluice/control.secret",
            &secret.display().to_string(),
        ),
    )
    .unwrap();
    let check = run(Command::new(tree.join("usr/bin/pgsluice"))
        .args(["check-config", "-c"])
        .arg(&checked));
    assert_eq!(check.trim(), "ok");
    install_into_scratch_root(dir.path(), &deb);
}

/// Every absolute path in the units' ExecStart=, -c and Documentation=file:// is in the package.
fn units_refer_to_packaged_files(tree: &Path) {
    for unit in ["pgsluice-pooler.service", "pgsluice-agent.service"] {
        let text = std::fs::read_to_string(tree.join("lib/systemd/system").join(unit)).unwrap();
        let mut paths = Vec::new();
        for line in text.lines() {
            if let Some(cmd) = line.strip_prefix("ExecStart=") {
                let words: Vec<&str> = cmd.split_whitespace().collect();
                paths.push(words[0].to_string());
                let c = words
                    .iter()
                    .position(|w| *w == "-c")
                    .expect("ExecStart names -c");
                paths.push(words[c + 1].to_string());
            }
            if let Some(doc) = line.strip_prefix("Documentation=file://") {
                paths.push(doc.to_string());
            }
        }
        assert_eq!(paths.len(), 3, "{unit}: {paths:?}");
        for p in paths {
            let inside = tree.join(p.trim_start_matches('/'));
            assert!(
                inside.is_file(),
                "{unit} refers to {p}, which the package does not install"
            );
        }
    }
}

/// `dpkg --root` into an empty root: files land, the postinst creates the system user and the
/// state directory and makes the configuration group-readable only; purge removes the files.
fn install_into_scratch_root(dir: &Path, deb: &Path) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "installing the package (dpkg --root) needs root, as the rest of the test suite"
    );
    let r = dir.join("root");
    for d in ["var/lib/dpkg/updates", "var/lib/dpkg/info", "etc"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(r.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(r.join("etc/gshadow"), "root:*::\n").unwrap();
    let dpkg = |args: &[&str]| {
        run(Command::new("dpkg")
            .arg(format!("--root={}", r.display()))
            .args([
                "--force-script-chrootless",
                "--force-depends",
                "--force-unsafe-io",
            ])
            .args(args))
    };
    dpkg(&["-i", deb.to_str().unwrap()]);
    let version = run(Command::new(r.join("usr/bin/pgsluice")).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("pgsluice:"))
        .unwrap_or_else(|| panic!("no pgsluice user in\n{passwd}"));
    let f: Vec<&str> = user.split(':').collect();
    let uid: u32 = f[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {user}");
    assert_eq!(
        (f[5], f[6]),
        ("/var/lib/pgsluice", "/usr/sbin/nologin"),
        "{user}"
    );
    let group = std::fs::read_to_string(r.join("etc/group")).unwrap();
    let gid: u32 = group
        .lines()
        .find(|l| l.starts_with("pgsluice:"))
        .and_then(|l| l.split(':').nth(2))
        .unwrap()
        .parse()
        .unwrap();
    use std::os::unix::fs::MetadataExt;
    let state = std::fs::metadata(r.join("var/lib/pgsluice")).unwrap();
    assert_eq!(
        (state.uid(), state.gid(), state.mode() & 0o777),
        (uid, gid, 0o750)
    );
    let made = std::fs::metadata(r.join("etc/pgsluice/control.secret")).unwrap();
    assert_eq!(
        (made.uid(), made.gid(), made.mode() & 0o777),
        (0, gid, 0o640),
        "the postinst makes the control secret, readable by the pgsluice group only"
    );
    let text = std::fs::read_to_string(r.join("etc/pgsluice/control.secret")).unwrap();
    assert!(text.trim().len() >= 32, "a random secret: {text:?}");
    let conf = std::fs::metadata(r.join("etc/pgsluice/pgsluice.toml")).unwrap();
    assert_eq!(
        (conf.uid(), conf.gid(), conf.mode() & 0o777),
        (0, gid, 0o640)
    );
    let status = run(Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["-s", "pgsluice"]));
    assert!(status.contains("Status: install ok installed"), "{status}");
    dpkg(&["--purge", "pgsluice"]);
    assert!(!r.join("usr/bin/pgsluice").exists());
    assert!(
        !r.join("etc/pgsluice/pgsluice.toml").exists(),
        "purge removes the conffile"
    );
    assert!(
        !r.join("etc/pgsluice/control.secret").exists(),
        "purge removes the generated control secret"
    );
    assert!(!r
        .join("lib/systemd/system/pgsluice-pooler.service")
        .exists());
}
