//! The man page is generated from the flag definitions and must stay current.

use clap::CommandFactory;

#[test]
fn man_page_is_current_and_lists_every_flag() {
    let mut out = Vec::new();
    clap_mangen::Man::new(tandem::cli::Args::command())
        .render(&mut out)
        .unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man/tandem.1");
    if std::env::var_os("TANDEM_BLESS").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let on_disk = std::fs::read(&path).unwrap_or_default();
    assert!(
        on_disk == out,
        "man/tandem.1 is stale: run TANDEM_BLESS=1 cargo test --test it man"
    );
    let text = String::from_utf8(out).unwrap();
    for arg in tandem::cli::Args::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            assert!(
                text.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                "man page lacks --{long}"
            );
        }
    }
}

/// Writes `out` to `rel` under TANDEM_BLESS, else checks it is what is there.
fn current(rel: &str, out: &[u8]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if std::env::var_os("TANDEM_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, out).unwrap();
    }
    let on_disk = std::fs::read(&path).unwrap_or_default();
    assert!(
        on_disk == out,
        "{rel} is stale: run TANDEM_BLESS=1 cargo test --test it man"
    );
}

#[test]
fn man_page_of_the_agent_is_current_and_the_agent_takes_what_it_lists() {
    let mut out = Vec::new();
    clap_mangen::Man::new(tandem::cli::agent_command())
        .render(&mut out)
        .unwrap();
    current("man/tandem-agent.1", &out);
    // Every option the page lists is one the agent's own parser accepts.
    for arg in tandem::cli::agent_command().get_arguments() {
        let long = arg.get_long().unwrap();
        if ["join", "check-self", "version", "help"].contains(&long) {
            continue; // handled before option parsing
        }
        let mut args = vec!["--root".to_string(), "/x".to_string()];
        if long != "root" {
            args.push(format!("--{long}"));
            if arg.get_action().takes_values() {
                args.push(
                    match long {
                        "acls" => "native",
                        "compress" => "none",
                        "log" => "/tmp/logs:1",
                        "scan-threads" => "4",
                        _ => "value",
                    }
                    .to_string(),
                );
            }
        }
        if long == "die-with-parent" {
            continue; // acts at once
        }
        tandem::wire::agent::AgentOptions::parse(&args)
            .unwrap_or_else(|e| panic!("the agent rejects --{long}: {e}"));
    }
}

#[test]
fn completions_are_current_for_bash_zsh_and_fish() {
    for (shell, file) in [
        ("bash", "completions/tandem.bash"),
        ("zsh", "completions/_tandem"),
        ("fish", "completions/tandem.fish"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("continuous") && text.contains("target-rate"),
            "{shell}"
        );
        current(file, &out.stdout);
    }
}
