//! The four local images as built: bit for bit what the committed lockfile records, and
//! their root file systems checked for the original's defects (spec Appendix A).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Instant;

use crate::support::*;

/// Built elsewhere, in another umask, time zone and locale, with --locked: the images
/// are bit for bit the ones the committed lockfile records, and `-o DIR` holds them.
#[test]
fn images_reproduce_the_committed_lockfile() {
    let b = built();
    let committed = fs::read_to_string(repo().join("variants/local/lockfile.toml")).unwrap();
    for (name, sha) in &b.outputs {
        assert!(
            committed.contains(&format!("output-sha256 = \"{sha}\"")),
            "image {name} ({sha}) differs from variants/local/lockfile.toml"
        );
        let (code, sum) = sh(&format!(
            "sha256sum '{}'",
            b.world.path().join(format!("out/{name}.qcow2")).display()
        ));
        assert_eq!(code, 0, "{sum}");
        assert!(sum.starts_with(sha.as_str()), "out/{name}.qcow2: {sum}");
    }
    assert_eq!(
        b.hashes.keys().map(String::as_str).collect::<Vec<_>>(),
        IMAGES
    );
    assert_eq!(
        fs::read_to_string(b.project.join("variants/local/lockfile.toml")).unwrap(),
        committed,
        "a --locked build changed the lockfile"
    );
}

/// Nothing world-writable, forge's files root's, every referenced path present (or left out by the variant), units valid for systemd.
#[test]
fn every_root_file_system_is_safe_and_consistent() {
    let b = built();
    let (w, p, store, roots) = (&b.world, &b.project, &b.store, &b.roots);
    let _ = (w, p, store, roots);
    for (name, root) in roots {
        let files = root.forge_files();
        assert!(files.len() > 3, "{name}: {files:?}");
        for (rel, m) in root.walk() {
            if m.file_type().is_symlink() {
                continue;
            }
            let mode = m.mode() & 0o7777;
            // Appendix A #28, #29: nothing world-writable but the sticky temporary dirs.
            if mode & 0o002 != 0 && (m.is_file() || m.is_dir()) {
                assert!(
                    m.is_dir() && mode & 0o1000 != 0,
                    "{name}: /{rel} is world-writable ({mode:o})"
                );
            }
        }
        for rel in &files {
            let m = root.path(rel).symlink_metadata().unwrap();
            // #28, #30: what root or a service runs is root's, and only root's to change.
            if rel.starts_with("usr/") {
                assert_eq!((m.uid(), m.gid()), (0, 0), "{name}: /{rel} is not root's");
                assert_eq!(m.mode() & 0o022, 0, "{name}: /{rel} is writable by others");
            }
        }
        for bin in [
            "usr/local/bin/vault",
            "usr/local/bin/etcd",
            "usr/local/bin/containerd",
        ] {
            if root.exists(bin) {
                let m = root.path(bin).metadata().unwrap();
                assert_eq!(
                    (m.uid(), m.gid(), m.mode() & 0o7777),
                    (0, 0, 0o755),
                    "{name}: /{bin}"
                );
            }
        }

        // Every path a unit or a forge script refers to under /usr/local exists, or is
        // installed by a layer the `local` variant leaves out.
        for rel in files
            .iter()
            .filter(|r| r.ends_with(".service") || r.starts_with("usr/local/"))
        {
            for path in referenced_paths(&root.read(rel)) {
                if root.exists(&path) {
                    continue;
                }
                let by = installed_by(p, &path);
                assert!(
                    !by.is_empty() && by.iter().all(|r| committed_variant_drops(p, name, r)),
                    "{name}: /{rel} refers to {path}, which no layer of the image installs (recipes: {by:?})"
                );
            }
        }

        // systemd checks the units against the image's own tree.
        let units: Vec<String> = files
            .iter()
            .filter(|r| r.starts_with("usr/lib/systemd/system/") && r.ends_with(".service"))
            .map(|r| r.rsplit('/').next().unwrap().to_string())
            .collect();
        assert!(!units.is_empty(), "{name} has no units of its own");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.dir.display()))
            .args(&units)
            .env("SYSTEMD_LOG_LEVEL", "notice")
            .output()
            .expect("systemd-analyze is installed");
        let msgs = String::from_utf8_lossy(&out.stderr);
        // Paths only a later, absent layer provides are checked above, not here.
        let real: Vec<&str> = msgs
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| {
                !(l.contains("is not executable: No such file") && l.contains("/usr/local/bin/"))
            })
            .collect();
        assert!(
            real.is_empty(),
            "{name}: systemd-analyze verify {units:?}:\n{msgs}"
        );
    }
}

/// etcd is enabled and waits for its configuration; its first boot stops at the first failure (defects 3, 4, 27, 37).
#[test]
fn etcd_waits_for_its_configuration_and_bounds_its_waits() {
    let b = built();
    let (w, p, store, roots) = (&b.world, &b.project, &b.store, &b.roots);
    let _ = (w, p, store, roots);
    // Appendix A #3: etcd is enabled, and waits for its configuration.
    let etcd = &roots["etcd"];
    assert!(etcd.exists("etc/systemd/system/multi-user.target.wants/etcd.service"));
    let unit = etcd.read("usr/lib/systemd/system/etcd.service");
    assert!(
        unit.contains("ConditionPathExists=/etc/default/etcd"),
        "{unit}"
    );
    // #4: the first-boot script stops at the first failure and bounds its waits.
    let init = etcd.read("usr/local/bin/exoscale-etcd-init");
    assert!(
        init.contains("set -eu") && init.contains("ETCD_INIT_TIMEOUT"),
        "{init}"
    );
    assert_eq!(etcd.mode("etc/etcd/tls"), 0o700);
    // #27: the wait helper gives up (here after 2 s on a closed port), exit 1.
    let t = Instant::now();
    let (code, out) = sh(&format!(
        "PATH=/usr/bin:/bin sh '{}' http://127.0.0.1:9/ --timeout 2",
        etcd.path("usr/local/bin/wait-http").display()
    ));
    assert_eq!(code, 1, "{out}");
    assert!(t.elapsed().as_secs() < 15);
    // #37: fcgiwrap changed by a drop-in, not by editing the packaged unit.
    assert!(etcd.exists("etc/systemd/system/fcgiwrap.service.d/50-healthcheck-user.conf"));
    assert!(
        !etcd
            .read("usr/lib/systemd/system/fcgiwrap.service")
            .contains("etcd")
    );
}

/// The control plane's launchers build their flags from their settings and refuse without them; the agent renders the kubelet CA key 0600 (defects 1, 2, 19, 31).
#[test]
fn control_plane_launchers_take_their_settings() {
    let b = built();
    let (w, p, store, roots) = (&b.world, &b.project, &b.store, &b.roots);
    let _ = (w, p, store, roots);
    // #1, #2: the control plane's launchers, run with the binaries replaced.
    let cp = &roots["kube-controlplane"];
    let argv = launcher_argv(
        cp,
        w,
        "usr/local/bin/kube-controller-manager-launcher",
        "/usr/local/bin/kube-controller-manager",
        &[
            (
                "KUBE_CONTROLLER_MANAGER_POD_CIDR",
                "10.244.0.0/16,fd00:10:244::/56",
            ),
            (
                "KUBE_CONTROLLER_MANAGER_SERVICE_CIDR",
                "10.96.0.0/12,fd00:10:96::/112",
            ),
        ],
    );
    for want in [
        "--cluster-cidr=10.244.0.0/16,fd00:10:244::/56",
        "--service-cluster-ip-range=10.96.0.0/12,fd00:10:96::/112",
        "--node-cidr-mask-size-ipv4=24",
        "--node-cidr-mask-size-ipv6=120",
        "--allocate-node-cidrs=true",
    ] {
        assert!(argv.iter().any(|a| a == want), "no {want} in {argv:?}");
    }
    // Without its settings the launcher refuses to start, and says which one.
    let (code, out) = sh(&format!(
        "env -i PATH=/usr/bin:/bin sh '{}'",
        cp.path("usr/local/bin/kube-controller-manager-launcher")
            .display()
    ));
    assert_ne!(code, 0);
    assert!(out.contains("KUBE_CONTROLLER_MANAGER_POD_CIDR"), "{out}");
    let argv = launcher_argv(
        cp,
        w,
        "usr/local/bin/konnectivity-server-launcher",
        "/usr/local/bin/proxy-server",
        &[("KONNECTIVITY_SERVER_COUNT", "2")],
    );
    assert!(argv.iter().any(|a| a == "--server-count=2"), "{argv:?}");
    // #31: the kubelet CA's private key is rendered 0600; #19: renewals restart through
    // the debounced helper, not directly.
    let agent = cp.read("etc/kubernetes/vault.hcl");
    let block = agent
        .split("template {")
        .find(|b| b.contains("node-ca.key"))
        .unwrap();
    assert!(block.contains("perms       = \"0600\""), "{block}");
    assert!(!agent.contains("systemctl restart"), "{agent}");
    assert!(cp.exists("usr/local/sbin/kube-restart"));
    // Flags Kubernetes 1.24 removed must not be used.
    for launcher in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let text = cp.read(&format!("usr/local/bin/{launcher}-launcher"));
        for gone in [
            "--insecure-port",
            "--insecure-bind-address",
            "--port=",
            "--address=",
            "--network-plugin",
            "--experimental-",
        ] {
            assert!(
                !text.contains(gone),
                "{launcher} uses {gone}, removed by Kubernetes 1.24"
            );
        }
    }
}

/// The node: systemd cgroups, bridged netfilter, forwarding, no flags Kubernetes 1.24 removed (defect 14).
#[test]
fn node_runs_containerd_with_the_systemd_cgroup_driver() {
    let b = built();
    let (w, p, store, roots) = (&b.world, &b.project, &b.store, &b.roots);
    let _ = (w, p, store, roots);
    // #14: the node uses the systemd cgroup driver, bridges through netfilter, forwards,
    // and no longer passes the deprecated --container-runtime.
    let node = &roots["kube-node"];
    assert!(
        node.read("etc/containerd/config.toml")
            .contains("SystemdCgroup = true")
    );
    assert!(
        node.read("usr/lib/modules-load.d/kubernetes.conf")
            .contains("br_netfilter")
    );
    let sysctl = fs::read_dir(node.path("etc/sysctl.d"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        sysctl.contains("net.ipv4.ip_forward = 1") || sysctl.contains("net.ipv4.ip_forward=1"),
        "{sysctl}"
    );
    let kubelet = node.read("usr/local/bin/kubelet-launcher");
    for gone in [
        "--network-plugin",
        "--cni-bin-dir",
        "--cni-conf-dir",
        "--docker-endpoint",
        "--image-pull-progress-deadline",
        "--experimental-",
        "--container-runtime=",
    ] {
        assert!(
            !kubelet.contains(gone),
            "kubelet-launcher uses {gone}, removed or deprecated in Kubernetes 1.24"
        );
    }
    let argv = launcher_argv(
        node,
        w,
        "usr/local/bin/kubelet-launcher",
        "/usr/local/bin/kubelet",
        &[],
    );
    assert!(
        !argv.iter().any(|a| a.starts_with("--container-runtime=")),
        "{argv:?}"
    );
    assert!(
        argv.iter()
            .any(|a| a == "--container-runtime-endpoint=unix:///run/containerd/containerd.sock")
    );
    assert!(node.exists("etc/systemd/system/multi-user.target.wants/containerd.service"));
    assert!(node.exists("etc/systemd/system/multi-user.target.wants/kubelet.service"));
}

/// Vault's UI is off (defect 36).
#[test]
fn vault_ui_is_off() {
    let b = built();
    let (w, p, store, roots) = (&b.world, &b.project, &b.store, &b.roots);
    let _ = (w, p, store, roots);
    // #36: Vault's UI is off.
    let vault = &roots["vault"];
    assert!(
        vault
            .read("etc/vault/server-conf.d/vault.hcl")
            .contains("ui                = false")
    );
}

/// The local variant carries the platform's pinned versions, built from source: each
/// binary, run from the image's root file system (they are static), says so.
#[test]
fn the_local_images_carry_the_pinned_versions() {
    let b = built();
    let checks: [(&str, &str, &str, &str); 10] = [
        (
            "vault",
            "usr/local/bin/vault",
            "version",
            "Vault v1.10.3 (af866591ee60485f05d6e32dd63dde93df686dfb)",
        ),
        (
            "etcd",
            "usr/local/bin/etcd",
            "--version",
            "etcd Version: 3.5.4\nGit SHA: 08407ff76\nGo Version: go1.18.2",
        ),
        (
            "etcd",
            "usr/local/bin/etcdctl",
            "version",
            "etcdctl version: 3.5.4",
        ),
        (
            "etcd",
            "usr/local/bin/etcdutl",
            "version",
            "etcdutl version: 3.5.4",
        ),
        (
            "kube-controlplane",
            "usr/local/bin/kube-apiserver",
            "--version",
            "Kubernetes v1.24.1",
        ),
        (
            "kube-controlplane",
            "usr/local/bin/kube-controller-manager",
            "--version",
            "Kubernetes v1.24.1",
        ),
        (
            "kube-controlplane",
            "usr/local/bin/kube-scheduler",
            "--version",
            "Kubernetes v1.24.1",
        ),
        (
            "kube-node",
            "usr/local/bin/kubelet",
            "--version",
            "Kubernetes v1.24.1",
        ),
        (
            "kube-node",
            "usr/local/bin/containerd",
            "--version",
            "containerd github.com/containerd/containerd v1.6.4 212e8b6fa2f44b9c21b2798135fc6fb7c53efc16",
        ),
        (
            "kube-node",
            "usr/local/bin/runc",
            "--version",
            "runc version 1.1.2\ncommit: a916309fff0f838eb94e928713dbc3c0d0ac7aa4",
        ),
    ];
    for (image, bin, arg, expected) in checks {
        let path = b.roots[image].path(bin);
        let out = Command::new(&path).arg(arg).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.starts_with(expected),
            "{image}: /{bin} {arg}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (code, kubectl) = sh(&format!(
        "'{}' version --client -o json",
        b.roots["kube-controlplane"]
            .path("usr/local/bin/kubectl")
            .display()
    ));
    assert_eq!(code, 0, "{kubectl}");
    assert!(kubectl.contains("\"gitVersion\": \"v1.24.1\""), "{kubectl}");
    // Every CNI plugin of the release tarball, built from 1.1.1.
    let cni = b.roots["kube-node"].path("opt/cni/bin");
    let mut plugins: Vec<String> = fs::read_dir(&cni)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    plugins.sort();
    assert_eq!(
        plugins,
        [
            "bandwidth",
            "bridge",
            "dhcp",
            "firewall",
            "host-device",
            "host-local",
            "ipvlan",
            "loopback",
            "macvlan",
            "portmap",
            "ptp",
            "sbr",
            "static",
            "tuning",
            "vlan",
            "vrf"
        ]
    );
    let (code, version) = sh(&format!(
        "CNI_COMMAND=VERSION '{}' </dev/null; '{}' 2>&1 | head -1",
        cni.join("bridge").display(),
        cni.join("bridge").display()
    ));
    assert!(code == 0 && version.contains("v1.1.1"), "{version}");
}
