//! Crate-level tests that span modules: the fuzz-corpus replay, and the fixtures
//! (`fixtures/`, made by `fixtures/make_fixtures.py`) that module tests include.

mod fuzz_corpus;
