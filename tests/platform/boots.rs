//! Each image boots under QEMU (TCG) with NoCloud user-data playing the deploy stage's
//! first boot, one machine at a time.

use crate::support::*;

/// Vault initialises, unseals and reports healthy over TLS through a forwarded port; killing `forge vm` takes the machine with it.
#[test]
fn vault_boots_initialises_unseals_and_dies_with_forge_vm() {
    let b = built();
    let (w, p, store, roots) = (&b.world, &b.project, &b.store, &b.roots);
    let _ = (w, p, store, roots);
    let _machine = one_machine_at_a_time();
    // First boots.
    let pki = test_pki(&w.path().join("pki-vault"), "vault.test");
    let ud = user_data(
        &tls_files("/etc/vault/tls", "vault", &pki),
        &[
            "sed -i -e s/CLUSTER_NAME/vault.test/g -e s/CLUSTER_MEMBER_ADDRESS/127.0.0.1/g -e s/CLUSTER_MEMBER_NAME/vault-0/g -e s/CLUSTER_EIP_ADDRESS/127.0.0.1/g /etc/vault/server-conf.d/vault.hcl".into(),
            "systemctl start vault-server.service".into(),
            r#"for i in $(seq 120); do c=$(curl -s -o /dev/null -w "%{http_code}" --cacert /etc/vault/tls/ca.pem --resolve vault.test:8200:127.0.0.1 https://vault.test:8200/v1/sys/health); [ "$c" != 000 ] && break; sleep 1; done"#.into(),
            report_cmd("active=$(systemctl is-active vault-server) server_enabled=$(systemctl is-enabled vault-server) agent=$(systemctl is-enabled vault-agent),$(systemctl is-active vault-agent) nginx=$(systemctl is-enabled nginx) user=$(ps -o user= -C vault | head -1) failed=$(systemctl list-units --state=failed --no-legend | wc -l)"),
            "echo FORGE-PLATFORM-READY > /dev/ttyS0".into(),
        ],
    );
    let port = free_port();
    let mut vm = Vm::boot(w, store, p, "vault", &ud, &[format!("{port}:8200")]);
    vm.wait("FORGE-PLATFORM-READY");
    let kv = vm.report();
    expect_report(
        "vault",
        &kv,
        &[
            ("active", "active"),
            // Started by the deploy stage after the TLS bootstrap, not at boot.
            ("server_enabled", "disabled"),
            // Started once its auth method exists (Appendix A #17).
            ("agent", "disabled,inactive"),
            ("nginx", "masked"),
            ("user", "vault"),
            ("failed", "0"),
        ],
    );
    // From the host, through the forwarded port, over TLS with the user-data's CA.
    let ca = w.path().join("pki-vault/ca.pem");
    let vault = |method: &str, path: &str, body: &str| -> (String, serde_json::Value) {
        let (code, out) = sh(&format!(
            "curl -s --max-time 20 -X {method} -w '\\n%{{http_code}}' --cacert '{}' --resolve vault.test:{port}:127.0.0.1 https://vault.test:{port}/v1/{path} {}",
            ca.display(),
            if body.is_empty() {
                String::new()
            } else {
                format!("-d '{body}'")
            }
        ));
        assert_eq!(code, 0, "curl {path}: {out}");
        let (json_text, status) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        (
            status.to_string(),
            serde_json::from_str(json_text).unwrap_or_default(),
        )
    };
    let (status, health) = vault("GET", "sys/health", "");
    assert_eq!(status, "501", "uninitialised Vault answers 501: {health}");
    assert_eq!(health["initialized"], false, "{health}");
    assert_eq!(health["sealed"], true, "{health}");
    // And it is a working server with the image's configuration: initialise, unseal.
    let (status, init) = vault(
        "PUT",
        "sys/init",
        r#"{"secret_shares":1,"secret_threshold":1}"#,
    );
    assert_eq!(status, "200", "{init}");
    let key = init["keys_base64"][0].as_str().unwrap().to_string();
    let (status, unseal) = vault("PUT", "sys/unseal", &format!(r#"{{"key":"{key}"}}"#));
    assert_eq!(
        (status.as_str(), &unseal["sealed"]),
        ("200", &serde_json::Value::Bool(false)),
        "{unseal}"
    );
    let mut healthy = String::new();
    for _ in 0..60 {
        healthy = vault("GET", "sys/health", "").0;
        if healthy == "200" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    assert_eq!(
        healthy, "200",
        "initialised and unsealed Vault is active (raft leader)"
    );
    // Killing `forge vm` outright (SIGKILL) takes the machine with it.
    drop(vm);
    let needle = format!("127.0.0.1:{port}-");
    let mut left = true;
    for _ in 0..50 {
        left = qemu_processes().iter().any(|c| c.contains(&needle));
        if !left {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!left, "QEMU outlived the killed `forge vm`");
}

/// etcd starts only once configured and answers /health and the nginx health check.
#[test]
fn etcd_starts_once_configured_and_answers_health() {
    let b = built();
    let (w, p, store, roots) = (&b.world, &b.project, &b.store, &b.roots);
    let _ = (w, p, store, roots);
    let _machine = one_machine_at_a_time();
    let pki = test_pki(&w.path().join("pki-etcd"), "etcd.test");
    let ud = user_data(
        &tls_files("/etc/etcd/tls", "etcd", &pki),
        &[
            report_cmd("boot_enabled=$(systemctl is-enabled etcd) boot_state=$(systemctl is-active etcd) condition=$(systemctl show -P ConditionResult etcd)"),
            r#"sed s/CLUSTER_MEMBER_ADDRESS/127.0.0.1/g /etc/etcd/base-environment > /etc/default/etcd && printf "ETCD_INITIAL_CLUSTER_STATE=new\nETCD_NAME=etcd-0\nETCD_INITIAL_CLUSTER=etcd-0=https://127.0.0.1:2380\n" >> /etc/default/etcd"#.into(),
            "sed -i s/CLUSTER_MEMBER_ADDRESS/127.0.0.1/g /etc/default/etcdctl".into(),
            "systemctl start etcd.service".into(),
            report_cmd("active=$(systemctl is-active etcd) health=$(set -a; . /etc/default/etcdctl; etcdctl endpoint health >/dev/null 2>&1 && echo ok) check=$(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:2378/healthz) agent=$(systemctl is-enabled etcd-vault-agent) nginx=$(systemctl is-active nginx) user=$(ps -o user= -C etcd | head -1) failed=$(systemctl list-units --state=failed --no-legend | wc -l)"),
            "echo FORGE-PLATFORM-DONE > /dev/ttyS0".into(),
        ],
    );
    let kv = boot(w, store, p, "etcd", &ud);
    expect_report(
        "etcd",
        &kv,
        &[
            ("boot_enabled", "enabled"),
            ("boot_state", "inactive"),
            ("condition", "no"),
            ("active", "active"),
            ("health", "ok"),
            ("check", "200"),
            ("agent", "disabled"),
            ("nginx", "active"),
            ("user", "etcd"),
            ("failed", "0"),
        ],
    );
}

/// containerd runs on the node; kubelet is enabled and waits for its bootstrap.
#[test]
fn the_node_runs_containerd_and_kubelet_waits() {
    let b = built();
    let (w, p, store, roots) = (&b.world, &b.project, &b.store, &b.roots);
    let _ = (w, p, store, roots);
    let _machine = one_machine_at_a_time();
    let ud = user_data(
        "",
        &[
            report_cmd(
                "containerd=$(systemctl is-active containerd) ctr=$(ctr version >/dev/null 2>&1 && echo ok) kubelet=$(systemctl is-active kubelet) kubelet_enabled=$(systemctl is-enabled kubelet) forward=$(cat /proc/sys/net/ipv4/ip_forward) brnf=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables) cgroup=$(stat -f -c %T /sys/fs/cgroup) multiuser=$(systemctl is-active multi-user.target) nginx=$(systemctl is-enabled nginx) failed=$(systemctl list-units --state=failed --no-legend | wc -l)",
            ),
            "echo FORGE-PLATFORM-DONE > /dev/ttyS0".into(),
        ],
    );
    let kv = boot(w, store, p, "kube-node", &ud);
    expect_report(
        "kube-node",
        &kv,
        &[
            ("containerd", "active"),
            ("ctr", "ok"),
            ("kubelet", "inactive"),
            ("kubelet_enabled", "enabled"),
            ("forward", "1"),
            ("brnf", "1"),
            ("cgroup", "cgroup2fs"),
            ("nginx", "masked"),
            ("multiuser", "active"),
            ("failed", "0"),
        ],
    );
}

/// The control plane's four services are enabled and wait for their inputs; the health check answers 500 while the API server is down.
#[test]
fn the_control_plane_units_wait_for_their_inputs() {
    let b = built();
    let (w, p, store, roots) = (&b.world, &b.project, &b.store, &b.roots);
    let _ = (w, p, store, roots);
    let _machine = one_machine_at_a_time();
    let mut keys = String::new();
    for u in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "konnectivity",
    ] {
        let k = u.replace('-', "_");
        keys.push_str(&format!(
            "{k}=$(systemctl is-enabled {u}),$(systemctl is-active {u}) "
        ));
    }
    keys.push_str("kube_vault_agent=$(systemctl is-enabled kube-vault-agent),$(systemctl is-active kube-vault-agent) nginx=$(systemctl is-active nginx) ");
    keys.push_str("check=$(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:6444/healthz) multiuser=$(systemctl is-active multi-user.target) failed=$(systemctl list-units --state=failed --no-legend | wc -l)");
    let ud = user_data(
        "",
        &[
            report_cmd(&keys),
            "echo FORGE-PLATFORM-DONE > /dev/ttyS0".into(),
        ],
    );
    let kv = boot(w, store, p, "kube-controlplane", &ud);
    // The four services are enabled, and wait for their inputs (not failed); the load
    // balancer's health check answers, unhealthy while the API server is down.
    expect_report(
        "kube-controlplane",
        &kv,
        &[
            ("kube_apiserver", "enabled,inactive"),
            ("kube_controller_manager", "enabled,inactive"),
            ("kube_scheduler", "enabled,inactive"),
            ("konnectivity", "enabled,inactive"),
            ("kube_vault_agent", "disabled,inactive"),
            ("nginx", "active"),
            ("check", "500"),
            ("multiuser", "active"),
            ("failed", "0"),
        ],
    );
}
