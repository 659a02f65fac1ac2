//! The workload of the fault runs: small files in a few directories, one big file edited
//! in a few places (it goes as a delta), and a directory of files renamed at once.

use std::path::Path;

use crate::util::*;

const DIRS: usize = 5;
const PER_DIR: usize = 30;
const BATCH: usize = 30;
pub(super) const BIG: usize = 6 << 20;

fn small(d: usize, i: usize, version: &str) -> String {
    format!("docs/d{d}/f{i:02}.txt {version}\n").repeat(8 + (d * 7 + i * 13) % 60)
}

pub(super) fn before_state(root: &Path) {
    for d in 0..DIRS {
        for i in 0..PER_DIR {
            write(
                root.join(format!("docs/d{d}/f{i:02}.txt")),
                &small(d, i, "v1"),
            );
        }
    }
    for k in 0..BATCH {
        write(
            root.join(format!("batch/b{k:02}.dat")),
            &format!("batch member {k}\n").repeat(40 + k),
        );
    }
    std::fs::write(root.join("big.bin"), pseudo_random(BIG, 11)).unwrap();
}

/// Every fifth small file of the directories `dirs` gets a new version.
fn edit_small(root: &Path, dirs: std::ops::Range<usize>) {
    for d in dirs {
        for i in (0..PER_DIR).step_by(5) {
            write(
                root.join(format!("docs/d{d}/f{i:02}.txt")),
                &small(d, i, "v2"),
            );
        }
    }
}

fn add_new(root: &Path) {
    for k in 0..12 {
        write(root.join(format!("new/n{k:02}.txt")), &format!("new {k}\n"));
    }
}

fn delete_some(root: &Path) {
    for i in [1, 2, 3, 4, 6] {
        std::fs::remove_file(root.join(format!("docs/d4/f{i:02}.txt"))).unwrap();
    }
}

/// Three 4 KiB patches: the rest of the file is the receiver's to reuse.
fn edit_big(root: &Path) {
    let path = root.join("big.bin");
    let mut big = std::fs::read(&path).unwrap();
    for (n, at) in [1usize << 20, (7 << 20) / 2, 5 << 20]
        .into_iter()
        .enumerate()
    {
        big[at..at + 4096].copy_from_slice(&pseudo_random(4096, 100 + n as u64));
    }
    std::fs::write(&path, big).unwrap();
}

fn move_batch(root: &Path) {
    std::fs::create_dir_all(root.join("moved")).unwrap();
    std::fs::rename(root.join("batch"), root.join("moved/batch2")).unwrap();
}

/// Makes the "after" changes of `direction` on its source side or sides; for bidi the two
/// sides change different paths, so nothing conflicts.
pub(super) fn make_changes(direction: &str, a: &Path, b: &Path) {
    match direction {
        "push" | "pull" => {
            let src = if direction == "push" { a } else { b };
            edit_small(src, 0..DIRS);
            add_new(src);
            delete_some(src);
            edit_big(src);
            move_batch(src);
        }
        _ => {
            edit_big(a);
            edit_small(a, 0..3);
            move_batch(a);
            edit_small(b, 3..DIRS);
            add_new(b);
            delete_some(b);
        }
    }
}
