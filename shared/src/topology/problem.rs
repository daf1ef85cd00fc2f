//! What is wrong with a topology file, and where.

use std::fmt;

/// One problem in a topology file: where it is, which field, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file as named to [`Topology::load`](super::Topology::load) or
    /// [`Topology::parse`](super::Topology::parse).
    pub file: String,
    /// 1-based line; 0 when the file could not be read at all, and then the
    /// problem is shown without a position (`FILE: cannot read: ...`).
    pub line: usize,
    /// 1-based column (0 with line 0).
    pub column: usize,
    /// The field path, like `workloads[0].assets.buckets[1].replicas.us-east1`;
    /// empty for YAML syntax errors.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a topology file, one per line when displayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct TopologyErrors {
    problems: Vec<Problem>,
}

impl TopologyErrors {
    pub(super) fn new(problems: Vec<Problem>) -> Self {
        Self { problems }
    }

    /// The problems, in file order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for TopologyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}
