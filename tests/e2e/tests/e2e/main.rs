//! One test binary for every end-to-end area.

mod hub_basics;
