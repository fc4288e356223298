//! Tests of the key table: names, defaults, and coverage of the raw structs and the docs.
