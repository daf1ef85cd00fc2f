//! Tests of loading and validating topology files.
