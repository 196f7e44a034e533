//! The rationing proxy of the integration tests (`tests/support/rationing.rs`, included here
//! as it is: one implementation for tests and benchmark) as a program, for
//! `bench/rationing.sh`.
//!
//! Usage:
//!
//! ```text
//! ration_proxy UPSTREAM --listen ADDR --quota N [--window-seconds S] [--real-window]
//!              [--headers docker-hub|ietf|none]
//! ration_proxy UPSTREAM --listen ADDR --rate R --burst B [--retry-after S|none]
//! ```
//!
//! `UPSTREAM` is the registry (`127.0.0.1:PORT`), `ADDR` where to listen (`127.0.0.1:0`:
//! a free port). Prints `listening on 127.0.0.1:PORT` once it accepts connections, then
//! serves until killed. `POST /_ration/new-window` starts a new quota window,
//! `GET /_ration/counts` answers the counts as JSON.

#[path = "../tests/support/rationing.rs"]
mod rationing;

use std::process::ExitCode;

use rationing::{QuotaHeaders, RationProxy, Rationing, Window};

struct Args {
    upstream: String,
    listen: String,
    rationing: Rationing,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut upstream = None;
    let mut listen = "127.0.0.1:0".to_owned();
    let (mut quota, mut rate, mut burst) = (None, None, None);
    let mut window_seconds = 3600;
    let mut real_window = false;
    let mut headers = QuotaHeaders::DockerHub;
    let mut retry_after = Some(1);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| {
            v.parse::<f64>()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match arg.as_str() {
            "--listen" => listen = value("--listen")?,
            "--quota" => quota = Some(number("--quota", value("--quota")?)? as u64),
            "--window-seconds" => {
                window_seconds = number("--window-seconds", value("--window-seconds")?)? as u64
            }
            "--real-window" => real_window = true,
            "--headers" => {
                headers = match value("--headers")?.as_str() {
                    "docker-hub" => QuotaHeaders::DockerHub,
                    "ietf" => QuotaHeaders::Ietf,
                    "none" => QuotaHeaders::None,
                    other => return Err(format!("--headers: unknown {other}")),
                }
            }
            "--rate" => rate = Some(number("--rate", value("--rate")?)?),
            "--burst" => burst = Some(number("--burst", value("--burst")?)? as u64),
            "--retry-after" => {
                retry_after = match value("--retry-after")?.as_str() {
                    "none" => None,
                    v => Some(number("--retry-after", v.to_owned())? as u64),
                }
            }
            other if !other.starts_with("--") && upstream.is_none() => {
                upstream = Some(other.to_owned())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let upstream = upstream.ok_or("the upstream registry (127.0.0.1:PORT) is missing")?;
    let window = if real_window {
        Window::Real {
            seconds: window_seconds,
        }
    } else {
        Window::Manual {
            seconds: window_seconds,
        }
    };
    let rationing = match (quota, rate) {
        (Some(limit), None) => Rationing::Quota {
            limit,
            window,
            headers,
        },
        (None, Some(per_second)) => Rationing::Rate {
            per_second,
            burst: burst.unwrap_or(per_second.ceil() as u64),
            retry_after,
        },
        _ => return Err("give one of --quota N or --rate R".to_owned()),
    };
    Ok(Args {
        upstream,
        listen,
        rationing,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ration_proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let proxy = match RationProxy::start_on(&args.upstream, args.rationing, &args.listen) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ration_proxy: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", proxy.host());
    loop {
        std::thread::park();
    }
}
