//! filesync's two forms: `tandem -s SRC -d DST FILE...` records the names in the rules file
//! and syncs them; a bare `tandem` reconciles every base in the rules file, both ways.

use std::path::PathBuf;

use super::{confirm_on_tty, job, parse_remote, Args, DirectionArg};
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::output::{Event, Reporter};
use crate::state::packing::{self, Base};
use crate::sync::RemoteSpec;

/// True for a command line with nothing to say: the bare form.
pub fn is_bare(args: &Args) -> bool {
    args.dir.is_none()
        && args.remote.is_none()
        && args.direction.is_none()
        && args.host.is_none()
        && args.command.is_none()
}

fn fail(reporter: &mut dyn Reporter, e: &Error) -> ExitStatus {
    reporter.event(&Event::Error {
        path: None,
        side: None,
        message: &e.to_string(),
        exit_bit: e.exit_bit().0,
    });
    e.exit_bit()
}

fn rules_path() -> Result<PathBuf, Error> {
    Ok(packing::path(&crate::state::session::state_dir()?))
}

/// `-s SRC -d DST FILE...`: names that exist (or hold wildcards) join the base's LIST,
/// then the base is synced. A name that does not exist is exit bit 4.
pub fn add_and_sync(args: &Args, reporter: &mut dyn Reporter) -> ExitStatus {
    let (Some(src), Some(dst)) = (&args.source, &args.dir) else {
        let e = Error::Usage("the filesync form needs -s SRC_DIR -d DST_DIR FILE...".into());
        return fail(reporter, &e);
    };
    // Local sides are recorded absolute: a later bare run may start anywhere.
    let absolute = |side: &str| match local_dir(side) {
        Some(p) => super::absolute(p).to_string_lossy().into_owned(),
        None => side.to_string(),
    };
    let (src, dst) = (&absolute(src), absolute(&dst.to_string_lossy()));
    if args.files.is_empty() {
        let e = Error::Usage(format!(
            "name the files below '{src}' to keep in sync with '{dst}'"
        ));
        return fail(reporter, &e);
    }
    let mut exit = ExitStatus::OK;
    let src_dir = local_dir(src);
    let mut names = Vec::new();
    for f in &args.files {
        if f.starts_with('/') || f.split('/').any(|c| c == "..") {
            let e = Error::Usage(format!("'{f}' must be a name below '{src}'"));
            return fail(reporter, &e);
        }
        let missing = !has_wildcard(f)
            && src_dir
                .as_ref()
                .is_some_and(|d| std::fs::symlink_metadata(d.join(f)).is_err());
        if missing {
            exit |= missing_file(reporter, f, src);
        } else {
            names.push(f.clone());
        }
    }
    let base = match record(src, &dst, &names) {
        Ok(b) => b,
        Err(e) => return exit | fail(reporter, &e),
    };
    exit |= sync_base(args, &base, reporter);
    // A remote source was not looked at before: a name that did not arrive was not there.
    if let (None, Some(d)) = (&src_dir, local_dir(&dst)) {
        for f in names.iter().filter(|f| !has_wildcard(f)) {
            if std::fs::symlink_metadata(d.join(f)).is_err() {
                exit |= missing_file(reporter, f, src);
            }
        }
    }
    exit
}

fn missing_file(reporter: &mut dyn Reporter, name: &str, src: &str) -> ExitStatus {
    reporter.event(&Event::Error {
        path: None,
        side: None,
        message: &format!("'{name}' does not exist in '{src}'; not added to the rules"),
        exit_bit: ExitStatus::MISSING_FILES.0,
    });
    ExitStatus::MISSING_FILES
}

/// Adds the names to the rules file; returns the base as it now stands.
fn record(src: &str, dst: &str, names: &[String]) -> Result<Base, Error> {
    let path = rules_path()?;
    let mut bases = packing::load(&path)?.unwrap_or_default();
    packing::add(&mut bases, src, dst, names);
    packing::save(&path, &bases)?;
    Ok(bases
        .into_iter()
        .find(|b| b.src == src && b.dst == dst)
        .expect("just added"))
}

/// A bare `tandem`: every base of the rules file, both ways.
pub fn reconcile_rules(args: &Args, reporter: &mut dyn Reporter) -> ExitStatus {
    let bases = match rules_path().and_then(|p| {
        packing::load(&p)?.ok_or_else(|| {
            Error::State(format!(
                "no rules file at '{}': add rules with 'tandem -s SRC_DIR -d DST_DIR FILE...', \
                 or see 'tandem --help'",
                p.display()
            ))
        })
    }) {
        Ok(b) => b,
        Err(e) => return fail(reporter, &e),
    };
    let mut exit = ExitStatus::OK;
    for base in &bases {
        exit |= sync_base(args, base, reporter);
    }
    exit
}

/// Syncs one base both ways, with its LIST and IGNORE as the filter.
fn sync_base(args: &Args, base: &Base, reporter: &mut dyn Reporter) -> ExitStatus {
    let (local, remote) = match (local_dir(&base.src), local_dir(&base.dst)) {
        (Some(_), _) => (&base.src, &base.dst),
        (None, Some(_)) => (&base.dst, &base.src),
        (None, None) => {
            let e = Error::Usage(format!(
                "'{}' and '{}' are both remote: one side of a rule must be on this machine",
                base.src, base.dst
            ));
            return fail(reporter, &e);
        }
    };
    let mut a = args.clone();
    a.source = None;
    a.files = Vec::new();
    a.dir = Some(PathBuf::from(local));
    a.remote = Some(remote.clone());
    a.direction = Some(DirectionArg::Bidi);
    let filter = base.filter();
    a.exclude.extend(filter.exclude);
    a.include.extend(filter.include);
    a.ignore.extend(filter.ignore);
    match job(&a) {
        Ok((job, notes)) => {
            for n in &notes {
                reporter.event(&Event::Notice { message: n });
            }
            crate::sync::run(&job, reporter, &mut confirm_on_tty)
        }
        Err(e) => fail(reporter, &e),
    }
}

/// The directory on this machine a rules-file side names, if it is local.
fn local_dir(side: &str) -> Option<PathBuf> {
    match parse_remote(Some(side), None, None, None) {
        Ok(RemoteSpec::Local(p)) => Some(p),
        _ => None,
    }
}

fn has_wildcard(name: &str) -> bool {
    name.contains(['*', '?', '['])
}
