//! Filters: gitignore-style `--exclude` / `--include` patterns and `--exclude-from` files.
//! Includes win over excludes; an excluded directory is not descended into.

use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::core::path::RelPath;
use crate::error::{Error, Result};

/// Which paths take part in the sync.
#[derive(Clone, Debug)]
pub struct Filter {
    matcher: Gitignore,
}

/// The patterns a filter is built from, as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilterSpec {
    /// Patterns of paths to leave out.
    pub exclude: Vec<String>,
    /// Patterns of paths to keep even if excluded.
    pub include: Vec<String>,
    /// Patterns of paths left out even if included (the rules file's `IGNORE` lines).
    #[serde(default)]
    pub ignore: Vec<String>,
}

impl FilterSpec {
    /// Adds the patterns of an exclude file: one per line, `#` comments, `!pat` includes.
    pub fn read_exclude_file(&mut self, file: &Path) -> Result<()> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Error::Usage(format!(
                "cannot read --exclude-from file '{}': {e}",
                file.display()
            ))
        })?;
        for line in text.lines().map(str::trim_end) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.strip_prefix('!') {
                Some(inc) => self.include.push(inc.to_string()),
                None => self.exclude.push(line.to_string()),
            }
        }
        Ok(())
    }

    /// Compiles the patterns.
    pub fn build(&self) -> Result<Filter> {
        let mut b = GitignoreBuilder::new("");
        for pat in &self.exclude {
            b.add_line(None, pat)
                .map_err(|e| Error::Usage(format!("bad --exclude pattern '{pat}': {e}")))?;
        }
        for pat in &self.include {
            b.add_line(None, &format!("!{pat}"))
                .map_err(|e| Error::Usage(format!("bad --include pattern '{pat}': {e}")))?;
        }
        for pat in &self.ignore {
            b.add_line(None, pat)
                .map_err(|e| Error::Usage(format!("bad IGNORE pattern '{pat}': {e}")))?;
        }
        let matcher = b
            .build()
            .map_err(|e| Error::Usage(format!("bad filter pattern: {e}")))?;
        Ok(Filter { matcher })
    }
}

impl Filter {
    /// A filter that keeps everything.
    pub fn all() -> Filter {
        FilterSpec::default().build().expect("empty filter builds")
    }

    /// True if `path`, or a directory above it, is left out of the sync.
    pub fn excludes_here_or_above(&self, path: &RelPath, is_dir: bool) -> bool {
        self.matcher
            .matched_path_or_any_parents(Path::new(path.as_os_str()), is_dir)
            .is_ignore()
    }

    /// True if `path` is left out of the sync.
    pub fn excludes(&self, path: &RelPath, is_dir: bool) -> bool {
        self.matcher
            .matched(Path::new(path.as_os_str()), is_dir)
            .is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn gitignore_style_patterns_with_includes_winning() {
        let spec = FilterSpec {
            exclude: vec!["*.log".into(), "/build".into(), "cache/".into()],
            include: vec!["keep.log".into()],
            ignore: vec![],
        };
        let f = spec.build().unwrap();
        assert!(f.excludes(&p("a.log"), false));
        assert!(f.excludes(&p("deep/b.log"), false));
        assert!(!f.excludes(&p("keep.log"), false));
        assert!(f.excludes(&p("build"), true));
        assert!(!f.excludes(&p("src/build"), true));
        assert!(f.excludes(&p("x/cache"), true));
        assert!(!f.excludes(&p("x/cache"), false));
        assert!(!f.excludes(&p("main.rs"), false));
    }
}
