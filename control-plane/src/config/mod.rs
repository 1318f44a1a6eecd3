//! Config-as-code: loading and validating a config directory.
