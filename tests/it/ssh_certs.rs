//! Certificates against the real test sshd: a host certificate signed by a test CA,
//! trusted through `@cert-authority` in known_hosts (principal and validity checked) and
//! refused once `@revoked`; logins with user certificates (`TrustedUserCAKeys`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sshd::{ssh_fixture_on, user, SshFixture, Sshd};
use crate::util::*;

#[track_caller]
fn ok(r: &Run) {
    assert_eq!(r.code, 0, "{r:?}");
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// `ssh-keygen -s CA -I ID [-h] -n PRINCIPALS -V VALIDITY KEY.pub`: writes KEY-cert.pub.
fn sign(ca: &Path, key_pub: &Path, host: bool, principals: &str, validity: &str) {
    let mut c = Command::new("ssh-keygen");
    c.arg("-q").arg("-s").arg(ca).args(["-I", "tandem-test"]);
    if host {
        c.arg("-h");
    }
    c.args(["-n", principals, "-V", validity]).arg(key_pub);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn read_pub(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_string()
}

/// A server whose ed25519 host key carries a certificate for `principals`, valid for
/// `validity`, signed by a CA made here; and the CA's key.
fn certified_server(principals: &str, validity: &str) -> (SshFixture, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let host_key = dir.path().join("ssh_host_ed25519_key");
    keygen(&host_key);
    let ca = dir.path().join("host_ca");
    keygen(&ca);
    sign(
        &ca,
        &host_key.with_extension("pub"),
        true,
        principals,
        validity,
    );
    let cert = dir.path().join("ssh_host_ed25519_key-cert.pub");
    std::fs::write(
        dir.path().join("sshd_extra.conf"),
        format!("HostCertificate {}\n", cert.display()),
    )
    .unwrap();
    let s = ssh_fixture_on(Sshd::start_in(dir));
    let ca_pub = s.sshd.path("host_ca.pub");
    // No plain host key on record: only the authority vouches for the host.
    std::fs::write(
        s.home.join(".ssh/known_hosts"),
        format!(
            "@cert-authority [127.0.0.1]:{} {}\n",
            s.sshd.port,
            read_pub(&ca_pub)
        ),
    )
    .unwrap();
    (s, ca_pub)
}

#[test]
fn a_host_certificate_from_a_trusted_authority_is_accepted_until_revoked() {
    let (s, ca_pub) = certified_server("127.0.0.1", "-5m:+1h");
    write(s.f.a.join("f"), "certified host\n");
    ok(&s.sync("push", &[]));
    assert_same_tree(&s.f.a, &s.f.b);
    // Revoking the host's key refuses it, certificate or not.
    write(s.f.a.join("g"), "not sent\n");
    let before = snapshot(&s.f.b);
    let kh = s.home.join(".ssh/known_hosts");
    let trusted = std::fs::read_to_string(&kh).unwrap();
    let host_pub = read_pub(&s.sshd.path("ssh_host_ed25519_key.pub"));
    std::fs::write(&kh, format!("{trusted}@revoked * {host_pub}\n")).unwrap();
    let r = s.sync("push", &[]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("revoked"), "{r:?}");
    assert_unchanged(&s.f.b, &before);
    // So does revoking the authority.
    std::fs::write(&kh, format!("{trusted}@revoked * {}\n", read_pub(&ca_pub))).unwrap();
    let r = s.sync("push", &[]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("revoked"), "{r:?}");
    assert_unchanged(&s.f.b, &before);
    // An authority trusted for other hosts only vouches for nothing here.
    std::fs::write(
        &kh,
        format!("@cert-authority *.example.org {}\n", read_pub(&ca_pub)),
    )
    .unwrap();
    let r = s.sync("push", &[]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("not known"), "{r:?}");
    assert_unchanged(&s.f.b, &before);
}

#[test]
fn a_host_certificate_for_another_name_or_out_of_date_is_refused() {
    for (principals, validity, why) in [
        ("db.example.org", "-5m:+1h", "not one of its principals"),
        ("127.0.0.1", "-2h:-1h", "valid from"),
    ] {
        let (s, _) = certified_server(principals, validity);
        write(s.f.a.join("f"), "never sent\n");
        let before = snapshot(&s.f.b);
        let r = s.sync("push", &[]);
        assert_eq!(r.code, 64, "{principals} {validity}: {r:?}");
        assert!(
            r.stderr.contains("host certificate") && r.stderr.contains(why),
            "{principals} {validity}: {r:?}"
        );
        assert_unchanged(&s.f.b, &before);
    }
}

#[test]
fn a_user_certificate_logs_in_where_the_bare_key_is_not_authorized() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("user_ca");
    keygen(&ca);
    std::fs::write(
        dir.path().join("sshd_extra.conf"),
        format!("TrustedUserCAKeys {}\n", ca.with_extension("pub").display()),
    )
    .unwrap();
    let s = ssh_fixture_on(Sshd::start_in(dir));
    let key = s.home.join("me");
    keygen(&key);
    write(s.f.a.join("f"), "certified user\n");
    let push = |extra: &[&str]| {
        let mut c = s.client();
        c.arg("-d")
            .arg(&s.f.a)
            .arg("-r")
            .arg(s.remote())
            .args(["-P", &s.sshd.port.to_string(), "-K", "push", "--agent-path"])
            .arg(agent_path())
            .args(extra);
        output(c.output().unwrap())
    };
    let key_arg = key.to_str().unwrap();
    // The bare key is in no authorized_keys.
    let before = snapshot(&s.f.b);
    let r = push(&["-i", key_arg]);
    assert_eq!(r.code, 64, "{r:?}");
    assert_unchanged(&s.f.b, &before);
    // KEY-cert.pub next to the key is offered with it.
    sign(&ca, &key.with_extension("pub"), false, &user(), "-5m:+1h");
    ok(&push(&["-i", key_arg]));
    assert_same_tree(&s.f.a, &s.f.b);
    // CertificateFile names one kept elsewhere.
    let elsewhere = s.home.join("certs/me.cert");
    std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    std::fs::rename(s.home.join("me-cert.pub"), &elsewhere).unwrap();
    let r = push(&["-i", key_arg]);
    assert_eq!(r.code, 64, "without its certificate: {r:?}");
    std::fs::write(
        s.home.join(".ssh/config"),
        format!(
            "Host 127.0.0.1\n  CertificateFile {}\n",
            elsewhere.display()
        ),
    )
    .unwrap();
    write(s.f.a.join("g"), "via CertificateFile\n");
    ok(&push(&["-i", key_arg]));
    assert_same_tree(&s.f.a, &s.f.b);
    // A certificate for another login name is refused by the server.
    sign(
        &ca,
        &key.with_extension("pub"),
        false,
        "somebody-else",
        "-5m:+1h",
    );
    std::fs::rename(s.home.join("me-cert.pub"), &elsewhere).unwrap();
    write(s.f.a.join("h"), "not sent\n");
    let before = snapshot(&s.f.b);
    let r = push(&["-i", key_arg]);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("certificate"), "{r:?}");
    assert_unchanged(&s.f.b, &before);
}
