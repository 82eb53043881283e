//! Every limit the shim enforces, in one place: built from its arguments
//! ([`Limits::from_args`]) and handed to each part that enforces one: the request bodies
//! to the router ([`BodyLimits`]), the connections and request heads to both HTTP
//! listeners, the message size to the scorer's client. The README's limits table is
//! held against [`Limits::default`] by a test here. (The deadlines are the fallback's:
//! [`crate::fallback::Deadlines`].)

use fitsched_runtime::http::ServeLimits;

use crate::config::{Args, BodyLimits};

/// What the shim accepts, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request bodies: size, read time, bytes held at once.
    pub body: BodyLimits,
    /// Each listener's connections and request-head read time.
    pub serve: ServeLimits,
    /// A gRPC message to or from the scorer.
    pub max_grpc_message: usize,
}

impl Default for Limits {
    /// The flags' defaults.
    fn default() -> Self {
        Self {
            body: BodyLimits::default(),
            serve: ServeLimits { max_connections: 256, ..ServeLimits::default() },
            max_grpc_message: fitsched_runtime::MAX_GRPC_MESSAGE,
        }
    }
}

impl Limits {
    /// Refuses a body limit larger than the in-flight budget: no such body could ever be read.
    pub fn from_args(args: &Args) -> Result<Self, String> {
        if args.max_body_bytes > args.max_body_bytes_in_flight {
            return Err(format!(
                "--max-body-bytes ({}) is larger than --max-body-bytes-in-flight ({}): no such body could ever be read",
                args.max_body_bytes, args.max_body_bytes_in_flight
            ));
        }
        Ok(Self {
            body: BodyLimits {
                max_body_bytes: args.max_body_bytes,
                read_timeout: args.body_read_timeout,
                max_in_flight_bytes: args.max_body_bytes_in_flight,
            },
            serve: ServeLimits {
                header_read_timeout: args.header_read_timeout,
                max_connections: args.max_connections,
                ..ServeLimits::default()
            },
            max_grpc_message: fitsched_runtime::MAX_GRPC_MESSAGE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn row(limit: &str) -> String {
        fitsched_runtime::limits_table::row(include_str!("../../README.md"), limit)
    }

    #[test]
    fn the_defaults_are_the_flags_defaults() {
        let args = Args::try_parse_from(["fitsched-shim"]).unwrap();
        assert_eq!(Limits::from_args(&args).unwrap(), Limits::default());
        let args = Args::try_parse_from(["fitsched-shim", "--max-body-bytes", "256Mi"]).unwrap();
        assert!(Limits::from_args(&args).unwrap_err().contains("--max-body-bytes-in-flight"));
    }

    #[test]
    fn the_readme_table_says_what_the_shim_enforces() {
        let l = Limits::default();
        let mib = |b: usize| format!("{}Mi", b >> 20);
        let secs = |d: std::time::Duration| format!("{}s", d.as_secs());
        assert_eq!(row("request head (every HTTP listener)"), format!("{} s", l.serve.header_read_timeout.as_secs()));
        assert_eq!(row("request body read (shim)"), format!("`--body-read-timeout {}`", secs(l.body.read_timeout)));
        assert_eq!(row("body size (shim)"), format!("`--max-body-bytes {}`", mib(l.body.max_body_bytes)));
        assert_eq!(
            row("request bodies held at once (shim)"),
            format!("`--max-body-bytes-in-flight {}`", mib(l.body.max_in_flight_bytes))
        );
        let elsewhere = ServeLimits::default().max_connections;
        assert_eq!(
            row("connections per listener"),
            format!("{} (shim `--max-connections`), 1 {:03} elsewhere", l.serve.max_connections, elsewhere % 1000)
        );
        assert_eq!(elsewhere / 1000, 1, "the row writes 1 0xx");
        assert_eq!(
            row("gRPC message, both ends"),
            format!("{} MiB (`fitsched_runtime::MAX_GRPC_MESSAGE`)", l.max_grpc_message >> 20)
        );
    }
}
