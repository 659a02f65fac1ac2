//! The connection cut: at every point of a push, a pull and a bidi run, while logging
//! in, and in the middle of a frame; and the state a cut bidi run leaves behind.

use std::time::Instant;

use super::running::run_bounded;
use super::{blames_the_key, names_the_connection, via, Figures, Scenario, TRUNCATED};
use crate::cut_proxy::{CutProxy, NEVER};
use crate::sshd::ssh_fixture;
use crate::sshd::trust_port;
use crate::util::*;

/// Cut points over a clean run of `total` bytes: many in the SSH handshake and the
/// agent's start, an even spread over the middle, and several in the last exchanges,
/// where the remote commits and the client writes its baseline.
fn cut_points(total: u64) -> Vec<u64> {
    let early = [0, 1, 21, 200, 1_000, 2_500, 5_000];
    let middle = (1..=12).map(|k| total * k / 13);
    let late = [4_000, 1_500, 600, 200, 50, 1].map(|back| total.saturating_sub(back));
    let mut points: Vec<u64> = early.into_iter().chain(middle).chain(late).collect();
    points.sort_unstable();
    points.dedup();
    points
}

/// Extra cut points placed where the changes arrive.
const BISECTIONS: usize = 6;

fn cut_everywhere(direction: &'static str) {
    let started = Instant::now();
    let sc = Scenario::new(direction);
    let total = sc.clean_total();
    let mut fig = Figures::default();
    let mut seen: Vec<(u64, usize)> = cut_points(total)
        .into_iter()
        .map(|budget| (budget, sc.cut_at(budget, &mut fig)))
        .collect();
    // Denser where the run makes progress: halfway between the two neighbouring points
    // furthest apart whose cuts left different numbers of changes across.
    for _ in 0..BISECTIONS {
        seen.sort_unstable();
        let Some(mid) = seen
            .windows(2)
            .filter(|w| w[0].1 != w[1].1 && w[1].0 - w[0].0 > 1)
            .max_by_key(|w| w[1].0 - w[0].0)
            .map(|w| (w[0].0 + w[1].0) / 2)
        else {
            break;
        };
        seen.push((mid, sc.cut_at(mid, &mut fig)));
    }
    eprintln!(
        "faults {direction}: {} points ({} cut, {} finished first, {} cut in the goodbye), {} converged ({} with a deleted empty directory back: {:?}), {} entries checked ({} files), {} lost, {} mixed, {} temp files left by cuts, {:.0?}",
        fig.points,
        fig.cut,
        fig.finished_before_cut,
        fig.cut_in_goodbye,
        fig.converged,
        fig.came_back.len(),
        fig.came_back,
        fig.entries_checked,
        fig.files_checked,
        fig.lost,
        fig.mixed,
        fig.temps_left,
        started.elapsed()
    );
    assert!(fig.points >= 18, "too few cut points: {}", fig.points);
    assert!(
        fig.came_back.is_empty(),
        "deleted directories came back: {:?}",
        fig.came_back
    );
    assert!(
        fig.failures.is_empty(),
        "{} failure(s):\n{}",
        fig.failures.len(),
        fig.failures.join("\n")
    );
}

#[test]
fn cut_push_at_every_point() {
    cut_everywhere("push");
}

#[test]
fn cut_pull_at_every_point() {
    cut_everywhere("pull");
}

#[test]
fn cut_bidi_at_every_point() {
    cut_everywhere("bidi");
}

/// A connection lost while logging in is not a refused key: the message must say the
/// connection was lost, not send the user off to fix `authorized_keys`.
#[test]
fn a_connection_lost_while_logging_in_is_not_blamed_on_the_key() {
    let s = ssh_fixture();
    write(s.f.a.join("f"), "f\n");
    let mut blamed = Vec::new();
    // From the key exchange to the agent's start: the login lies in between.
    for budget in (1_500..5_000).step_by(100) {
        let proxy = CutProxy::start(s.sshd.port, budget);
        trust_port(&s, proxy.port());
        let r = run_bounded(via(&s, proxy.port(), &s.f.b, "push")).unwrap();
        assert!(proxy.was_cut(), "{r:?}");
        assert_eq!(r.code, 64, "{r:?}");
        if blames_the_key(&r.stderr) || !names_the_connection(&r.stderr) {
            blamed.push(format!("cut at {budget}: {}", r.stderr.trim()));
        }
    }
    assert!(blamed.is_empty(), "{}", blamed.join("\n"));
}

/// A connection cut while the client reads a frame from the agent is "cannot reach the
/// remote" (64), as a cut between frames is, not a broken agent (128).
#[test]
fn a_connection_cut_in_the_middle_of_a_frame_is_unreachable() {
    let s = ssh_fixture();
    // A pull of one big new file: the client reads large data frames, most of a cut's
    // chances land inside one.
    std::fs::write(s.f.b.join("big"), pseudo_random(4 << 20, 9)).unwrap();
    let proxy = CutProxy::start(s.sshd.port, NEVER);
    trust_port(&s, proxy.port());
    let mut c = via(&s, proxy.port(), &s.f.b, "pull");
    c.args(["--compress", "none"]);
    let r = run_bounded(c).unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    let total = proxy.passed();
    drop(proxy);
    let mut wrong = Vec::new();
    for pct in [30, 45, 60, 75, 90] {
        // Each cut starts as the first run did: nothing local, no baseline.
        for dir in [&s.f.a, &s.f.state] {
            std::fs::remove_dir_all(dir).unwrap();
        }
        std::fs::create_dir(&s.f.a).unwrap();
        let proxy = CutProxy::start(s.sshd.port, total * pct / 100);
        trust_port(&s, proxy.port());
        let mut c = via(&s, proxy.port(), &s.f.b, "pull");
        c.args(["--compress", "none"]);
        let r = run_bounded(c).unwrap();
        assert!(proxy.was_cut(), "{r:?}");
        if r.code != 64 || !names_the_connection(&r.stderr) || r.stderr.contains(TRUNCATED) {
            wrong.push(format!(
                "cut at {pct}%: exit {}: {}",
                r.code,
                r.stderr.trim()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The state a bidi run cut part-way leaves when it had moved a directory's files on the
/// remote, as they were moved locally, but not yet removed the directory there: deleted
/// locally, emptied remotely. Nothing survives in it, so it should go; it comes back.
#[test]
fn a_directory_emptied_on_one_side_and_deleted_on_the_other_stays_deleted() {
    let f = fixture();
    for i in 0..3 {
        write(f.a.join(format!("batch/b{i}")), &format!("{i}\n"));
    }
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::create_dir(f.a.join("moved")).unwrap();
    std::fs::rename(f.a.join("batch"), f.a.join("moved/batch2")).unwrap();
    std::fs::create_dir_all(f.b.join("moved/batch2")).unwrap();
    for i in 0..3 {
        let name = format!("b{i}");
        std::fs::rename(
            f.b.join("batch").join(&name),
            f.b.join("moved/batch2").join(&name),
        )
        .unwrap();
    }
    let r = f.sync("bidi", &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        !f.a.join("batch").exists() && !f.b.join("batch").exists(),
        "the deleted directory came back: {r:?}"
    );
    assert_same_tree(&f.a, &f.b);
}
