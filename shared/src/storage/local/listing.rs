//! One listing page of the local store: the bucket's folders are walked and
//! only the names the page can hold are kept, the page's size plus one at
//! most, so a page costs the same memory whatever the bucket holds. Folders
//! that cannot hold a name of the page are not entered. The bucket's
//! escaped names (see [`super::escaped`]) are all read, for every page.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;

use super::escaped;
use crate::storage::name::object_name_problem;

/// Which names a page holds, and the smallest of them found so far.
#[derive(Debug)]
pub(super) struct PageWindow {
    /// Names start with this.
    prefix: String,
    /// Names come after this one (the page token), excluded.
    after: Option<String>,
    /// Names come from this one on, included.
    first: Option<String>,
    /// Names go up to this one, included.
    last: Option<String>,
    /// How many names the page holds.
    limit: usize,
    /// The `limit + 1` smallest admitted names so far (one more tells
    /// whether another page follows); a name offered twice (a plain file
    /// beside its escaped twin) counts once.
    smallest: BTreeSet<String>,
}

impl PageWindow {
    /// A page of at most `limit` names under `prefix` after `after`.
    pub(super) fn new(prefix: &str, after: Option<&str>, limit: usize) -> Self {
        Self {
            prefix: prefix.to_string(),
            after: after.map(str::to_string),
            first: None,
            last: None,
            limit: limit.max(1),
            smallest: BTreeSet::new(),
        }
    }

    /// Keeps to the names `first..=last`.
    pub(super) fn between(mut self, first: &str, last: &str) -> Self {
        self.first = Some(first.to_string());
        self.last = Some(last.to_string());
        self
    }

    fn is_full(&self) -> bool {
        self.smallest.len() > self.limit
    }

    /// Whether the names under `folder` (which ends with `/`) may belong.
    fn may_hold_under(&self, folder: &str) -> bool {
        // A name under `folder` can reach `bound` unless the folder sorts
        // before it and is not a beginning of it.
        let may_reach = |bound: &str| folder >= bound || bound.starts_with(folder);
        let page_open = !self.is_full()
            || self
                .smallest
                .last()
                .is_some_and(|top| folder < top.as_str());
        (folder.starts_with(&self.prefix) || self.prefix.starts_with(folder))
            && self.after.as_deref().is_none_or(may_reach)
            && self.first.as_deref().is_none_or(may_reach)
            && self.last.as_deref().is_none_or(|last| folder <= last)
            && page_open
    }

    fn admits(&self, name: &str) -> bool {
        name.starts_with(&self.prefix)
            && self.after.as_deref().is_none_or(|after| name > after)
            && self.first.as_deref().is_none_or(|first| name >= first)
            && self.last.as_deref().is_none_or(|last| name <= last)
    }

    fn offer(&mut self, name: &str) {
        if !self.admits(name) {
            return;
        }
        if !self.is_full() {
            self.smallest.insert(name.to_string());
        } else if self.smallest.last().is_some_and(|top| name < top.as_str())
            && self.smallest.insert(name.to_string())
        {
            self.smallest.pop_last();
        }
    }

    /// The page's names in order, and the page token when more follow.
    pub(super) fn into_page(self) -> (Vec<String>, Option<String>) {
        let more = self.is_full();
        let mut names: Vec<String> = self.smallest.into_iter().collect();
        names.truncate(self.limit);
        let token = if more { names.last().cloned() } else { None };
        (names, token)
    }

    /// Offers every object name in `dir` and below (`bucket` is the
    /// bucket's folder), entering only the folders that may hold a name.
    pub(super) fn walk(&mut self, bucket: &Path, dir: &Path) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        // Files are offered as they come; folders are entered afterwards in
        // the order of the names they hold, so the page fills early and
        // later folders are skipped.
        let mut folders = Vec::new();
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            let Some(name) = path
                .strip_prefix(bucket)
                .ok()
                .and_then(|relative| relative.to_str())
            else {
                // Not UTF-8: cannot be an object name.
                continue;
            };
            if kind.is_dir() {
                folders.push((format!("{name}/"), path));
            } else if kind.is_file() && object_name_problem(name).is_none() {
                self.offer(name);
            }
        }
        folders.sort_unstable();
        for (prefix, path) in folders {
            if self.may_hold_under(&prefix) {
                self.walk(bucket, &path)?;
            }
        }
        Ok(())
    }

    /// Offers the name of every escaped object in `folder` (a bucket's
    /// escaped folder) that has its data: one whose write or delete was
    /// cut short has a name and no data, and is no object.
    pub(super) fn offer_escaped(&mut self, folder: &Path) -> io::Result<()> {
        let entries = match fs::read_dir(folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let object = entry?.path();
            let name = match fs::read(object.join(escaped::NAME_FILE)) {
                Ok(name) => name,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            if let Ok(name) = String::from_utf8(name)
                && object.join(escaped::DATA_FILE).is_file()
            {
                self.offer(&name);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(names: &[&str], mut window: PageWindow) -> (Vec<String>, Option<String>) {
        for name in names {
            window.offer(name);
        }
        window.into_page()
    }

    #[test]
    fn keeps_the_smallest_names_and_says_more_follow() {
        let names = ["d", "a", "c", "e", "b"];
        let (first, token) = page(&names, PageWindow::new("", None, 2));
        assert_eq!(first, ["a", "b"]);
        assert_eq!(token.as_deref(), Some("b"));
        let (second, token) = page(&names, PageWindow::new("", Some("b"), 2));
        assert_eq!(second, ["c", "d"]);
        let (third, token) = page(&names, PageWindow::new("", token.as_deref(), 2));
        assert_eq!((third, token), (vec!["e".to_string()], None));
    }

    #[test]
    fn a_range_includes_both_ends() {
        let names = ["a", "b", "b/c", "c", "d"];
        let (got, token) = page(&names, PageWindow::new("", None, 10).between("b", "c"));
        assert_eq!(
            (got, token),
            (vec!["b".into(), "b/c".into(), "c".into()], None)
        );
    }

    #[test]
    fn folders_that_cannot_hold_a_name_are_skipped() {
        let window = PageWindow::new("p/", Some("p/m"), 10).between("p/c", "p/x");
        assert!(!window.may_hold_under("q/"), "outside the prefix");
        assert!(window.may_hold_under("p/"), "the prefix's folder");
        assert!(!window.may_hold_under("p/a/"), "before the token");
        assert!(window.may_hold_under("p/m/"), "the token's own folder");
        assert!(window.may_hold_under("p/n/"));
        assert!(!window.may_hold_under("p/y/"), "after the last name");
    }
}
