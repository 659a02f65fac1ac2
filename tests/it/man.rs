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
