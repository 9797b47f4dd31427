//! The Debian package (`cross/deb.sh`) installed into a throwaway root: files, modes, the service user,
//! ownership of config and state, conffiles. Maintainer scripts run chrootless with DPKG_ROOT set.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::support::*;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn id_of(file: &Path, name: &str) -> u32 {
    std::fs::read_to_string(file)
        .expect("read")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == name).then(|| f[2].parse().expect("id"))
        })
        .unwrap_or_else(|| panic!("{name} not in {}", file.display()))
}

#[test]
fn the_deb_installs_into_a_throwaway_root_with_user_files_and_permissions() {
    require_models();
    if !(have("dpkg-deb") && have("systemd-sysusers")) {
        eprintln!("SKIP: dpkg-deb or systemd-sysusers missing (Debian has both)");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("dist");
    let o = Command::new("bash")
        .arg(repo().join("cross/deb.sh"))
        .args(["--bin", bin(), "--out", out.to_str().expect("utf8")])
        .env("DEB_COMPRESS", "gzip")
        .output()
        .expect("deb.sh");
    assert!(o.status.success(), "{}", text(&o));
    let deb = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{deb}");

    let r = dir.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(r.join(d)).expect("mkdir");
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "").expect("status");
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(r.join("etc/group"), "root:x:0:\nvideo:x:44:\n").expect("group");
    let o = Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args(["--force-script-chrootless", "--force-depends", "-i", &deb])
        .output()
        .expect("dpkg");
    assert!(o.status.success(), "dpkg -i failed:\n{}", text(&o));

    // The service user and its groups.
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).expect("passwd");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("gatehouse:"))
        .expect("user gatehouse");
    assert!(user.ends_with(":/var/lib/gatehouse:/usr/sbin/nologin"), "{user}");
    let uid = id_of(&r.join("etc/passwd"), "gatehouse");
    let gid = id_of(&r.join("etc/group"), "gatehouse");
    assert!(uid > 0 && uid < 1000, "a system uid, got {uid}");
    let group = std::fs::read_to_string(r.join("etc/group")).expect("group");
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("video:") && l.ends_with("gatehouse")),
        "{group}"
    );

    // Files, modes and owners.
    let check = |p: &str, mode: u32, owner: (u32, u32)| {
        let m = std::fs::metadata(r.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{p} mode");
        assert_eq!((m.uid(), m.gid()), owner, "{p} owner");
    };
    check("usr/bin/gatehouse", 0o755, (0, 0));
    check("usr/lib/gatehouse/libonnxruntime.so.1", 0o644, (0, 0));
    check("etc/gatehouse", 0o750, (0, gid));
    check("etc/gatehouse/gatehouse.toml", 0o640, (0, gid));
    check("var/lib/gatehouse", 0o750, (uid, gid));
    check("lib/systemd/system/gatehouse.service", 0o644, (0, 0));
    check("lib/udev/rules.d/60-gatehouse.rules", 0o644, (0, 0));
    check("usr/lib/sysusers.d/gatehouse.conf", 0o644, (0, 0));
    check("usr/share/gatehouse/retention/us-states.toml", 0o644, (0, 0));
    assert_eq!(
        std::fs::read(r.join("lib/systemd/system/gatehouse.service")).expect("unit"),
        std::fs::read(repo().join("systemd/gatehouse.service")).expect("unit"),
    );
    let manifest = std::fs::read_to_string(repo().join("models/manifest.toml")).expect("manifest");
    for f in manifest
        .lines()
        .filter_map(|l| l.strip_prefix("file = \"")?.strip_suffix('"'))
    {
        check(&format!("usr/share/gatehouse/models/{f}"), 0o644, (0, 0));
    }
    let cfg = std::fs::read_to_string(r.join("etc/gatehouse/gatehouse.toml")).expect("config");
    assert!(cfg.contains("manifest = \"/usr/share/gatehouse/models/manifest.toml\""));
    // The binary is stripped of debug info but runs.
    let o = Command::new(r.join("usr/bin/gatehouse"))
        .arg("--version")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", text(&o));
    // dpkg knows the package and its conffiles.
    let status = std::fs::read_to_string(r.join("var/lib/dpkg/status")).expect("status");
    assert!(
        status.contains("Package: gatehouse\nStatus: install ok installed"),
        "{status}"
    );
    assert!(
        status.contains(" /etc/gatehouse/gatehouse.toml "),
        "conffile not registered"
    );
}

/// The SBOM lists what the binary links (not test-only crates), with versions, purls, licenses and
/// checksums, plus the ONNX Runtime library and every model.
#[test]
fn the_sbom_lists_linked_crates_runtime_and_models() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("sbom.json");
    let o = Command::new("python3")
        .arg(repo().join("cross/sbom.py"))
        .args(["--out", out.to_str().expect("utf8")])
        .output()
        .expect("sbom.py");
    assert!(o.status.success(), "{}", text(&o));
    let bom: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("json");
    assert_eq!(bom["bomFormat"], "CycloneDX");
    let comps = bom["components"].as_array().expect("components");
    let names: Vec<&str> = comps.iter().filter_map(|c| c["name"].as_str()).collect();
    for want in [
        "rumqttc",
        "rustls",
        "rusqlite",
        "ort",
        "opencv",
        "onnxruntime",
        "plate_detector.int8.onnx",
    ] {
        assert!(names.contains(&want), "{want} missing from the SBOM");
    }
    assert!(!names.contains(&"tempfile"), "a test-only crate is listed");
    for c in comps
        .iter()
        .filter(|c| c["type"] == "library" && c["bom-ref"] != "onnxruntime")
    {
        assert!(c["purl"].as_str().is_some_and(|p| p.starts_with("pkg:cargo/")), "{c}");
        assert!(c["version"].is_string(), "{c}");
    }
    let hashed = comps.iter().filter(|c| c["hashes"].is_array()).count();
    assert!(
        hashed * 10 >= comps.len() * 9,
        "only {hashed} of {} components have a hash",
        comps.len()
    );
}
