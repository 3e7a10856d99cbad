//! Allmende usage policies (issue 4).
