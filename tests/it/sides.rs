//! Two roots and a way to sync them, over the pipe transport and over SSH, for tests that
//! must hold on both.

use std::path::PathBuf;

use crate::sshd::ssh_fixture;
use crate::util::{fixture, Run};

/// Runs `tandem -d a -r b -K DIR EXTRA...`.
pub type SyncFn = Box<dyn Fn(&str, &[&str]) -> Run>;
/// Runs `tandem ARGS...`.
pub type RunFn = Box<dyn Fn(&[&str]) -> Run>;

/// Two roots and a way to sync them: `-d a -r b` over a pipe, or over SSH.
pub struct Sides {
    pub a: PathBuf,
    pub b: PathBuf,
    pub sync: SyncFn,
    /// Runs `tandem ARGS...` with the same state directory (`sessions`, `status`).
    pub run: RunFn,
    // Keeps the fixture (and sshd) alive.
    _keep: Box<dyn std::any::Any>,
}

pub fn over_pipe() -> Sides {
    let f = fixture();
    let (a, b) = (f.a.clone(), f.b.clone());
    let f = std::rc::Rc::new(f);
    let (g, h) = (f.clone(), f.clone());
    Sides {
        a,
        b,
        sync: Box::new(move |dir, extra| g.sync(dir, extra)),
        run: Box::new(move |args| h.run(args)),
        _keep: Box::new(f),
    }
}

pub fn over_ssh() -> Sides {
    let s = std::rc::Rc::new(ssh_fixture());
    let (a, b) = (s.f.a.clone(), s.f.b.clone());
    let (g, h) = (s.clone(), s.clone());
    Sides {
        a,
        b,
        sync: Box::new(move |dir, extra| g.sync(dir, extra)),
        run: Box::new(move |args| h.f.run(args)),
        _keep: Box::new(s),
    }
}

pub fn both(scenario: fn(&Sides)) {
    scenario(&over_pipe());
    scenario(&over_ssh());
}
