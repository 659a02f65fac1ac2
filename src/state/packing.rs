//! The rules file (filesync's packing rules): `BASE src dst` starts a pair of directories,
//! `LIST name...` names what is kept in sync below them (wildcards stored as written and
//! evaluated at each run), `IGNORE pattern...` what is left out. `tandem -s SRC -d DST
//! FILE...` appends to it; a bare `tandem` reconciles every base in it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::state::rules::FilterSpec;

/// The file's first line.
const HEADER: &str = "PACKINGRULES 1.1";

/// One pair of directories and what is synchronized between them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Base {
    /// The source directory, as given (`[user@]host:path` or a local path).
    pub src: String,
    /// The destination directory.
    pub dst: String,
    /// Names below both, relative; may hold wildcards.
    pub list: Vec<String>,
    /// Patterns left out.
    pub ignore: Vec<String>,
}

impl Base {
    /// The filter that keeps exactly the listed names (and what is below them), minus the
    /// ignored ones: gitignore's whitelist idiom, one level at a time.
    pub fn filter(&self) -> FilterSpec {
        let mut spec = FilterSpec::default();
        spec.exclude.push("/*".into());
        for name in &self.list {
            let name = name.trim_matches('/');
            let parts: Vec<&str> = name.split('/').collect();
            for depth in 1..parts.len() {
                let dir = parts[..depth].join("/");
                spec.include.push(format!("/{dir}"));
                spec.exclude.push(format!("/{dir}/*"));
            }
            spec.include.push(format!("/{name}"));
        }
        spec.ignore = self.ignore.clone();
        spec
    }
}

/// Where the rules file lives in the state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("packingrules")
}

/// Reads the rules file; `Ok(None)` if there is none.
pub fn load(path: &Path) -> Result<Option<Vec<Base>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::State(format!(
                "cannot read the rules file '{}': {e}",
                path.display()
            )))
        }
    };
    parse(&text).map(Some).map_err(|(line, why)| {
        Error::State(format!(
            "rules file '{}', line {line}: {why}; fix or remove the line",
            path.display()
        ))
    })
}

/// Parses the rules; `Err((line number, why))`.
pub fn parse(text: &str) -> std::result::Result<Vec<Base>, (usize, String)> {
    let mut bases: Vec<Base> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let words = split_words(line);
        let Some((keyword, rest)) = words.split_first() else {
            continue;
        };
        match keyword.as_str() {
            k if k.starts_with('#') => {}
            "PACKINGRULES" => {}
            "BASE" => match rest {
                [src, dst] => bases.push(Base {
                    src: src.clone(),
                    dst: dst.clone(),
                    ..Default::default()
                }),
                _ => return Err((n, "BASE takes a source and a destination directory".into())),
            },
            "LIST" | "IGNORE" => {
                let Some(base) = bases.last_mut() else {
                    return Err((n, format!("{keyword} before any BASE line")));
                };
                let into = if keyword == "LIST" {
                    &mut base.list
                } else {
                    &mut base.ignore
                };
                into.extend(rest.iter().cloned());
            }
            other => return Err((n, format!("unknown keyword '{other}'"))),
        }
    }
    Ok(bases)
}

/// Writes the rules back (atomically: a temp file renamed over the old one).
pub fn save(path: &Path, bases: &[Base]) -> Result<()> {
    let mut text = format!("{HEADER}\n");
    for b in bases {
        text.push_str(&format!("BASE {} {}\n", quote(&b.src), quote(&b.dst)));
        for name in &b.list {
            text.push_str(&format!("LIST {}\n", quote(name)));
        }
        for pat in &b.ignore {
            text.push_str(&format!("IGNORE {}\n", quote(pat)));
        }
    }
    let fail = |e: std::io::Error| {
        Error::State(format!(
            "cannot write the rules file '{}': {e}",
            path.display()
        ))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Adds `names` to the base `src` → `dst` (created if new), each once.
pub fn add(bases: &mut Vec<Base>, src: &str, dst: &str, names: &[String]) {
    let i = match bases.iter().position(|b| b.src == src && b.dst == dst) {
        Some(i) => i,
        None => {
            bases.push(Base {
                src: src.into(),
                dst: dst.into(),
                ..Default::default()
            });
            bases.len() - 1
        }
    };
    for n in names {
        if !bases[i].list.contains(n) {
            bases[i].list.push(n.clone());
        }
    }
}

/// Words separated by blanks; `\ ` and `\\` escape.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        if c == '\\' || c.is_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::path::RelPath;

    #[test]
    fn rules_round_trip_with_odd_names() {
        let mut bases = Vec::new();
        add(
            &mut bases,
            "/src",
            "host:/dst",
            &["a.c".into(), "my file".into(), "*.h".into()],
        );
        add(&mut bases, "/src", "host:/dst", &["a.c".into()]);
        bases[0].ignore.push("*.o".into());
        let tmp = tempfile::tempdir().unwrap();
        let p = path(tmp.path());
        save(&p, &bases).unwrap();
        assert_eq!(load(&p).unwrap().unwrap(), bases);
        assert!(parse("LIST x").is_err());
        assert!(parse("BASE only-one").is_err());
        assert!(parse("FROB x").is_err());
    }

    #[test]
    fn the_filter_keeps_exactly_what_is_listed() {
        let base = Base {
            src: "s".into(),
            dst: "d".into(),
            list: vec!["a.c".into(), "*.h".into(), "lib/sub".into()],
            ignore: vec!["bad.h".into()],
        };
        let f = base.filter().build().unwrap();
        let p = |s: &str| RelPath::new(s.as_bytes().to_vec()).unwrap();
        for kept in ["a.c", "x.h", "lib", "lib/sub", "lib/sub/deep/z"] {
            assert!(!f.excludes_here_or_above(&p(kept), false), "{kept}");
        }
        for left in ["b.c", "bad.h", "lib/other", "other/x.h"] {
            assert!(f.excludes_here_or_above(&p(left), false), "{left}");
        }
    }
}
